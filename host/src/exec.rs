//! Running a plan: nodes in dependency order, independent ones in parallel, each one either
//! found in the store or computed — in this process (local runs, and light nodes everywhere),
//! sharing the machine's threads and GPUs by what each node needs (`resources.rs`), or as a
//! cluster job (`--executor slurm`: the driver submits each node whose inputs are ready, polls
//! all its jobs at once, and reads each job's status file). A failed node stops only its
//! descendants; the other branches finish.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::c_void,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use abi_stable::std_types::RStr;
use anyhow::anyhow;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value as Json};

use crate::{
    executor::{self, Executor, JobSpec, JobState},
    node_task::{self, JobRecord, Task},
    plan::{Instance, Plan},
    plugins::Registry,
    resources::{Grant, Machine, Need},
    store::{Record, Store, Stored},
};

/// Set by Ctrl-C: nodes see it through `Ctx::is_cancelled`.
pub static CANCELLED: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Most nodes running at once.
    pub jobs: usize,
    /// Node ids (or instance ids) to run even when cached.
    pub force: Vec<String>,
    /// Ignore the cache entirely (results are still stored). Forced and `no_cache` runs also
    /// get no memo (`Ctx::memo_dir` is `None`): their nodes compute every item.
    pub no_cache: bool,
    /// Draw progress bars (only when stderr is a terminal).
    pub progress: bool,
    /// Where non-light nodes run: locally (the default) or as cluster jobs.
    pub executor: executor::Settings,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Ran,
    Cached,
    Failed(String),
    /// Not run because an upstream node failed.
    Skipped(String),
}

/// What happened to one instance.
#[derive(Clone, Debug)]
pub struct NodeResult {
    pub id: String,
    pub uses: String,
    pub status: Status,
    pub wall: Duration,
    pub key: Option<String>,
    pub outputs: Option<Stored>,
    /// The cluster job that computed it, when one did.
    pub job: Option<JobInfo>,
}

/// A node's cluster job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobInfo {
    pub id: String,
    /// From submission to the job's start.
    pub queued: Option<Duration>,
    pub log: PathBuf,
}

impl NodeResult {
    fn settled(inst: &Instance, status: Status) -> NodeResult {
        NodeResult { id: inst.id.clone(), uses: inst.uses.clone(), status, wall: Duration::ZERO, key: None, outputs: None, job: None }
    }
}

/// The outcome of a run.
pub struct RunReport {
    pub pipeline: String,
    pub results: Vec<NodeResult>,
    pub wall: Duration,
}

impl RunReport {
    pub fn failed(&self) -> Vec<&NodeResult> {
        self.results.iter().filter(|r| matches!(r.status, Status::Failed(_) | Status::Skipped(_))).collect()
    }

    pub fn to_json(&self, store: &Store) -> Json {
        json!({
            "pipeline": self.pipeline,
            "wall_s": self.wall.as_secs_f64(),
            "ok": self.failed().is_empty(),
            "nodes": self.results.iter().map(|r| {
                let (status, error) = match &r.status {
                    Status::Ran => ("ran", None),
                    Status::Cached => ("cached", None),
                    Status::Failed(e) => ("failed", Some(e.clone())),
                    Status::Skipped(e) => ("skipped", Some(e.clone())),
                };
                json!({
                    "id": r.id,
                    "uses": r.uses,
                    "status": status,
                    "cached": status == "cached",
                    "wall_s": r.wall.as_secs_f64(),
                    "key": r.key,
                    "error": error,
                    "outputs": r.outputs.as_ref().map(|o| outputs_json(o, store)),
                    "job": r.job.as_ref().map(|j| json!({"id": j.id, "queued_s": j.queued.map(|q| q.as_secs_f64()), "log": j.log})),
                })
            }).collect::<Vec<_>>(),
        })
    }
}

fn outputs_json(o: &Stored, store: &Store) -> Json {
    let mut m = serde_json::Map::new();
    for (port, records) in &o.ports {
        let vals: Vec<Json> = records
            .iter()
            .map(|r| match r {
                Record::Model { path, .. } | Record::Dataset { path, .. } => {
                    json!(store.root.join(path))
                }
                Record::Tensor { dtype, shape, .. } => json!(format!("tensor {dtype} {shape:?}")),
                Record::Metrics { value, .. } => Json::Object(value.clone()),
                Record::Scalar { value, .. } => json!(value),
                Record::Json { value, .. } => value.clone(),
            })
            .collect();
        m.insert(port.clone(), if vals.len() == 1 { vals.into_iter().next().unwrap() } else { Json::Array(vals) });
    }
    Json::Object(m)
}

/// Per-call host state behind `HostCtx::data`.
pub(crate) struct CallState {
    pub bar: Option<ProgressBar>,
}

pub(crate) extern "C" fn host_log(level: u8, node: RStr<'_>, target: RStr<'_>, message: RStr<'_>) {
    let (node, target, message) = (node.as_str(), target.as_str(), message.as_str());
    match level {
        0 => tracing::error!(node, plugin = target, "{message}"),
        1 => tracing::warn!(node, plugin = target, "{message}"),
        2 => tracing::info!(node, plugin = target, "{message}"),
        3 => tracing::debug!(node, plugin = target, "{message}"),
        _ => tracing::trace!(node, plugin = target, "{message}"),
    }
}

pub(crate) extern "C" fn host_progress(data: *const c_void, done: u64, total: u64, message: RStr<'_>) {
    // SAFETY: `data` is the CallState that `run_one` keeps alive during the call.
    let state = unsafe { &*(data as *const CallState) };
    if let Some(bar) = &state.bar {
        if total > 0 {
            bar.set_length(total);
        }
        bar.set_position(done);
        bar.set_message(message.as_str().to_string());
    }
}

pub(crate) extern "C" fn host_cancelled(_data: *const c_void) -> bool {
    CANCELLED.load(Ordering::Relaxed)
}

pub(crate) fn max_log_level() -> u8 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::OFF | LevelFilter::ERROR => 0,
        LevelFilter::WARN => 1,
        LevelFilter::INFO => 2,
        LevelFilter::DEBUG => 3,
        _ => 4,
    }
}

/// Mixes the run's seed with a node's id into the node's seed.
pub fn node_seed(run_seed: u64, id: &str) -> u64 {
    let h = blake3::hash(format!("{run_seed}/{id}").as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap())
}

/// Runs the plan.
pub fn run(plan: &Plan, reg: &Registry, store: &Store, opts: &RunOptions) -> RunReport {
    let started = Instant::now();
    let n = plan.instances.len();
    let deps: Vec<BTreeSet<usize>> = plan.instances.iter().map(Instance::deps).collect();
    let needs: Vec<Result<Need, String>> = plan.instances.iter().map(|inst| need_of(plan, reg, inst)).collect();
    let mut results: Vec<Option<NodeResult>> = vec![None; n];
    let multi = MultiProgress::with_draw_target(if opts.progress { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    let jobs = opts.jobs.max(1);
    let mut machine = Machine::here();
    let mut cluster = opts.executor.executor().map(|e| Cluster::new(e, plan, store, &opts.executor));
    if needs.iter().flatten().any(|nd| nd.gpus > 0 && !nd.light) && machine.gpus() == 0 && cluster.is_none() {
        tracing::info!("no GPU seen (CUDA_VISIBLE_DEVICES, /dev/nvidia*): nodes that need a GPU run one at a time on what their backend finds");
    }
    let mut state = RunState::new(plan, store, cluster.as_ref().map(|c| c.exec.name()).unwrap_or("local"));

    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, NodeResult)>();
        let mut running = 0usize;
        let mut started_set = vec![false; n];
        loop {
            let cancelled = CANCELLED.load(Ordering::Relaxed);
            if let Some(c) = cluster.as_mut().filter(|_| cancelled) {
                for (i, r) in c.cancel_all() {
                    results[i] = Some(r);
                }
            }
            // Settle nodes whose upstream failed; start ready ones.
            for i in 0..n {
                if started_set[i] {
                    continue;
                }
                let inst = &plan.instances[i];
                if let Some(bad) = deps[i].iter().find(|&&d| results[d].as_ref().is_some_and(|r| matches!(r.status, Status::Failed(_) | Status::Skipped(_)))) {
                    started_set[i] = true;
                    results[i] = Some(NodeResult::settled(inst, Status::Skipped(format!("upstream `{}` failed", plan.instances[*bad].id))));
                    continue;
                }
                if !deps[i].iter().all(|&d| results[d].is_some()) {
                    continue;
                }
                if cancelled {
                    started_set[i] = true;
                    results[i] = Some(NodeResult::settled(inst, Status::Skipped("the run was cancelled".into())));
                    continue;
                }
                let need = match &needs[i] {
                    Ok(need) => need,
                    Err(e) => {
                        started_set[i] = true;
                        results[i] = Some(NodeResult::settled(inst, Status::Failed(e.clone())));
                        continue;
                    }
                };
                let upstream: BTreeMap<usize, Stored> =
                    deps[i].iter().map(|&d| (d, results[d].as_ref().and_then(|r| r.outputs.clone()).expect("upstream succeeded"))).collect();
                if let Some(c) = cluster.as_mut().filter(|_| !need.light) {
                    started_set[i] = true;
                    if let Some(r) = c.start(i, need, prepare(plan, i, &upstream, reg, store, opts)) {
                        results[i] = Some(r);
                    }
                    continue;
                }
                if running >= jobs {
                    continue;
                }
                let Some(grant) = machine.take(i, need) else {
                    continue;
                };
                started_set[i] = true;
                running += 1;
                let tx = tx.clone();
                let multi = multi.clone();
                scope.spawn(move || {
                    let r = run_local(plan, i, &upstream, reg, store, opts, &grant, &multi);
                    let _ = tx.send((i, r));
                });
            }
            state.update(&results, cluster.as_ref());
            if results.iter().all(Option::is_some) {
                break;
            }
            let waiting_on_jobs = cluster.as_ref().is_some_and(|c| !c.outstanding.is_empty());
            if running == 0 && !waiting_on_jobs {
                // Only possible if something is unreachable; settle the rest to avoid a hang.
                for (i, r) in results.iter_mut().enumerate() {
                    if r.is_none() {
                        *r = Some(NodeResult::settled(&plan.instances[i], Status::Skipped("not reachable".into())));
                    }
                }
                break;
            }
            let got = if waiting_on_jobs { rx.recv_timeout(Duration::from_millis(200)).ok() } else { Some(rx.recv().expect("a worker is running")) };
            if let Some((i, r)) = got {
                running -= 1;
                if let Ok(need) = &needs[i] {
                    machine.give_back(i, need);
                }
                results[i] = Some(r);
            }
            if let Some(c) = cluster.as_mut() {
                for (i, r) in c.check() {
                    results[i] = Some(r);
                }
            }
        }
    });
    let _ = multi.clear();
    let results: Vec<NodeResult> = results.into_iter().map(|r| r.expect("settled")).collect();
    state.finish(&results);
    RunReport { pipeline: plan.spec.name.clone(), results, wall: started.elapsed() }
}

/// What instance `inst` needs: its kind's declaration and its node's `resources:` override.
fn need_of(plan: &Plan, reg: &Registry, inst: &Instance) -> Result<Need, String> {
    let (_, kind) = reg.kind(&inst.uses).ok_or_else(|| format!("plugin kind {} disappeared", inst.uses))?;
    Need::of(&kind.resources, &inst.config, &plan.spec.nodes[inst.node].resources).map_err(|e| format!("`{}`: {e}", inst.uses))
}

/// A node made ready to compute: its task, or its stored outputs when the cache has them.
enum Prepared {
    Cached(Stored),
    Compute(Task),
}

/// Gathers an instance's inputs, computes its key and looks it up.
fn prepare(
    plan: &Plan,
    i: usize,
    upstream: &BTreeMap<usize, Stored>,
    reg: &Registry,
    store: &Store,
    opts: &RunOptions,
) -> (Option<String>, anyhow::Result<Prepared>) {
    let inst = &plan.instances[i];
    let mut key = None;
    let r = (|| {
        let (plugin, _) = reg.kind(&inst.uses).ok_or_else(|| anyhow!("plugin kind {} disappeared", inst.uses))?;
        let mut inputs: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        for (port, srcs) in &inst.inputs {
            for (src, src_port) in srcs {
                let records = upstream[src].ports.get(src_port).ok_or_else(|| anyhow!("`{}` produced no output `{src_port}`", plan.instances[*src].id))?;
                inputs.entry(port.clone()).or_default().extend(records.iter().cloned());
            }
        }
        let input_digests: BTreeMap<&String, Vec<&str>> = inputs.iter().map(|(p, rs)| (p, rs.iter().map(Record::digest).collect())).collect();
        let seed = node_seed(plan.spec.seed, &inst.id);
        let (plugin_name, kind) = inst.uses.split_once('/').expect("checked");
        let k = crate::store::digest_json(&json!({
            "plugin": plugin_name,
            "plugin_version": plugin.manifest.version,
            "plugin_digest": plugin.digest,
            "kind": kind,
            "config": inst.config,
            "seed": seed,
            "inputs": input_digests,
        }));
        key = Some(k.clone());
        let base_id = &plan.spec.nodes[inst.node].id;
        let forced = opts.force.iter().any(|f| f == base_id || f == &inst.id);
        let reuse = !opts.no_cache && !forced;
        if reuse {
            if let Some(stored) = store.lookup(&k) {
                tracing::debug!(node = inst.id, "cached");
                return Ok(Prepared::Cached(stored));
            }
        }
        Ok(Prepared::Compute(Task {
            node: inst.id.clone(),
            uses: inst.uses.clone(),
            config: inst.config.clone(),
            seed,
            key: k,
            inputs,
            plugin_digest: plugin.digest.clone(),
            reuse,
            // `--no-cache` and `--force` mean "compute it": no per-item reuse either.
            memo: reuse,
            plugin_dirs: reg.search_path.clone(),
        }))
    })();
    (key, r)
}

/// Computes instance `i` in this process, on a worker thread.
#[allow(clippy::too_many_arguments)]
fn run_local(
    plan: &Plan,
    i: usize,
    upstream: &BTreeMap<usize, Stored>,
    reg: &Registry,
    store: &Store,
    opts: &RunOptions,
    grant: &Grant,
    multi: &MultiProgress,
) -> NodeResult {
    let inst = &plan.instances[i];
    let t0 = Instant::now();
    let (key, prepared) = prepare(plan, i, upstream, reg, store, opts);
    let outcome = prepared.and_then(|p| match p {
        Prepared::Cached(stored) => Ok((Status::Cached, stored)),
        Prepared::Compute(task) => {
            let bar = opts.progress.then(|| {
                let b = multi.add(ProgressBar::new(0));
                b.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:.bold} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b.set_prefix(inst.id.clone());
                b.enable_steady_tick(Duration::from_millis(200));
                b
            });
            let r = node_task::compute(reg, store, &task, grant, bar.clone());
            if let Some(b) = bar {
                multi.remove(&b);
            }
            r
        }
    });
    let wall = t0.elapsed();
    match outcome {
        Ok((status, stored)) => NodeResult { id: inst.id.clone(), uses: inst.uses.clone(), status, wall, key, outputs: Some(stored), job: None },
        Err(e) => {
            tracing::error!(node = inst.id, "failed: {e:#}");
            NodeResult { id: inst.id.clone(), uses: inst.uses.clone(), status: Status::Failed(format!("{e:#}")), wall, key, outputs: None, job: None }
        }
    }
}

// ---- cluster jobs -------------------------------------------------------------------------

/// A submitted job the driver waits for.
struct Outstanding {
    i: usize,
    key: String,
    record: JobRecord,
    state: JobState,
}

/// The driver's side of cluster jobs: submitting, polling with back-off, reading status files,
/// cancelling.
struct Cluster<'a> {
    exec: Box<dyn Executor>,
    plan: &'a Plan,
    store: &'a Store,
    outstanding: BTreeMap<String, Outstanding>,
    /// Jobs finished, for the progress line.
    done: usize,
    next_poll: Instant,
    interval: Duration,
    poll_max: Duration,
    attempts: u64,
    binary: PathBuf,
    chdir: PathBuf,
    logs: PathBuf,
    counts: (usize, usize, usize),
}

impl<'a> Cluster<'a> {
    fn new(exec: Box<dyn Executor>, plan: &'a Plan, store: &'a Store, settings: &executor::Settings) -> Cluster<'a> {
        Cluster {
            exec,
            plan,
            store,
            outstanding: BTreeMap::new(),
            done: 0,
            next_poll: Instant::now(),
            interval: Duration::from_millis(500),
            poll_max: Duration::from_secs_f64(settings.poll_max.unwrap_or(10.0)),
            attempts: 0,
            binary: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("agentmerge")),
            chdir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            logs: store.run_dir(),
            counts: (0, 0, 0),
        }
    }

    /// Starts instance `i`: its cached result, or a job (a fresh one, or one an earlier driver
    /// submitted that is still queued or running). Returns the result when it is already known.
    fn start(&mut self, i: usize, need: &Need, prepared: (Option<String>, anyhow::Result<Prepared>)) -> Option<NodeResult> {
        let inst = &self.plan.instances[i];
        let (key, prepared) = prepared;
        let fail = |e: anyhow::Error| {
            tracing::error!(node = inst.id, "failed: {e:#}");
            Some(NodeResult { key: key.clone(), ..NodeResult::settled(inst, Status::Failed(format!("{e:#}"))) })
        };
        let task = match prepared {
            Ok(Prepared::Cached(stored)) => return Some(NodeResult { key: key.clone(), outputs: Some(stored), ..NodeResult::settled(inst, Status::Cached) }),
            Ok(Prepared::Compute(task)) => task,
            Err(e) => return fail(e),
        };
        match self.submit(i, need, &task) {
            Ok(()) => None,
            Err(e) => fail(e.context(format!("submitting `{}` to {}", inst.id, self.exec.name()))),
        }
    }

    fn submit(&mut self, i: usize, need: &Need, task: &Task) -> anyhow::Result<()> {
        let inst = &self.plan.instances[i];
        let dir = node_task::jobs_dir(self.store, &task.key);
        node_task::write_json(&dir.join("task.json"), task)?;
        // A job an earlier driver left queued or running: wait for it rather than run it twice.
        if let Some(rec) = node_task::read_record(self.store, &task.key).filter(|r| r.executor == self.exec.name()) {
            if !node_task::status_path(self.store, &task.key, &rec.attempt).exists() {
                let state = self.exec.poll(std::slice::from_ref(&rec.id))?.remove(&rec.id).unwrap_or(JobState::Unknown);
                if matches!(state, JobState::Pending(_) | JobState::Running) {
                    tracing::info!(node = inst.id, "waiting for job {} that an earlier driver submitted", rec.id);
                    self.outstanding.insert(rec.id.clone(), Outstanding { i, key: task.key.clone(), record: rec, state });
                    return Ok(());
                }
            }
        }
        self.attempts += 1;
        let attempt = format!("{}-{}", self.store.run_id(), self.attempts);
        let script = dir.join("job.sh");
        let q = |p: &std::path::Path| shell_quote(&p.to_string_lossy());
        let text = format!(
            "#!/bin/sh\n# agentmerge: node `{}` of pipeline `{}`\nexec {} run-node --store {} --key {} --attempt {}\n",
            inst.id,
            self.plan.spec.name,
            q(&self.binary),
            q(&self.store.root),
            task.key,
            attempt
        );
        crate::store::write_atomic(&script, text.as_bytes())?;
        std::fs::create_dir_all(&self.logs)?;
        let log_name = format!("{}.%j.log", file_safe(&inst.id));
        let job = JobSpec {
            name: format!("agentmerge:{}:{}", self.plan.spec.name, inst.id),
            script,
            log: self.logs.join(&log_name),
            chdir: self.chdir.clone(),
            need: need.clone(),
        };
        let id = self.exec.submit(&job)?;
        let log = self.logs.join(log_name.replace("%j", &id));
        let record = JobRecord {
            executor: self.exec.name().into(),
            id: id.clone(),
            attempt,
            node: inst.id.clone(),
            pipeline: self.plan.spec.name.clone(),
            log,
            submitted: node_task::now(),
        };
        node_task::write_json(&dir.join("job.json"), &record)?;
        tracing::info!(node = inst.id, "submitted as {} job {id} ({})", self.exec.name(), need.describe());
        self.outstanding.insert(id, Outstanding { i, key: task.key.clone(), record, state: JobState::Pending(String::new()) });
        self.interval = Duration::from_millis(500);
        self.next_poll = Instant::now() + self.interval;
        Ok(())
    }

    /// Settles the jobs that ended: those whose status file appeared, and — at most once per
    /// poll interval, one scheduler call for all — those the scheduler says ended without one.
    fn check(&mut self) -> Vec<(usize, NodeResult)> {
        let mut settled = Vec::new();
        let with_status: Vec<String> =
            self.outstanding.iter().filter(|(_, o)| node_task::status_path(self.store, &o.key, &o.record.attempt).exists()).map(|(id, _)| id.clone()).collect();
        for id in with_status {
            let o = self.outstanding.remove(&id).expect("listed");
            settled.push((o.i, self.finish(o, None)));
        }
        if !self.outstanding.is_empty() && Instant::now() >= self.next_poll {
            let ids: Vec<String> = self.outstanding.keys().cloned().collect();
            match self.exec.poll(&ids) {
                Ok(states) => {
                    let mut changed = false;
                    for (id, state) in states {
                        let Some(o) = self.outstanding.get_mut(&id) else { continue };
                        changed |= o.state != state;
                        o.state = state.clone();
                        if let JobState::Ended(_) | JobState::Unknown = state {
                            let o = self.outstanding.remove(&id).expect("listed");
                            let why = match state {
                                JobState::Ended(Some(why)) => why,
                                JobState::Ended(None) => "it exited without writing its status file".into(),
                                _ => format!("{} no longer knows the job", self.exec.name()),
                            };
                            settled.push((o.i, self.finish(o, Some(why))));
                        }
                    }
                    // Back off while nothing changes, so a long run never hammers the controller.
                    self.interval = if changed { Duration::from_millis(500) } else { (self.interval.mul_f64(1.5)).min(self.poll_max) };
                }
                Err(e) => {
                    tracing::warn!("polling {} failed (will retry): {e:#}", self.exec.name());
                    self.interval = (self.interval * 2).min(self.poll_max);
                }
            }
            self.next_poll = Instant::now() + self.interval;
        }
        self.done += settled.len();
        let pending = self.outstanding.values().filter(|o| matches!(o.state, JobState::Pending(_))).count();
        let counts = (pending, self.outstanding.len() - pending, self.done);
        if counts != self.counts {
            self.counts = counts;
            tracing::info!("{} jobs: {} pending, {} running, {} done", self.exec.name(), counts.0, counts.1, counts.2);
        }
        settled
    }

    /// The result of a job that ended: from its status file (re-read: it may have appeared
    /// since the scheduler was asked), else the scheduler's reason and the tail of its log.
    fn finish(&self, o: Outstanding, ended_without_status: Option<String>) -> NodeResult {
        let inst = &self.plan.instances[o.i];
        let status = node_task::read_status(&node_task::status_path(self.store, &o.key, &o.record.attempt));
        let queued = status.as_ref().map(|s| node_task::seconds(s.started - o.record.submitted));
        let wall = status.as_ref().map_or_else(|| node_task::seconds(node_task::now() - o.record.submitted), |s| node_task::seconds(s.ended - s.started));
        let job = Some(JobInfo { id: o.record.id.clone(), queued, log: o.record.log.clone() });
        let base = NodeResult { wall, key: Some(o.key.clone()), job, ..NodeResult::settled(inst, Status::Ran) };
        let tail = || {
            let t = node_task::log_tail(&o.record.log, 12);
            if t.is_empty() {
                format!("(log {} is empty or missing)", o.record.log.display())
            } else {
                format!("last lines of {}:\n{t}", o.record.log.display())
            }
        };
        let failed = |msg: String| {
            tracing::error!(node = inst.id, "failed: {msg}");
            NodeResult { status: Status::Failed(msg), ..base.clone() }
        };
        match (status, ended_without_status) {
            (Some(s), _) if s.ok => match self.store.lookup(&o.key) {
                Some(stored) => NodeResult { status: if s.status == "cached" { Status::Cached } else { Status::Ran }, outputs: Some(stored), ..base.clone() },
                None => failed(format!("{} job {} reported success, but the store has no complete entry for its key {}", self.exec.name(), o.record.id, o.key)),
            },
            (Some(s), _) => {
                // A job Slurm stops (time limit) is told to stop first, and reports `cancelled`:
                // the log says why.
                let err = s.error.unwrap_or_default();
                let err = log_reason(&o.record.log).map_or(err.clone(), |why| format!("{why}; the node: {err}"));
                failed(format!("{err} ({} job {} on {}; {})", self.exec.name(), o.record.id, s.host, tail()))
            }
            (None, why) => {
                // The scheduler's word, unless its log says more plainly what killed the job
                // (without cgroups Slurm reports a memory kill as a launch failure).
                let why = log_reason(&o.record.log).map(str::to_string).or(why).unwrap_or_default();
                failed(format!("{} job {} ended without a result: {why}; {}", self.exec.name(), o.record.id, tail()))
            }
        }
    }

    /// Cancels every outstanding job (Ctrl-C, SIGTERM), saying which.
    fn cancel_all(&mut self) -> Vec<(usize, NodeResult)> {
        if self.outstanding.is_empty() {
            return Vec::new();
        }
        let ids: Vec<String> = self.outstanding.keys().cloned().collect();
        let which: Vec<String> = self.outstanding.iter().map(|(id, o)| format!("{id} ({})", o.record.node)).collect();
        match self.exec.cancel(&ids) {
            Ok(()) => eprintln!("cancelled {} {} job{}: {}", ids.len(), self.exec.name(), if ids.len() == 1 { "" } else { "s" }, which.join(", ")),
            Err(e) => eprintln!("cancelling {} jobs failed: {e:#}; cancel them by hand: {}", self.exec.name(), which.join(", ")),
        }
        std::mem::take(&mut self.outstanding)
            .into_values()
            .map(|o| {
                let inst = &self.plan.instances[o.i];
                let job = Some(JobInfo { id: o.record.id.clone(), queued: None, log: o.record.log.clone() });
                (
                    o.i,
                    NodeResult {
                        key: Some(o.key),
                        job,
                        ..NodeResult::settled(inst, Status::Failed(format!("cancelled: {} job {} was cancelled", self.exec.name(), o.record.id)))
                    },
                )
            })
            .collect()
    }
}

/// What Slurm wrote into a job's log when it killed the job, in plain words.
fn log_reason(log: &std::path::Path) -> Option<&'static str> {
    let text = std::fs::read_to_string(log).ok()?;
    [
        ("Exceeded job memory limit", "out of memory (over its `mem`)"),
        ("oom-kill event", "out of memory (over its `mem`)"),
        ("DUE TO TIME LIMIT", "time limit reached (over its `time`)"),
        ("DUE TO NODE FAILURE", "node failure"),
        ("DUE TO PREEMPTION", "preempted"),
    ]
    .into_iter()
    .find(|(needle, _)| text.contains(needle))
    .map(|(_, why)| why)
}

/// `'text'` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A node id as a file name: `train[lr=0.001]` → `train_lr=0.001_`.
fn file_safe(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=') { c } else { '_' }).collect()
}

// ---- what another terminal sees ---------------------------------------------------------

/// The run's state in `runs/<run>/state.json`, rewritten as nodes start and end, for
/// `agentmerge status`.
struct RunState<'a> {
    plan: &'a Plan,
    store: &'a Store,
    executor: &'static str,
    started: f64,
    last: Option<Json>,
}

impl<'a> RunState<'a> {
    fn new(plan: &'a Plan, store: &'a Store, executor: &'static str) -> RunState<'a> {
        RunState { plan, store, executor, started: node_task::now(), last: None }
    }

    fn json(&self, results: &[Option<NodeResult>], cluster: Option<&Cluster>, finished: bool) -> Json {
        let jobs: BTreeMap<usize, (&String, &JobState)> =
            cluster.map(|c| c.outstanding.iter().map(|(id, o)| (o.i, (id, &o.state))).collect()).unwrap_or_default();
        let nodes: Vec<Json> = self
            .plan
            .instances
            .iter()
            .enumerate()
            .map(|(i, inst)| {
                let (state, job, error) = match (&results[i], jobs.get(&i)) {
                    (Some(r), _) => {
                        let s = match &r.status {
                            Status::Ran => "done",
                            Status::Cached => "cached",
                            Status::Failed(_) => "failed",
                            Status::Skipped(_) => "skipped",
                        };
                        let e = match &r.status {
                            Status::Failed(e) | Status::Skipped(e) => Some(e.lines().next().unwrap_or("").to_string()),
                            _ => None,
                        };
                        (s.to_string(), r.job.as_ref().map(|j| j.id.clone()), e)
                    }
                    (None, Some((id, JobState::Pending(why)))) => {
                        (format!("pending{}", if why.is_empty() { String::new() } else { format!(" ({why})") }), Some((*id).clone()), None)
                    }
                    (None, Some((id, _))) => ("running".into(), Some((*id).clone()), None),
                    (None, None) => ("waiting".into(), None, None),
                };
                json!({"id": inst.id, "uses": inst.uses, "state": state, "job": job, "error": error})
            })
            .collect();
        json!({
            "pipeline": self.plan.spec.name,
            "file": self.plan.spec.file,
            "executor": self.executor,
            "driver_pid": std::process::id(),
            "run": self.store.run_id(),
            "started": self.started,
            "finished": finished,
            "nodes": nodes,
        })
    }

    fn update(&mut self, results: &[Option<NodeResult>], cluster: Option<&Cluster>) {
        let j = self.json(results, cluster, false);
        if self.last.as_ref() != Some(&j) {
            self.write(&j);
            self.last = Some(j);
        }
    }

    fn finish(&mut self, results: &[NodeResult]) {
        let results: Vec<Option<NodeResult>> = results.iter().cloned().map(Some).collect();
        let j = self.json(&results, None, true);
        self.write(&j);
    }

    fn write(&self, j: &Json) {
        let path = self.store.run_dir().join("state.json");
        if let Err(e) = node_task::write_json(&path, &json!({"updated": node_task::now(), "state": j})) {
            tracing::debug!("cannot write {}: {e:#}", path.display());
        }
    }
}
