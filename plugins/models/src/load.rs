//! `models/load`: a Hugging Face checkpoint of your own (an instruct model, a base model, an
//! agent trained elsewhere) as a pipeline input. The directory is validated as a Llama the
//! SDK's model reads and its model files are copied into the store, so the pipeline's results
//! never depend on files outside it. The directory is named by the config, not by an input, so
//! the resolved config carries a fingerprint of the files it copies (each one's name, size and
//! modification time, and the directory's absolute path): editing, adding or removing one of
//! them re-runs the node, as with `traces/read`.

use std::{
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use agentmerge_checkpoint::Checkpoint;
use agentmerge_sdk::prelude::*;

/// The files besides config.json, the weights and the tokenizer and generation files
/// (`agentmerge_checkpoint::TOKENIZER_FILES`) that the output keeps when present: chat-template
/// files, and a trainer's `trainer_state.json` (its `global_step` orders evaluation rows).
/// Anything else (README, PyTorch `.bin` or `.pth` weights, subdirectories) is left out.
pub const COMPANION_FILES: &[&str] = &["chat_template.jinja", "chat_template.json", "trainer_state.json"];

/// Loads a Hugging Face model directory into the store.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// The model directory: config.json (a Llama-compatible decoder), model.safetensors or
    /// model.safetensors.index.json with its shards, and tokenizer files if any. A relative
    /// path is relative to the current directory (where `agentmerge` runs), not to the pipeline
    /// file.
    pub path: String,
    /// Filled in when the pipeline is checked: a fingerprint (the directory's absolute path and
    /// each copied file's name, size and modification time), so the cache notices when the
    /// files change. Leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// What a model directory is made of: its validated checkpoint and the files to copy.
struct ModelDir {
    params: u64,
    files: Vec<PathBuf>,
}

impl Load {
    /// Validates the directory (config.json, the safetensors headers, tensor names and shapes;
    /// no tensor data is read) and lists the files the output keeps, in name order.
    fn inspect(&self) -> Result<ModelDir, ConfigError> {
        if self.path.is_empty() {
            return Err(ConfigError::new("path", "is empty; name a Hugging Face model directory (config.json + *.safetensors)"));
        }
        let dir = Path::new(&self.path);
        if dir.is_file() {
            return Err(ConfigError::new("path", format!("{} is a file; name the model directory that holds it", self.path)));
        }
        if !dir.is_dir() {
            let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
            return Err(ConfigError::new("path", format!("{} does not exist (a relative path is relative to the current directory, {cwd})", self.path)));
        }
        let (_, ck) = agentmerge_model::checkpoint::check(dir).map_err(|e| ConfigError::new("path", format!("{e:#}")))?;
        Ok(ModelDir { params: ck.num_params(), files: model_files(dir, &ck) })
    }
}

/// config.json, the weights the checkpoint reads (model.safetensors, or the index and the
/// shards it names) and the [`COMPANION_FILES`] present, in name order.
fn model_files(dir: &Path, ck: &Checkpoint) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ck.names().filter_map(|n| ck.shard_path(n)).map(Path::to_path_buf).collect();
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        files.push(index);
    }
    files.push(dir.join("config.json"));
    files.extend(agentmerge_checkpoint::TOKENIZER_FILES.iter().chain(COMPANION_FILES).map(|f| dir.join(f)).filter(|p| p.is_file()));
    files.sort();
    files.dedup();
    files
}

/// The directory's absolute path and each file's name, size and modification time, hashed.
fn fingerprint(dir: &Path, files: &[PathBuf]) -> Result<String, ConfigError> {
    let mut h = blake3::Hasher::new();
    h.update(dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()).to_string_lossy().as_bytes());
    for f in files {
        let meta = std::fs::metadata(f).map_err(|e| ConfigError::new("path", format!("cannot read {}: {e}", f.display())))?;
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        h.update(format!("\0{name}\0{}\0{mtime}", meta.len()).as_bytes());
    }
    Ok(h.finalize().to_hex()[..32].to_string())
}

impl NodeKind for Load {
    const NAME: &'static str = "load";
    const DOC: &'static str = "Loads a Hugging Face model directory of your own (config.json of a Llama-compatible decoder, model.safetensors or sharded with an index, tokenizer files) into the store, after checking it as the trainers and evaluators read it; editing its files re-runs the node.";

    fn ports() -> Ports {
        Ports::new().output("model", PortType::Model, "a copy of the model's config, weights, tokenizer, generation and chat-template files")
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.inspect().map(|_| ())
    }

    fn resolve(&mut self) -> Result<(), ConfigError> {
        let m = self.inspect()?;
        self.fingerprint = Some(fingerprint(Path::new(&self.path), &m.files)?);
        Ok(())
    }

    fn run(&self, ctx: &Ctx, _inputs: Inputs) -> anyhow::Result<Outputs> {
        let dir = Path::new(&self.path);
        let m = self.inspect().map_err(|e| anyhow!("{e}"))?;
        if let Some(f) = &self.fingerprint {
            let now = fingerprint(dir, &m.files).map_err(|e| anyhow!("{e}"))?;
            anyhow::ensure!(*f == now, "the model files in {} changed after the pipeline was checked; run again", self.path);
        }
        // Copied into a temporary directory renamed into place, so `model/` is whole or absent.
        let tmp = ctx.out_dir().join(".model.partial");
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let total = m.files.len() as u64;
        for (i, f) in m.files.iter().enumerate() {
            ctx.check()?;
            let to = tmp.join(f.file_name().expect("a file in the directory"));
            std::fs::copy(f, &to).with_context(|| format!("copying {} to {}", f.display(), to.display()))?;
            ctx.progress(i as u64 + 1, total, "files");
        }
        let out = ctx.out_dir().join("model");
        std::fs::rename(&tmp, &out).with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
        tracing::info!("loaded {}: {} parameters, {} files", self.path, m.params, m.files.len());
        Ok(Outputs::new().with("model", Value::Model(out)))
    }
}
