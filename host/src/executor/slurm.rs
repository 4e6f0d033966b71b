//! The Slurm executor: `sbatch --parsable` per node, one `squeue` per poll for all of a run's
//! jobs, `scancel` to cancel. Slurm accounting (`sacct`) is never needed: a job's outcome is the
//! status file it writes into the store, and `squeue -t all` only says whether a job is still
//! queued or running, or why it ended (out of memory, time limit, node failure, cancelled)
//! while the controller remembers it (`MinJobAge`).

use std::collections::BTreeMap;

use super::{Executor, JobSpec, JobState, Settings};
use crate::resources::slurm_time;

pub struct Slurm {
    settings: Settings,
}

impl Slurm {
    pub fn new(settings: Settings) -> Slurm {
        Slurm { settings }
    }

    /// The `sbatch` arguments for `job` (without the script).
    pub fn sbatch_args(&self, job: &JobSpec) -> Vec<String> {
        let s = &self.settings;
        let n = &job.need;
        let mut a = vec![
            "--parsable".to_string(),
            format!("--job-name={}", job.name),
            format!("--output={}", job.log.display()),
            format!("--error={}", job.log.display()),
            format!("--chdir={}", job.chdir.display()),
            // A job never waits on another's exit code: the driver submits a node only once its
            // inputs are in the store. Said anyway, so a user's `--dependency` in `sbatch:`
            // never treats a purged, failed job as satisfied.
            "--kill-on-invalid-dep=yes".to_string(),
            format!("--cpus-per-task={}", if n.cpus == 0 { s.cpus.unwrap_or(1) } else { n.cpus }),
        ];
        if let Some(m) = n.mem.or(s.mem) {
            a.push(format!("--mem={m}M"));
        }
        if n.gpus > 0 {
            a.push(format!("--gres=gpu:{}", n.gpus));
        }
        if let Some(t) = n.time.or(s.time) {
            a.push(format!("--time={}", slurm_time(t)));
        }
        for (flag, v) in [("partition", &s.partition), ("account", &s.account), ("qos", &s.qos), ("constraint", &s.constraint)] {
            if let Some(v) = v {
                a.push(format!("--{flag}={v}"));
            }
        }
        a.extend(s.sbatch.iter().cloned());
        a
    }
}

impl Executor for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn submit(&mut self, job: &JobSpec) -> anyhow::Result<String> {
        let mut args = self.sbatch_args(job);
        args.push(job.script.display().to_string());
        let out = command_output("sbatch", &args)?;
        // `--parsable` prints `id` or `id;cluster`.
        let id = out.trim().split(';').next().unwrap_or("").trim().to_string();
        anyhow::ensure!(!id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_'), "sbatch printed no job id: {out:?}");
        Ok(id)
    }

    fn poll(&mut self, ids: &[String]) -> anyhow::Result<BTreeMap<String, JobState>> {
        let mut states: BTreeMap<String, JobState> = ids.iter().map(|i| (i.clone(), JobState::Unknown)).collect();
        if ids.is_empty() {
            return Ok(states);
        }
        let args = vec!["--noheader".to_string(), "--states=all".to_string(), format!("--jobs={}", ids.join(",")), "--format=%i|%T|%r".to_string()];
        let out = match command_output("squeue", &args) {
            Ok(out) => out,
            // Every id purged: squeue refuses the list. They are all unknown.
            Err(e) if e.to_string().contains("Invalid job id") => return Ok(states),
            Err(e) => return Err(e),
        };
        for line in out.lines() {
            let mut f = line.split('|');
            let (Some(id), Some(state), reason) = (f.next(), f.next(), f.next().unwrap_or("")) else {
                continue;
            };
            if let Some(s) = states.get_mut(id.trim()) {
                *s = parse_state(state.trim(), reason.trim());
            }
        }
        Ok(states)
    }

    fn ready(&self) -> anyhow::Result<()> {
        command_output("squeue", &["--noheader".to_string(), "--me".to_string(), "--format=%i".to_string()])
            .map(drop)
            .map_err(|e| anyhow::anyhow!("the slurm executor cannot reach Slurm: {e:#}"))
    }

    fn cancel(&mut self, ids: &[String]) -> anyhow::Result<()> {
        if !ids.is_empty() {
            command_output("scancel", ids)?;
        }
        Ok(())
    }
}

/// Runs a command and returns its stdout; an error names the command and quotes its stderr.
fn command_output(program: &str, args: &[String]) -> anyhow::Result<String> {
    let out = std::process::Command::new(program).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("`{program}` not found: the slurm executor needs Slurm's client commands on PATH (is this a cluster login node?)")
        } else {
            anyhow::anyhow!("running `{program}`: {e}")
        }
    })?;
    if !out.status.success() {
        anyhow::bail!("`{program} {}` failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A `squeue` state (and reason) as a [`JobState`], with the ending in plain words.
fn parse_state(state: &str, reason: &str) -> JobState {
    let ended = |why: &str| JobState::Ended(Some(why.to_string()));
    match state {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" | "SUSPENDED" => JobState::Pending(reason.to_string()),
        "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" | "RESIZING" => JobState::Running,
        "COMPLETED" => JobState::Ended(None),
        "OUT_OF_MEMORY" => ended("out of memory (over its `mem`)"),
        "TIMEOUT" => ended("time limit reached (over its `time`)"),
        "NODE_FAIL" => ended("node failure"),
        "BOOT_FAIL" => ended("the node failed to boot"),
        "CANCELLED" => ended("cancelled"),
        "PREEMPTED" => ended("preempted"),
        "DEADLINE" => ended("deadline reached"),
        "FAILED" => ended(&format!("failed{}", if reason.is_empty() || reason == "None" { String::new() } else { format!(" ({reason})") })),
        other => ended(&other.to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Need;
    use std::{path::PathBuf, time::Duration};

    #[test]
    fn resources_become_sbatch_options() {
        let s = Slurm::new(Settings {
            partition: Some("gpu".into()),
            cpus: Some(8),
            time: Some(Duration::from_secs(3600)),
            sbatch: vec!["--exclusive".into()],
            ..Settings::default()
        });
        let job = |need| JobSpec {
            name: "agentmerge:p:train".into(),
            script: PathBuf::from("/s/job.sh"),
            log: PathBuf::from("/s/train.log"),
            chdir: PathBuf::from("/w"),
            need,
        };
        let a = s.sbatch_args(&job(Need { cpus: 0, mem: Some(65536), gpus: 2, time: Some(Duration::from_secs(4 * 3600)), light: false }));
        assert_eq!(
            a,
            [
                "--parsable",
                "--job-name=agentmerge:p:train",
                "--output=/s/train.log",
                "--error=/s/train.log",
                "--chdir=/w",
                "--kill-on-invalid-dep=yes",
                "--cpus-per-task=8",
                "--mem=65536M",
                "--gres=gpu:2",
                "--time=4:00:00",
                "--partition=gpu",
                "--exclusive"
            ]
        );
        let a = s.sbatch_args(&job(Need { cpus: 2, ..Need::default() }));
        assert!(
            a.contains(&"--cpus-per-task=2".to_string())
                && a.contains(&"--time=1:00:00".to_string())
                && !a.iter().any(|x| x.starts_with("--mem") || x.starts_with("--gres"))
        );
    }

    #[test]
    fn states_say_why_a_job_ended() {
        assert_eq!(parse_state("PENDING", "Priority"), JobState::Pending("Priority".into()));
        assert_eq!(parse_state("COMPLETING", "None"), JobState::Running);
        assert_eq!(parse_state("COMPLETED", "None"), JobState::Ended(None));
        assert_eq!(parse_state("OUT_OF_MEMORY", "OutOfMemory"), JobState::Ended(Some("out of memory (over its `mem`)".into())));
        assert_eq!(parse_state("TIMEOUT", "TimeLimit"), JobState::Ended(Some("time limit reached (over its `time`)".into())));
        assert_eq!(parse_state("FAILED", "NonZeroExitCode"), JobState::Ended(Some("failed (NonZeroExitCode)".into())));
    }
}
