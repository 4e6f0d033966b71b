//! What a person reads: the table after a run, the `plugins` listing, and graph views.

use std::fmt::Write;

use crate::{
    exec::{RunReport, Status},
    plan::Plan,
    plugins::Registry,
    store::Record,
};

/// The files a run is for: the model and dataset outputs of the instances no other instance
/// consumes (a report, a final model), one `  node.port: path` line each; empty if none.
pub fn final_outputs(plan: &Plan, report: &RunReport, store_root: &std::path::Path) -> String {
    let consumed: std::collections::BTreeSet<usize> = plan.instances.iter().flat_map(|i| i.inputs.values().flatten().map(|(from, _)| *from)).collect();
    let mut out = String::new();
    for (i, inst) in plan.instances.iter().enumerate() {
        let Some(stored) = report.results.iter().find(|r| r.id == inst.id).and_then(|r| r.outputs.as_ref()) else { continue };
        if consumed.contains(&i) {
            continue;
        }
        for (port, recs) in &stored.ports {
            for rec in recs {
                if let Record::Model { path, .. } | Record::Dataset { path, .. } = rec {
                    let _ = writeln!(out, "  {}.{port}: {}", inst.id, store_root.join(path).display());
                }
            }
        }
    }
    if out.is_empty() {
        out
    } else {
        format!("results (outputs no node consumes):\n{out}")
    }
}

/// The per-node table printed after a run.
pub fn table(report: &RunReport, store_root: &std::path::Path) -> String {
    let mut rows = vec![["NODE".to_string(), "STATUS".into(), "TIME".into(), "OUTPUTS".into()]];
    for r in &report.results {
        let status = match &r.status {
            Status::Ran => "ran".to_string(),
            Status::Cached => "cached".into(),
            Status::Failed(_) => "FAILED".into(),
            Status::Skipped(_) => "skipped".into(),
        };
        let outputs = match (&r.outputs, &r.status) {
            (Some(o), _) => o
                .ports
                .iter()
                .map(|(port, recs)| format!("{port}={}", recs.iter().map(|rec| short(rec, store_root)).collect::<Vec<_>>().join(",")))
                .collect::<Vec<_>>()
                .join(" "),
            (None, Status::Failed(e) | Status::Skipped(e)) => first_line(e),
            _ => String::new(),
        };
        let outputs = match &r.job {
            Some(j) => format!("[job {}{}] {outputs}", j.id, j.queued.map(|q| format!(", queued {:.1}s", q.as_secs_f64())).unwrap_or_default()),
            None => outputs,
        };
        rows.push([r.id.clone(), status, format!("{:.2}s", r.wall.as_secs_f64()), outputs]);
    }
    let w: Vec<usize> = (0..3).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        let _ = writeln!(out, "{:w0$}  {:w1$}  {:>w2$}  {}", r[0], r[1], r[2], r[3], w0 = w[0], w1 = w[1], w2 = w[2]);
    }
    let (ran, cached) =
        (report.results.iter().filter(|r| r.status == Status::Ran).count(), report.results.iter().filter(|r| r.status == Status::Cached).count());
    let _ = write!(
        out,
        "{} nodes: {ran} ran, {cached} cached, {} failed or skipped, in {:.2}s",
        report.results.len(),
        report.failed().len(),
        report.wall.as_secs_f64()
    );
    out
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.chars().count() > 100 {
        format!("{}…", l.chars().take(100).collect::<String>())
    } else {
        l.to_string()
    }
}

fn short(r: &Record, root: &std::path::Path) -> String {
    let text = match r {
        Record::Model { path, .. } | Record::Dataset { path, .. } => {
            let p = root.join(path);
            let cwd = std::env::current_dir().unwrap_or_default();
            p.strip_prefix(&cwd).unwrap_or(&p).display().to_string()
        }
        Record::Tensor { dtype, shape, .. } => format!("{dtype}{shape:?}"),
        Record::Metrics { value, .. } => serde_json::Value::Object(value.clone()).to_string(),
        Record::Scalar { value, .. } => format!("{value}"),
        Record::Json { value, .. } => value.to_string(),
    };
    first_line(&text)
}

/// A failure summary for stderr.
pub fn failures(report: &RunReport) -> String {
    let mut out = String::new();
    for r in report.failed() {
        match &r.status {
            Status::Failed(e) => {
                let _ = writeln!(out, "node `{}` ({}) failed: {e}", r.id, r.uses);
            }
            Status::Skipped(e) => {
                let _ = writeln!(out, "node `{}` was not run: {e}", r.id);
            }
            _ => {}
        }
    }
    out
}

/// `agentmerge plugins`: every library, kind, port and config field.
pub fn plugins(reg: &Registry, filter: Option<&str>) -> String {
    let mut out = String::new();
    for p in &reg.plugins {
        let m = &p.manifest;
        let kinds: Vec<_> = m.kinds.iter().filter(|k| filter.is_none_or(|f| f == m.plugin || f == format!("{}/{}", m.plugin, k.name))).collect();
        if kinds.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{} {} (sdk {}) — {}", m.plugin, m.version, m.sdk_version, p.path.display());
        for k in kinds {
            let _ = writeln!(out, "\n  {}/{}\n    {}", m.plugin, k.name, k.doc);
            let r = &k.resources;
            let need = crate::resources::Need { light: r.light, cpus: r.cpus, mem: crate::resources::parse_mem(&r.mem).ok(), gpus: r.gpus, time: None };
            let gpus_from = r.gpus_from.as_ref().map(|f| format!(" (gpus from `{f}`)")).unwrap_or_default();
            let _ = writeln!(out, "    resources: {}{gpus_from}", need.describe());
            for (title, ports) in [("inputs", &k.inputs), ("outputs", &k.outputs)] {
                if ports.is_empty() {
                    continue;
                }
                let _ = writeln!(out, "    {title}:");
                for port in ports {
                    let ty = format!("{}{}{}", port.ty, if port.list { "[]" } else { "" }, if port.optional { " (optional)" } else { "" });
                    let _ = writeln!(out, "      {:<14} {:<22} {}", port.name, ty, port.doc);
                }
            }
            let fields = k.config_fields();
            if !fields.is_empty() {
                let _ = writeln!(out, "    config (with:):");
                for f in fields {
                    let default = match (&f.default, f.required) {
                        (_, true) => "required".to_string(),
                        (Some(d), _) => format!("default {d}"),
                        (None, _) => "optional".to_string(),
                    };
                    let _ = writeln!(out, "      {:<14} {:<22} {:<18} {}", f.name, f.ty, default, f.doc);
                }
            }
        }
        out.push('\n');
    }
    if out.is_empty() {
        let dirs: Vec<String> = reg.search_path.iter().map(|d| d.display().to_string()).collect();
        let _ = writeln!(
            out,
            "no plugins found{} in: {}\nbuild them with `cargo build --workspace`, or add a directory with AGENTMERGE_PLUGIN_PATH",
            filter.map(|f| format!(" matching `{f}`")).unwrap_or_default(),
            dirs.join(", ")
        );
    }
    for r in &reg.refused {
        let _ = writeln!(out, "refused: {}", r.reason);
    }
    out
}

/// The plan as a Mermaid flowchart or a Graphviz DOT graph.
pub fn graph(plan: &Plan, dot: bool) -> String {
    let mut out = String::new();
    let esc = |s: &str| s.replace('"', "'");
    if dot {
        let _ = writeln!(out, "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box];", esc(&plan.spec.name));
        for (i, inst) in plan.instances.iter().enumerate() {
            let _ = writeln!(out, "  n{i} [label=\"{}\\n{}\"];", esc(&inst.id), esc(&inst.uses));
        }
        for (i, inst) in plan.instances.iter().enumerate() {
            for (port, srcs) in &inst.inputs {
                for (s, sp) in srcs {
                    let _ = writeln!(out, "  n{s} -> n{i} [label=\"{sp} → {port}\"];");
                }
            }
        }
        out.push_str("}\n");
    } else {
        out.push_str("flowchart LR\n");
        for (i, inst) in plan.instances.iter().enumerate() {
            let _ = writeln!(out, "  n{i}[\"{}<br/><small>{}</small>\"]", esc(&inst.id), esc(&inst.uses));
        }
        for (i, inst) in plan.instances.iter().enumerate() {
            for (port, srcs) in &inst.inputs {
                for (s, sp) in srcs {
                    let _ = writeln!(out, "  n{s} -- \"{sp} → {port}\" --> n{i}");
                }
            }
        }
    }
    out
}
