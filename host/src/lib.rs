//! The AgentMerge host: reads a YAML pipeline, loads the plugin libraries it uses, checks it
//! into a DAG of node instances, and runs it against a content-addressed artifact store.
//!
//! The host knows nodes, ports and value types — never what a node does. Modules:
//! - [`yaml`] and [`pipeline`]: the pipeline file, with positions for every error ([`diag`]);
//! - [`plugins`]: finding, checking and calling plugin libraries;
//! - [`plan`]: kinds, ports, types, cycles, sweeps and configs checked into a [`plan::Plan`];
//! - [`exec`]: running a plan in parallel, locally or as cluster jobs ([`executor`], one job's
//!   work in [`node_task`]), sharing the machine by what nodes need ([`resources`]);
//! - [`store`]: the artifact store and cache;
//! - [`report`]: the table printed after a run, and the Mermaid/DOT views of a plan.

pub mod diag;
pub mod exec;
pub mod executor;
pub mod node_task;
pub mod pipeline;
pub mod plan;
pub mod plugins;
pub mod report;
pub mod resources;
pub mod status;
pub mod store;
pub mod yaml;

use std::path::{Path, PathBuf};

/// Parses a pipeline with its patch files (applied in order) and `--set` overrides, discovers
/// its plugins and builds the plan.
pub fn load(
    file: &Path,
    patches: &[PathBuf],
    overrides: &[pipeline::Override],
    extra_plugin_dirs: &[PathBuf],
) -> anyhow::Result<(plugins::Registry, plan::Plan)> {
    let spec = pipeline::load(file, patches, overrides)?;
    let mut dirs = extra_plugin_dirs.to_vec();
    dirs.extend(spec.plugin_path.iter().cloned());
    let registry = plugins::Registry::discover(&plugins::search_path(&dirs));
    for r in &registry.refused {
        tracing::warn!("refused plugin library: {}", r.reason);
    }
    let plan = plan::build(spec, &registry)?;
    Ok((registry, plan))
}

/// The store directory for a plan: `--store`, else the pipeline's `store:`, else
/// `.agentmerge/` beside the pipeline file.
pub fn store_dir(plan: &plan::Plan, cli: Option<&Path>) -> PathBuf {
    cli.map(Path::to_path_buf).or_else(|| plan.spec.store.clone()).unwrap_or_else(|| plan.spec.file.parent().unwrap_or(Path::new(".")).join(".agentmerge"))
}
