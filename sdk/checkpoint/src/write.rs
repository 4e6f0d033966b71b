//! Writing checkpoints: every shard's header is written first, from the full list of
//! tensors, so tensor data can then be written in any order, from many threads, with
//! positional writes. Everything goes to a temporary sibling directory that is renamed into
//! place by [`CheckpointWriter::finish`]; dropping an unfinished writer removes it.

use std::{
    collections::BTreeMap,
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use crate::{convert, torch_dtype_name, CheckpointError, DType, Result};

/// A tensor to be written.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
}

impl TensorSpec {
    pub fn nbytes(&self) -> u64 {
        self.shape.iter().product::<u64>() * self.dtype.size() as u64
    }
}

#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// Shards are cut when they would exceed this many bytes (Hugging Face's default is 5 GB).
    pub max_shard_bytes: u64,
    /// Stored in every shard's `__metadata__` (and in the index's `metadata`).
    pub metadata: BTreeMap<String, String>,
    /// Replace an existing output directory instead of failing.
    pub overwrite: bool,
}

impl Default for WriteOptions {
    fn default() -> WriteOptions {
        WriteOptions { max_shard_bytes: 5_000_000_000, metadata: BTreeMap::new(), overwrite: false }
    }
}

struct Slot {
    index: usize,
    shard: usize,
    offset: u64, // absolute file offset of the tensor's data
    spec: TensorSpec,
}

/// A checkpoint being written.
pub struct CheckpointWriter {
    out_dir: PathBuf,
    tmp_dir: PathBuf,
    shard_names: Vec<String>,
    files: Vec<File>,
    slots: BTreeMap<String, Slot>,
    written: Mutex<Vec<bool>>,
    config: Option<Json>,
    dtype_for_config: Option<DType>,
    opts: WriteOptions,
    total_size: u64,
    finished: bool,
}

/// The tokenizer and generation files a Hugging Face model directory may hold besides
/// config.json and the weights.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "generation_config.json",
];

impl CheckpointWriter {
    /// Plans the shards for `tensors` (laid out in name order) and writes their headers.
    pub fn plan(out_dir: &Path, mut tensors: Vec<TensorSpec>, opts: WriteOptions) -> Result<CheckpointWriter> {
        if out_dir.exists() && !opts.overwrite {
            return Err(CheckpointError::Invalid {
                path: out_dir.to_path_buf(),
                message: "already exists; choose another output directory or remove it".into(),
            });
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = tensors.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(CheckpointError::Tensor { path: out_dir.to_path_buf(), tensor: w[0].name.clone(), message: "planned twice".into() });
        }
        let parent = out_dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| CheckpointError::io(parent, e))?;
        let name = out_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "checkpoint".into());
        let tmp_dir = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if tmp_dir.exists() {
            std::fs::remove_dir_all(&tmp_dir).map_err(|e| CheckpointError::io(&tmp_dir, e))?;
        }
        std::fs::create_dir_all(&tmp_dir).map_err(|e| CheckpointError::io(&tmp_dir, e))?;

        // Group into shards.
        let mut groups: Vec<Vec<TensorSpec>> = vec![Vec::new()];
        let mut size = 0u64;
        for t in tensors {
            if size > 0 && size + t.nbytes() > opts.max_shard_bytes {
                groups.push(Vec::new());
                size = 0;
            }
            size += t.nbytes();
            groups.last_mut().unwrap().push(t);
        }
        let n = groups.len();
        let shard_names: Vec<String> =
            if n == 1 { vec!["model.safetensors".into()] } else { (1..=n).map(|i| format!("model-{i:05}-of-{n:05}.safetensors")).collect() };
        let mut w = CheckpointWriter {
            out_dir: out_dir.to_path_buf(),
            tmp_dir,
            shard_names,
            files: Vec::new(),
            slots: BTreeMap::new(),
            written: Mutex::new(Vec::new()),
            config: None,
            dtype_for_config: None,
            opts,
            total_size: 0,
            finished: false,
        };
        for (shard, group) in groups.into_iter().enumerate() {
            let mut header = serde_json::Map::new();
            if !w.opts.metadata.is_empty() {
                header.insert("__metadata__".into(), json!(w.opts.metadata));
            }
            let mut offset = 0u64;
            let mut placed = Vec::new();
            for t in group {
                let nb = t.nbytes();
                header.insert(t.name.clone(), json!({"dtype": t.dtype.name(), "shape": t.shape, "data_offsets": [offset, offset + nb]}));
                placed.push((offset, t));
                offset += nb;
            }
            let mut text = serde_json::to_vec(&Json::Object(header)).expect("header serializes");
            while !(8 + text.len()).is_multiple_of(8) {
                text.push(b' ');
            }
            let path = w.tmp_dir.join(&w.shard_names[shard]);
            let file = File::create(&path).map_err(|e| CheckpointError::io(&path, e))?;
            let data_start = 8 + text.len() as u64;
            reserve(&file, data_start + offset).map_err(|e| CheckpointError::io(&path, e))?;
            file.write_all_at(&(text.len() as u64).to_le_bytes(), 0).map_err(|e| CheckpointError::io(&path, e))?;
            file.write_all_at(&text, 8).map_err(|e| CheckpointError::io(&path, e))?;
            for (off, t) in placed {
                w.slots.insert(t.name.clone(), Slot { index: 0, shard, offset: data_start + off, spec: t });
            }
            w.total_size += offset;
            w.files.push(file);
        }
        for (i, slot) in w.slots.values_mut().enumerate() {
            slot.index = i;
        }
        *w.written.get_mut().unwrap() = vec![false; w.slots.len()];
        Ok(w)
    }

    /// The planned tensors.
    pub fn specs(&self) -> impl Iterator<Item = &TensorSpec> {
        self.slots.values().map(|s| &s.spec)
    }

    fn slot(&self, name: &str) -> Result<(usize, &Slot)> {
        match self.slots.get(name) {
            Some(s) => Ok((s.index, s)),
            None => {
                Err(CheckpointError::Tensor { path: self.out_dir.clone(), tensor: name.to_string(), message: "was not planned for this checkpoint".into() })
            }
        }
    }

    /// Writes a tensor's bytes (already in its planned dtype). Thread-safe.
    pub fn write_tensor(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let (i, slot) = self.slot(name)?;
        if bytes.len() as u64 != slot.spec.nbytes() {
            return Err(CheckpointError::Tensor {
                path: self.out_dir.clone(),
                tensor: name.to_string(),
                message: format!("got {} bytes, planned {} ({} {:?})", bytes.len(), slot.spec.nbytes(), slot.spec.dtype, slot.spec.shape),
            });
        }
        let path = self.tmp_dir.join(&self.shard_names[slot.shard]);
        self.files[slot.shard].write_all_at(bytes, slot.offset).map_err(|e| CheckpointError::io(&path, e))?;
        self.written.lock().unwrap()[i] = true;
        Ok(())
    }

    /// Writes a part of a tensor: `bytes` at element offset `first` (for chunked writing).
    /// The tensor counts as written once [`CheckpointWriter::mark_written`] is called.
    pub fn write_tensor_part(&self, name: &str, first: usize, bytes: &[u8]) -> Result<()> {
        let (_, slot) = self.slot(name)?;
        let start = first as u64 * slot.spec.dtype.size() as u64;
        if start + bytes.len() as u64 > slot.spec.nbytes() {
            return Err(CheckpointError::Tensor {
                path: self.out_dir.clone(),
                tensor: name.to_string(),
                message: "part runs past the end of the tensor".into(),
            });
        }
        let path = self.tmp_dir.join(&self.shard_names[slot.shard]);
        self.files[slot.shard].write_all_at(bytes, slot.offset + start).map_err(|e| CheckpointError::io(&path, e))
    }

    /// Marks a tensor written in parts as complete.
    pub fn mark_written(&self, name: &str) -> Result<()> {
        let (i, _) = self.slot(name)?;
        self.written.lock().unwrap()[i] = true;
        Ok(())
    }

    /// Casts f32 values to the tensor's planned dtype and writes them.
    pub fn write_f32(&self, name: &str, values: &[f32]) -> Result<()> {
        let (_, slot) = self.slot(name)?;
        self.write_tensor(name, &convert::f32_to_bytes(values, slot.spec.dtype))
    }

    /// Casts f64 values to the tensor's planned dtype and writes them.
    pub fn write_f64(&self, name: &str, values: &[f64]) -> Result<()> {
        let (_, slot) = self.slot(name)?;
        self.write_tensor(name, &convert::f64_to_bytes(values, slot.spec.dtype))
    }

    /// Sets config.json; `torch_dtype` is set to `dtype` when given.
    pub fn set_config(&mut self, config: Json, dtype: Option<DType>) {
        self.config = Some(config);
        self.dtype_for_config = dtype;
    }

    /// Copies the tokenizer and generation files ([`TOKENIZER_FILES`]) of another checkpoint
    /// directory.
    pub fn copy_tokenizer_from(&self, dir: &Path) -> Result<Vec<String>> {
        let mut copied = Vec::new();
        for f in TOKENIZER_FILES {
            let src = dir.join(f);
            if src.exists() {
                std::fs::copy(&src, self.tmp_dir.join(f)).map_err(|e| CheckpointError::io(&src, e))?;
                copied.push(f.to_string());
            }
        }
        Ok(copied)
    }

    /// Writes any other file into the checkpoint directory (a recipe, a README).
    pub fn write_extra_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.tmp_dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| CheckpointError::io(&path, e))
    }

    /// Checks every tensor was written, syncs, writes config and index, and renames the
    /// directory into place.
    pub fn finish(mut self) -> Result<PathBuf> {
        let missing: Vec<&String> = {
            let written = self.written.lock().unwrap();
            self.slots.keys().zip(written.iter()).filter(|(_, w)| !**w).map(|(k, _)| k).collect()
        };
        if let Some(first) = missing.first() {
            return Err(CheckpointError::Tensor {
                path: self.out_dir.clone(),
                tensor: first.to_string(),
                message: format!("was never written ({} tensors missing); the checkpoint was not created", missing.len()),
            });
        }
        for (f, name) in self.files.iter().zip(&self.shard_names) {
            f.sync_all().map_err(|e| CheckpointError::io(self.tmp_dir.join(name), e))?;
        }
        if let Some(mut cfg) = self.config.take() {
            if let (Some(d), Some(obj)) = (self.dtype_for_config, cfg.as_object_mut()) {
                obj.insert("torch_dtype".into(), json!(torch_dtype_name(d)));
            }
            self.write_extra_file("config.json", serde_json::to_string_pretty(&cfg).unwrap().as_bytes())?;
        }
        if self.shard_names.len() > 1 {
            let weight_map: BTreeMap<&str, &str> = self.slots.iter().map(|(k, s)| (k.as_str(), self.shard_names[s.shard].as_str())).collect();
            let mut meta = serde_json::Map::new();
            meta.insert("total_size".into(), json!(self.total_size));
            for (k, v) in &self.opts.metadata {
                meta.insert(k.clone(), json!(v));
            }
            let index = json!({"metadata": meta, "weight_map": weight_map});
            self.write_extra_file("model.safetensors.index.json", serde_json::to_string_pretty(&index).unwrap().as_bytes())?;
        }
        if self.out_dir.exists() {
            if !self.opts.overwrite {
                return Err(CheckpointError::Invalid { path: self.out_dir.clone(), message: "appeared while writing; not replaced".into() });
            }
            std::fs::remove_dir_all(&self.out_dir).map_err(|e| CheckpointError::io(&self.out_dir, e))?;
        }
        std::fs::rename(&self.tmp_dir, &self.out_dir).map_err(|e| CheckpointError::io(&self.out_dir, e))?;
        self.finished = true;
        Ok(self.out_dir.clone())
    }
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.tmp_dir);
        }
    }
}

/// Sizes a new shard to `len` bytes. On Linux the blocks are allocated up front
/// (`fallocate`): a full disk is an error before any tensor is merged, and the writes that
/// follow run about twice as fast as into a sparse file (ext4, measured). Elsewhere, or where
/// the file system cannot allocate ahead, the file is only extended.
fn reserve(file: &File, len: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain system call on an open descriptor we own.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOSPC) {
            return Err(std::io::Error::new(err.kind(), format!("not enough disk space for {len} bytes ({err}); free some or write the output elsewhere")));
        }
    }
    file.set_len(len)
}
