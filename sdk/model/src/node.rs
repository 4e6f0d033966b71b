//! The trainer node kinds, generic over a backend: a backend plugin exports
//! `TrainNode<MyBackend, Pretrain>` and `TrainNode<MyBackend, Sft>` and gets the same configs,
//! ports and outputs as every other backend (`cpu/sft`, `wgpu/sft`, ...), so a pipeline swaps
//! backends with one variable (`uses: "${backend}/sft"`).

use std::{borrow::Cow, marker::PhantomData, path::Path};

use agentmerge_checkpoint::parse_dtype;
use agentmerge_sdk::prelude::*;
use serde_json::json;

use crate::{
    backend::{Backend, Mem},
    checkpoint::{self, SaveOptions},
    config::LlamaConfig,
    data::Packed,
    model::Model,
    optim::{AdamW, Decay, Schedule},
    train::{self, Hooks, TrainSpec},
};

/// A device a backend plugin offers.
pub trait BackendKind: 'static {
    /// The plugin's name (`cpu`, `wgpu`, `cuda`), for logs and docs.
    const NAME: &'static str;
    /// Opens the device; a clear error when it is missing (no adapter, no driver). `devices`:
    /// the GPU indices the host assigned the node (`Ctx::devices`; empty: the backend's
    /// default choice).
    fn create(devices: &[usize]) -> anyhow::Result<Box<dyn Backend>>;
    /// What one training or evaluation node on this backend needs (the manifest's
    /// `resources`): by default every thread it is given.
    fn resources() -> agentmerge_sdk::Resources {
        agentmerge_sdk::Resources::all_threads()
    }
}

/// What a trainer kind trains on.
pub trait Objective: 'static {
    const NAME: &'static str;
    const DOC: &'static str;
    /// The schema of the `data` input (None: any of `tokens` and `sft`).
    const DATA_SCHEMA: Option<&'static str>;
    /// Whether the data's loss mask applies; else every next token is a target.
    const USE_MASK: bool;
    const DATA_DOC: &'static str;
}

/// Next-token pretraining on a token stream (`dataset:tokens` from `sft/tokenize`), or on an SFT
/// file's prompts and responses alike.
pub struct Pretrain;
impl Objective for Pretrain {
    const NAME: &'static str = "pretrain";
    const DOC: &'static str = "Next-token pretraining of a Llama model (fresh from `init:` or the input `model`) on a token stream: documents packed into rows, attention and positions restarting at each, loss on every next token. Outputs the model, full checkpoints every `checkpoint_every` steps and per-step metrics; a killed run resumes from its last state.";
    const DATA_SCHEMA: Option<&'static str> = None;
    const USE_MASK: bool = false;
    const DATA_DOC: &'static str =
        "`dataset:tokens` from `sft/tokenize` (one example per document), or `dataset:sft` from `sft/build` (prompts and responses, every token in the loss)";
}

/// Supervised fine-tuning on `dataset:sft` from `sft/build`: loss on the response tokens only.
pub struct Sft;
impl Objective for Sft {
    const NAME: &'static str = "sft";
    const DOC: &'static str = "Supervised fine-tuning (behaviour cloning) of a Llama model on an SFT token file from `sft/build`: examples packed into rows without attending to each other, loss only on the response tokens (the file's mask). Outputs the model, full checkpoints every `checkpoint_every` steps and per-step metrics; a killed run resumes from its last state.";
    const DATA_SCHEMA: Option<&'static str> = Some("sft");
    const USE_MASK: bool = true;
    const DATA_DOC: &'static str = "SFT token file from `sft/build` (token ids + loss mask)";
}

/// A fresh model's architecture (the config.json fields of `LlamaForCausalLM`).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: key/value heads (divides num_attention_heads); default: all.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Default: hidden_size / num_attention_heads.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Default: the data's (the tokenizer's) vocabulary size.
    #[serde(default)]
    pub vocab_size: Option<usize>,
    #[serde(default = "d_theta")]
    pub rope_theta: f64,
    #[serde(default = "d_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Default: 2048, or `seq_len` when larger.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    /// Standard deviation of the initial weights.
    #[serde(default = "d_init_std")]
    pub initializer_range: f64,
}

fn d_theta() -> f64 {
    10_000.0
}
fn d_eps() -> f64 {
    1e-5
}
fn d_init_std() -> f64 {
    0.02
}

/// A trainer node's config.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Peak learning rate.
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Linear warm-up steps (step s uses lr·(s+1)/warmup_steps).
    #[serde(default = "d_warmup")]
    pub warmup_steps: u64,
    /// After the warm-up: cosine, linear or constant.
    #[serde(default = "d_schedule")]
    pub schedule: Decay,
    /// The decay ends at lr × this.
    #[serde(default = "d_min_lr")]
    pub min_lr_ratio: f64,
    #[serde(default = "d_beta1")]
    pub beta1: f64,
    #[serde(default = "d_beta2")]
    pub beta2: f64,
    #[serde(default = "d_adam_eps")]
    pub eps: f64,
    /// Decoupled weight decay on matrices (none on RMSNorm weights).
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    /// Clip the gradients' global L2 norm to this; null for no clipping.
    #[serde(default = "d_clip")]
    pub grad_clip: Option<f64>,
    /// Tokens per packed row (the context trained on).
    #[serde(default = "d_seq")]
    pub seq_len: usize,
    /// Rows per micro-batch.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[serde(default = "d_accum")]
    pub grad_accum: usize,
    /// Passes over the data (fractions allowed); ignored when `max_steps` is set. Default 1.
    #[serde(default)]
    pub epochs: Option<f64>,
    /// Optimizer steps; overrides `epochs`.
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Save a full checkpoint every this many steps (listed on the `checkpoints` output).
    #[serde(default)]
    pub checkpoint_every: Option<u64>,
    /// The dtype checkpoints and the model are written in: float32, bfloat16 or float16.
    #[serde(default = "d_dtype")]
    pub save_dtype: String,
    /// Seed for the initialisation and the data order; default: the node's seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Architecture of a fresh model; leave out when the `model` input is connected.
    #[serde(default)]
    pub init: Option<InitConfig>,
}

fn d_lr() -> f64 {
    1e-3
}
fn d_warmup() -> u64 {
    10
}
fn d_schedule() -> Decay {
    Decay::Cosine
}
fn d_min_lr() -> f64 {
    0.1
}
fn d_beta1() -> f64 {
    0.9
}
fn d_beta2() -> f64 {
    0.95
}
fn d_adam_eps() -> f64 {
    1e-8
}
fn d_wd() -> f64 {
    0.1
}
fn d_clip() -> Option<f64> {
    Some(1.0)
}
fn d_seq() -> usize {
    512
}
fn d_batch() -> usize {
    8
}
fn d_accum() -> usize {
    1
}
fn d_dtype() -> String {
    "float32".into()
}

/// The node kind training objective `O` on backend `B`.
pub struct TrainNode<B, O> {
    pub config: TrainConfig,
    kind: PhantomData<fn() -> (B, O)>,
}

impl<B, O> Serialize for TrainNode<B, O> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.config.serialize(s)
    }
}

impl<'de, B, O> Deserialize<'de> for TrainNode<B, O> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        TrainConfig::deserialize(d).map(|config| TrainNode { config, kind: PhantomData })
    }
}

impl<B, O> JsonSchema for TrainNode<B, O> {
    fn schema_name() -> Cow<'static, str> {
        TrainConfig::schema_name()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        TrainConfig::json_schema(g)
    }
}

impl TrainConfig {
    pub fn check(&self) -> Result<(), ConfigError> {
        let positive =
            |field: &str, x: f64| if x > 0.0 && x.is_finite() { Ok(()) } else { Err(ConfigError::new(field, format!("must be a positive number, got {x}"))) };
        positive("lr", self.lr)?;
        positive("eps", self.eps)?;
        for (field, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(ConfigError::new(field, format!("must be in [0, 1), got {b}")));
            }
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(ConfigError::new("min_lr_ratio", "must be in [0, 1]"));
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return Err(ConfigError::new("weight_decay", "must be 0 or more"));
        }
        if let Some(c) = self.grad_clip {
            positive("grad_clip", c)?;
        }
        for (field, v) in [("seq_len", self.seq_len), ("batch_size", self.batch_size), ("grad_accum", self.grad_accum)] {
            if v == 0 {
                return Err(ConfigError::new(field, "must be at least 1"));
            }
        }
        if let Some(e) = self.epochs {
            positive("epochs", e)?;
        }
        if self.max_steps == Some(0) {
            return Err(ConfigError::new("max_steps", "must be at least 1"));
        }
        if self.checkpoint_every == Some(0) {
            return Err(ConfigError::new("checkpoint_every", "must be at least 1 (leave it out for no checkpoints)"));
        }
        match parse_dtype(&self.save_dtype) {
            Some(agentmerge_checkpoint::DType::F32 | agentmerge_checkpoint::DType::BF16 | agentmerge_checkpoint::DType::F16) => {}
            _ => return Err(ConfigError::new("save_dtype", format!("`{}` is not one of float32, bfloat16, float16", self.save_dtype))),
        }
        if let Some(i) = &self.init {
            let mut c = LlamaConfig::new(i.vocab_size.unwrap_or(1), i.hidden_size, i.intermediate_size, i.num_hidden_layers, i.num_attention_heads);
            c.num_key_value_heads = i.num_key_value_heads.unwrap_or(i.num_attention_heads);
            c.head_dim = i.head_dim.unwrap_or(i.hidden_size / i.num_attention_heads.max(1));
            c.rope_theta = i.rope_theta;
            c.rms_norm_eps = i.rms_norm_eps;
            c.validate().map_err(|e| {
                let msg = e.to_string();
                // The config's messages quote the field as `name`.
                let field = msg.split('`').nth(1).map(|f| format!("init.{f}")).unwrap_or_else(|| "init".into());
                ConfigError::new(field, msg)
            })?;
        }
        Ok(())
    }

    /// The training loop's numbers for a run of `total` optimizer steps (a checked config).
    pub fn spec(&self, total: u64) -> TrainSpec {
        TrainSpec {
            schedule: Schedule { lr: self.lr, warmup: self.warmup_steps, total, decay: self.schedule, min_lr_ratio: self.min_lr_ratio },
            adamw: AdamW { beta1: self.beta1, beta2: self.beta2, eps: self.eps, weight_decay: self.weight_decay, grad_clip: self.grad_clip },
            micro_batch: self.batch_size,
            grad_accum: self.grad_accum,
            checkpoint_every: self.checkpoint_every,
            save_dtype: parse_dtype(&self.save_dtype).expect("checked"),
        }
    }

    /// The architecture of a fresh model, the vocabulary defaulting to the data's.
    fn init_config(&self, i: &InitConfig, data_vocab: usize) -> LlamaConfig {
        let mut c = LlamaConfig::new(i.vocab_size.unwrap_or(data_vocab), i.hidden_size, i.intermediate_size, i.num_hidden_layers, i.num_attention_heads);
        c.num_key_value_heads = i.num_key_value_heads.unwrap_or(i.num_attention_heads);
        c.head_dim = i.head_dim.unwrap_or(i.hidden_size / i.num_attention_heads);
        c.rope_theta = i.rope_theta;
        c.rms_norm_eps = i.rms_norm_eps;
        c.tie_word_embeddings = i.tie_word_embeddings;
        c.max_position_embeddings = i.max_position_embeddings.unwrap_or(2048.max(self.seq_len));
        c.initializer_range = i.initializer_range;
        c
    }
}

struct CtxHooks<'a, 'b>(&'a Ctx<'b>);

impl Hooks for CtxHooks<'_, '_> {
    fn progress(&self, step: u64, total: u64, line: &str) {
        self.0.progress(step, total, line);
    }
    fn cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

impl<B: BackendKind, O: Objective> NodeKind for TrainNode<B, O> {
    const NAME: &'static str = O::NAME;
    const DOC: &'static str = O::DOC;

    fn resources() -> agentmerge_sdk::Resources {
        B::resources()
    }

    fn ports() -> Ports {
        Ports::new()
            .optional_input("model", PortType::Model, "the checkpoint to start from (else `init:` makes a fresh model)")
            .input("data", PortType::Dataset(O::DATA_SCHEMA.map(String::from)), O::DATA_DOC)
            .optional_input(
                "tokenizer",
                PortType::Dataset(Some("tokenizer".into())),
                "tokenizer files to save with the model (and its bos/eos ids); default: the input model's",
            )
            .output("model", PortType::Model, "the trained model (Hugging Face directory, `save_dtype`)")
            .list_output(
                "checkpoints",
                PortType::Model,
                "a full checkpoint every `checkpoint_every` steps, in step order (each has trainer_state.json with its global_step)",
            )
            .output("metrics", PortType::Metrics, "summary: steps, tokens, final_loss, tokens_per_s, achieved GFLOP/s, checkpoint_steps, ...")
            .output("log", PortType::Dataset(Some("metrics".into())), "metrics.jsonl: step, loss, lr, grad_norm, tokens, tokens_per_s per step")
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.config.check()
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        run_training(&self.config, O::NAME, O::USE_MASK, B::NAME, B::create, ctx, &inputs)
    }
}

#[allow(clippy::too_many_arguments)]
fn run_training(
    cfg: &TrainConfig,
    objective: &str,
    use_mask: bool,
    backend_name: &str,
    create: fn(&[usize]) -> anyhow::Result<Box<dyn Backend>>,
    ctx: &Ctx,
    inputs: &Inputs,
) -> anyhow::Result<Outputs> {
    let seed = cfg.seed.unwrap_or(ctx.seed());
    let (schema, data_path) = inputs.dataset("data")?;
    if !matches!(schema.as_str(), "tokens" | "sft") {
        bail!("input `data` is a `dataset:{schema}`; {objective} reads token files: `dataset:tokens` (sft/tokenize) or `dataset:sft` (sft/build)");
    }
    let tokenizer = if inputs.is_connected("tokenizer") { Some(inputs.dataset("tokenizer")?.1) } else { None };
    let data_vocab = agentmerge_sft::dataset::SftReader::open(&data_path)?.vocab_size as usize;
    let input_model = if inputs.is_connected("model") { Some(inputs.model("model")?) } else { None };
    let (mut config, base_config, params) = match (&input_model, &cfg.init) {
        (Some(_), Some(_)) => {
            bail!("both the `model` input and `init:` are given; connect a model to fine-tune it, or set `init:` to train a fresh one, not both")
        }
        (None, None) => bail!("nothing to train: connect the `model` input, or set `init:` (hidden_size, num_hidden_layers, ...) for a fresh model"),
        (Some(dir), None) => {
            let (c, raw, p) = checkpoint::load(dir)?;
            (c, Some(raw), p)
        }
        (None, Some(i)) => {
            let c = cfg.init_config(i, data_vocab);
            let p = checkpoint::init(&c, seed);
            (c, None, p)
        }
    };
    if let Some(tok) = &tokenizer {
        set_special_tokens(&mut config, tok)?;
    }
    if cfg.seq_len > config.max_position_embeddings {
        bail!("`seq_len` {} is longer than the model's max_position_embeddings {}", cfg.seq_len, config.max_position_embeddings);
    }
    let mut data = Packed::open(&data_path, config.vocab_size, cfg.seq_len, seed, use_mask)?;
    let rows_per_step = cfg.batch_size * cfg.grad_accum;
    let total = cfg.max_steps.unwrap_or_else(|| ((cfg.epochs.unwrap_or(1.0) * data.rows_per_epoch() as f64) / rows_per_step as f64).ceil().max(1.0) as u64);
    let spec = cfg.spec(total);
    let mut be = create(&ctx.devices())?;
    let mut model = Model::new(config.clone())?;
    model.alloc_params(be.as_mut(), true)?;
    be.upload(model.all(Mem::Params), &params)?;
    drop(params);
    tracing::info!(
        "{} on {}: {} parameters, {} steps of {} × {} tokens ({} rows per epoch, {} in the loss)",
        objective,
        be.name(),
        model.layout.num_params(),
        total,
        rows_per_step,
        cfg.seq_len,
        data.rows_per_epoch(),
        data.loss_tokens_per_epoch()
    );
    let mut save = SaveOptions { base_config, ..SaveOptions::default() };
    save.tokenizer_from.extend(tokenizer.iter().cloned());
    save.tokenizer_from.extend(input_model.iter().cloned());
    let out = train::train(be.as_mut(), &mut model, &mut data, &spec, ctx.work_dir(), &save, &CtxHooks(ctx))?;

    // Everything the run produced moves into the node's output directory.
    let model_dir = checkpoint::save(&config, &out.params, spec.save_dtype, &ctx.out_dir().join("model"), &save)?;
    let mut checkpoints = Vec::new();
    let mut steps = Vec::new();
    for (step, dir) in &out.checkpoints {
        let dst = ctx.out_path(&format!("checkpoints/step-{step:07}"))?;
        move_dir(dir, &dst)?;
        checkpoints.push(Value::Model(dst));
        steps.push(*step);
    }
    let log = ctx.out_dir().join("metrics.jsonl");
    std::fs::copy(&out.metrics_file, &log).with_context(|| format!("copying {}", out.metrics_file.display()))?;
    let flops = config.train_flops_per_token(cfg.seq_len);
    let metrics = json!({
        "backend": backend_name,
        "device": be.name(),
        "steps": total,
        "resumed_from": out.resumed_from,
        "tokens": out.tokens,
        "seconds": out.seconds,
        "tokens_per_s": out.tokens_per_s,
        "gflops_per_s": flops * out.tokens_per_s / 1e9,
        "final_loss": out.final_loss,
        "params": model.layout.num_params(),
        "non_embedding_params": config.non_embedding_params(),
        "flops_per_token": flops,
        "rows_per_epoch": data.rows_per_epoch(),
        "epochs": (total as f64 * rows_per_step as f64) / data.rows_per_epoch() as f64,
        "loss_tokens_per_epoch": data.loss_tokens_per_epoch(),
        "skipped_examples_without_loss": data.skipped_no_loss,
        "checkpoint_steps": steps,
        "metrics_file": "metrics.jsonl",
    });
    let serde_json::Value::Object(metrics) = metrics else { unreachable!() };
    Ok(Outputs::new()
        .with("model", Value::Model(model_dir))
        .with_list("checkpoints", checkpoints)
        .with("metrics", metrics)
        .with("log", Value::Dataset { schema: "metrics".into(), path: log }))
}

/// Takes the bos/eos ids from a tokenizer directory (tokenizer_config.json's tokens, looked up
/// in tokenizer.json) when the model's config has none.
fn set_special_tokens(config: &mut LlamaConfig, dir: &Path) -> anyhow::Result<()> {
    let tok = agentmerge_sft::tokenizer::load(dir)?;
    let template = agentmerge_sft::template::ChatTemplate::from_dir(dir)?;
    // The model is trained on this tokenizer's ids, so its bos/eos ids are the model's: a fresh
    // `models/random_llama` config says 1 and 2 whatever the tokenizer.
    let id_of = |token: &str| (!token.is_empty()).then(|| tok.token_to_id(token)).flatten();
    if let Some(id) = id_of(&template.bos_token) {
        if config.bos_token_id != Some(id) {
            if let Some(old) = config.bos_token_id {
                tracing::info!("bos_token_id {old} → {id}: the tokenizer's bos token {:?}", template.bos_token);
            }
            config.bos_token_id = Some(id);
        }
    }
    // eos may be a list (Llama 3 Instruct: end of text, end of message, end of turn): a list
    // that holds the tokenizer's eos stays whole; one other id is replaced; several get it added.
    if let Some(id) = id_of(&template.eos_token) {
        let eos = &mut config.eos_token_id;
        match eos.as_slice() {
            ids if ids.contains(&id) => {}
            [] => *eos = vec![id],
            [old] => {
                tracing::info!("eos_token_id {old} → {id}: the tokenizer's eos token {:?}", template.eos_token);
                *eos = vec![id];
            }
            ids => {
                tracing::info!("eos_token_id {ids:?} + {id}: the tokenizer's eos token {:?}", template.eos_token);
                eos.push(id);
            }
        }
    }
    if tok.get_vocab_size(true) > config.vocab_size {
        bail!("{}: the tokenizer has {} tokens, more than the model's vocab_size {}", dir.display(), tok.get_vocab_size(true), config.vocab_size);
    }
    Ok(())
}

/// Moves a directory (a rename, or a copy where the two lie on different file systems).
fn move_dir(src: &Path, dst: &Path) -> anyhow::Result<()> {
    if dst.exists() {
        std::fs::remove_dir_all(dst)?;
    }
    if std::fs::rename(src, dst).is_ok() {
        return Ok(());
    }
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)?.flatten() {
        std::fs::copy(e.path(), dst.join(e.file_name())).with_context(|| format!("copying {}", e.path().display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transformers-made tokenizer whose eos token `<|eos|>` is id 1 (tests/fixtures/own).
    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/own/instruct")
    }

    #[test]
    fn special_tokens_keep_an_eos_list_that_holds_the_tokenizers_eos() {
        let eos_after = |eos: Vec<u32>| {
            let mut c = LlamaConfig::new(400, 24, 48, 2, 4);
            c.eos_token_id = eos;
            set_special_tokens(&mut c, &fixture()).unwrap();
            (c.bos_token_id, c.eos_token_id)
        };
        assert_eq!(eos_after(vec![7, 1, 9]), (Some(0), vec![7, 1, 9]), "a list holding it stays whole");
        assert_eq!(eos_after(vec![2]), (Some(0), vec![1]), "one other id (a fresh random config's) is replaced");
        assert_eq!(eos_after(vec![]), (Some(0), vec![1]));
        assert_eq!(eos_after(vec![7, 9]), (Some(0), vec![7, 9, 1]), "several others get it added");
    }
}
