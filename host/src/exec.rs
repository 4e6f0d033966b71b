//! Running a plan: nodes in dependency order, independent ones in parallel (up to `jobs`),
//! each one either found in the store or run by its plugin. A failed node stops only its
//! descendants; the other branches finish.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::c_void,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use abi_stable::std_types::RStr;
use agentmerge_sdk::{abi::HostCtx, Value};
use anyhow::{anyhow, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value as Json};

use crate::{
    plan::{Instance, Plan},
    plugins::Registry,
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
struct CallState {
    bar: Option<ProgressBar>,
}

extern "C" fn host_log(level: u8, node: RStr<'_>, target: RStr<'_>, message: RStr<'_>) {
    let (node, target, message) = (node.as_str(), target.as_str(), message.as_str());
    match level {
        0 => tracing::error!(node, plugin = target, "{message}"),
        1 => tracing::warn!(node, plugin = target, "{message}"),
        2 => tracing::info!(node, plugin = target, "{message}"),
        3 => tracing::debug!(node, plugin = target, "{message}"),
        _ => tracing::trace!(node, plugin = target, "{message}"),
    }
}

extern "C" fn host_progress(data: *const c_void, done: u64, total: u64, message: RStr<'_>) {
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

extern "C" fn host_cancelled(_data: *const c_void) -> bool {
    CANCELLED.load(Ordering::Relaxed)
}

fn max_log_level() -> u8 {
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
    let mut results: Vec<Option<NodeResult>> = vec![None; n];
    let multi = MultiProgress::with_draw_target(if opts.progress { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    let jobs = opts.jobs.max(1);

    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, NodeResult)>();
        let mut running = 0usize;
        let mut started_set = vec![false; n];
        loop {
            // Settle nodes whose upstream failed; start ready ones.
            for i in 0..n {
                if started_set[i] {
                    continue;
                }
                if let Some(bad) = deps[i].iter().find(|&&d| results[d].as_ref().is_some_and(|r| matches!(r.status, Status::Failed(_) | Status::Skipped(_)))) {
                    let up = &plan.instances[*bad].id;
                    started_set[i] = true;
                    results[i] = Some(NodeResult {
                        id: plan.instances[i].id.clone(),
                        uses: plan.instances[i].uses.clone(),
                        status: Status::Skipped(format!("upstream `{up}` failed")),
                        wall: Duration::ZERO,
                        key: None,
                        outputs: None,
                    });
                    continue;
                }
                let ready = deps[i].iter().all(|&d| results[d].is_some());
                if ready && running < jobs {
                    started_set[i] = true;
                    running += 1;
                    let upstream: BTreeMap<usize, Stored> =
                        deps[i].iter().map(|&d| (d, results[d].as_ref().and_then(|r| r.outputs.clone()).expect("upstream succeeded"))).collect();
                    let tx = tx.clone();
                    let multi = multi.clone();
                    scope.spawn(move || {
                        let r = run_one(plan, i, &upstream, reg, store, opts, &multi);
                        let _ = tx.send((i, r));
                    });
                }
            }
            if results.iter().all(Option::is_some) {
                break;
            }
            if running == 0 {
                // Only possible if something is unreachable; settle the rest to avoid a hang.
                for (i, r) in results.iter_mut().enumerate() {
                    if r.is_none() {
                        *r = Some(NodeResult {
                            id: plan.instances[i].id.clone(),
                            uses: plan.instances[i].uses.clone(),
                            status: Status::Skipped("not reachable".into()),
                            wall: Duration::ZERO,
                            key: None,
                            outputs: None,
                        });
                    }
                }
                break;
            }
            let (i, r) = rx.recv().expect("a worker is running");
            running -= 1;
            results[i] = Some(r);
        }
    });
    let _ = multi.clear();
    RunReport { pipeline: plan.spec.name.clone(), results: results.into_iter().map(|r| r.expect("settled")).collect(), wall: started.elapsed() }
}

fn run_one(plan: &Plan, i: usize, upstream: &BTreeMap<usize, Stored>, reg: &Registry, store: &Store, opts: &RunOptions, multi: &MultiProgress) -> NodeResult {
    let inst = &plan.instances[i];
    let t0 = Instant::now();
    let mut key = None;
    let outcome = (|| -> anyhow::Result<(Status, Stored)> {
        let (plugin, _) = reg.kind(&inst.uses).ok_or_else(|| anyhow!("plugin kind {} disappeared", inst.uses))?;
        // Inputs and their digests.
        let mut inputs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut input_digests: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (port, srcs) in &inst.inputs {
            for (src, src_port) in srcs {
                let records = upstream[src].ports.get(src_port).ok_or_else(|| anyhow!("`{}` produced no output `{src_port}`", plan.instances[*src].id))?;
                for r in records {
                    inputs.entry(port.clone()).or_default().push(store.value(r)?);
                    input_digests.entry(port.clone()).or_default().push(r.digest().to_string());
                }
            }
        }
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
        if !opts.no_cache && !forced {
            if let Some(stored) = store.lookup(&k) {
                tracing::debug!(node = inst.id, "cached");
                return Ok((Status::Cached, stored));
            }
        }
        // One run computes a key at a time; another that needs it waits here, then reuses it.
        let _lock = store.lock_key(&k, &inst.id)?;
        if !opts.no_cache && !forced {
            if let Some(stored) = store.lookup(&k) {
                tracing::info!(node = inst.id, "computed by another run meanwhile: reused");
                return Ok((Status::Cached, stored));
            }
        }
        tracing::info!(node = inst.id, uses = inst.uses, "running");
        let tmp = store.temp_dir(&k)?;
        let work = store.work_dir(&k).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&tmp);
        })?;
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
        let state = CallState { bar };
        // `--no-cache` and `--force` mean "compute it": no per-item reuse either.
        let memo = if opts.no_cache || forced {
            String::new()
        } else {
            store.memo_dir(plugin_name, &plugin.manifest.version, &plugin.digest, kind).to_string_lossy().into_owned()
        };
        let ctx = HostCtx {
            node_id: inst.id.as_str().into(),
            out_dir: tmp.to_string_lossy().into_owned().into(),
            work_dir: work.to_string_lossy().into_owned().into(),
            memo_dir: memo.into(),
            seed,
            max_log_level: max_log_level(),
            data: &state as *const CallState as *const c_void,
            log: host_log,
            progress: host_progress,
            cancelled: host_cancelled,
        };
        let result = plugin.run(kind, &inst.config, &ctx, inputs);
        if let Some(b) = &state.bar {
            b.finish_and_clear();
            multi.remove(b);
        }
        let outputs = match result {
            Ok(o) => o,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = check_outputs(reg, inst, &outputs) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let stored = store.commit(&tmp, &k, &inst.id, &inst.uses, outputs).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&tmp);
        })?;
        // Committed: the resumable state is no longer needed. (On any failure above it stays.)
        store.remove_work_dir(&k);
        Ok((Status::Ran, stored))
    })();
    let wall = t0.elapsed();
    match outcome {
        Ok((status, stored)) => NodeResult { id: inst.id.clone(), uses: inst.uses.clone(), status, wall, key, outputs: Some(stored) },
        Err(e) => {
            tracing::error!(node = inst.id, "failed: {e:#}");
            NodeResult { id: inst.id.clone(), uses: inst.uses.clone(), status: Status::Failed(format!("{e:#}")), wall, key, outputs: None }
        }
    }
}

/// A plugin must produce exactly its declared outputs, with the declared types.
fn check_outputs(reg: &Registry, inst: &Instance, outputs: &BTreeMap<String, Vec<Value>>) -> anyhow::Result<()> {
    let (_, kind) = reg.kind(&inst.uses).expect("checked");
    for (port, values) in outputs {
        let Some(spec) = kind.output(port) else {
            bail!("plugin bug: `{}` returned output `{port}`, which its manifest does not declare", inst.uses);
        };
        if !spec.list && values.len() != 1 {
            bail!("plugin bug: `{}` returned {} values on single output `{port}`", inst.uses, values.len());
        }
        for v in values {
            if !v.port_type().feeds(&spec.ty) && v.port_type() != spec.ty {
                bail!("plugin bug: `{}` returned a {} on output `{port}`, declared {}", inst.uses, v.port_type(), spec.ty);
            }
        }
    }
    for spec in &kind.outputs {
        if !outputs.contains_key(&spec.name) {
            bail!("plugin bug: `{}` did not return its output `{}`", inst.uses, spec.name);
        }
    }
    Ok(())
}
