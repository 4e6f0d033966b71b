//! Seeded random checkpoints: a fresh Llama-shaped model, or a perturbed copy of one.

use agentmerge_checkpoint::{parse_dtype, Checkpoint, CheckpointWriter, DType, TensorSpec, WriteOptions};
use agentmerge_sdk::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

/// Writes a random Llama-architecture checkpoint.
#[derive(Serialize, Deserialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct RandomLlama {
    /// Model width.
    #[serde(default = "d_hidden")]
    pub hidden_size: u64,
    /// MLP width.
    #[serde(default = "d_inter")]
    pub intermediate_size: u64,
    /// Transformer blocks.
    #[serde(default = "d_layers")]
    pub num_hidden_layers: u64,
    #[serde(default = "d_heads")]
    pub num_attention_heads: u64,
    /// Grouped-query attention: key/value heads (divides num_attention_heads).
    #[serde(default = "d_kv")]
    pub num_key_value_heads: u64,
    #[serde(default = "d_vocab")]
    pub vocab_size: u64,
    /// Share the embedding and output matrices.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Standard deviation of the weight initialisation (norm weights are 1).
    #[serde(default = "d_std")]
    pub init_std: f64,
    /// Storage dtype: float32, bfloat16 or float16.
    #[serde(default = "d_dtype")]
    pub dtype: String,
    /// Seed; default: the node's seed from the run.
    #[serde(default)]
    pub seed: Option<u64>,
}

fn d_hidden() -> u64 {
    64
}
fn d_inter() -> u64 {
    172
}
fn d_layers() -> u64 {
    2
}
fn d_heads() -> u64 {
    4
}
fn d_kv() -> u64 {
    2
}
fn d_vocab() -> u64 {
    256
}
fn d_std() -> f64 {
    0.02
}
fn d_dtype() -> String {
    "float32".into()
}

fn float_dtype(field: &str, s: &str) -> Result<DType, ConfigError> {
    match parse_dtype(s) {
        Some(d @ (DType::F32 | DType::BF16 | DType::F16)) => Ok(d),
        _ => Err(ConfigError::new(field, format!("`{s}` is not one of float32, bfloat16, float16"))),
    }
}

impl RandomLlama {
    /// The tensors of this architecture, with Hugging Face's names.
    pub fn specs(&self, dtype: DType) -> Vec<TensorSpec> {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let head_dim = h / self.num_attention_heads;
        let kv = self.num_key_value_heads * head_dim;
        let t = |name: String, shape: Vec<u64>| TensorSpec { name, dtype, shape };
        let mut specs = vec![t("model.embed_tokens.weight".into(), vec![v, h]), t("model.norm.weight".into(), vec![h])];
        if !self.tie_word_embeddings {
            specs.push(t("lm_head.weight".into(), vec![v, h]));
        }
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            specs.extend([
                t(format!("{p}.input_layernorm.weight"), vec![h]),
                t(format!("{p}.post_attention_layernorm.weight"), vec![h]),
                t(format!("{p}.self_attn.q_proj.weight"), vec![h, h]),
                t(format!("{p}.self_attn.k_proj.weight"), vec![kv, h]),
                t(format!("{p}.self_attn.v_proj.weight"), vec![kv, h]),
                t(format!("{p}.self_attn.o_proj.weight"), vec![h, h]),
                t(format!("{p}.mlp.gate_proj.weight"), vec![i, h]),
                t(format!("{p}.mlp.up_proj.weight"), vec![i, h]),
                t(format!("{p}.mlp.down_proj.weight"), vec![h, i]),
            ]);
        }
        specs
    }

    /// config.json as `transformers` writes it for LlamaForCausalLM.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.hidden_size / self.num_attention_heads,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "hidden_act": "silu",
            "attention_bias": false,
            "mlp_bias": false,
            "tie_word_embeddings": self.tie_word_embeddings,
            "initializer_range": self.init_std,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "transformers_version": "4.44.0",
        })
    }
}

/// A per-tensor seed, so tensors can be generated in parallel and reproducibly.
fn tensor_seed(seed: u64, name: &str) -> u64 {
    name.bytes().fold(seed ^ 0x9E37_79B9_7F4A_7C15, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01B3))
}

impl NodeKind for RandomLlama {
    const NAME: &'static str = "random_llama";
    const DOC: &'static str = "Writes a Llama-architecture Hugging Face checkpoint with seeded random weights (no download needed).";

    fn resources() -> agentmerge_sdk::Resources {
        agentmerge_sdk::Resources::all_threads()
    }

    fn ports() -> Ports {
        Ports::new().output("model", PortType::Model, "the checkpoint directory")
    }

    fn check(&self) -> Result<(), ConfigError> {
        for (field, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("vocab_size", self.vocab_size),
        ] {
            if v == 0 {
                return Err(ConfigError::new(field, "must be at least 1"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(ConfigError::new("num_attention_heads", format!("must divide hidden_size ({})", self.hidden_size)));
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return Err(ConfigError::new("num_key_value_heads", format!("must divide num_attention_heads ({})", self.num_attention_heads)));
        }
        if !(self.init_std > 0.0 && self.init_std.is_finite()) {
            return Err(ConfigError::new("init_std", "must be a positive number"));
        }
        float_dtype("dtype", &self.dtype)?;
        Ok(())
    }

    fn run(&self, ctx: &Ctx, _inputs: Inputs) -> anyhow::Result<Outputs> {
        let dtype = float_dtype("dtype", &self.dtype).map_err(|e| anyhow!("{e}"))?;
        let seed = self.seed.unwrap_or(ctx.seed());
        let out = ctx.out_dir().join("model");
        let specs = self.specs(dtype);
        let mut w = CheckpointWriter::plan(&out, specs.clone(), WriteOptions::default())?;
        let normal = Normal::new(0.0f32, self.init_std as f32)?;
        let total = specs.len() as u64;
        let done = std::sync::atomic::AtomicU64::new(0);
        specs.par_iter().try_for_each(|s| -> anyhow::Result<()> {
            ctx.check()?;
            let n = s.shape.iter().product::<u64>() as usize;
            let values: Vec<f32> = if s.name.ends_with("norm.weight") {
                vec![1.0; n]
            } else {
                let mut rng = ChaCha8Rng::seed_from_u64(tensor_seed(seed, &s.name));
                (0..n).map(|_| normal.sample(&mut rng)).collect()
            };
            w.write_f32(&s.name, &values)?;
            ctx.progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total, "tensors");
            Ok(())
        })?;
        w.set_config(self.config_json(), Some(dtype));
        w.write_extra_file("generation_config.json", br#"{"bos_token_id": 1, "eos_token_id": 2}"#)?;
        let path = w.finish()?;
        tracing::info!(
            "wrote {} tensors ({} parameters) to {}",
            specs.len(),
            specs.iter().map(|s| s.shape.iter().product::<u64>()).sum::<u64>(),
            path.display()
        );
        Ok(Outputs::new().with("model", Value::Model(path)))
    }
}

/// Adds seeded Gaussian noise to a checkpoint.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Perturb {
    /// Noise standard deviation, relative to each tensor's own standard deviation
    /// (norm weights get `scale` absolute).
    #[serde(default = "d_scale")]
    pub scale: f64,
    /// Seed; default: the node's seed from the run.
    #[serde(default)]
    pub seed: Option<u64>,
}

fn d_scale() -> f64 {
    0.1
}

impl NodeKind for Perturb {
    const NAME: &'static str = "perturb";
    const DOC: &'static str = "Copies a checkpoint with seeded Gaussian noise added to every tensor (a stand-in for fine-tuning in demos and tests).";

    fn resources() -> agentmerge_sdk::Resources {
        agentmerge_sdk::Resources::all_threads()
    }

    fn ports() -> Ports {
        Ports::new().input("model", PortType::Model, "the checkpoint to perturb").output("model", PortType::Model, "the perturbed copy")
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !(self.scale >= 0.0 && self.scale.is_finite()) {
            return Err(ConfigError::new("scale", "must be a non-negative number"));
        }
        Ok(())
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let src = Checkpoint::open(&inputs.model("model")?)?;
        let seed = self.seed.unwrap_or(ctx.seed());
        let specs: Vec<TensorSpec> = src
            .names()
            .map(|n| {
                let i = src.info(n).unwrap();
                TensorSpec { name: n.to_string(), dtype: i.dtype, shape: i.shape.clone() }
            })
            .collect();
        let out = ctx.out_dir().join("model");
        let mut w = CheckpointWriter::plan(&out, specs.clone(), WriteOptions::default())?;
        specs.par_iter().try_for_each(|s| -> anyhow::Result<()> {
            ctx.check()?;
            let mut v = src.view(&s.name)?.to_f32_vec();
            let n = v.len().max(1) as f64;
            let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n;
            let sd = (v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
            let sigma = if sd > 0.0 { self.scale * sd } else { self.scale };
            let normal = Normal::new(0.0, sigma)?;
            let mut rng = ChaCha8Rng::seed_from_u64(tensor_seed(seed, &s.name));
            for x in v.iter_mut() {
                *x += normal.sample(&mut rng) as f32;
            }
            w.write_f32(&s.name, &v)?;
            Ok(())
        })?;
        if let Some(cfg) = src.config() {
            w.set_config(cfg.clone(), None);
        }
        w.copy_tokenizer_from(src.dir())?;
        Ok(Outputs::new().with("model", Value::Model(w.finish()?)))
    }
}
