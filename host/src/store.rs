//! The content-addressed artifact store (`.agentmerge/` beside the pipeline by default).
//!
//! ```text
//! .agentmerge/
//!   nodes/<key>/outputs.json   finished node outputs (values, digests); trusted only if present
//!   nodes/<key>/...            the files the node wrote (models, datasets, tensors)
//!   tmp/<key>.<pid>.<n>/       a node still running; never trusted, removed when stale
//!   work/<key>/                a node's resumable state (`Ctx::work_dir`): kept when the node
//!                              fails or the run is killed, removed once its outputs are committed
//!   memo/<hash>/<key>.json     per-item results of one plugin kind (`Ctx::memo_dir`), shared
//!                              across runs: <hash> is the plugin's identity and the kind, <key>
//!                              the node's own (e.g. one evaluated checkpoint); may be deleted
//!                              at any time (it is only a shortcut)
//!   runs/<time>-<pipeline>.json, runs/latest.json   run reports
//! ```
//!
//! A node's key hashes the plugin's identity (name, version, digest of the library file), the
//! kind, the resolved config, the node's seed and the digests of its inputs. A node's outputs
//! appear by renaming a finished temporary directory, so a killed run never leaves a
//! half-written artifact that a later run would trust. A node's work directory is the opposite:
//! it survives an interrupted run on purpose, so that the next run of the same key can resume.
//! The memo outlives nodes: the host caches whole nodes, and a node that runs again (a list
//! input grew by one checkpoint) finds there what it computed for the unchanged items. Its
//! directory is per plugin build and kind, so a rebuilt plugin never reuses stale results; the
//! host only names it (the plugin creates it on its first write) and never prunes it.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use agentmerge_sdk::{DType, Tensor, Value};
use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

pub struct Store {
    pub root: PathBuf,
}

/// A stored value: what `outputs.json` records for each output.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    Model { path: String, digest: String },
    Dataset { schema: String, path: String, digest: String },
    Tensor { dtype: DType, shape: Vec<u64>, file: String, digest: String },
    Metrics { value: serde_json::Map<String, Json>, digest: String },
    Scalar { value: f64, digest: String },
    Json { value: Json, digest: String },
}

impl Record {
    pub fn digest(&self) -> &str {
        match self {
            Record::Model { digest, .. }
            | Record::Dataset { digest, .. }
            | Record::Tensor { digest, .. }
            | Record::Metrics { digest, .. }
            | Record::Scalar { digest, .. }
            | Record::Json { digest, .. } => digest,
        }
    }
}

/// What `nodes/<key>/outputs.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stored {
    pub node: String,
    pub uses: String,
    pub key: String,
    pub ports: BTreeMap<String, Vec<Record>>,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    pub fn open(root: &Path) -> anyhow::Result<Store> {
        for sub in ["nodes", "tmp", "work", "runs"] {
            fs::create_dir_all(root.join(sub)).with_context(|| format!("cannot create the artifact store at {}", root.display()))?;
        }
        let store = Store { root: root.canonicalize()? };
        store.clean_stale_tmp();
        Ok(store)
    }

    /// Removes temporary directories left by runs that are no longer alive.
    fn clean_stale_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('.').nth(1).and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| p == std::process::id() || Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                tracing::debug!("removing stale temporary {}", e.path().display());
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    pub fn node_dir(&self, key: &str) -> PathBuf {
        self.root.join("nodes").join(key)
    }

    /// The finished outputs for `key`, if a complete and intact entry exists.
    pub fn lookup(&self, key: &str) -> Option<Stored> {
        let dir = self.node_dir(key);
        let text = fs::read_to_string(dir.join("outputs.json")).ok()?;
        let stored: Stored = serde_json::from_str(&text).ok()?;
        let intact = stored.ports.values().flatten().all(|r| match r {
            Record::Model { path, .. } | Record::Dataset { path, .. } => self.root.join(path).exists(),
            Record::Tensor { file, .. } => self.root.join(file).exists(),
            _ => true,
        });
        intact.then_some(stored)
    }

    /// A fresh temporary directory for a running node.
    pub fn temp_dir(&self, key: &str) -> anyhow::Result<PathBuf> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join("tmp").join(format!("{key}.{}.{n}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// The work directory of `key`, created if missing: whatever an earlier, interrupted run of
    /// the same key left there is kept.
    pub fn work_dir(&self, key: &str) -> anyhow::Result<PathBuf> {
        let dir = self.root.join("work").join(key);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Removes the work directory of `key` (once its outputs are committed). A failure is only
    /// logged: the outputs are safely stored, and a leftover directory is harmless.
    pub fn remove_work_dir(&self, key: &str) {
        let dir = self.root.join("work").join(key);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove the work directory {}: {e}", dir.display()),
        }
    }

    /// The memo directory of a plugin kind: `memo/<hash>/`, the hash of the plugin's identity
    /// (name, version, digest of the library — what a node's key hashes for the plugin) and
    /// the kind. Not created here: a node that memoises nothing leaves no trace.
    pub fn memo_dir(&self, plugin: &str, plugin_version: &str, plugin_digest: &str, kind: &str) -> PathBuf {
        let h = digest_json(&serde_json::json!({
            "plugin": plugin,
            "plugin_version": plugin_version,
            "plugin_digest": plugin_digest,
            "kind": kind,
        }));
        self.root.join("memo").join(h)
    }

    /// Records a node's outputs and moves its temporary directory into place.
    pub fn commit(&self, tmp: &Path, key: &str, node: &str, uses: &str, outputs: BTreeMap<String, Vec<Value>>) -> anyhow::Result<Stored> {
        let final_dir = self.node_dir(key);
        let mut ports = BTreeMap::new();
        for (port, values) in outputs {
            let mut records = Vec::new();
            for (i, v) in values.into_iter().enumerate() {
                records.push(self.record(tmp, &final_dir, &port, i, v)?);
            }
            ports.insert(port, records);
        }
        let stored = Stored { node: node.to_string(), uses: uses.to_string(), key: key.to_string(), ports };
        write_synced(&tmp.join("outputs.json"), serde_json::to_string_pretty(&stored)?.as_bytes())?;
        if final_dir.exists() {
            // A forced re-run (or a concurrent run) produced this key before: replace it.
            let old = self.root.join("tmp").join(format!("{key}.{}.old{}", std::process::id(), TMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
            fs::rename(&final_dir, &old).with_context(|| format!("moving aside {}", final_dir.display()))?;
            let _ = fs::remove_dir_all(&old);
        }
        fs::rename(tmp, &final_dir).with_context(|| format!("moving {} into the store", tmp.display()))?;
        Ok(stored)
    }

    fn record(&self, tmp: &Path, final_dir: &Path, port: &str, i: usize, v: Value) -> anyhow::Result<Record> {
        // A path inside the node's temporary directory is recorded where it will be after the
        // rename; a path already in the store (a node passing an input through) is kept.
        let store_path = |p: &Path| -> anyhow::Result<String> {
            let p = p.canonicalize().with_context(|| format!("output `{port}` names {}, which does not exist", p.display()))?;
            let tmp = tmp.canonicalize()?;
            if let Ok(rel) = p.strip_prefix(&tmp) {
                Ok(rel_str(final_dir.join(rel).strip_prefix(&self.root)?))
            } else if let Ok(rel) = p.strip_prefix(self.root.join("nodes")) {
                Ok(rel_str(&Path::new("nodes").join(rel)))
            } else {
                bail!("output `{port}` names {}, outside the node's output directory; write outputs under ctx.out_dir()", p.display())
            }
        };
        Ok(match v {
            Value::Model(p) => Record::Model { digest: digest_path(&p)?, path: store_path(&p)? },
            Value::Dataset { schema, path } => Record::Dataset { digest: digest_path(&path)?, path: store_path(&path)?, schema },
            Value::Tensor(t) => {
                let name = format!("{port}.{i}.tensor");
                write_synced(&tmp.join(&name), t.bytes())?;
                let mut h = blake3::Hasher::new();
                h.update(format!("{}{:?}", t.dtype(), t.shape()).as_bytes());
                h.update(t.bytes());
                let file = rel_str(final_dir.join(&name).strip_prefix(&self.root)?);
                Record::Tensor { dtype: t.dtype(), shape: t.shape().to_vec(), file, digest: h.finalize().to_hex().to_string() }
            }
            Value::Metrics(m) => Record::Metrics { digest: digest_json(&Json::Object(m.clone())), value: m },
            Value::Scalar(x) => Record::Scalar { digest: digest_json(&Json::from(x)), value: x },
            Value::Json(j) => Record::Json { digest: digest_json(&j), value: j },
        })
    }

    /// The value a record stands for (paths made absolute, tensors memory-mapped).
    pub fn value(&self, r: &Record) -> anyhow::Result<Value> {
        Ok(match r {
            Record::Model { path, .. } => Value::Model(self.root.join(path)),
            Record::Dataset { schema, path, .. } => Value::Dataset { schema: schema.clone(), path: self.root.join(path) },
            Record::Tensor { dtype, shape, file, .. } => {
                let f = fs::File::open(self.root.join(file))?;
                let bytes: Box<dyn AsRef<[u8]> + Send + Sync> = if f.metadata()?.len() == 0 {
                    Box::new(Vec::new())
                } else {
                    // SAFETY: store files are immutable once committed.
                    Box::new(unsafe { memmap2::Mmap::map(&f)? })
                };
                Tensor::from_owner(*dtype, shape.clone(), BoxedBytes(bytes))?.into()
            }
            Record::Metrics { value, .. } => Value::Metrics(value.clone()),
            Record::Scalar { value, .. } => Value::Scalar(*value),
            Record::Json { value, .. } => Value::Json(value.clone()),
        })
    }

    /// Writes a run report as `runs/<stamp>-<name>.json` and `runs/latest.json`.
    pub fn write_report(&self, name: &str, report: &Json) -> anyhow::Result<PathBuf> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let path = self.root.join("runs").join(format!("{stamp}-{name}.json"));
        let text = serde_json::to_string_pretty(report)?;
        write_atomic(&path, text.as_bytes())?;
        write_atomic(&self.root.join("runs").join("latest.json"), text.as_bytes())?;
        Ok(path)
    }
}

struct BoxedBytes(Box<dyn AsRef<[u8]> + Send + Sync>);
impl AsRef<[u8]> for BoxedBytes {
    fn as_ref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

fn rel_str(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Writes a file so that readers see the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

pub fn digest_json(j: &Json) -> String {
    blake3::hash(j.to_string().as_bytes()).to_hex().to_string()
}

/// blake3 over a file, or over a directory's relative paths and contents in sorted order.
pub fn digest_path(path: &Path) -> anyhow::Result<String> {
    let mut h = blake3::Hasher::new();
    let meta = fs::metadata(path).with_context(|| format!("output {} does not exist", path.display()))?;
    if meta.is_file() {
        h.update_mmap_rayon(path).with_context(|| format!("hashing {}", path.display()))?;
        return Ok(h.finalize().to_hex().to_string());
    }
    let mut files = Vec::new();
    collect_files(path, path, &mut files)?;
    files.sort();
    for rel in files {
        h.update(rel.as_bytes());
        h.update(&[0]);
        let mut fh = blake3::Hasher::new();
        fh.update_mmap_rayon(path.join(&rel)).with_context(|| format!("hashing {}", path.join(&rel).display()))?;
        h.update(fh.finalize().as_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            collect_files(root, &p, out)?;
        } else {
            out.push(rel_str(p.strip_prefix(root)?));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_is_atomic_and_lookup_trusts_only_finished_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tmp = store.temp_dir("k1").unwrap();
        fs::create_dir_all(tmp.join("model")).unwrap();
        fs::write(tmp.join("model/config.json"), "{}").unwrap();
        // Not committed: not trusted.
        assert!(store.lookup("k1").is_none());
        let mut outs = BTreeMap::new();
        outs.insert("model".to_string(), vec![Value::Model(tmp.join("model"))]);
        outs.insert("t".to_string(), vec![Value::Tensor(Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap())]);
        let stored = store.commit(&tmp, "k1", "n", "p/k", outs).unwrap();
        assert!(!tmp.exists());
        let again = store.lookup("k1").unwrap();
        assert_eq!(again.ports["model"][0].digest(), stored.ports["model"][0].digest());
        match store.value(&again.ports["t"][0]).unwrap() {
            Value::Tensor(t) => assert_eq!(t.to_f64_vec(), vec![1.0, 2.0]),
            v => panic!("{v:?}"),
        }
        // A damaged entry (file gone) is not trusted.
        fs::remove_dir_all(store.node_dir("k1").join("model")).unwrap();
        assert!(store.lookup("k1").is_none());
    }

    #[test]
    fn work_dirs_survive_until_removed_and_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let w = store.work_dir("k2").unwrap();
        assert_eq!(w, store.root.join("work/k2"));
        assert!(w.is_dir());
        fs::write(w.join("step"), "3").unwrap();
        // Asking again (a later run of the same key, after a reopen) keeps what was there.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(fs::read_to_string(store.work_dir("k2").unwrap().join("step")).unwrap(), "3");
        store.remove_work_dir("k2");
        assert!(!w.exists());
        store.remove_work_dir("k2"); // already gone: fine
    }

    #[test]
    fn memo_dirs_are_per_plugin_build_and_kind_and_not_created_eagerly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let m = store.memo_dir("cpu", "0.3.0", "d1", "evaluate");
        assert_eq!(m.parent().unwrap(), store.root.join("memo"));
        assert!(!m.exists());
        assert_eq!(m, store.memo_dir("cpu", "0.3.0", "d1", "evaluate"));
        for other in [
            store.memo_dir("cpu", "0.3.0", "d2", "evaluate"),
            store.memo_dir("cpu", "0.3.1", "d1", "evaluate"),
            store.memo_dir("gpu", "0.3.0", "d1", "evaluate"),
            store.memo_dir("cpu", "0.3.0", "d1", "likelihood"),
        ] {
            assert_ne!(m, other);
        }
    }

    #[test]
    fn stale_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("tmp/abc.999999999.0")).unwrap();
        Store::open(dir.path()).unwrap();
        assert!(!dir.path().join("tmp/abc.999999999.0").exists());
    }
}
