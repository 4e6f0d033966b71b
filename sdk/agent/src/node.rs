//! The evaluation node kinds, generic over a backend like the trainers
//! (`agentmerge_model::node::TrainNode`): a backend plugin exports `EvaluateNode<B>`,
//! `LikelihoodNode<B>` and `ForgettingNode<B>` and gets `B/evaluate`, `B/likelihood` and
//! `B/forgetting` with the same configs, ports and outputs as every other backend.
//!
//! - `evaluate`: the model (or each checkpoint of a list) plays MiniArena instances as an agent;
//!   success rates as `miniarena/evaluate` reports them, the model's step errors, the episodes.
//! - `likelihood`: the mean log-probability of an SFT file's response tokens (expert
//!   trajectories), overall and per example (see [`crate::likelihood`]).
//! - `forgetting`: that likelihood under a model before and after fine-tuning, and the change.
//!
//! A checkpoint list is evaluated whole each time the node runs: the host caches nodes, not
//! list elements, so a list that grows by one checkpoint re-evaluates every checkpoint.

use std::{borrow::Cow, marker::PhantomData, path::Path};

use agentmerge_miniarena::{select_templates, Seeds, CATEGORIES, DEFAULT_MAX_STEPS};
use agentmerge_model::{node::BackendKind, Backend};
use agentmerge_sdk::{prelude::*, PortSpec};
use agentmerge_sft::{dataset::SftReader, prompt::PromptOptions};
use agentmerge_traces::{read_episodes, write_episodes, AgentInfo, Episode, OnBadLine};
use serde_json::{json, Map, Value as Json};

use crate::{
    eval::{by_step, instances_of, play, step_accuracy, StepModel},
    likelihood::{likelihood, Likelihood},
    policy::{AgentOptions, LoadedModel, ModelPolicy},
};

/// Declares a node kind generic over the backend `B` whose config is `$config`.
macro_rules! backend_node {
    ($(#[$doc:meta])* $node:ident, $config:ty) => {
        $(#[$doc])*
        pub struct $node<B> {
            pub config: $config,
            kind: PhantomData<fn() -> B>,
        }

        impl<B> Serialize for $node<B> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.config.serialize(s)
            }
        }

        impl<'de, B> Deserialize<'de> for $node<B> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$config>::deserialize(d).map(|config| $node { config, kind: PhantomData })
            }
        }

        impl<B> JsonSchema for $node<B> {
            fn schema_name() -> Cow<'static, str> {
                <$config>::schema_name()
            }
            fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
                <$config>::json_schema(g)
            }
        }
    };
}

/// An optional input taking a list of models.
fn optional_models(ports: &mut Ports, name: &str, doc: &str) {
    ports.inputs.push(PortSpec { name: name.into(), ty: PortType::Model, list: true, optional: true, doc: doc.into() });
}

/// The models on `model` and `checkpoints`, as rows: (step, directory), in step order (models
/// without a trainer_state.json first). `rows` says whether the checkpoint list was connected.
fn models_to_score(inputs: &Inputs) -> anyhow::Result<(Vec<StepModel>, bool)> {
    let mut dirs = inputs.models("checkpoints")?;
    let rows = !dirs.is_empty();
    if inputs.is_connected("model") {
        dirs.push(inputs.model("model")?);
    }
    if dirs.is_empty() {
        bail!("nothing to evaluate: connect `model` (one model) or `checkpoints` (a list, e.g. a trainer's `checkpoints` output)");
    }
    Ok((by_step(&dirs)?, rows))
}

/// A model's row label: its directory name (e.g. `step-0000100`).
fn dir_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn as_object(v: Json) -> Map<String, Json> {
    match v {
        Json::Object(m) => m,
        _ => unreachable!("a report serializes to an object"),
    }
}

// ---- evaluate ------------------------------------------------------------------------------

/// MiniArena instances to play: (template, seed).
type Jobs = Vec<(&'static str, u64)>;

fn d_max_steps() -> usize {
    DEFAULT_MAX_STEPS
}
fn d_max_len() -> usize {
    AgentOptions::default().max_len
}
fn d_max_new_tokens() -> usize {
    AgentOptions::default().max_new_tokens
}
fn d_top_p() -> f32 {
    1.0
}
fn d_batch() -> usize {
    32
}

/// The `evaluate` kind's config.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateConfig {
    /// Templates to play (names, categories or `all`), with `seeds`; leave both out when the
    /// `traces` input names the instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<String>>,
    /// The instances of each template: `{start, count}` = seeds `start .. start+count` (use
    /// seeds not seen in training).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<Seeds>,
    /// Step limit per episode.
    #[serde(default = "d_max_steps")]
    pub max_steps: usize,
    /// The prompt's parts: the `prompt` the model was trained with (`sft/build`'s).
    #[serde(default)]
    pub prompt: PromptOptions,
    /// The context the model was trained with (`sft/build`'s `max_len`): prompts are fitted to
    /// `max_len − max_new_tokens` by cutting AXTree lines from the bottom.
    #[serde(default = "d_max_len")]
    pub max_len: usize,
    /// The most tokens of one answer (longer answers are cut and counted as `truncated`).
    #[serde(default = "d_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 (the default) is greedy decoding.
    #[serde(default)]
    pub temperature: f32,
    /// Nucleus sampling's probability mass; 1 keeps the whole vocabulary.
    #[serde(default = "d_top_p")]
    pub top_p: f32,
    /// Seed of the sampler; default: the node's seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Episodes played in lockstep, their turns decoded as one batch.
    #[serde(default = "d_batch")]
    pub batch: usize,
    /// The model's name recorded in the traces (`agent.model_name`); a checkpoint's gets
    /// `@step-N`. Default `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// With the `traces` input: also score the model's next action on every recorded action
    /// step of those traces, shown the expert's history (teacher-forced exact-action, verb and
    /// element accuracy: `step_accuracy` in the metrics).
    #[serde(default = "d_true")]
    pub step_accuracy: bool,
}

fn d_true() -> bool {
    true
}

impl EvaluateConfig {
    pub fn agent_options(&self) -> AgentOptions {
        AgentOptions {
            prompt: self.prompt.clone(),
            max_len: self.max_len,
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
        }
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        match (&self.templates, &self.seeds) {
            (Some(t), Some(s)) => {
                let sel: Vec<&str> = t.iter().map(String::as_str).collect();
                select_templates(&sel).map_err(|e| {
                    ConfigError::new("templates", format!("{e:#}; besides template names, use a category ({}) or `all`", CATEGORIES.join(", ")))
                })?;
                if let Some((field, msg)) = s.problem() {
                    return Err(ConfigError::new(format!("seeds.{field}"), msg));
                }
            }
            (Some(_), None) => return Err(ConfigError::new("seeds", "`templates` needs `seeds` ({start, count})")),
            (None, Some(_)) => return Err(ConfigError::new("templates", "`seeds` needs `templates` (names, categories or `all`)")),
            (None, None) => {}
        }
        for (field, v) in [("max_steps", self.max_steps), ("batch", self.batch), ("max_len", self.max_len)] {
            if v == 0 {
                return Err(ConfigError::new(field, "must be at least 1"));
            }
        }
        match self.agent_options().problem() {
            Some((field, msg)) => Err(ConfigError::new(field, msg)),
            None => Ok(()),
        }
    }

    /// The instances to play (the traces' or the templates × seeds), and the traces' episodes.
    fn jobs(&self, inputs: &Inputs) -> anyhow::Result<(Jobs, Vec<Episode>)> {
        match (inputs.is_connected("traces"), &self.templates, &self.seeds) {
            (true, None, None) => {
                let (_, path) = inputs.dataset("traces")?;
                let (episodes, _) = read_episodes(&path, OnBadLine::Fail)?;
                let jobs = instances_of(&episodes)?;
                anyhow::ensure!(!jobs.is_empty(), "{}: the traces hold no episodes, so no instances to play", path.display());
                Ok((jobs, episodes))
            }
            (true, ..) => bail!("both the `traces` input and `templates`/`seeds` name instances to play; keep one"),
            (false, Some(t), Some(s)) => {
                let sel: Vec<&str> = t.iter().map(String::as_str).collect();
                let seeds = s.list();
                Ok((select_templates(&sel)?.into_iter().flat_map(|t| seeds.iter().map(move |&s| (t.name, s))).collect(), Vec::new()))
            }
            _ => bail!("no instances to play: connect `traces` (e.g. traces/split's `test`) or set `templates` and `seeds`"),
        }
    }
}

backend_node!(
    /// `B/evaluate`: a model as a MiniArena agent.
    EvaluateNode,
    EvaluateConfig
);

impl<B: BackendKind> NodeKind for EvaluateNode<B> {
    const NAME: &'static str = "evaluate";
    const DOC: &'static str = "Plays a trained model (or every checkpoint of a list, one row each in step order) as a MiniArena agent: sft/build's prompt, batched decoding, <think>/<action> parsed; reports success rates overall, per category and per task with standard errors (as miniarena/evaluate), parse errors, invalid actions and truncated answers, and writes the episodes.";

    fn ports() -> Ports {
        let mut p = Ports::new().optional_input("model", PortType::Model, "the model to play (with its tokenizer files)");
        optional_models(&mut p, "checkpoints", "models to play one after the other, reported as rows in step order (trainer_state.json's global_step)");
        p.optional_input("traces", PortType::Dataset(Some("traces".into())), "episodes naming the (task, seed) instances to play, e.g. traces/split's `test`")
            .optional_input("tokenizer", PortType::Dataset(Some("tokenizer".into())), "the tokenizer and chat template (default: the model's own files)")
            .output(
                "metrics",
                PortType::Metrics,
                "overall, per_category and per_task success_rate, std_err, mean_steps; n_errors; actions, parse_errors, invalid_actions, truncated, prompt_too_long and their rates; with `traces`, step_accuracy (exact, verb, element); for a checkpoint list, `rows` (one per checkpoint) and the last row's fields",
            )
            .output("traces", PortType::Dataset(Some("traces".into())), "the played episodes (agent.model_name tells checkpoints apart)")
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.config.check()
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let cfg = &self.config;
        let (jobs, recorded) = cfg.jobs(&inputs)?;
        let scored_steps = if cfg.step_accuracy { recorded.iter().map(|e| e.action_steps().count()).sum::<usize>() } else { 0 };
        let (models, rows_wanted) = models_to_score(&inputs)?;
        let tok_dir = if inputs.is_connected("tokenizer") { Some(inputs.dataset("tokenizer")?.1) } else { None };
        let name = cfg.model_name.clone().unwrap_or_else(|| "model".into());
        let agent_name = if cfg.prompt.use_thinking { "model-cot" } else { "model" };
        let seed = cfg.seed.unwrap_or(ctx.seed());
        let total = (models.len() * (jobs.len() + scored_steps)) as u64;
        let mut be: Box<dyn Backend> = B::create()?;
        let (mut all_episodes, mut rows) = (Vec::<Episode>::new(), Vec::<Map<String, Json>>::new());
        for (k, (step, dir)) in models.iter().enumerate() {
            let loaded = LoadedModel::load(be, dir, tok_dir.as_deref())?;
            if cfg.max_len > loaded.model.config.max_position_embeddings {
                tracing::warn!(
                    "max_len {} is beyond the model's context {}: answers may be cut at the context",
                    cfg.max_len,
                    loaded.model.config.max_position_embeddings
                );
            }
            let model_name = match step {
                Some(s) if rows_wanted => format!("{name}@step-{s}"),
                _ if rows_wanted => format!("{name}@{}", dir_name(dir)),
                _ => name.clone(),
            };
            let (tok, template, eos) = (loaded.tokenizer.clone(), loaded.template.clone(), loaded.eos.clone());
            let agent = AgentInfo { model_name, agent_name: agent_name.into() };
            let mut policy = ModelPolicy::new(loaded, tok, template, eos, cfg.agent_options(), seed, agent.clone())?;
            let base = (k * (jobs.len() + scored_steps)) as u64;
            let eval = play(&mut policy, &jobs, cfg.max_steps, cfg.batch, &mut |done, _| {
                ctx.progress(base + done as u64, total, &agent.model_name);
                ctx.check()
            })?;
            let accuracy = if scored_steps > 0 {
                let base = base + jobs.len() as u64;
                let a = step_accuracy(&mut policy, &recorded, cfg.batch, &mut |done, _| {
                    ctx.progress(base + done as u64, total, &format!("{}: recorded steps", agent.model_name));
                    ctx.check()
                })?;
                tracing::info!(
                    "{}: on {} recorded steps, exact action {:.3}, element {:.3}, verb {:.3}",
                    agent.model_name,
                    a.steps,
                    a.exact,
                    a.element,
                    a.verb
                );
                Some(a)
            } else {
                None
            };
            be = policy.decoder.into_backend();
            let c = &eval.counts;
            tracing::info!(
                "{}: success rate {:.3} ± {:.3} over {} episodes; {} actions, {} parse errors, {} invalid, {} truncated ({:.1} s)",
                agent.model_name,
                eval.report.overall.success_rate,
                eval.report.overall.std_err,
                eval.report.overall.n,
                c.actions,
                c.parse_errors,
                c.invalid_actions,
                c.truncated,
                eval.seconds
            );
            let mut m = eval.metrics();
            if let Some(a) = accuracy {
                m.insert("step_accuracy".into(), json!(a));
            }
            if rows_wanted {
                let mut row = Map::new();
                row.insert("step".into(), json!(step));
                row.insert("checkpoint".into(), json!(dir_name(dir)));
                row.extend(m);
                m = row;
            }
            rows.push(m);
            all_episodes.extend(eval.episodes);
        }
        let traces = ctx.out_path("traces.jsonl.zst")?;
        write_episodes(&traces, &all_episodes)?;
        let mut metrics = rows.last().cloned().expect("at least one model");
        if rows_wanted {
            metrics.insert("rows".into(), Json::Array(rows.into_iter().map(Json::Object).collect()));
        }
        Ok(Outputs::new().with("metrics", metrics).with("traces", Value::Dataset { schema: "traces".into(), path: traces }))
    }
}

// ---- likelihood ----------------------------------------------------------------------------

fn d_rows() -> usize {
    8
}

/// The `likelihood` and `forgetting` kinds' config.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LikelihoodConfig {
    /// Tokens per packed row (examples never see each other); default: the longest example.
    /// At most the model's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
    /// Rows per forward pass.
    #[serde(default = "d_rows")]
    pub batch_size: usize,
}

impl LikelihoodConfig {
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.seq_len == Some(0) {
            return Err(ConfigError::new("seq_len", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(ConfigError::new("batch_size", "must be at least 1"));
        }
        Ok(())
    }

    /// The likelihood of the `data` input under the model `dir`, loaded into `be`.
    fn score(&self, ctx: &Ctx, be: &mut dyn Backend, dir: &Path, data: &SftReader, label: &str) -> anyhow::Result<Likelihood> {
        let (config, _, params) = agentmerge_model::checkpoint::load(dir)?;
        let mut model = agentmerge_model::Model::new(config)?;
        model.alloc_params(be, false)?;
        be.upload(model.all(agentmerge_model::Mem::Params), &params)?;
        drop(params);
        let l = likelihood(be, &mut model, data, self.seq_len, self.batch_size, &mut |done, total| {
            ctx.progress(done as u64, total as u64, label);
            ctx.check()
        })
        .with_context(|| format!("scoring {}", dir.display()))?;
        tracing::info!("{label}: mean log-likelihood {:.4} per token over {} tokens of {} examples", l.mean_logprob, l.tokens, l.examples);
        Ok(l)
    }
}

/// The SFT (or token) file on the `data` input.
fn open_data(inputs: &Inputs) -> anyhow::Result<SftReader> {
    let (schema, path) = inputs.dataset("data")?;
    if !matches!(schema.as_str(), "sft" | "tokens") {
        bail!("input `data` is a `dataset:{schema}`; the likelihood reads token files: `dataset:sft` (sft/build) or `dataset:tokens` (sft/tokenize)");
    }
    SftReader::open(&path)
}

const DATA_DOC: &str = "held-out examples: `dataset:sft` from sft/build (the response tokens are scored) or `dataset:tokens` (every token)";
const PER_EXAMPLE_DOC: &str = "likelihood.jsonl: one line per example (and model): example, tokens, sum_logprob, mean_logprob";

/// Writes the per-example lines, each prefixed with `fields`.
fn write_per_example(out: &mut impl std::io::Write, fields: &Map<String, Json>, l: &Likelihood) -> anyhow::Result<()> {
    for e in &l.per_example {
        let mut line = fields.clone();
        line.extend(as_object(json!(e)));
        serde_json::to_writer(&mut *out, &Json::Object(line))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

backend_node!(
    /// `B/likelihood`: the likelihood of expert trajectories.
    LikelihoodNode,
    LikelihoodConfig
);

impl<B: BackendKind> NodeKind for LikelihoodNode<B> {
    const NAME: &'static str = "likelihood";
    const DOC: &'static str = "The per-token mean log-likelihood (natural log) of the response tokens of an SFT file (e.g. held-out expert trajectories) under a model, or under every checkpoint of a list (one row each, in step order): overall (Σ log p / tokens) and per example.";

    fn ports() -> Ports {
        let mut p = Ports::new().optional_input("model", PortType::Model, "the model to score with");
        optional_models(&mut p, "checkpoints", "models to score one after the other, reported as rows in step order");
        p.input("data", PortType::Dataset(None), DATA_DOC)
            .output(
                "metrics",
                PortType::Metrics,
                "examples, tokens, sum_logprob, mean_logprob, perplexity, mean_example_logprob; for a checkpoint list, `rows` (step, checkpoint and the same fields) and the last row's fields",
            )
            .output("per_example", PortType::Dataset(Some("jsonl".into())), PER_EXAMPLE_DOC)
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.config.check()
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let data = open_data(&inputs)?;
        let (models, rows_wanted) = models_to_score(&inputs)?;
        let mut be = B::create()?;
        let path = ctx.out_path("likelihood.jsonl")?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?);
        let mut rows = Vec::new();
        for (step, dir) in &models {
            let mut fields = Map::new();
            if rows_wanted {
                fields.insert("step".into(), json!(step));
                fields.insert("checkpoint".into(), json!(dir_name(dir)));
            }
            let l = self.config.score(ctx, be.as_mut(), dir, &data, &dir_name(dir))?;
            write_per_example(&mut out, &fields, &l)?;
            fields.extend(as_object(json!(l)));
            rows.push(fields);
        }
        out.into_inner().map_err(|e| anyhow!("writing {}: {e}", path.display()))?.sync_all()?;
        let mut metrics = rows.last().cloned().expect("at least one model");
        if rows_wanted {
            metrics.insert("rows".into(), Json::Array(rows.into_iter().map(Json::Object).collect()));
        }
        metrics.insert("per_example_file".into(), json!("likelihood.jsonl"));
        Ok(Outputs::new().with("metrics", metrics).with("per_example", Value::Dataset { schema: "jsonl".into(), path }))
    }
}

backend_node!(
    /// `B/forgetting`: the likelihood before and after fine-tuning.
    ForgettingNode,
    LikelihoodConfig
);

impl<B: BackendKind> NodeKind for ForgettingNode<B> {
    const NAME: &'static str = "forgetting";
    const DOC: &'static str = "Catastrophic forgetting: the per-token mean log-likelihood of held-out data (e.g. the instruction data the instruct model was tuned on) under a model `before` and `after` fine-tuning or merging, and the drop (before − after; positive = forgotten).";

    fn ports() -> Ports {
        Ports::new()
            .input("before", PortType::Model, "the model before (e.g. the instruct model)")
            .input("after", PortType::Model, "the model after (e.g. fine-tuned on agent traces, or merged)")
            .input("data", PortType::Dataset(None), DATA_DOC)
            .output(
                "metrics",
                PortType::Metrics,
                "before and after (each: examples, tokens, mean_logprob, perplexity, ...), forgetting = before.mean_logprob − after.mean_logprob",
            )
            .output("per_example", PortType::Dataset(Some("jsonl".into())), PER_EXAMPLE_DOC)
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.config.check()
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let data = open_data(&inputs)?;
        let mut be = B::create()?;
        let path = ctx.out_path("likelihood.jsonl")?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?);
        let mut metrics = Map::new();
        let mut means = Vec::new();
        for which in ["before", "after"] {
            let l = self.config.score(ctx, be.as_mut(), &inputs.model(which)?, &data, which)?;
            write_per_example(&mut out, &as_object(json!({ "model": which })), &l)?;
            means.push(l.mean_logprob);
            metrics.insert(which.into(), json!(l));
        }
        out.into_inner().map_err(|e| anyhow!("writing {}: {e}", path.display()))?.sync_all()?;
        metrics.insert("forgetting".into(), json!(means[0] - means[1]));
        metrics.insert("per_example_file".into(), json!("likelihood.jsonl"));
        tracing::info!("forgetting: mean log-likelihood {:.4} before, {:.4} after ({:+.4})", means[0], means[1], means[1] - means[0]);
        Ok(Outputs::new().with("metrics", metrics).with("per_example", Value::Dataset { schema: "jsonl".into(), path }))
    }
}
