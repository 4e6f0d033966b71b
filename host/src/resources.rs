//! What a node needs (threads, memory, GPUs, time) and how the local machine shares itself out.
//!
//! A node kind declares its needs in its manifest ([`agentmerge_sdk::Resources`]); a pipeline
//! node may override any of them (`resources: {cpus: 4, mem: 16G, gpus: 1, time: 4h}`). The
//! result, [`Need`], is what the local scheduler ([`Machine`]) and the cluster executors read.

use std::{collections::BTreeMap, time::Duration};

use agentmerge_sdk::Resources;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::{
    diag::Diagnostic,
    yaml::{Kind, Node},
};

/// A pipeline node's `resources:` block: every field optional, each overriding the kind's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Override {
    pub light: Option<bool>,
    pub cpus: Option<u32>,
    /// MiB.
    pub mem: Option<u64>,
    pub gpus: Option<u32>,
    pub time: Option<Duration>,
}

/// The keys a `resources:` block may have.
pub const KEYS: &[&str] = &["cpus", "mem", "gpus", "time", "light"];

impl Override {
    /// Parses a `resources:` block, pushing an error that points at the field for every bad one.
    pub fn parse(n: &Node, errs: &mut Vec<Diagnostic>) -> Override {
        let mut o = Override::default();
        let Kind::Map(entries) = &n.kind else {
            errs.push(
                Diagnostic::new(n.pos, format!("`resources` must be a mapping, found {}", n.type_name()))
                    .hint("e.g. `resources: {cpus: 4, mem: 16G, gpus: 1, time: 4h}`"),
            );
            return o;
        };
        for (k, v) in entries {
            let key = k.scalar_text();
            let count = |errs: &mut Vec<Diagnostic>| match v.kind {
                Kind::Int(i) if (0..=u32::MAX as i64).contains(&i) => Some(i as u32),
                _ => {
                    errs.push(Diagnostic::new(v.pos, format!("`resources.{key}` must be a whole number ≥ 0, found {}", v.scalar_text())));
                    None
                }
            };
            match key.as_str() {
                "cpus" => o.cpus = count(errs),
                "gpus" => o.gpus = count(errs),
                "light" => match v.kind {
                    Kind::Bool(b) => o.light = Some(b),
                    _ => errs.push(Diagnostic::new(v.pos, "`resources.light` must be true or false")),
                },
                "mem" => match parse_mem(&v.scalar_text()) {
                    Ok(m) => o.mem = Some(m),
                    Err(e) => errs.push(Diagnostic::new(v.pos, format!("`resources.mem`: {e}")).hint("e.g. `mem: 512M` or `mem: 16G`")),
                },
                "time" => match parse_time(&v.scalar_text()) {
                    Ok(t) => o.time = Some(t),
                    Err(e) => errs.push(Diagnostic::new(v.pos, format!("`resources.time`: {e}")).hint("e.g. `time: 30m`, `time: 4h`, `time: 1-12:00:00`")),
                },
                _ => errs.push(crate::diag::unknown_key(k, "resource", KEYS)),
            }
        }
        o
    }
}

/// What one node instance needs, after its kind's declaration and the pipeline's override.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    /// Runs in the driver and takes no thread.
    pub light: bool,
    /// Threads; 0 for as many as it is given.
    pub cpus: u32,
    /// MiB; `None` for the executor's default.
    pub mem: Option<u64>,
    pub gpus: u32,
    pub time: Option<Duration>,
}

impl Need {
    /// The kind's declaration, with the GPU count from the config field it names (when set),
    /// then the pipeline's override. An error names the manifest's bad field.
    pub fn of(declared: &Resources, config: &Json, o: &Override) -> Result<Need, String> {
        let mem = match declared.mem.trim() {
            "" => None,
            m => Some(parse_mem(m).map_err(|e| format!("the kind's manifest declares `mem: {m}`: {e}"))?),
        };
        let gpus = match declared.gpus_from.as_deref().and_then(|f| config.get(f)) {
            Some(v) if v.is_null() => declared.gpus,
            Some(v) => v.as_u64().filter(|&g| g <= u32::MAX as u64).ok_or_else(|| {
                format!("config field `{}` sets the GPU count and must be a whole number, found {v}", declared.gpus_from.as_deref().unwrap_or(""))
            })? as u32,
            None => declared.gpus,
        };
        Ok(Need {
            light: o.light.unwrap_or(declared.light),
            cpus: o.cpus.unwrap_or(declared.cpus),
            mem: o.mem.or(mem),
            gpus: o.gpus.unwrap_or(gpus),
            time: o.time,
        })
    }

    /// Short text for logs and the run table: `2 cpus, 4096M, 1 gpu, 4h`.
    pub fn describe(&self) -> String {
        if self.light {
            return "light".into();
        }
        let mut parts = vec![if self.cpus == 0 { "all cpus".to_string() } else { format!("{} cpu{}", self.cpus, if self.cpus == 1 { "" } else { "s" }) }];
        if let Some(m) = self.mem {
            parts.push(format!("{m}M"));
        }
        if self.gpus > 0 {
            parts.push(format!("{} gpu{}", self.gpus, if self.gpus == 1 { "" } else { "s" }));
        }
        if let Some(t) = self.time {
            parts.push(slurm_time(t));
        }
        parts.join(", ")
    }
}

/// `512M`, `16G`, `1T`, `1.5G`, or a plain number of MiB → MiB.
pub fn parse_mem(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map_or((s, ""), |i| s.split_at(i));
    let x: f64 = num.trim().parse().map_err(|_| format!("`{s}` is not a size (a number with K, M, G or T)"))?;
    let mib = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "K" => x / 1024.0,
        "" | "M" => x,
        "G" => x * 1024.0,
        "T" => x * 1024.0 * 1024.0,
        u => return Err(format!("unknown unit `{u}` in `{s}` (use K, M, G or T)")),
    };
    if !(mib.is_finite() && mib >= 1.0) {
        return Err(format!("`{s}` is less than 1M"));
    }
    Ok(mib.ceil() as u64)
}

/// `90s`, `30m`, `4h`, `2d`, a number of minutes (Slurm's plain form), or Slurm's `[D-]H:MM:SS`,
/// `MM:SS` → a duration.
pub fn parse_time(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("`{s}` is not a time limit");
    if let Some(rest) = s.strip_suffix(['s', 'm', 'h', 'd']) {
        let x: f64 = rest.trim().parse().map_err(|_| bad())?;
        let unit = match s.as_bytes()[s.len() - 1] {
            b's' => 1.0,
            b'm' => 60.0,
            b'h' => 3600.0,
            _ => 86400.0,
        };
        return positive(x * unit).ok_or_else(bad);
    }
    let (days, clock) = match s.split_once('-') {
        Some((d, c)) => (d.parse::<u64>().map_err(|_| bad())?, c),
        None => (0, s),
    };
    let parts: Vec<u64> = clock.split(':').map(|p| p.parse::<u64>().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let secs = match (s.contains('-'), parts.as_slice()) {
        (false, [m]) => m * 60,
        (true, [h]) => h * 3600,
        (_, [a, b]) if s.contains('-') => a * 3600 + b * 60,
        (_, [m, sec]) => m * 60 + sec,
        (_, [h, m, sec]) => h * 3600 + m * 60 + sec,
        _ => return Err(bad()),
    };
    positive((days * 86400 + secs) as f64).ok_or_else(bad)
}

fn positive(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 1.0).then(|| Duration::from_secs(secs.round() as u64))
}

/// Slurm's `D-HH:MM:SS`, rounded up to the minute (Slurm's granularity).
pub fn slurm_time(t: Duration) -> String {
    let mins = t.as_secs().div_ceil(60).max(1);
    let (d, h, m) = (mins / 1440, mins / 60 % 24, mins % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:00")
    } else {
        format!("{h}:{m:02}:00")
    }
}

/// The GPUs this machine shows: `AGENTMERGE_GPUS` (a count) if set, else `CUDA_VISIBLE_DEVICES`
/// (its entries), else the `/dev/nvidia<N>` device files. Returns the device indices.
pub fn visible_gpus() -> Vec<usize> {
    if let Ok(n) = std::env::var("AGENTMERGE_GPUS") {
        return (0..n.trim().parse().unwrap_or(0)).collect();
    }
    if let Ok(v) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return (0..v.split(',').filter(|d| !d.trim().is_empty() && d.trim() != "-1").count()).collect();
    }
    let mut n: Vec<usize> = std::fs::read_dir("/dev")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.strip_prefix("nvidia")?.parse().ok()).collect())
        .unwrap_or_default();
    n.sort_unstable();
    n
}

/// What a started node holds until it ends: threads and GPU devices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    pub threads: u32,
    pub devices: Vec<usize>,
}

/// The local machine shared out between the nodes running at once: a node starts when the
/// threads and GPUs it needs are free, or when nothing else holds them (a node that needs more
/// than the machine has runs alone, with all of it). GPU nodes never share a device; with no
/// GPU seen, GPU nodes run one at a time on whatever their backend finds (a software adapter).
#[derive(Debug)]
pub struct Machine {
    cores: u32,
    free_threads: u32,
    gpus: Vec<usize>,
    free_gpus: Vec<usize>,
    /// GPU nodes running while no GPU is seen (at most one).
    deviceless_gpu_nodes: u32,
    holders: BTreeMap<usize, Grant>,
}

impl Machine {
    pub fn new(cores: u32, gpus: Vec<usize>) -> Machine {
        let cores = cores.max(1);
        Machine { cores, free_threads: cores, free_gpus: gpus.clone(), gpus, deviceless_gpu_nodes: 0, holders: BTreeMap::new() }
    }

    /// This machine: its cores and [`visible_gpus`].
    pub fn here() -> Machine {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        Machine::new(cores, visible_gpus())
    }

    pub fn cores(&self) -> u32 {
        self.cores
    }

    pub fn gpus(&self) -> usize {
        self.gpus.len()
    }

    /// Takes what node `id` needs if it is free now.
    pub fn take(&mut self, id: usize, need: &Need) -> Option<Grant> {
        if need.light {
            self.holders.insert(id, Grant::default());
            return Some(Grant::default());
        }
        let want = if need.cpus == 0 { self.cores } else { need.cpus.min(self.cores) };
        let idle = self.holders.values().all(|g| g.threads == 0 && g.devices.is_empty()) && self.deviceless_gpu_nodes == 0;
        let threads = if want <= self.free_threads {
            want
        } else if idle {
            self.free_threads
        } else {
            return None;
        };
        let mut devices = Vec::new();
        if need.gpus > 0 {
            if self.gpus.is_empty() {
                if self.deviceless_gpu_nodes > 0 {
                    return None;
                }
                self.deviceless_gpu_nodes += 1;
            } else {
                let n = (need.gpus as usize).min(self.gpus.len());
                if self.free_gpus.len() < n {
                    return None;
                }
                devices = self.free_gpus.drain(..n).collect();
            }
        }
        self.free_threads -= threads;
        let g = Grant { threads: threads.max(1), devices };
        self.holders.insert(id, Grant { threads, ..g.clone() });
        Some(g)
    }

    /// Gives back what node `id` took.
    pub fn give_back(&mut self, id: usize, need: &Need) {
        if let Some(g) = self.holders.remove(&id) {
            self.free_threads += g.threads;
            self.free_gpus.extend(g.devices);
            self.free_gpus.sort_unstable();
            if need.gpus > 0 && self.gpus.is_empty() {
                self.deviceless_gpu_nodes -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_parse_as_slurm_reads_them() {
        assert_eq!(parse_mem("512M"), Ok(512));
        assert_eq!(parse_mem("16G"), Ok(16384));
        assert_eq!(parse_mem("1.5g"), Ok(1536));
        assert_eq!(parse_mem("2048"), Ok(2048));
        assert_eq!(parse_mem("1T"), Ok(1 << 20));
        assert_eq!(parse_mem("64GiB"), Ok(65536));
        assert!(parse_mem("lots").is_err() && parse_mem("3X").is_err() && parse_mem("0M").is_err());
        let t = |s: &str| parse_time(s).map(|d| d.as_secs());
        assert_eq!(t("90s"), Ok(90));
        assert_eq!(t("30m"), Ok(1800));
        assert_eq!(t("4h"), Ok(14400));
        assert_eq!(t("1.5h"), Ok(5400));
        assert_eq!(t("2d"), Ok(172800));
        assert_eq!(t("45"), Ok(2700));
        assert_eq!(t("10:30"), Ok(630));
        assert_eq!(t("2:00:00"), Ok(7200));
        assert_eq!(t("1-12:00:00"), Ok(129600));
        assert_eq!(t("1-12"), Ok(129600));
        assert!(t("soon").is_err() && t("0m").is_err() && t("1:2:3:4").is_err());
        assert_eq!(slurm_time(Duration::from_secs(90)), "0:02:00");
        assert_eq!(slurm_time(Duration::from_secs(14400)), "4:00:00");
        assert_eq!(slurm_time(Duration::from_secs(129600)), "1-12:00:00");
    }

    #[test]
    fn the_override_wins_and_gpus_may_come_from_the_config() {
        let declared = Resources { gpus: 1, gpus_from: Some("devices".into()), mem: "2G".into(), ..Resources::all_threads() };
        let need = Need::of(&declared, &serde_json::json!({"devices": 4}), &Override::default()).unwrap();
        assert_eq!(need, Need { light: false, cpus: 0, mem: Some(2048), gpus: 4, time: None });
        let need =
            Need::of(&declared, &serde_json::json!({"devices": null}), &Override { cpus: Some(8), time: Some(Duration::from_secs(60)), ..Default::default() })
                .unwrap();
        assert_eq!((need.cpus, need.gpus, need.time), (8, 1, Some(Duration::from_secs(60))));
        assert!(Need::of(&declared, &serde_json::json!({"devices": "two"}), &Override::default()).unwrap_err().contains("`devices`"));
        assert_eq!(need.describe(), "8 cpus, 2048M, 1 gpu, 0:01:00");
    }

    #[test]
    fn overrides_parse_with_errors_at_the_field() {
        let doc = crate::yaml::parse("resources: {cpus: 4, mem: 16G, gpus: 1, time: 4h, light: false}\nbad: {cpu: 2, mem: lots, gpus: -1}\n").unwrap();
        let mut errs = Vec::new();
        let o = Override::parse(doc.get("resources").unwrap(), &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(o, Override { light: Some(false), cpus: Some(4), mem: Some(16384), gpus: Some(1), time: Some(Duration::from_secs(14400)) });
        Override::parse(doc.get("bad").unwrap(), &mut errs);
        let msgs: Vec<String> = errs.iter().map(|e| format!("{}:{} {}", e.pos.line, e.pos.col, e.message)).collect();
        assert_eq!(errs.len(), 3, "{msgs:?}");
        assert!(msgs[0].starts_with("2:7 unknown resource `cpu`") && errs[0].hint.as_deref().unwrap().contains("did you mean `cpus`"), "{msgs:?}");
        assert!(msgs[1].contains("`resources.mem`") && msgs[2].contains("`resources.gpus`"), "{msgs:?}");
    }

    #[test]
    fn the_machine_never_shares_a_gpu_or_oversubscribes_threads() {
        let need = |cpus, gpus| Need { cpus, gpus, ..Need::default() };
        let mut m = Machine::new(4, vec![0, 1]);
        // Two trainers on one GPU each, with two threads each; a third waits for a device.
        assert_eq!(m.take(0, &need(2, 1)), Some(Grant { threads: 2, devices: vec![0] }));
        assert_eq!(m.take(1, &need(2, 1)), Some(Grant { threads: 2, devices: vec![1] }));
        assert_eq!(m.take(2, &need(1, 1)), None);
        // Light work always runs.
        assert!(m.take(3, &Need { light: true, ..Need::default() }).is_some());
        m.give_back(0, &need(2, 1));
        assert_eq!(m.take(2, &need(1, 1)), Some(Grant { threads: 1, devices: vec![0] }));
        // A node that wants every core waits for an idle machine, then gets all of it.
        m.give_back(1, &need(2, 1));
        assert_eq!(m.take(4, &need(0, 0)), None);
        m.give_back(2, &need(1, 1));
        assert_eq!(m.take(4, &need(0, 0)), Some(Grant { threads: 4, devices: vec![] }));
        assert_eq!(m.take(5, &need(1, 0)), None);
        m.give_back(4, &need(0, 0));
        // More than the machine has: runs alone with what there is.
        assert_eq!(m.take(5, &need(16, 0)), Some(Grant { threads: 4, devices: vec![] }));
        m.give_back(5, &need(16, 0));
        // No GPU seen: GPU nodes run one at a time, with no device assigned.
        let mut m = Machine::new(2, vec![]);
        assert_eq!(m.take(0, &need(1, 1)), Some(Grant { threads: 1, devices: vec![] }));
        assert_eq!(m.take(1, &need(1, 1)), None);
        assert!(m.take(2, &need(1, 0)).is_some());
        m.give_back(0, &need(1, 1));
        assert!(m.take(1, &need(1, 1)).is_some());
    }
}
