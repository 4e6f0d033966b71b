//! Per-item results kept across runs: the host caches whole nodes, a [`Memo`] lets a node reuse
//! the parts of its work that did not change (one row per checkpoint of a list, say) when the
//! node as a whole runs again.
//!
//! A node gets its memo from [`crate::Ctx::memo`]: a directory shared by every node of the same
//! plugin (name, version and library digest) and kind, across runs (`STORE/memo/<hash>/`). A
//! new build of the plugin gets a new, empty memo, so code changes never reuse stale results;
//! everything else an item depends on must be in its key. Build keys with [`key`] from the
//! node's config and the *contents* of the files the item reads ([`content_hash`],
//! [`model_hash`]), never their paths.
//!
//! Entries are `<key>.json` (and companion files `<key><suffix>`), written to a temporary file
//! and renamed into place, so a reader sees a whole entry or none. An entry that cannot be read
//! or parsed is a miss (with a warning), never an error: the memo is only a shortcut, and
//! `STORE/memo/` may be deleted at any time.

use std::{
    fs,
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::{bail, Context as _};
use serde::{de::DeserializeOwned, Serialize};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory of memoised results, one JSON file per key (see the module docs).
#[derive(Clone, Debug)]
pub struct Memo {
    dir: PathBuf,
}

impl Memo {
    /// The memo in `dir`, which is created on the first write.
    pub fn new(dir: impl Into<PathBuf>) -> Memo {
        Memo { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The value stored under `key`; `None` when there is none, or (with a warning) when it
    /// cannot be read or parsed as a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        if let Err(e) = check_key(key) {
            tracing::warn!("memo: {e:#}");
            return None;
        }
        let path = self.file(key, ".json");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("memo: cannot read {} ({e}); computing it again", path.display());
                return None;
            }
        };
        match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("memo: {} is not a valid entry ({e}); computing it again", path.display());
                None
            }
        }
    }

    /// Stores `value` under `key` as `<key>.json`, replacing any entry: written to a temporary
    /// file, synced, then renamed into place.
    pub fn put<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(value).context("memo: serializing an entry")?;
        self.put_file(key, ".json", |tmp| {
            let mut f = fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
            f.write_all(&bytes).with_context(|| format!("writing {}", tmp.display()))?;
            Ok(())
        })
    }

    /// The path of `key`'s companion file `<key><suffix>` (e.g. `.jsonl.zst`), whether it
    /// exists or not. Read it only after [`Memo::get`] found the key's entry, and treat a
    /// failure to read it as a miss.
    pub fn file(&self, key: &str, suffix: &str) -> PathBuf {
        self.dir.join(format!("{key}{suffix}"))
    }

    /// Writes `key`'s companion file `<key><suffix>` atomically: `write` gets a temporary path
    /// in the memo directory ending in `suffix` (so a writer that picks a format by extension
    /// works), and the file is synced and renamed into place once `write` succeeds. Write the
    /// companion files of an entry before the entry itself ([`Memo::put`]): then an entry that
    /// is found has its files.
    pub fn put_file(&self, key: &str, suffix: &str, write: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
        check_key(key)?;
        fs::create_dir_all(&self.dir).with_context(|| format!("creating the memo directory {}", self.dir.display()))?;
        // Hidden, and unique to this process and call: never mistaken for an entry, never
        // shared by two writers of the same key.
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(".tmp-{}-{n}-{key}{suffix}", std::process::id()));
        let result = (|| {
            write(&tmp)?;
            fs::File::open(&tmp).and_then(|f| f.sync_all()).with_context(|| format!("syncing {}", tmp.display()))?;
            let path = self.file(key, suffix);
            fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

/// Keys are file names: letters, digits, `-`, `_`, `.`, not starting with `.`.
fn check_key(key: &str) -> anyhow::Result<()> {
    if key.is_empty() || key.starts_with('.') || !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        bail!("`{key}` is not a memo key (letters, digits, `-`, `_`, `.`; use memo::key)");
    }
    Ok(())
}

/// A memo key: the hex blake3 of `parts`' JSON text. Put in `parts` everything the item's
/// result depends on besides the plugin's code: the node's config, content hashes of its
/// inputs ([`content_hash`], [`model_hash`]), the item's own settings.
pub fn key(parts: &serde_json::Value) -> String {
    blake3::hash(parts.to_string().as_bytes()).to_hex().to_string()
}

/// The hex blake3 of a file's bytes, or of a directory tree: its files' paths relative to it,
/// in sorted order, each with the blake3 of its bytes. Names matter, locations do not: a copy
/// of a directory elsewhere hashes the same.
pub fn content_hash(path: &Path) -> anyhow::Result<String> {
    hash_tree(path, &[])
}

/// The content hash of a model (checkpoint) directory for a memo key: every file of
/// [`content_hash`] but `trainer_state.json`, whose only bearing on a result is the training
/// step — put the step in the key yourself. (Its other fields, such as the run's `max_steps`,
/// would otherwise make a checkpoint of an extended run differ from the same weights saved by
/// the shorter run.) Weights, config.json, tokenizer and chat-template files all count.
pub fn model_hash(dir: &Path) -> anyhow::Result<String> {
    hash_tree(dir, &["trainer_state.json"])
}

fn hash_tree(path: &Path, skip: &[&str]) -> anyhow::Result<String> {
    let file_hash = |p: &Path| -> anyhow::Result<blake3::Hash> {
        let mut h = blake3::Hasher::new();
        h.update_mmap_rayon(p).with_context(|| format!("hashing {}", p.display()))?;
        Ok(h.finalize())
    };
    let meta = fs::metadata(path).with_context(|| format!("{} does not exist", path.display()))?;
    if meta.is_file() {
        return Ok(file_hash(path)?.to_hex().to_string());
    }
    let mut files = Vec::new();
    collect_files(path, path, &mut files)?;
    files.retain(|rel| !skip.contains(&rel.as_str()));
    files.sort();
    let mut h = blake3::Hasher::new();
    for rel in files {
        h.update(rel.as_bytes());
        h.update(&[0]);
        h.update(file_hash(&path.join(&rel))?.as_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            collect_files(root, &p, out)?;
        } else {
            out.push(p.strip_prefix(root)?.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value as Json};

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn round_trip_and_misses() {
        let t = tempfile::tempdir().unwrap();
        let memo = Memo::new(t.path().join("memo/abc"));
        // Nothing there yet, not even the directory: a miss, and nothing is created by reading.
        assert_eq!(memo.get::<Json>("k1"), None);
        assert!(!memo.dir().exists());
        let row = json!({"step": 3, "mean_logprob": -1.2345678901234567, "rows": [1, 2]});
        memo.put("k1", &row).unwrap();
        assert_eq!(memo.get::<Json>("k1"), Some(row.clone()));
        // Another type than the one stored: a miss, not an error.
        assert_eq!(memo.get::<Vec<u32>>("k1"), None);
        // Replacing an entry.
        memo.put("k1", &json!(7)).unwrap();
        assert_eq!(memo.get::<u32>("k1"), Some(7));
        // Keys that are not file names are refused on write and missed on read.
        assert!(memo.put("../escape", &1).is_err());
        assert!(memo.put(".hidden", &1).is_err());
        assert_eq!(memo.get::<u32>("a/b"), None);
    }

    #[test]
    fn a_corrupt_or_unreadable_entry_is_a_miss() {
        let t = tempfile::tempdir().unwrap();
        let memo = Memo::new(t.path());
        memo.put("k", &json!({"a": 1})).unwrap();
        fs::write(memo.file("k", ".json"), b"{\"a\": 1, trunc").unwrap();
        assert_eq!(memo.get::<Json>("k"), None);
        fs::write(memo.file("k", ".json"), [0xff, 0xfe, 0x00]).unwrap();
        assert_eq!(memo.get::<Json>("k"), None);
        // A directory where the entry should be: unreadable, still a miss.
        fs::remove_file(memo.file("k", ".json")).unwrap();
        fs::create_dir(memo.file("k", ".json")).unwrap();
        assert_eq!(memo.get::<Json>("k"), None);
    }

    #[test]
    fn writes_are_atomic_and_leave_no_temporaries() {
        let t = tempfile::tempdir().unwrap();
        let memo = Memo::new(t.path().join("m"));
        memo.put("k", &json!("old")).unwrap();
        memo.put_file("k", ".txt", |p| {
            assert!(p.to_string_lossy().ends_with(".txt"), "the temporary keeps the suffix: {}", p.display());
            assert!(p.file_name().unwrap().to_string_lossy().starts_with('.'));
            fs::write(p, "companion")?;
            Ok(())
        })
        .unwrap();
        assert_eq!(fs::read_to_string(memo.file("k", ".txt")).unwrap(), "companion");
        assert_eq!(entries(memo.dir()), vec!["k.json", "k.txt"]);
        // A writer that fails half-way leaves the old entry whole and no temporary behind.
        let err = memo.put_file("k", ".json", |p| {
            fs::write(p, "\"half")?;
            bail!("disk full")
        });
        assert!(err.is_err());
        assert_eq!(memo.get::<String>("k").as_deref(), Some("old"));
        assert_eq!(entries(memo.dir()), vec!["k.json", "k.txt"]);
        // Writers of one key in parallel: each renames a whole file of its own into place.
        std::thread::scope(|s| {
            for i in 0..8 {
                let memo = &memo;
                s.spawn(move || memo.put("p", &vec![i; 10_000]).unwrap());
            }
        });
        let v: Vec<u32> = memo.get("p").unwrap();
        assert!(v.len() == 10_000 && v.iter().all(|&x| x == v[0]));
        assert_eq!(entries(memo.dir()), vec!["k.json", "k.txt", "p.json"]);
    }

    #[test]
    fn model_hashes_follow_contents_not_paths_nor_trainer_state() {
        let t = tempfile::tempdir().unwrap();
        let write = |dir: &str, files: &[(&str, &str)]| {
            let d = t.path().join(dir);
            for (name, text) in files {
                fs::create_dir_all(d.join(name).parent().unwrap()).unwrap();
                fs::write(d.join(name), text).unwrap();
            }
            d
        };
        let files = [("config.json", "{}"), ("model.safetensors", "weights"), ("tokenizer.json", "tok")];
        let a = write("a/step-0000001", &files);
        let b = write("b/elsewhere", &files);
        fs::write(a.join("trainer_state.json"), r#"{"global_step": 1, "max_steps": 3}"#).unwrap();
        fs::write(b.join("trainer_state.json"), r#"{"global_step": 1, "max_steps": 5}"#).unwrap();
        assert_eq!(model_hash(&a).unwrap(), model_hash(&b).unwrap());
        // ... but content_hash sees every file.
        assert_ne!(content_hash(&a).unwrap(), content_hash(&b).unwrap());
        let c = write("c", &[("config.json", "{}"), ("model.safetensors", "weightz"), ("tokenizer.json", "tok")]);
        assert_ne!(model_hash(&a).unwrap(), model_hash(&c).unwrap());
        // A renamed file changes the hash, as does one more file (a chat template, say).
        let d = write("d", &[("config.json", "{}"), ("model-00001.safetensors", "weights"), ("tokenizer.json", "tok")]);
        assert_ne!(model_hash(&b).unwrap(), model_hash(&d).unwrap());
        write("b/elsewhere", &[("chat_template.jinja", "x")]);
        assert_ne!(model_hash(&a).unwrap(), model_hash(&b).unwrap());
        // A file: the hash of its bytes.
        assert_eq!(content_hash(&a.join("tokenizer.json")).unwrap(), blake3::hash(b"tok").to_hex().to_string());
        assert!(model_hash(&t.path().join("missing")).is_err());
        assert_eq!(key(&json!({"a": 1})), key(&json!({"a": 1})));
        assert_ne!(key(&json!({"a": 1})), key(&json!({"a": 2})));
    }
}
