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
//! The host caches whole nodes, so a checkpoint list that grows by one checkpoint runs the node
//! again; each model's result (its row, and for `evaluate` its episodes) is therefore also kept
//! in the node kind's memo ([`Ctx::memo`]) under a key of everything it depends on — the config,
//! the contents of the other inputs, the model's contents and its step — and a model found there
//! is not evaluated again (`rows_reused` in the metrics; `rows_computed` the others). Outputs
//! are the same either way, timings aside: a reused row keeps the timings of the run that
//! computed it.

use std::{borrow::Cow, marker::PhantomData, path::Path};

use agentmerge_miniarena::{select_templates, PageSize, Seeds, CATEGORIES, DEFAULT_MAX_STEPS};
use agentmerge_model::{node::BackendKind, Backend};
use agentmerge_sdk::{memo, prelude::*, Memo, PortSpec};
use agentmerge_sft::{dataset::SftReader, prompt::PromptOptions};
use agentmerge_traces::{read_episodes, write_episodes, AgentInfo, Episode, OnBadLine};
use serde_json::{json, Map, Value as Json};

use crate::{
    eval::{by_step, instances_of, play, step_accuracy, StepModel},
    likelihood::{likelihood, ExampleLikelihood, Likelihood},
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

/// The node's memo and the part of every model's memo key the models share (the config and
/// the other inputs' contents), or `None` when the run reuses nothing.
struct MemoKeys {
    memo: Memo,
    shared: Json,
}

impl MemoKeys {
    fn new(ctx: &Ctx, shared: impl FnOnce() -> anyhow::Result<Json>) -> anyhow::Result<Option<MemoKeys>> {
        Ok(match ctx.memo() {
            Some(memo) => Some(MemoKeys { memo, shared: shared()? }),
            None => None,
        })
    }

    /// The key of one model's result: the shared part, the model's contents (all its files but
    /// trainer_state.json), its step, and `label` (what the result records about the model).
    fn key(&self, dir: &Path, step: Option<u64>, label: &str) -> anyhow::Result<String> {
        Ok(memo::key(&json!({"shared": self.shared, "model": memo::model_hash(dir)?, "step": step, "label": label})))
    }
}

/// The content hash of the dataset on `port`, `null` when it is not connected.
fn input_hash(inputs: &Inputs, port: &str) -> anyhow::Result<Json> {
    Ok(if inputs.is_connected(port) { json!(memo::content_hash(&inputs.dataset(port)?.1)?) } else { Json::Null })
}

/// How many models were evaluated and how many came from the memo.
#[derive(Default)]
struct Reuse {
    computed: usize,
    reused: usize,
}

impl Reuse {
    /// Adds the reuse counts, and the node's instance id (with its sweep labels, e.g.
    /// `eval[lr=1e-05]`) so a report gathering many results knows which is which.
    fn insert_into(&self, ctx: &Ctx, m: &mut Map<String, Json>) {
        m.insert("node".into(), json!(ctx.node_id()));
        m.insert("rows_computed".into(), json!(self.computed));
        m.insert("rows_reused".into(), json!(self.reused));
    }
}

/// Stores a result in the memo; a failure only costs the reuse, so it is a warning.
fn remember(memo: &Memo, label: &str, write: impl FnOnce() -> anyhow::Result<()>) {
    if let Err(e) = write() {
        tracing::warn!("{label}: cannot store the result in the memo {}: {e:#}", memo.dir().display());
    }
}

// ---- evaluate ------------------------------------------------------------------------------

/// MiniArena instances to play: (template, seed, page size).
type Jobs = Vec<(&'static str, u64, PageSize)>;

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
    /// How much MiniArena's pages hold with `templates`/`seeds`: `full` (the default) or `small`
    /// — the size the model was trained on. The instances of the `traces` input are played at
    /// the size their episodes record; set it there only to check that they are of this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<PageSize>,
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
                if let Some(want) = self.page_size {
                    if let Some((task, seed, size)) = jobs.iter().find(|j| j.2 != want) {
                        bail!(
                            "page_size is `{want}` but the traces' instance {task} seed {seed} has {size} pages; the `traces` input's instances are played at their own size (leave page_size out)"
                        );
                    }
                }
                Ok((jobs, episodes))
            }
            (true, ..) => bail!("both the `traces` input and `templates`/`seeds` name instances to play; keep one"),
            (false, Some(t), Some(s)) => {
                let sel: Vec<&str> = t.iter().map(String::as_str).collect();
                let seeds = s.list();
                let size = self.page_size.unwrap_or_default();
                Ok((select_templates(&sel)?.into_iter().flat_map(|t| seeds.iter().map(move |&s| (t.name, s, size))).collect(), Vec::new()))
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

    fn resources() -> agentmerge_sdk::Resources {
        B::resources()
    }

    fn ports() -> Ports {
        let mut p = Ports::new().optional_input("model", PortType::Model, "the model to play (with its tokenizer files)");
        optional_models(&mut p, "checkpoints", "models to play one after the other, reported as rows in step order (trainer_state.json's global_step)");
        p.optional_input("traces", PortType::Dataset(Some("traces".into())), "episodes naming the (task, seed) instances to play, e.g. traces/split's `test`")
            .optional_input("tokenizer", PortType::Dataset(Some("tokenizer".into())), "the tokenizer and chat template (default: the model's own files)")
            .output(
                "metrics",
                PortType::Metrics,
                "overall, per_category and per_task success_rate, std_err, mean_steps; n_errors; actions, parse_errors, invalid_actions, truncated, prompt_too_long and their rates; with `traces`, step_accuracy (exact, verb, element; per_task and per_action counts) and answer_budget (recorded answers, how many are longer than max_new_tokens, the longest); for a checkpoint list, `rows` (one per checkpoint) and the last row's fields; rows_computed and rows_reused (models taken from the memo)",
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
        let seed = cfg.seed.unwrap_or(ctx.seed());
        // Greedy decoding never draws: the seed matters only when sampling.
        let keys = MemoKeys::new(ctx, || {
            Ok(json!({
                // Bump when the memoised metrics change shape (2: step_accuracy.per_task, 3: per_action).
                "v": 3,
                "config": cfg,
                "seed": (cfg.temperature > 0.0).then_some(seed),
                "tokenizer": input_hash(&inputs, "tokenizer")?,
                "traces": input_hash(&inputs, "traces")?,
            }))
        })?;
        let total = (models.len() * (jobs.len() + scored_steps)) as u64;
        let mut be: Option<Box<dyn Backend>> = None;
        let (mut all_episodes, mut rows, mut reuse) = (Vec::<Episode>::new(), Vec::<Map<String, Json>>::new(), Reuse::default());
        for (k, (step, dir)) in models.iter().enumerate() {
            let model_name = match step {
                Some(s) if rows_wanted => format!("{name}@step-{s}"),
                _ if rows_wanted => format!("{name}@{}", dir_name(dir)),
                _ => name.clone(),
            };
            let key = keys.as_ref().map(|keys| keys.key(dir, *step, &model_name)).transpose()?;
            let memoised = keys.as_ref().zip(key.as_deref()).and_then(|(keys, key)| EvalEntry::get(&keys.memo, key, jobs.len()));
            let (mut m, episodes) = match memoised {
                Some(found) => {
                    tracing::info!("{model_name}: from the memo");
                    ctx.progress(((k + 1) * (jobs.len() + scored_steps)) as u64, total, &model_name);
                    reuse.reused += 1;
                    found
                }
                None => {
                    let base = (k * (jobs.len() + scored_steps)) as u64;
                    // The first model this run plays says what the answer budget cuts off.
                    let warn_budget = reuse.computed == 0;
                    let run = ModelRun { cfg, ctx, jobs: &jobs, recorded: &recorded, scored_steps, seed, base, total, warn_budget };
                    let (m, episodes) = run.play::<B>(&mut be, dir, tok_dir.as_deref(), &model_name)?;
                    reuse.computed += 1;
                    if let (Some(keys), Some(key)) = (&keys, &key) {
                        remember(&keys.memo, &model_name, || EvalEntry::put(&keys.memo, key, &m, &episodes));
                    }
                    (m, episodes)
                }
            };
            if rows_wanted {
                let mut row = Map::new();
                row.insert("step".into(), json!(step));
                row.insert("checkpoint".into(), json!(dir_name(dir)));
                row.extend(m);
                m = row;
            }
            rows.push(m);
            all_episodes.extend(episodes);
        }
        let traces = ctx.out_path("traces.jsonl.zst")?;
        write_episodes(&traces, &all_episodes)?;
        let mut metrics = rows.last().cloned().expect("at least one model");
        if rows_wanted {
            metrics.insert("rows".into(), Json::Array(rows.into_iter().map(Json::Object).collect()));
        }
        reuse.insert_into(ctx, &mut metrics);
        Ok(Outputs::new().with("metrics", metrics).with("traces", Value::Dataset { schema: "traces".into(), path: traces }))
    }
}

/// One model's evaluation as the memo keeps it: the metrics (`<key>.json`, without the row's
/// `step` and `checkpoint`, which the node adds) and the episodes (`<key>.jsonl.zst`).
#[derive(Serialize, Deserialize)]
struct EvalEntry {
    metrics: Map<String, Json>,
    episodes: usize,
}

impl EvalEntry {
    const EPISODES: &'static str = ".jsonl.zst";

    /// The metrics and episodes under `key`, if the memo has them whole (`n` episodes).
    fn get(memo: &Memo, key: &str, n: usize) -> Option<(Map<String, Json>, Vec<Episode>)> {
        let entry: EvalEntry = memo.get(key)?;
        let path = memo.file(key, Self::EPISODES);
        match read_episodes(&path, OnBadLine::Fail) {
            Ok((episodes, _)) if episodes.len() == entry.episodes && episodes.len() == n => Some((entry.metrics, episodes)),
            Ok((episodes, _)) => {
                tracing::warn!("memo: {} holds {} episodes, expected {n}; evaluating again", path.display(), episodes.len());
                None
            }
            Err(e) => {
                tracing::warn!("memo: cannot read {} ({e:#}); evaluating again", path.display());
                None
            }
        }
    }

    /// Stores them: the episodes first, so that an entry found has its episodes.
    fn put(memo: &Memo, key: &str, metrics: &Map<String, Json>, episodes: &[Episode]) -> anyhow::Result<()> {
        memo.put_file(key, Self::EPISODES, |tmp| write_episodes(tmp, episodes).map(|_| ()))?;
        memo.put(key, &EvalEntry { metrics: metrics.clone(), episodes: episodes.len() })
    }
}

/// What evaluating one model needs besides the model.
struct ModelRun<'a> {
    cfg: &'a EvaluateConfig,
    ctx: &'a Ctx<'a>,
    jobs: &'a Jobs,
    recorded: &'a [Episode],
    scored_steps: usize,
    seed: u64,
    /// Progress units done before this model, of `total`.
    base: u64,
    total: u64,
    /// Warn when recorded answers are longer than `max_new_tokens` (once per node).
    warn_budget: bool,
}

impl ModelRun<'_> {
    /// Plays the instances with the model in `dir` (and scores the recorded steps): the
    /// model's metrics and its episodes. `backend`: created on first use and left there for
    /// the next model.
    fn play<B: BackendKind>(
        &self,
        backend: &mut Option<Box<dyn Backend>>,
        dir: &Path,
        tok_dir: Option<&Path>,
        model_name: &str,
    ) -> anyhow::Result<(Map<String, Json>, Vec<Episode>)> {
        let (cfg, ctx, total) = (self.cfg, self.ctx, self.total);
        let be = match backend.take() {
            Some(be) => be,
            None => B::create(&ctx.devices())?,
        };
        let loaded = LoadedModel::load(be, dir, tok_dir)?;
        if cfg.max_len > loaded.model.config.max_position_embeddings {
            tracing::warn!(
                "max_len {} is beyond the model's context {}: answers may be cut at the context",
                cfg.max_len,
                loaded.model.config.max_position_embeddings
            );
        }
        let (tok, template, eos) = (loaded.tokenizer.clone(), loaded.template.clone(), loaded.eos.clone());
        let agent_name = if cfg.prompt.use_thinking { "model-cot" } else { "model" };
        let agent = AgentInfo { model_name: model_name.into(), agent_name: agent_name.into() };
        let mut policy = ModelPolicy::new(loaded, tok, template, eos, cfg.agent_options(), self.seed, agent.clone())?;
        // Recorded answers the budget cuts off: no model can play those steps right. Recorded in
        // every model's metrics, said before the first model plays.
        let budget = if self.scored_steps > 0 { Some(policy.answers_over_budget(self.recorded)?) } else { None };
        if let Some(b) = budget.filter(|b| b.over > 0 && self.warn_budget) {
            tracing::warn!(
                "{} of the {} recorded answers in `traces` take more than max_new_tokens = {} tokens (the longest: {}): a model giving them is cut off, so those steps and their episodes cannot succeed; set max_new_tokens to at least {} (and max_len to the prompt length plus that)",
                b.over,
                b.answers,
                b.max_new_tokens,
                b.longest,
                b.longest
            );
        }
        let base = self.base;
        let eval = play(&mut policy, self.jobs, cfg.max_steps, cfg.batch, &mut |done, _| {
            ctx.progress(base + done as u64, total, &agent.model_name);
            ctx.check()
        })?;
        let accuracy = if self.scored_steps > 0 {
            let base = base + self.jobs.len() as u64;
            let a = step_accuracy(&mut policy, self.recorded, cfg.batch, &mut |done, _| {
                ctx.progress(base + done as u64, total, &format!("{}: recorded steps", agent.model_name));
                ctx.check()
            })?;
            tracing::info!("{}: on {} recorded steps, exact action {:.3}, element {:.3}, verb {:.3}", agent.model_name, a.steps, a.exact, a.element, a.verb);
            Some(a)
        } else {
            None
        };
        *backend = Some(policy.decoder.into_backend());
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
        if let Some(b) = budget {
            m.insert("answer_budget".into(), json!(b));
        }
        Ok((m, eval.episodes))
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

/// A model's likelihood of the `data` input, from the memo when it has it (`keys`), else
/// computed on the backend (created on first use) and remembered.
#[allow(clippy::too_many_arguments)]
fn memoised_score<B: BackendKind>(
    cfg: &LikelihoodConfig,
    ctx: &Ctx,
    keys: Option<&MemoKeys>,
    be: &mut Option<Box<dyn Backend>>,
    dir: &Path,
    step: Option<u64>,
    data: &SftReader,
    label: &str,
    reuse: &mut Reuse,
) -> anyhow::Result<Likelihood> {
    let key = keys.map(|keys| keys.key(dir, step, "")).transpose()?;
    if let Some((keys, key)) = keys.zip(key.as_deref()) {
        if let Some(entry) = keys.memo.get::<LikelihoodEntry>(key) {
            if entry.per_example.len() == entry.summary.examples {
                tracing::info!("{label}: from the memo");
                reuse.reused += 1;
                return Ok(Likelihood { per_example: entry.per_example, ..entry.summary });
            }
            tracing::warn!("memo: the entry {key} of {} is incomplete; scoring again", keys.memo.dir().display());
        }
    }
    if be.is_none() {
        *be = Some(B::create(&ctx.devices())?);
    }
    let l = cfg.score(ctx, be.as_deref_mut().expect("created"), dir, data, label)?;
    reuse.computed += 1;
    if let Some((keys, key)) = keys.zip(key.as_deref()) {
        remember(&keys.memo, label, || keys.memo.put(key, &LikelihoodEntry { summary: l.clone(), per_example: l.per_example.clone() }));
    }
    Ok(l)
}

/// A model's likelihood as the memo keeps it (`Likelihood` leaves out `per_example` when
/// serialized).
#[derive(Serialize, Deserialize)]
struct LikelihoodEntry {
    summary: Likelihood,
    per_example: Vec<ExampleLikelihood>,
}

/// The likelihood kinds' shared memo key: the config and the data's contents.
fn likelihood_keys(ctx: &Ctx, cfg: &LikelihoodConfig, inputs: &Inputs) -> anyhow::Result<Option<MemoKeys>> {
    MemoKeys::new(ctx, || Ok(json!({"config": cfg, "data": input_hash(inputs, "data")?})))
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

    fn resources() -> agentmerge_sdk::Resources {
        B::resources()
    }

    fn ports() -> Ports {
        let mut p = Ports::new().optional_input("model", PortType::Model, "the model to score with");
        optional_models(&mut p, "checkpoints", "models to score one after the other, reported as rows in step order");
        p.input("data", PortType::Dataset(None), DATA_DOC)
            .output(
                "metrics",
                PortType::Metrics,
                "examples, tokens, sum_logprob, mean_logprob, perplexity, mean_example_logprob; for a checkpoint list, `rows` (step, checkpoint and the same fields) and the last row's fields; rows_computed and rows_reused (models taken from the memo)",
            )
            .output("per_example", PortType::Dataset(Some("jsonl".into())), PER_EXAMPLE_DOC)
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.config.check()
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let data = open_data(&inputs)?;
        let (models, rows_wanted) = models_to_score(&inputs)?;
        let keys = likelihood_keys(ctx, &self.config, &inputs)?;
        let (mut be, mut reuse) = (None, Reuse::default());
        let path = ctx.out_path("likelihood.jsonl")?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?);
        let mut rows = Vec::new();
        for (step, dir) in &models {
            let mut fields = Map::new();
            if rows_wanted {
                fields.insert("step".into(), json!(step));
                fields.insert("checkpoint".into(), json!(dir_name(dir)));
            }
            let l = memoised_score::<B>(&self.config, ctx, keys.as_ref(), &mut be, dir, *step, &data, &dir_name(dir), &mut reuse)?;
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
        reuse.insert_into(ctx, &mut metrics);
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

    fn resources() -> agentmerge_sdk::Resources {
        B::resources()
    }

    fn ports() -> Ports {
        Ports::new()
            .input("before", PortType::Model, "the model before (e.g. the instruct model)")
            .input("after", PortType::Model, "the model after (e.g. fine-tuned on agent traces, or merged)")
            .input("data", PortType::Dataset(None), DATA_DOC)
            .output(
                "metrics",
                PortType::Metrics,
                "before and after (each: examples, tokens, mean_logprob, perplexity, ...), forgetting = before.mean_logprob − after.mean_logprob; rows_computed and rows_reused (of the two models, those taken from the memo)",
            )
            .output("per_example", PortType::Dataset(Some("jsonl".into())), PER_EXAMPLE_DOC)
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.config.check()
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let data = open_data(&inputs)?;
        let keys = likelihood_keys(ctx, &self.config, &inputs)?;
        let (mut be, mut reuse) = (None, Reuse::default());
        let path = ctx.out_path("likelihood.jsonl")?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?);
        let mut metrics = Map::new();
        let mut means = Vec::new();
        for which in ["before", "after"] {
            let l = memoised_score::<B>(&self.config, ctx, keys.as_ref(), &mut be, &inputs.model(which)?, None, &data, which, &mut reuse)?;
            write_per_example(&mut out, &as_object(json!({ "model": which })), &l)?;
            means.push(l.mean_logprob);
            metrics.insert(which.into(), json!(l));
        }
        out.into_inner().map_err(|e| anyhow!("writing {}: {e}", path.display()))?.sync_all()?;
        metrics.insert("forgetting".into(), json!(means[0] - means[1]));
        metrics.insert("per_example_file".into(), json!("likelihood.jsonl"));
        reuse.insert_into(ctx, &mut metrics);
        tracing::info!("forgetting: mean log-likelihood {:.4} before, {:.4} after ({:+.4})", means[0], means[1], means[1] - means[0]);
        Ok(Outputs::new().with("metrics", metrics).with("per_example", Value::Dataset { schema: "jsonl".into(), path }))
    }
}
