//! Where a pipeline's nodes run: in the driver's own process (`local`, the default) or as jobs of
//! a cluster scheduler (`slurm`). An executor is three calls — submit a node's job, poll the
//! state of many jobs at once, cancel jobs — so another engine (Ray's job API, Kubernetes Jobs)
//! is one more implementation of [`Executor`]. How the driver uses them is in `exec.rs`; what a
//! job runs is `agentmerge run-node` (`node_task.rs`).

pub mod slurm;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use crate::{
    diag::Diagnostic,
    resources::{self, Need},
    yaml::{Kind, Node},
};

/// One node's job, ready to submit.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// `agentmerge:<pipeline>:<node>`.
    pub name: String,
    /// The shell script the job runs (it `exec`s `agentmerge run-node`).
    pub script: PathBuf,
    /// Where the job's stdout and stderr go.
    pub log: PathBuf,
    /// The job's working directory (the driver's).
    pub chdir: PathBuf,
    pub need: Need,
}

/// What the scheduler says about a job. A job's outcome (success, error, metrics) comes from
/// the status file it writes, never from here: this only says whether it is still coming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Queued, with the scheduler's reason (`Priority`, `Resources`, ...).
    Pending(String),
    Running,
    /// Ended; `Some(reason)` when it did not end by itself: out of memory, time limit, node
    /// failure, cancelled, failed with an exit code.
    Ended(Option<String>),
    /// The scheduler no longer knows the job (purged after it ended).
    Unknown,
}

/// Submits, polls and cancels jobs.
pub trait Executor: Send {
    /// `slurm`, ...
    fn name(&self) -> &'static str;
    /// Submits a job; returns its id.
    fn submit(&mut self, job: &JobSpec) -> anyhow::Result<String>;
    /// The state of each job in `ids`, asked in one call.
    fn poll(&mut self, ids: &[String]) -> anyhow::Result<BTreeMap<String, JobState>>;
    /// Cancels the jobs in `ids`.
    fn cancel(&mut self, ids: &[String]) -> anyhow::Result<()>;
    /// Whether the scheduler can be reached, checked once before a run submits anything.
    fn ready(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Which executor, and its settings: the pipeline's `executor:` section, `--executor` winning
/// over its `type`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    /// `local` or `slurm`.
    pub kind: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub constraint: Option<String>,
    /// Time limit of a job whose node sets none.
    pub time: Option<Duration>,
    /// Threads of a job whose node uses every thread it is given (`cpus: 0`, trainers).
    pub cpus: Option<u32>,
    /// Memory of a job whose node declares none (MiB).
    pub mem: Option<u64>,
    /// Extra `sbatch` arguments, as written.
    pub sbatch: Vec<String>,
    /// The longest wait between two polls of the scheduler (seconds; default 10).
    pub poll_max: Option<f64>,
}

/// The keys of an `executor:` section.
pub const KEYS: &[&str] = &["type", "partition", "account", "qos", "constraint", "time", "cpus", "mem", "sbatch", "poll_max"];

/// The executors there are.
pub const KINDS: &[&str] = &["local", "slurm"];

impl Settings {
    /// Parses an `executor:` section, pushing an error at each bad field.
    pub fn parse(n: &Node, errs: &mut Vec<Diagnostic>) -> Settings {
        let mut s = Settings::default();
        let Kind::Map(entries) = &n.kind else {
            errs.push(
                Diagnostic::new(n.pos, format!("`executor` must be a mapping, found {}", n.type_name()))
                    .hint("e.g. `executor: {type: slurm, partition: gpu, time: 4h}`"),
            );
            return s;
        };
        for (k, v) in entries {
            let key = k.scalar_text();
            let text = |errs: &mut Vec<Diagnostic>| match &v.kind {
                Kind::Str(t) => Some(t.clone()),
                Kind::Int(_) | Kind::Float(_) => Some(v.scalar_text()),
                _ => {
                    errs.push(Diagnostic::new(v.pos, format!("`executor.{key}` must be a string, found {}", v.type_name())));
                    None
                }
            };
            match key.as_str() {
                "type" => match text(errs) {
                    Some(t) if KINDS.contains(&t.as_str()) => s.kind = Some(t),
                    Some(t) => errs.push(Diagnostic::new(v.pos, format!("unknown executor `{t}`")).hint(format!("executors are: {}", KINDS.join(", ")))),
                    None => {}
                },
                "partition" => s.partition = text(errs),
                "account" => s.account = text(errs),
                "qos" => s.qos = text(errs),
                "constraint" => s.constraint = text(errs),
                "time" => match text(errs).map(|t| resources::parse_time(&t)) {
                    Some(Ok(t)) => s.time = Some(t),
                    Some(Err(e)) => errs.push(Diagnostic::new(v.pos, format!("`executor.time`: {e}")).hint("e.g. `time: 4h`")),
                    None => {}
                },
                "mem" => match text(errs).map(|t| resources::parse_mem(&t)) {
                    Some(Ok(m)) => s.mem = Some(m),
                    Some(Err(e)) => errs.push(Diagnostic::new(v.pos, format!("`executor.mem`: {e}")).hint("e.g. `mem: 16G`")),
                    None => {}
                },
                "cpus" => match v.kind {
                    Kind::Int(i) if (1..=u32::MAX as i64).contains(&i) => s.cpus = Some(i as u32),
                    _ => errs.push(Diagnostic::new(v.pos, "`executor.cpus` must be a whole number ≥ 1")),
                },
                "poll_max" => match v.kind {
                    Kind::Int(i) if i >= 1 => s.poll_max = Some(i as f64),
                    Kind::Float(f) if f >= 0.1 => s.poll_max = Some(f),
                    _ => errs.push(Diagnostic::new(v.pos, "`executor.poll_max` must be a number of seconds ≥ 0.1")),
                },
                "sbatch" => match &v.kind {
                    Kind::Seq(items) => s.sbatch = items.iter().map(|i| i.scalar_text()).collect(),
                    Kind::Str(t) => s.sbatch = t.split_whitespace().map(str::to_string).collect(),
                    _ => errs
                        .push(Diagnostic::new(v.pos, "`executor.sbatch` must be a list of arguments").hint("e.g. `sbatch: [--exclusive, --mail-type=FAIL]`")),
                },
                _ => errs.push(crate::diag::unknown_key(k, "executor setting", KEYS)),
            }
        }
        s
    }

    /// The executor these settings name, or `None` for local runs.
    pub fn executor(&self) -> Option<Box<dyn Executor>> {
        match self.kind.as_deref() {
            Some("slurm") => Some(Box::new(slurm::Slurm::new(self.clone()))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_with_errors_at_the_field() {
        let doc = crate::yaml::parse(
            "ok: {type: slurm, partition: gpu, account: lab, qos: high, constraint: a100, time: 4h, cpus: 8, mem: 32G, sbatch: [--exclusive], poll_max: 5}\nbad: {type: ray, partiton: x, time: soon, cpus: 0}\n",
        )
        .unwrap();
        let mut errs = Vec::new();
        let s = Settings::parse(doc.get("ok").unwrap(), &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(s.kind.as_deref(), Some("slurm"));
        assert_eq!(
            (s.partition.as_deref(), s.account.as_deref(), s.qos.as_deref(), s.constraint.as_deref()),
            (Some("gpu"), Some("lab"), Some("high"), Some("a100"))
        );
        assert_eq!((s.time, s.cpus, s.mem, s.poll_max), (Some(Duration::from_secs(14400)), Some(8), Some(32768), Some(5.0)));
        assert_eq!(s.sbatch, ["--exclusive"]);
        Settings::parse(doc.get("bad").unwrap(), &mut errs);
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].message.contains("unknown executor `ray`"));
        assert!(errs[1].message.contains("`partiton`") && errs[1].hint.as_deref().unwrap().contains("did you mean `partition`"));
        assert!(errs[2].message.contains("executor.time") && errs[3].message.contains("executor.cpus"));
    }
}
