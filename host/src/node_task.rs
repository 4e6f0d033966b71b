//! One node's computation as a self-contained task: what a local run does in a worker thread and
//! what a cluster job does in `agentmerge run-node` — take the key's lock, look the key up once
//! more, run the plugin, check its outputs and commit them into the store — plus the files a
//! job leaves for its driver.
//!
//! ```text
//! STORE/jobs/<key>/task.json                 the task (written by the driver)
//! STORE/jobs/<key>/job.sh                    the job's script: exec agentmerge run-node …
//! STORE/jobs/<key>/job.json                  the last job submitted for the key (id, log, time)
//! STORE/jobs/<key>/<attempt>.status.json     what that job reports when it ends (ok / error)
//! ```

use std::{
    collections::BTreeMap,
    ffi::c_void,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use agentmerge_sdk::{abi::HostCtx, Value};
use anyhow::{anyhow, bail, Context as _};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::{
    exec::{host_cancelled, host_log, host_progress, max_log_level, CallState, Status},
    plugins::Registry,
    resources::Grant,
    store::{write_atomic, Record, Store, Stored},
};

/// Everything needed to compute one node, independent of the pipeline file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Task {
    /// The instance id (`train[lr=0.001]`).
    pub node: String,
    /// `plugin/kind`.
    pub uses: String,
    /// The resolved config.
    pub config: serde_json::Value,
    pub seed: u64,
    pub key: String,
    /// The input records by port, in order.
    pub inputs: BTreeMap<String, Vec<Record>>,
    /// Digest of the plugin library the key was computed for: a job refuses another build.
    pub plugin_digest: String,
    /// Reuse a result another run stored meanwhile (false for `--force` / `--no-cache`).
    pub reuse: bool,
    /// Let the node reuse per-item results from the memo (false for `--force` / `--no-cache`).
    pub memo: bool,
    /// Where the driver found its plugins, searched first by a job.
    pub plugin_dirs: Vec<PathBuf>,
}

/// What a job reports when it ends, in `jobs/<key>/<attempt>.status.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobStatus {
    pub ok: bool,
    /// `ran`, or `cached` when another run had stored the key meanwhile.
    pub status: String,
    pub error: Option<String>,
    /// Unix seconds.
    pub started: f64,
    pub ended: f64,
    pub host: String,
}

/// The record of the last job submitted for a key, in `jobs/<key>/job.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobRecord {
    pub executor: String,
    pub id: String,
    /// Names the status file the job writes.
    pub attempt: String,
    pub node: String,
    pub pipeline: String,
    /// The job's log (stdout and stderr).
    pub log: PathBuf,
    /// Unix seconds.
    pub submitted: f64,
}

pub fn now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

pub fn jobs_dir(store: &Store, key: &str) -> PathBuf {
    store.root.join("jobs").join(key)
}

pub fn status_path(store: &Store, key: &str, attempt: &str) -> PathBuf {
    jobs_dir(store, key).join(format!("{attempt}.status.json"))
}

pub fn read_status(path: &Path) -> Option<JobStatus> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

pub fn read_record(store: &Store, key: &str) -> Option<JobRecord> {
    serde_json::from_str(&std::fs::read_to_string(jobs_dir(store, key).join("job.json")).ok()?).ok()
}

pub fn write_json<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_atomic(path, serde_json::to_string_pretty(v)?.as_bytes())
}

/// Computes `task` in this process: waits for the key's lock, reuses what another run stored
/// meanwhile (when allowed), else runs the plugin with `grant`'s threads and devices and commits
/// the outputs. `bar` draws progress (local runs on a terminal).
pub fn compute(reg: &Registry, store: &Store, task: &Task, grant: &Grant, bar: Option<ProgressBar>) -> anyhow::Result<(Status, Stored)> {
    let (plugin, _) = reg.kind(&task.uses).ok_or_else(|| anyhow!("no plugin provides `{}`", task.uses))?;
    if plugin.digest != task.plugin_digest {
        bail!(
            "the plugin library of `{}` ({}) is not the build the driver planned with: the binary and plugins must be the same files on every node of the cluster",
            task.uses,
            plugin.path.display()
        );
    }
    let (plugin_name, kind) = task.uses.split_once('/').ok_or_else(|| anyhow!("`{}` is not PLUGIN/KIND", task.uses))?;
    // One run computes a key at a time; another that needs it waits here, then reuses it.
    let _lock = store.lock_key(&task.key, &task.node)?;
    if task.reuse {
        if let Some(stored) = store.lookup(&task.key) {
            tracing::info!(node = task.node, "computed by another run meanwhile: reused");
            return Ok((Status::Cached, stored));
        }
    }
    let mut inputs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (port, records) in &task.inputs {
        for r in records {
            inputs.entry(port.clone()).or_default().push(store.value(r)?);
        }
    }
    tracing::info!(node = task.node, uses = task.uses, "running");
    let tmp = store.temp_dir(&task.key)?;
    let work = store.work_dir(&task.key).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })?;
    let state = CallState { bar };
    let memo =
        if task.memo { store.memo_dir(plugin_name, &plugin.manifest.version, &plugin.digest, kind).to_string_lossy().into_owned() } else { String::new() };
    let devices = grant.devices.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
    let ctx = HostCtx {
        node_id: task.node.as_str().into(),
        out_dir: tmp.to_string_lossy().into_owned().into(),
        work_dir: work.to_string_lossy().into_owned().into(),
        memo_dir: memo.into(),
        seed: task.seed,
        max_log_level: max_log_level(),
        threads: grant.threads,
        devices: devices.into(),
        data: &state as *const CallState as *const c_void,
        log: host_log,
        progress: host_progress,
        cancelled: host_cancelled,
    };
    let result = plugin.run(kind, &task.config, &ctx, inputs);
    if let Some(b) = &state.bar {
        b.finish_and_clear();
    }
    let outputs = match result.and_then(|o| check_outputs(reg, &task.uses, &o).map(|()| o)) {
        Ok(o) => o,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let stored = store.commit(&tmp, &task.key, &task.node, &task.uses, outputs).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })?;
    // Committed: the resumable state is no longer needed. (On any failure above it stays.)
    store.remove_work_dir(&task.key);
    Ok((Status::Ran, stored))
}

/// A plugin must produce exactly its declared outputs, with the declared types.
fn check_outputs(reg: &Registry, uses: &str, outputs: &BTreeMap<String, Vec<Value>>) -> anyhow::Result<()> {
    let (_, kind) = reg.kind(uses).ok_or_else(|| anyhow!("no plugin provides `{uses}`"))?;
    for (port, values) in outputs {
        let Some(spec) = kind.output(port) else {
            bail!("plugin bug: `{uses}` returned output `{port}`, which its manifest does not declare");
        };
        if !spec.list && values.len() != 1 {
            bail!("plugin bug: `{uses}` returned {} values on single output `{port}`", values.len());
        }
        for v in values {
            if !v.port_type().feeds(&spec.ty) && v.port_type() != spec.ty {
                bail!("plugin bug: `{uses}` returned a {} on output `{port}`, declared {}", v.port_type(), spec.ty);
            }
        }
    }
    for spec in &kind.outputs {
        if !outputs.contains_key(&spec.name) {
            bail!("plugin bug: `{uses}` did not return its output `{}`", spec.name);
        }
    }
    Ok(())
}

/// `agentmerge run-node`: runs the task in `jobs/<key>/task.json` of `store_dir` and writes its
/// status file — also when the node fails, so the driver reports the node's own error. Only a
/// job killed from outside (out of memory, time limit, node failure) ends without one; its
/// driver then asks the scheduler why.
pub fn run_node(store_dir: &Path, key: &str, attempt: &str, extra_plugin_dirs: &[PathBuf]) -> anyhow::Result<bool> {
    let started = now();
    let store = Store::open(store_dir)?;
    let status_file = status_path(&store, key, attempt);
    let outcome = (|| -> anyhow::Result<Status> {
        let task_file = jobs_dir(&store, key).join("task.json");
        let text = std::fs::read_to_string(&task_file).with_context(|| format!("reading the task {}", task_file.display()))?;
        let task: Task = serde_json::from_str(&text).with_context(|| format!("{}: not a task written by this version of agentmerge", task_file.display()))?;
        let mut dirs = extra_plugin_dirs.to_vec();
        dirs.extend(task.plugin_dirs.iter().cloned());
        let reg = Registry::discover(&crate::plugins::search_path(&dirs));
        // The threads the scheduler gave this job; the GPUs it gave are the only ones visible.
        let threads = std::env::var("SLURM_CPUS_PER_TASK")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        let (status, _) = compute(&reg, &store, &task, &Grant { threads, devices: Vec::new() }, None)?;
        Ok(status)
    })();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let status = match &outcome {
        Ok(s) => JobStatus { ok: true, status: if *s == Status::Cached { "cached" } else { "ran" }.into(), error: None, started, ended: now(), host },
        Err(e) => JobStatus { ok: false, status: "failed".into(), error: Some(format!("{e:#}")), started, ended: now(), host },
    };
    write_json(&status_file, &status)?;
    if let Err(e) = &outcome {
        tracing::error!("node failed: {e:#}");
    }
    Ok(outcome.is_ok())
}

/// The last `lines` lines of a job's log (empty when it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// How long ago, for messages.
pub fn seconds(d: f64) -> Duration {
    Duration::from_secs_f64(d.max(0.0))
}
