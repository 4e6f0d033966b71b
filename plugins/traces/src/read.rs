//! `traces/read`: a trace file from anywhere (AgentLab's converter, another tool) into the store.
//! The file is named by the config, not by an input, so the resolved config carries a
//! fingerprint of it (path, size, modification time): editing the file re-runs the node.

use std::{path::Path, time::UNIX_EPOCH};

use agentmerge_sdk::prelude::*;
use agentmerge_traces::{read_episodes, OnBadLine};
use serde_json::json;

use crate::{traces_type, write_output};

/// How many skipped-line messages the report lists (the count covers all of them).
const SHOWN_SKIPPED: usize = 20;

/// Reads a trace file.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Read {
    /// The trace file: JSON Lines, one episode per line, plain or compressed by extension
    /// (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`). A relative path is relative to the current
    /// directory.
    pub path: String,
    /// What to do with a line that is not a valid episode: `fail` stops with its `file:line`;
    /// `skip` leaves it out and counts it in the report.
    #[serde(default)]
    pub on_bad_line: OnBadLine,
    /// Filled in when the pipeline is checked: a fingerprint (path, size, modification time)
    /// of the file, so the cache notices when it changes. Leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

fn fingerprint(path: &Path) -> Result<String, ConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| ConfigError::new("path", format!("cannot read {}: {e}", path.display())))?;
    let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    let mut h = blake3::Hasher::new();
    h.update(abs.to_string_lossy().as_bytes());
    h.update(format!("\0{}\0{mtime}", meta.len()).as_bytes());
    Ok(h.finalize().to_hex()[..32].to_string())
}

impl NodeKind for Read {
    const NAME: &'static str = "read";
    const DOC: &'static str = "Reads a trace file (JSON Lines of episodes, plain, .gz or .zst, e.g. from tools/agentlab_to_jsonl.py) into a traces dataset; bad lines fail with file:line or are skipped and counted.";

    fn ports() -> Ports {
        Ports::new().output("traces", traces_type(), "the episodes, in file order").output(
            "report",
            PortType::Metrics,
            "episodes, skipped (bad lines), skipped_lines (the first `file:line: reason` messages), source",
        )
    }

    fn check(&self) -> Result<(), ConfigError> {
        let p = Path::new(&self.path);
        if self.path.is_empty() {
            return Err(ConfigError::new("path", "is empty; name a trace file (.jsonl, .jsonl.gz or .jsonl.zst)"));
        }
        if !p.is_file() {
            let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
            let what = if p.exists() { "is not a file" } else { "does not exist" };
            return Err(ConfigError::new("path", format!("{} {what} (a relative path is relative to the current directory, {cwd})", self.path)));
        }
        Ok(())
    }

    fn resolve(&mut self) -> Result<(), ConfigError> {
        self.fingerprint = Some(fingerprint(Path::new(&self.path))?);
        Ok(())
    }

    fn run(&self, ctx: &Ctx, _inputs: Inputs) -> anyhow::Result<Outputs> {
        let path = Path::new(&self.path);
        if let Some(f) = &self.fingerprint {
            let now = fingerprint(path).map_err(|e| anyhow!("{e}"))?;
            anyhow::ensure!(*f == now, "{} changed after the pipeline was checked; run again", self.path);
        }
        let (episodes, read) = read_episodes(path, self.on_bad_line)?;
        if !read.skipped.is_empty() {
            tracing::warn!("{}: skipped {} bad line(s); first: {}", self.path, read.skipped.len(), read.skipped[0]);
        }
        tracing::info!("read {} episodes from {}", episodes.len(), self.path);
        let out = write_output(ctx, "traces", &episodes)?;
        let mut report = serde_json::Map::new();
        report.insert("episodes".into(), json!(episodes.len()));
        report.insert("skipped".into(), json!(read.skipped.len()));
        report.insert("skipped_lines".into(), json!(read.skipped.iter().take(SHOWN_SKIPPED).collect::<Vec<_>>()));
        report.insert("source".into(), json!(self.path));
        Ok(Outputs::new().with("traces", out).with("report", report))
    }
}
