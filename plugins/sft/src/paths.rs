//! Files a node's config names in `paths:` (`sft/tokenize`, `sft/chat`): they are not inputs, so
//! the cache cannot see them change; the resolved config carries a fingerprint of them (each
//! file's absolute path, size and modification time), so editing, adding or removing a file
//! re-runs the node, and a change between check and run is an error rather than a stale result.

use std::{
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use agentmerge_sdk::prelude::*;
use agentmerge_sft::text::list_files;

/// Checks each entry of `paths` before anything runs: not empty, existing, and a directory or a
/// file that `accepts` (`what` names such a file in the error, `endings` the names it takes).
pub fn check(paths: &[String], accepts: impl Fn(&Path) -> bool, what: &str, endings: &str) -> Result<(), ConfigError> {
    for (i, p) in paths.iter().enumerate() {
        let field = format!("paths[{i}]");
        if p.is_empty() {
            return Err(ConfigError::new(field, format!("is empty; name a {what} or a directory")));
        }
        let path = Path::new(p);
        if !path.exists() {
            let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
            return Err(ConfigError::new(field, format!("{p} does not exist (a relative path is relative to the current directory, {cwd})")));
        }
        if !path.is_dir() && !accepts(path) {
            return Err(ConfigError::new(field, format!("{p} is not a {what} (the name must end in {endings})")));
        }
    }
    Ok(())
}

/// A fingerprint of the files `paths` stands for; `None` when there are no paths.
pub fn fingerprint(paths: &[String]) -> Result<Option<String>, ConfigError> {
    if paths.is_empty() {
        return Ok(None);
    }
    let mut h = blake3::Hasher::new();
    for (i, p) in paths.iter().enumerate() {
        let field = format!("paths[{i}]");
        let files = list_files(&[PathBuf::from(p)]).map_err(|e| ConfigError::new(&field, format!("{e:#}")))?;
        for f in files {
            let meta = std::fs::metadata(&f).map_err(|e| ConfigError::new(&field, format!("cannot read {}: {e}", f.display())))?;
            let abs = f.canonicalize().unwrap_or(f);
            let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
            h.update(abs.to_string_lossy().as_bytes());
            h.update(format!("\0{}\0{mtime}\0", meta.len()).as_bytes());
        }
        h.update(b"\n");
    }
    Ok(Some(h.finalize().to_hex()[..32].to_string()))
}

/// At run time: the files still match the fingerprint taken when the pipeline was checked.
pub fn unchanged(fingerprint_then: Option<&String>, paths: &[String]) -> anyhow::Result<()> {
    if let Some(f) = fingerprint_then {
        let now = fingerprint(paths).map_err(|e| anyhow!("{e}"))?;
        anyhow::ensure!(Some(f) == now.as_ref(), "the files in `paths` changed after the pipeline was checked; run again");
    }
    Ok(())
}
