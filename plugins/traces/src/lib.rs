//! The `traces` plugin: trace files in, training and test sets out. `read` loads a JSON Lines
//! trace file (plain, `.gz` or `.zst`, e.g. from `tools/agentlab_to_jsonl.py`) into the store;
//! `filter`, `think`, `split`, `dedup`, `mix` and `stats` are thin nodes over
//! `agentmerge_traces::ops`, each taking that operation's config as its `with:` block and
//! reporting what it did on a `report` metrics port (docs/traces.md, "Dataset operations").
//!
//! A traces dataset travels as `dataset:traces`: the path of one JSONL file, written
//! zstd-compressed (`traces.jsonl.zst`) and atomically inside the node's output directory.

mod ops;
mod read;

use std::path::{Path, PathBuf};

use agentmerge_sdk::prelude::*;
use agentmerge_traces::{read_episodes, write_episodes, Episode, OnBadLine};

pub use ops::{Dedup, Filter, Mix, Split, Stats, Think};
pub use read::Read;

/// The schema name of a traces dataset.
pub const SCHEMA: &str = "traces";

/// The port type of a traces dataset: `dataset:traces`.
pub fn traces_type() -> PortType {
    PortType::Dataset(Some(SCHEMA.into()))
}

/// Reads the traces dataset on `port` (a dataset in the store is never malformed: a bad line
/// fails).
pub fn read_input(inputs: &Inputs, port: &str) -> anyhow::Result<Vec<Episode>> {
    let (_, path) = inputs.dataset(port)?;
    read_path(&path)
}

fn read_path(path: &Path) -> anyhow::Result<Vec<Episode>> {
    let (episodes, _) = read_episodes(path, OnBadLine::Fail)?;
    Ok(episodes)
}

/// Writes `episodes` as `<name>.jsonl.zst` in the node's output directory (atomically) and
/// returns the dataset value.
pub fn write_output(ctx: &Ctx, name: &str, episodes: &[Episode]) -> anyhow::Result<Value> {
    let path: PathBuf = ctx.out_path(&format!("{name}.jsonl.zst"))?;
    let n = write_episodes(&path, episodes)?;
    tracing::debug!("wrote {n} episodes to {}", path.display());
    Ok(Value::Dataset { schema: SCHEMA.into(), path })
}

/// A serializable report as metrics (a JSON object).
pub fn metrics(report: &impl Serialize) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::to_value(report)? {
        serde_json::Value::Object(m) => Ok(m),
        other => bail!("a report must serialize to a JSON object, got {other}"),
    }
}

agentmerge_sdk::export_plugin! { name: "traces", kinds: [Read, Filter, Think, Split, Dedup, Mix, Stats] }
