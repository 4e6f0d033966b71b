//! `--executor slurm` against a real Slurm: a one-node cluster on localhost from Debian's
//! `slurm-wlm` and `munge` (`tools/slurm/local-cluster.sh`, with its configuration, munge socket,
//! state and logs in a temporary folder), started by this test and stopped by the process ids
//! it wrote. `.ci/run` installs the packages; elsewhere `apt-get install slurm-wlm munge`.
//!
//! One test, so one cluster serves every scenario:
//! - the paper pipeline at smoke scale as jobs gives the same outputs as a local run, and every
//!   node that is not light ran as a job;
//! - a node that fails (its error, job id and log tail; the other branch finishes);
//! - a node over its memory limit, and one over its time limit (the reason, in words);
//! - Ctrl-C on the driver cancels its queued and running jobs and says which;
//! - a driver killed mid-run and started again waits for the job its predecessor left running
//!   instead of submitting it twice.

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value as Json;

/// The cluster: started on creation, its daemons stopped on drop (also when a check fails).
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        for b in ["slurmctld", "slurmd", "munged", "sbatch"] {
            let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .chain(["/usr/sbin".into(), "/sbin".into()])
                .any(|d: PathBuf| d.join(b).exists());
            assert!(found, "`{b}` not found: these tests need Slurm and munge (`apt-get install slurm-wlm munge`; .ci/run installs them)");
        }
        let dir = tempfile::tempdir().unwrap();
        let port = 20000 + std::process::id() % 20000;
        let o = Command::new(workspace().join("tools/slurm/local-cluster.sh"))
            .args(["start", dir.path().to_str().unwrap()])
            .env("SLURM_PORT", port.to_string())
            .env("PATH", path_with_sbin())
            .output()
            .unwrap();
        assert!(o.status.success(), "the local Slurm cluster did not start:\n{}{}", stdout(&o), stderr(&o));
        Cluster { dir }
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// `agentmerge` with this cluster's configuration.
    fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(agentmerge_path());
        c.args(args)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env_remove("AGENTMERGE_PLUGIN_PATH")
            .env("RUST_BACKTRACE", "0")
            .env("SLURM_CONF", self.conf())
            .env("PATH", path_with_sbin());
        c
    }

    fn run(&self, dir: &Path, args: &[&str]) -> Output {
        self.command(dir, args).output().unwrap()
    }

    /// Job ids the cluster still has queued or running.
    fn active_jobs(&self) -> Vec<String> {
        let o = Command::new("squeue").args(["-h", "-t", "PD,R,CG", "-o", "%i"]).env("SLURM_CONF", self.conf()).output().unwrap();
        stdout(&o).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(workspace().join("tools/slurm/local-cluster.sh")).args(["stop", self.dir.path().to_str().unwrap()]).status();
    }
}

fn path_with_sbin() -> String {
    format!("{}:/usr/sbin:/sbin", std::env::var("PATH").unwrap_or_default())
}

fn node<'a>(report: &'a Json, id: &str) -> &'a Json {
    report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id} in {report}"))
}

/// Every committed node of a store: node id → its outputs' digests by port (metrics and
/// training logs left out: they hold timings, and so do the keys of the nodes that read them).
fn digests(store: &Path) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut all = BTreeMap::new();
    for e in std::fs::read_dir(store.join("nodes")).unwrap().flatten() {
        let j: Json = serde_json::from_str(&std::fs::read_to_string(e.path().join("outputs.json")).unwrap()).unwrap();
        let ports = j["ports"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(p, recs)| {
                (
                    p.clone(),
                    recs.as_array()
                        .unwrap()
                        .iter()
                        .filter(|r| r["type"] != "metrics" && r["schema"] != "metrics")
                        .map(|r| r["digest"].as_str().unwrap().to_string())
                        .collect(),
                )
            })
            .collect();
        all.insert(j["node"].as_str().unwrap().to_string(), ports);
    }
    all
}

/// Waits (up to `secs`) until `f` holds.
fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The run's jobs that are running, from the driver's state file.
fn running_jobs(store: &Path) -> Vec<String> {
    let Ok(runs) = std::fs::read_dir(store.join("runs")) else { return Vec::new() };
    let mut jobs = Vec::new();
    for r in runs.flatten() {
        let Ok(text) = std::fs::read_to_string(r.path().join("state.json")) else { continue };
        let Ok(j) = serde_json::from_str::<Json>(&text) else { continue };
        for n in j["state"]["nodes"].as_array().into_iter().flatten() {
            if n["state"] == "running" {
                jobs.push(n["job"].as_str().unwrap_or("").to_string());
            }
        }
    }
    jobs
}

fn spawn(c: &Cluster, dir: &Path, args: &[&str]) -> Child {
    c.command(dir, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: a plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn pipelines_run_as_slurm_jobs() {
    let cluster = Cluster::start();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();

    // A node over its time limit takes Slurm a minute or more to stop: it runs beside the rest.
    write(dir, "time.yaml", "name: time\nnodes:\n  - id: long\n    uses: debug/slow\n    with: {millis: 600000}\n    resources: {time: 1m}\n");
    let time_driver = spawn(&cluster, dir, &["run", "time.yaml", "--executor", "slurm", "--store", "time-store"]);

    // 1. The paper pipeline at smoke scale: jobs give what a local run gives.
    // Both runs use the same store path (merged models record their inputs' paths in their
    // metadata, as mergekit does): the local one's store is moved aside before the jobs run.
    let (local, jobs) = (dir.join("local"), dir.join("jobs"));
    let paper = workspace().join("pipelines/paper.yaml");
    let paper = paper.to_str().unwrap();
    ok(dir, &["run", paper, "--set", "scale=smoke", "--store", jobs.to_str().unwrap()]);
    std::fs::rename(&jobs, &local).unwrap();
    let o = cluster.run(dir, &["run", paper, "--set", "scale=smoke", "--store", jobs.to_str().unwrap(), "--executor", "slurm"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let report = latest_report(&jobs);
    let plugins: Json = serde_json::from_str(&ok(dir, &["plugins", "--json"])).unwrap();
    let light = |uses: &str| {
        let (p, k) = uses.split_once('/').unwrap();
        plugins
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["manifest"]["plugin"] == p)
            .flat_map(|l| l["manifest"]["kinds"].as_array().unwrap())
            .any(|kind| kind["name"] == k && kind["resources"]["light"] == true)
    };
    let mut as_jobs = 0;
    for n in report["nodes"].as_array().unwrap() {
        assert_eq!(n["status"], "ran", "{n}");
        let uses = n["uses"].as_str().unwrap();
        if light(uses) {
            assert!(n["job"].is_null(), "light node {} ran as a job: {n}", n["id"]);
        } else {
            assert!(n["job"]["id"].as_str().is_some_and(|id| !id.is_empty()), "{} did not run as a job: {n}", n["id"]);
            as_jobs += 1;
        }
    }
    assert!(as_jobs >= 10, "{report}");
    let (a, b) = (digests(&local), digests(&jobs));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let differ: Vec<&String> = a.keys().filter(|id| a[*id] != b[*id]).collect();
    assert!(differ.is_empty(), "a run as Slurm jobs stored other outputs than a local run for {differ:?}");
    // The table shows each job and its time in the queue.
    assert!(stdout(&o).contains("[job ") && stdout(&o).contains("queued"), "{}", stdout(&o));

    // 2. A failing node: its own error, the job id and the log's tail; the other branch finishes.
    write(
        dir,
        "fail.yaml",
        r#"name: fail
nodes:
  - id: bad
    uses: debug/fail
    with: {message: "boom on purpose"}
  - id: after_bad
    uses: debug/sum
    inputs: {values: [bad.value]}
  - id: good
    uses: debug/slow
    with: {millis: 300, value: 7}
  - id: total
    uses: debug/sum
    inputs: {values: [good.value]}
"#,
    );
    let o = cluster.run(dir, &["run", "fail.yaml", "--executor", "slurm", "--store", "fail-store"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let r = latest_report(&dir.join("fail-store"));
    let err = node(&r, "bad")["error"].as_str().unwrap();
    let job = node(&r, "bad")["job"]["id"].as_str().unwrap();
    assert!(err.contains("boom on purpose") && err.contains(&format!("slurm job {job}")) && err.contains("last lines of"), "{err}");
    assert_eq!(node(&r, "after_bad")["status"], "skipped");
    assert_eq!((&node(&r, "total")["status"], &node(&r, "total")["outputs"]["sum"]), (&Json::from("ran"), &Json::from(7.0)));

    // 3. Over the memory limit.
    write(dir, "mem.yaml", "name: mem\nnodes:\n  - id: big\n    uses: debug/alloc\n    with: {mib: 700, millis: 5000}\n    resources: {mem: 200M}\n");
    let o = cluster.run(dir, &["run", "mem.yaml", "--executor", "slurm", "--store", "mem-store"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let err = node(&latest_report(&dir.join("mem-store")), "big")["error"].as_str().unwrap().to_string();
    assert!(err.contains("out of memory"), "{err}");

    // 4. Ctrl-C on the driver cancels its jobs, queued and running, and says which.
    write(
        dir,
        "cancel.yaml",
        "name: cancel\nnodes:\n  - id: a\n    uses: debug/slow\n    with: {millis: 120000, value: 1}\n  - id: b\n    uses: debug/slow\n    with: {millis: 120000, value: 2}\n  - id: c\n    uses: debug/slow\n    with: {millis: 120000, value: 3}\n",
    );
    let driver = spawn(&cluster, dir, &["run", "cancel.yaml", "--executor", "slurm", "--store", "cancel-store"]);
    let store = dir.join("cancel-store");
    wait_for(60, "a running job", || !running_jobs(&store).is_empty());
    // Another terminal sees the run.
    let status = ok(dir, &["status", store.to_str().unwrap()]);
    assert!(status.contains("running") && status.contains("pipeline cancel") && status.contains("executor slurm"), "{status}");
    let ours: Vec<String> = walk(&store.join("runs"))
        .into_iter()
        .filter(|p| p.ends_with("state.json"))
        .flat_map(|p| {
            let j: Json = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            j["state"]["nodes"].as_array().unwrap().iter().filter_map(|n| n["job"].as_str().map(str::to_string)).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ours.len(), 3, "{ours:?}");
    signal(&driver, libc::SIGINT);
    let o = driver.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cancelled 3 slurm jobs"), "{}", stderr(&o));
    for id in &ours {
        assert!(stderr(&o).contains(id.as_str()), "job {id} not named:\n{}", stderr(&o));
    }
    wait_for(30, "the cancelled jobs to leave the queue", || cluster.active_jobs().iter().all(|j| !ours.contains(j)));

    // 5. A driver killed mid-run, started again, waits for the job it left instead of
    //    submitting the node twice.
    write(dir, "restart.yaml", "name: restart\nnodes:\n  - id: work\n    uses: debug/slow\n    with: {millis: 6000, value: 5}\n  - id: total\n    uses: debug/sum\n    inputs: {values: [work.value]}\n");
    let store = dir.join("restart-store");
    let mut first = spawn(&cluster, dir, &["run", "restart.yaml", "--executor", "slurm", "--store", "restart-store"]);
    wait_for(60, "the job to run", || !running_jobs(&store).is_empty());
    let job = running_jobs(&store)[0].clone();
    signal(&first, libc::SIGKILL);
    first.wait().unwrap();
    let o = cluster.run(dir, &["run", "restart.yaml", "--executor", "slurm", "--store", "restart-store"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains(&format!("waiting for job {job} that an earlier driver submitted")), "{}", stderr(&o));
    let r = latest_report(&store);
    assert_eq!(node(&r, "work")["job"]["id"], Json::from(job.as_str()), "{r}");
    assert_eq!(node(&r, "total")["outputs"]["sum"], 5.0);
    let logs: Vec<_> = walk(&store.join("runs")).into_iter().filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("work.")).collect();
    assert_eq!(logs.len(), 1, "the node ran more than once: {logs:?}");

    // 6. The time limit (started first).
    let o = time_driver.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = node(&latest_report(&dir.join("time-store")), "long")["error"].as_str().unwrap().to_string();
    assert!(err.contains("time limit"), "{err}");
    assert!(cluster.active_jobs().is_empty(), "jobs left in the queue: {:?}", cluster.active_jobs());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
