//! Reading and writing trace files: JSON Lines, compressed by extension (`.gz`, `.zst`).
//! Writes go to a temporary file renamed into place, so a trace file is never half-written.
//! A bad line is either skipped (and counted, with its file:line) or fails the read.

use std::{
    fs::File,
    io::{BufRead, BufReader, BufWriter, Read, Write},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::Episode;

/// How a trace file is compressed, chosen by its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn from_path(path: &Path) -> Compression {
        match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Compression::Gzip,
            Some("zst") | Some("zstd") => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// What to do with a line that is not a valid episode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnBadLine {
    /// Stop with an error naming the file and line.
    #[default]
    Fail,
    /// Skip it, count it and keep its location in the report.
    Skip,
}

/// What a read found besides the episodes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadReport {
    /// `file:line: reason` of every skipped line.
    pub skipped: Vec<String>,
}

fn open_reader(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    let f = File::open(path).with_context(|| format!("cannot open trace file {}", path.display()))?;
    let r: Box<dyn Read> = match Compression::from_path(path) {
        Compression::None => Box::new(f),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
        Compression::Zstd => Box::new(zstd::Decoder::new(f).with_context(|| format!("{}: not a zstd stream", path.display()))?),
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, r)))
}

/// Reads every episode of a trace file. Blank lines are ignored.
pub fn read_episodes(path: &Path, on_bad: OnBadLine) -> anyhow::Result<(Vec<Episode>, ReadReport)> {
    let mut out = Vec::new();
    let mut report = ReadReport::default();
    let mut reader = open_reader(path)?;
    let mut line = String::new();
    let mut lineno = 0usize;
    loop {
        line.clear();
        lineno += 1;
        let n = reader.read_line(&mut line).with_context(|| format!("{}:{lineno}: cannot read (corrupt compression or not UTF-8)", path.display()))?;
        if n == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Episode>(&line) {
            Ok(e) => out.push(e),
            Err(e) => {
                let msg = format!("{}:{lineno}: not a valid episode: {e}", path.display());
                match on_bad {
                    OnBadLine::Fail => bail!("{msg}\nhint: fix or remove the line, or set `on_bad_line: skip` to skip bad lines and count them"),
                    OnBadLine::Skip => report.skipped.push(msg),
                }
            }
        }
    }
    Ok((out, report))
}

/// Writes episodes one per line, atomically; compression follows the extension.
pub struct TraceWriter {
    path: PathBuf,
    tmp: PathBuf,
    inner: Option<Box<dyn FinishWrite>>,
    count: usize,
}

trait FinishWrite: Write {
    fn finish_box(self: Box<Self>) -> std::io::Result<()>;
}

impl FinishWrite for BufWriter<File> {
    fn finish_box(mut self: Box<Self>) -> std::io::Result<()> {
        self.flush()?;
        self.get_ref().sync_all()
    }
}

impl FinishWrite for flate2::write::GzEncoder<BufWriter<File>> {
    fn finish_box(self: Box<Self>) -> std::io::Result<()> {
        let mut w = (*self).finish()?;
        w.flush()?;
        w.get_ref().sync_all()
    }
}

impl FinishWrite for zstd::Encoder<'static, BufWriter<File>> {
    fn finish_box(self: Box<Self>) -> std::io::Result<()> {
        let mut w = (*self).finish()?;
        w.flush()?;
        w.get_ref().sync_all()
    }
}

impl TraceWriter {
    pub fn create(path: &Path) -> anyhow::Result<TraceWriter> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let f = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let w = BufWriter::with_capacity(1 << 20, f);
        let inner: Box<dyn FinishWrite> = match Compression::from_path(path) {
            Compression::None => Box::new(w),
            Compression::Gzip => Box::new(flate2::write::GzEncoder::new(w, flate2::Compression::fast())),
            Compression::Zstd => Box::new(zstd::Encoder::new(w, 3)?),
        };
        Ok(TraceWriter { path: path.to_path_buf(), tmp, inner: Some(inner), count: 0 })
    }

    pub fn push(&mut self, e: &Episode) -> anyhow::Result<()> {
        let w = self.inner.as_mut().expect("writer used after finish");
        serde_json::to_writer(&mut *w, e)?;
        w.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    /// Episodes written so far.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Flushes, syncs and renames the file into place.
    pub fn finish(mut self) -> anyhow::Result<PathBuf> {
        let inner = self.inner.take().expect("finish called twice");
        inner.finish_box().with_context(|| format!("cannot write {}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.path).with_context(|| format!("cannot move {} into place", self.path.display()))?;
        Ok(self.path.clone())
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        if self.inner.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes all `episodes` to `path` (see [`TraceWriter`]).
pub fn write_episodes<'a>(path: &Path, episodes: impl IntoIterator<Item = &'a Episode>) -> anyhow::Result<usize> {
    let mut w = TraceWriter::create(path)?;
    for e in episodes {
        w.push(e)?;
    }
    let n = w.len();
    w.finish()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Observation, Step};

    fn episode(seed: u64) -> Episode {
        Episode {
            task_name: "miniarena.form.create_incident".into(),
            category: "form".into(),
            seed,
            goal: "Create an incident".into(),
            success: seed.is_multiple_of(2),
            n_steps: 1,
            steps: vec![Step {
                obs: Observation { goal: "Create an incident".into(), axtree_txt: "[a1] button 'Save'".into(), ..Default::default() },
                think: Some("say \"hi\"\nthen save".into()),
                action: Some("click('a1')".into()),
                reward: 1.0,
                terminated: true,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn round_trips_in_every_compression() {
        let dir = tempfile::tempdir().unwrap();
        let eps: Vec<Episode> = (0..5).map(episode).collect();
        for name in ["t.jsonl", "t.jsonl.gz", "t.jsonl.zst"] {
            let p = dir.path().join(name);
            assert_eq!(write_episodes(&p, &eps).unwrap(), 5);
            let (back, rep) = read_episodes(&p, OnBadLine::Fail).unwrap();
            assert_eq!(back, eps, "{name}");
            assert!(rep.skipped.is_empty());
        }
        if let Ok(entries) = std::fs::read_dir(dir.path()) {
            let tmp: Vec<_> = entries.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains(".tmp-")).collect();
            assert!(tmp.is_empty());
        }
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.jsonl");
        let good = serde_json::to_string(&episode(1)).unwrap();
        std::fs::write(&p, format!("{good}\n{{\"seed\": \"x\"}}\n\n{good}\nnot json\n")).unwrap();
        let err = read_episodes(&p, OnBadLine::Fail).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl:2:"), "{err}");
        assert!(err.contains("on_bad_line"), "{err}");
        let (eps, rep) = read_episodes(&p, OnBadLine::Skip).unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(rep.skipped.len(), 2);
        assert!(rep.skipped[1].contains("bad.jsonl:5:"), "{:?}", rep.skipped);
    }
}
