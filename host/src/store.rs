//! The content-addressed artifact store (`.agentmerge/` beside the pipeline by default).
//!
//! ```text
//! .agentmerge/
//!   nodes/<key>/outputs.json   finished node outputs (values, digests); trusted only if present
//!   nodes/<key>/...            the files the node wrote (models, datasets, tensors)
//!   tmp/<run>.lock             held locked (flock) by a live run for its whole life
//!   tmp/<key>.<run>.<n>/       a node still running; never trusted; removed by a later run
//!                              once the run that owns it is gone (its lock is free)
//!   locks/<key>.lock           held locked while one run computes <key>: another run that
//!                              needs the same key waits, then finds it finished
//!   work/<key>/                a node's resumable state (`Ctx::work_dir`): kept when the node
//!                              fails or the run is killed, removed once its outputs are committed
//!   memo/<hash>/<key>.json     per-item results of one plugin kind (`Ctx::memo_dir`), shared
//!                              across runs: <hash> is the plugin's identity and the kind, <key>
//!                              the node's own (e.g. one evaluated checkpoint); may be deleted
//!                              at any time (it is only a shortcut)
//!   runs/<time>-<pipeline>.json, runs/latest.json   run reports
//!   runs/<run>/state.json       a run's live state (`agentmerge status`); its jobs' logs beside it
//!   jobs/<key>/                 a node's cluster job: task, script, job record, status files
//! ```
//!
//! A node's key hashes the plugin's identity (name, version, digest of the library file), the
//! kind, the resolved config, the node's seed and the digests of its inputs. A node's outputs
//! appear by renaming a finished temporary directory, so a killed run never leaves a
//! half-written artifact that a later run would trust. A node's work directory is the opposite:
//! it survives an interrupted run on purpose, so that the next run of the same key can resume.
//!
//! Several runs may share one store at once (two terminals, CI jobs, a scheduler on a shared
//! disk). A key is computed by one run at a time (`locks/`), so the others reuse its result
//! instead of racing on its work directory or replacing its outputs while they are read, and a
//! run only removes temporaries whose owner has died (`tmp/<run>.lock`). Locks are `flock`s: the
//! kernel releases them when their holder dies, however it dies, so a killed run never leaves
//! a stale lock. (On a network file system, flock works where the NFS client supports it —
//! Linux's does since 2.6.12.)
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
    /// This run's claim on its temporaries.
    run: RunLock,
}

/// This process's claim on its temporaries: `tmp/<id>.lock`, flock-ed for the store's life. A
/// temporary `tmp/<key>.<id>.<n>` belongs to a live run exactly while that lock is held.
struct RunLock {
    id: String,
    /// The locked file; `None` only in tests that simulate a dead run.
    file: Option<fs::File>,
    path: PathBuf,
}

impl Drop for RunLock {
    /// A run that ends normally removes its lock file (closing it releases the lock); a run that
    /// dies leaves it, unlocked, for the next run's clean-up.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A key this run is computing (`locks/<key>.lock`, flock-ed); released when dropped.
pub struct KeyLock {
    _file: fs::File,
}

/// Takes an exclusive flock on `f`; `Ok(false)` when another holder has it and `wait` is false.
fn flock(f: &fs::File, wait: bool) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let op = libc::LOCK_EX | if wait { 0 } else { libc::LOCK_NB };
    loop {
        // SAFETY: a valid open file descriptor; flock has no memory effects.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !wait => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Whether `f` (open) is still the file at `path`: a lock on a file another process has since
/// unlinked protects nothing.
fn same_file(f: &fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl RunLock {
    fn acquire(tmp: &Path) -> anyhow::Result<RunLock> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        for attempt in 0..16u32 {
            // Unique across processes and machines sharing the store; no '.' (temporaries'
            // names are split on it).
            let id = format!("{}-{:x}-{attempt}", std::process::id(), nanos);
            let path = tmp.join(format!("{id}.lock"));
            let file = fs::OpenOptions::new().write(true).create_new(true).open(&path).with_context(|| format!("creating {}", path.display()))?;
            flock(&file, true).with_context(|| format!("locking {}", path.display()))?;
            // Another run's clean-up may have taken and removed the file between our create and
            // our lock; then try again with a fresh name.
            if same_file(&file, &path) {
                return Ok(RunLock { id, file: Some(file), path });
            }
        }
        bail!("cannot take a run lock in {}", tmp.display())
    }
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

/// What [`Store::verify`] found.
#[derive(Debug, Default)]
pub struct Verified {
    /// Entries checked.
    pub checked: usize,
    /// (key, node, reason) of each corrupt entry.
    pub corrupt: Vec<(String, String, String)>,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    pub fn open(root: &Path) -> anyhow::Result<Store> {
        for sub in ["nodes", "tmp", "work", "runs", "locks"] {
            fs::create_dir_all(root.join(sub)).with_context(|| format!("cannot create the artifact store at {}", root.display()))?;
        }
        let root = root.canonicalize()?;
        let run = RunLock::acquire(&root.join("tmp"))?;
        let store = Store { root, run };
        store.clean_stale_tmp();
        Ok(store)
    }

    /// Removes what runs that are gone left in `tmp/`: their temporaries and their run locks.
    /// A run is gone when its lock file is missing or can be locked (the kernel released it).
    fn clean_stale_tmp(&self) {
        let tmp = self.root.join("tmp");
        let Ok(entries) = fs::read_dir(&tmp) else {
            return;
        };
        let mut alive: BTreeMap<String, bool> = BTreeMap::new();
        let mut is_alive = |run: &str| -> bool { *alive.entry(run.to_string()).or_insert_with(|| self.probe_run(run, true)) };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let run = match name.strip_suffix(".lock") {
                Some(run) => run.to_string(),
                None => name.split('.').nth(1).unwrap_or("").to_string(),
            };
            if !is_alive(&run) && !name.ends_with(".lock") {
                tracing::debug!("removing stale temporary {}", e.path().display());
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// Takes the lock of `key`, waiting while another run computes it (`node` names it in the
    /// log). Check the cache again once it is held: the other run may have finished the key.
    pub fn lock_key(&self, key: &str, node: &str) -> anyhow::Result<KeyLock> {
        let path = self.root.join("locks").join(format!("{key}.lock"));
        loop {
            let file = fs::OpenOptions::new().write(true).create(true).truncate(false).open(&path).with_context(|| format!("opening {}", path.display()))?;
            if !flock(&file, false).with_context(|| format!("locking {}", path.display()))? {
                tracing::info!(node, "waiting for another run that is computing this node");
                flock(&file, true).with_context(|| format!("locking {}", path.display()))?;
            }
            // Lock files are never removed while the store is in use, but someone may clear
            // `locks/` by hand: a lock on an unlinked file would exclude no one.
            if same_file(&file, &path) {
                return Ok(KeyLock { _file: file });
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

    /// This run's id (unique across processes and machines sharing the store).
    pub fn run_id(&self) -> &str {
        &self.run.id
    }

    /// This run's folder, `runs/<run>/`: its state for `agentmerge status` and its jobs' logs.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("runs").join(&self.run.id)
    }

    /// Whether the run `id` is still alive (its lock is held).
    pub fn run_alive(&self, id: &str) -> bool {
        self.probe_run(id, false)
    }

    /// Whether run `id` is alive: its lock file exists and is held. A run whose lock is free is
    /// gone; with `remove`, its lock file is removed while we hold it (clean-up).
    fn probe_run(&self, id: &str, remove: bool) -> bool {
        if id == self.run.id {
            return true;
        }
        let path = self.root.join("tmp").join(format!("{id}.lock"));
        let Ok(f) = fs::OpenOptions::new().write(true).open(&path) else {
            return false;
        };
        match flock(&f, false) {
            Ok(true) => {
                if remove {
                    let _ = fs::remove_file(&path);
                }
                false
            }
            Ok(false) | Err(_) => true,
        }
    }

    /// A fresh temporary directory for a running node.
    pub fn temp_dir(&self, key: &str) -> anyhow::Result<PathBuf> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join("tmp").join(format!("{key}.{}.{n}", self.run.id));
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
            // A forced re-run (`--force`, `--no-cache`) of a key stored before: replace it. (Runs
            // that need it and are not forced wait for our key lock, then read the new one.)
            let old = self.root.join("tmp").join(format!("{key}.{}.old{}", self.run.id, TMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
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

    /// Re-hashes every entry of `nodes/` against the digests its `outputs.json` recorded.
    /// Returns the entries that are corrupt (unreadable outputs.json, a missing file, a digest
    /// that differs) with the reason; with `repair`, moves each aside and deletes it, under the
    /// entry's key lock, so no run is reading or writing it meanwhile.
    pub fn verify(&self, repair: bool) -> anyhow::Result<Verified> {
        let mut v = Verified::default();
        let mut keys: Vec<String> = fs::read_dir(self.root.join("nodes"))?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        keys.sort();
        for key in keys {
            v.checked += 1;
            let (node, problem) = match self.check_entry(&key) {
                Ok(_) => continue,
                Err((node, why)) => (node, why),
            };
            if repair {
                let _lock = self.lock_key(&key, &node)?;
                let aside = self.root.join("tmp").join(format!("{key}.{}.corrupt{}", self.run.id, TMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
                fs::rename(self.node_dir(&key), &aside).with_context(|| format!("moving aside {}", self.node_dir(&key).display()))?;
                fs::remove_dir_all(&aside).with_context(|| format!("removing {}", aside.display()))?;
            }
            v.corrupt.push((key, node, problem));
        }
        Ok(v)
    }

    /// One entry's outputs against their recorded digests: `Err((node, reason))` when corrupt.
    fn check_entry(&self, key: &str) -> Result<(), (String, String)> {
        let text = fs::read_to_string(self.node_dir(key).join("outputs.json")).map_err(|e| (String::from("?"), format!("outputs.json: {e}")))?;
        let stored: Stored = serde_json::from_str(&text).map_err(|e| (String::from("?"), format!("outputs.json: {e}")))?;
        let node = stored.node.clone();
        for (port, records) in &stored.ports {
            for r in records {
                let got = match r {
                    Record::Model { path, .. } | Record::Dataset { path, .. } => digest_path(&self.root.join(path)).map_err(|e| format!("{e:#}")),
                    Record::Tensor { dtype, shape, file, .. } => fs::read(self.root.join(file)).map_err(|e| format!("{file}: {e}")).map(|bytes| {
                        let mut h = blake3::Hasher::new();
                        h.update(format!("{dtype}{shape:?}").as_bytes());
                        h.update(&bytes);
                        h.finalize().to_hex().to_string()
                    }),
                    Record::Metrics { value, .. } => Ok(digest_json(&Json::Object(value.clone()))),
                    Record::Scalar { value, .. } => Ok(digest_json(&Json::from(*value))),
                    Record::Json { value, .. } => Ok(digest_json(value)),
                };
                match got {
                    Ok(d) if d == r.digest() => {}
                    Ok(_) => return Err((node, format!("output `{port}` does not match its recorded digest"))),
                    Err(e) => return Err((node, format!("output `{port}`: {e}"))),
                }
            }
        }
        Ok(())
    }

    /// Writes a run report as `runs/<stamp>-<name>.json` (`-2`, `-3`, ... after the name when
    /// another run finished in the same millisecond) and `runs/latest.json`.
    pub fn write_report(&self, name: &str, report: &Json) -> anyhow::Result<PathBuf> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let runs = self.root.join("runs");
        let text = serde_json::to_string_pretty(report)?;
        let tmp = runs.join(format!(".{}.report", self.run.id));
        write_synced(&tmp, text.as_bytes())?;
        // A hard link appears complete and fails if the name is taken, so concurrent runs never
        // overwrite each other's reports.
        let mut n = 1;
        let path = loop {
            let path = runs.join(if n == 1 { format!("{stamp}-{name}.json") } else { format!("{stamp}-{name}-{n}.json") });
            match fs::hard_link(&tmp, &path) {
                Ok(()) => break path,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(e).with_context(|| format!("writing {}", path.display()));
                }
            }
        };
        fs::rename(&tmp, runs.join("latest.json")).with_context(|| format!("writing {}", runs.join("latest.json").display()))?;
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
    // Unique per process and call: several runs may write `runs/latest.json` at once.
    let tmp = path.with_extension(format!("tmp{}-{}", std::process::id(), TMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
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

    #[test]
    fn a_live_runs_temporaries_survive_another_run_and_go_once_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path()).unwrap();
        let t = a.temp_dir("k1").unwrap();
        fs::write(t.join("half-written"), b"x").unwrap();
        // Another run opening the store leaves a live run's work alone.
        let b = Store::open(dir.path()).unwrap();
        assert!(t.join("half-written").exists());
        drop(b);
        // Once `a` is dead (its lock released but its file left, as when the process is
        // killed), the next run clears its temporaries and its run lock.
        let mut a = a;
        let a_lock = a.run.path.clone();
        drop(a.run.file.take());
        assert!(a_lock.exists());
        let _c = Store::open(dir.path()).unwrap();
        assert!(!t.exists() && !a_lock.exists());
        drop(a);
        // A run that ends normally removes its own lock file.
        let d = Store::open(dir.path()).unwrap();
        let d_lock = d.run.path.clone();
        assert!(d_lock.exists());
        drop(d);
        assert!(!d_lock.exists());
    }

    #[test]
    fn one_run_at_a_time_holds_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Store::open(dir.path()).unwrap(), Store::open(dir.path()).unwrap());
        let held = a.lock_key("k", "node").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _l = b.lock_key("k", "node").unwrap();
            tx.send(()).unwrap();
        });
        // The second run waits while the first holds the key...
        assert!(rx.recv_timeout(std::time::Duration::from_millis(300)).is_err());
        // ... and gets it once the first lets go. Another key is never blocked.
        let _other = a.lock_key("k2", "node").unwrap();
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
    }
}
