//! `agentmerge status STORE`: what the runs using a store are doing, read from each run's
//! `runs/<run>/state.json` (which the driver rewrites as nodes start and end). A run is alive
//! while its lock in `tmp/` is held.

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use serde_json::Value as Json;

use crate::{node_task::now, store::Store};

/// The text `agentmerge status` prints: every run alive, and the last one that ended (or every
/// run recorded, with `all`).
pub fn show(store_dir: &Path, all: bool) -> anyhow::Result<String> {
    anyhow::ensure!(
        store_dir.join("runs").is_dir(),
        "{} is not an agentmerge store (no runs/ inside); pass the store directory, e.g. pipelines/.agentmerge",
        store_dir.display()
    );
    let store = Store::open(store_dir)?;
    let mut runs: Vec<(f64, String, Json, bool)> = Vec::new();
    for e in std::fs::read_dir(store.root.join("runs")).with_context(|| format!("reading {}", store.root.join("runs").display()))?.flatten() {
        let path = e.path().join("state.json");
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let Ok(j) = serde_json::from_str::<Json>(&text) else { continue };
        let run = e.file_name().to_string_lossy().into_owned();
        if run == store.run_id() {
            continue;
        }
        let state = j["state"].clone();
        let alive = !state["finished"].as_bool().unwrap_or(false) && store.run_alive(&run);
        runs.push((state["started"].as_f64().unwrap_or(0.0), run, state, alive));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let last_ended = runs.iter().rposition(|r| !r.3);
    let shown: Vec<&(f64, String, Json, bool)> = runs.iter().enumerate().filter(|(i, r)| all || r.3 || Some(*i) == last_ended).map(|(_, r)| r).collect();
    let mut out = String::new();
    if shown.is_empty() {
        writeln!(out, "no run recorded in {}", store.root.display())?;
    }
    if !runs.iter().any(|r| r.3) && !shown.is_empty() {
        writeln!(out, "no run in progress; the last one:")?;
    }
    for (started, run, state, alive) in shown {
        let how = if *alive {
            "running".to_string()
        } else if state["finished"].as_bool().unwrap_or(false) {
            "finished".into()
        } else {
            "stopped (its driver is gone)".into()
        };
        writeln!(
            out,
            "run {run} — {how}: pipeline {} ({}), executor {}, driver pid {}, started {} ago",
            state["pipeline"].as_str().unwrap_or("?"),
            state["file"].as_str().unwrap_or("?"),
            state["executor"].as_str().unwrap_or("local"),
            state["driver_pid"],
            ago(now() - started),
        )?;
        let nodes = state["nodes"].as_array().cloned().unwrap_or_default();
        let w = nodes.iter().map(|n| n["id"].as_str().unwrap_or("").chars().count()).max().unwrap_or(4).max(4);
        let ws = nodes.iter().map(|n| n["state"].as_str().unwrap_or("").chars().count()).max().unwrap_or(5).max(5);
        writeln!(out, "  {:w$}  {:ws$}  JOB", "NODE", "STATE")?;
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for n in &nodes {
            let st = n["state"].as_str().unwrap_or("?");
            *counts.entry(st.split(' ').next().unwrap_or(st).to_string()).or_default() += 1;
            let job = n["job"].as_str().unwrap_or("");
            let err = n["error"].as_str().map(|e| format!("  {e}")).unwrap_or_default();
            writeln!(out, "  {:w$}  {st:ws$}  {job}{err}", n["id"].as_str().unwrap_or("?"))?;
        }
        let summary: Vec<String> = counts.iter().map(|(s, c)| format!("{c} {s}")).collect();
        writeln!(out, "  {} nodes: {}", nodes.len(), summary.join(", "))?;
    }
    Ok(out)
}

fn ago(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}
