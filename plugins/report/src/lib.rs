//! The `report` plugin: `report/paper` regenerates the AgentMerge paper's Table 1 and
//! Figures 2–3 from the metrics of evaluate, likelihood and forgetting nodes.
//!
//! The modules, in reading order: [`labels`] (node instance ids and sweep labels),
//! [`metrics`] (reading metrics, pooling per-task counts into inter-/cross-task),
//! [`config`] (the node's `with:`), [`select`] (choosing λ on validation), [`report`]
//! (sorting results into methods, learning rates and λ), [`tables`] (report.md, table1.csv,
//! report.json) and [`figures`] (the PNGs).

pub mod config;
pub mod figures;
pub mod labels;
pub mod metrics;
mod node;
pub mod report;
pub mod select;
pub mod tables;

use std::path::Path;

use anyhow::Context as _;
use serde_json::{Map, Value as Json};

pub use config::Paper;
pub use node::SCHEMA;
pub use report::Report;

/// Writes the report into `dir` (created): report.md, table1.csv, report.json, figure2.png and
/// figure3.png. Returns report.json's content.
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<Map<String, Json>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let put = |name: &str, text: &str| std::fs::write(dir.join(name), text).with_context(|| format!("writing {}", dir.join(name).display()));
    let json = tables::json(report);
    put("report.md", &tables::markdown(report))?;
    put("table1.csv", &tables::csv(report))?;
    put("report.json", &serde_json::to_string_pretty(&json)?)?;
    figures::figure2(report, &dir.join("figure2.png"))?;
    figures::figure3(report, &dir.join("figure3.png"))?;
    Ok(json)
}

agentmerge_sdk::export_plugin! { name: "report", kinds: [Paper] }
