//! Hugging Face checkpoint directories ⇄ the flat parameter buffer: reading any of f32, bf16 and
//! f16 (sharded or not) through `agentmerge-checkpoint`, writing the dtype asked for with
//! config.json, the tokenizer files and generation_config.json carried along; and a fresh,
//! seeded initialisation as transformers initialises a Llama (normal(0, initializer_range)
//! matrices, RMSNorm weights 1).

use std::path::{Path, PathBuf};

use agentmerge_checkpoint::{torch_dtype_name, Checkpoint, CheckpointWriter, DType, TensorSpec, WriteOptions};
use anyhow::{bail, Context as _};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value as Json};

use crate::{config::LlamaConfig, layout::Layout, seed};

/// Reads a checkpoint directory's config and weights into a flat f32 buffer laid out by
/// [`Layout`], after [`check`]ing its config and tensors.
pub fn load(dir: &Path) -> anyhow::Result<(LlamaConfig, Json, Vec<f32>)> {
    let (config, ck) = check(dir)?;
    let raw: Json = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
    let layout = Layout::new(&config);
    let mut flat = vec![0f32; layout.total];
    for t in &layout.tensors {
        let view = ck.view(&t.name)?;
        let dst = &mut flat[t.off..t.off + t.len];
        view.read_f32_into(0..t.len, dst)?;
        if let Some(bad) = dst.iter().position(|x| !x.is_finite()) {
            bail!("{}: tensor `{}` element {bad} is {}; the checkpoint is corrupt", view.file.display(), t.name, dst[bad]);
        }
    }
    Ok((config, raw, flat))
}

/// Checks that `dir` holds a Llama this model reads, from config.json and the safetensors
/// headers alone (no tensor data is read): the config parses ([`LlamaConfig::from_dir`]), every
/// tensor the layout needs is present with its shape and a float dtype, and no other tensor
/// is (tensors the model does not use would silently be dropped), except the rotary caches
/// older checkpoints carry and a tied model's `lm_head.weight`. Returns the config and the
/// opened checkpoint.
pub fn check(dir: &Path) -> anyhow::Result<(LlamaConfig, Checkpoint)> {
    let config = LlamaConfig::from_dir(dir)?;
    let layout = Layout::new(&config);
    let ck = Checkpoint::open(dir)?;
    for t in &layout.tensors {
        let view = ck.view(&t.name).with_context(|| format!("{}: tensor `{}` is missing; the config describes a model with it", dir.display(), t.name))?;
        let shape: Vec<usize> = view.shape.iter().map(|&x| x as usize).collect();
        if shape != t.shape {
            bail!("{}: tensor `{}` has shape {:?}, config.json implies {:?}", view.file.display(), t.name, shape, t.shape);
        }
        if !matches!(view.dtype, DType::F32 | DType::BF16 | DType::F16 | DType::F64) {
            bail!("{}: tensor `{}` is {:?}; weights must be float32, bfloat16, float16 or float64", view.file.display(), t.name, view.dtype);
        }
    }
    let unused: Vec<&str> = ck
        .names()
        .filter(|n| layout.find(n).is_none() && !n.ends_with("rotary_emb.inv_freq") && !(config.tie_word_embeddings && *n == "lm_head.weight"))
        .collect();
    if let Some(first) = unused.first() {
        bail!("{}: tensor `{first}` (and {} more) is not part of a Llama model; is config.json right?", dir.display(), unused.len() - 1);
    }
    Ok((config, ck))
}

/// A fresh model's parameters: every matrix from normal(0, `initializer_range`), every RMSNorm
/// weight 1. Each tensor has its own stream ([`seed::derive`] of its name), so the weights of
/// one tensor do not depend on the others' sizes.
pub fn init(config: &LlamaConfig, seed_value: u64) -> Vec<f32> {
    let layout = Layout::new(config);
    let mut flat = vec![0f32; layout.total];
    let std = config.initializer_range as f32;
    for t in &layout.tensors {
        let dst = &mut flat[t.off..t.off + t.len];
        if t.shape.len() == 1 {
            dst.fill(1.0);
            continue;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed::derive(seed_value, &t.name));
        for pair in dst.chunks_mut(2) {
            // Box–Muller: two standard normals from two uniforms.
            let u1: f32 = 1.0 - rng.random::<f32>();
            let u2: f32 = rng.random::<f32>();
            let r = (-2.0 * u1.ln()).sqrt();
            let th = std::f32::consts::TAU * u2;
            pair[0] = std * r * th.cos();
            if let Some(x) = pair.get_mut(1) {
                *x = std * r * th.sin();
            }
        }
    }
    flat
}

/// What to write besides the weights.
#[derive(Clone, Debug, Default)]
pub struct SaveOptions {
    /// config.json of the model this one came from (its other keys are kept).
    pub base_config: Option<Json>,
    /// Directories to copy tokenizer files and generation_config.json from, first found wins.
    pub tokenizer_from: Vec<PathBuf>,
    /// Other files to write into the directory (name, bytes).
    pub extra_files: Vec<(String, Vec<u8>)>,
}

/// Writes a Hugging Face checkpoint directory (`model.safetensors`, config.json, tokenizer
/// files, generation_config.json) atomically at `out`, the weights cast to `dtype`.
pub fn save(config: &LlamaConfig, params: &[f32], dtype: DType, out: &Path, opts: &SaveOptions) -> anyhow::Result<PathBuf> {
    let layout = Layout::new(config);
    anyhow::ensure!(params.len() == layout.total, "parameter buffer has {} values, the layout {}", params.len(), layout.total);
    let specs = layout.tensors.iter().map(|t| TensorSpec { name: t.name.clone(), dtype, shape: t.shape.iter().map(|&x| x as u64).collect() }).collect();
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let mut w = CheckpointWriter::plan(out, specs, WriteOptions { metadata: meta, ..WriteOptions::default() })?;
    for t in &layout.tensors {
        w.write_f32(&t.name, &params[t.off..t.off + t.len])?;
    }
    w.set_config(config.to_json(opts.base_config.as_ref(), torch_dtype_name(dtype)), Some(dtype));
    let mut have_generation_config = false;
    for dir in &opts.tokenizer_from {
        let copied = w.copy_tokenizer_from(dir)?;
        if !copied.is_empty() {
            have_generation_config = copied.iter().any(|f| f == "generation_config.json");
            break;
        }
    }
    if !have_generation_config {
        let mut g = serde_json::Map::new();
        if let Some(b) = config.bos_token_id {
            g.insert("bos_token_id".into(), json!(b));
        }
        if let Some(e) = config.eos_json() {
            g.insert("eos_token_id".into(), e);
        }
        w.write_extra_file("generation_config.json", serde_json::to_string_pretty(&Json::Object(g))?.as_bytes())?;
    }
    for (name, bytes) in &opts.extra_files {
        w.write_extra_file(name, bytes)?;
    }
    Ok(w.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_bf16_rounds() {
        let mut c = LlamaConfig::new(50, 16, 24, 2, 2);
        c.tie_word_embeddings = true;
        let p = init(&c, 3);
        assert!(p.iter().any(|&x| x != 0.0 && x != 1.0));
        let dir = tempfile::tempdir().unwrap();
        let out = save(&c, &p, DType::F32, &dir.path().join("m"), &SaveOptions::default()).unwrap();
        let (c2, _, p2) = load(&out).unwrap();
        assert_eq!(c2.vocab_size, 50);
        assert_eq!(p, p2);
        let out = save(&c, &p, DType::BF16, &dir.path().join("b"), &SaveOptions::default()).unwrap();
        let (_, raw, p3) = load(&out).unwrap();
        assert_eq!(raw["torch_dtype"], "bfloat16");
        let worst = p.iter().zip(&p3).map(|(a, b)| (a - b).abs() / a.abs().max(1e-3)).fold(0f32, f32::max);
        assert!(worst < 1e-2 && worst > 0.0, "{worst}");
        // Same seed, same weights; another seed, others.
        assert_eq!(init(&c, 3), p);
        assert_ne!(init(&c, 4), p);
    }
}
