//! A trained model as a MiniArena agent: each turn's prompt is exactly the one `sft/build`
//! trains on (the same chat template, [`PromptOptions`], history rules and AXTree cut, from
//! `agentmerge_sft::build::history_prompt` and `fit_prompt`), the prompts of every running
//! episode are decoded in one batch, and each answer is split into `<think>` and `<action>`.
//!
//! Nothing the model writes stops an episode: an answer that does not parse, names an element
//! that is not on the page or runs out of tokens goes to the environment as it is, which
//! rejects it with a `last_action_error` (as BrowserGym does) and counts the step. A prompt
//! that does not fit even without its AXTree (the model's own long answers in the history)
//! keeps fewer past steps; only one that cannot fit without any ends the episode (with
//! `err_msg`, as an AgentLab agent that raises).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use agentmerge_miniarena::{AgentOutput, BatchPolicy, Turn};
use agentmerge_model::{
    checkpoint,
    generate::{generate, Generated, Sampling, StopReason},
    Backend, Model,
};
use agentmerge_sft::{
    build::{history_prompt, response_text, step_think},
    prompt::{fit_prompt, DropReason, PromptOptions},
    template::ChatTemplate,
    tokenizer as tk,
};
use agentmerge_traces::{AgentInfo, Episode};
use anyhow::{anyhow, bail, Context as _};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::response::parse_response;

/// How the agent is prompted and decodes. `prompt` and `max_len` must be those the model was
/// trained with (`sft/build`'s), or it is shown prompts it never saw.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AgentOptions {
    /// The prompt's parts, as `sft/build`'s `prompt` (AgentLab's flags). With `use_thinking`
    /// the prompt asks for `<think>` before `<action>`.
    pub prompt: PromptOptions,
    /// The context: prompt + answer tokens (`sft/build`'s `max_len`). Prompts are fitted to
    /// `max_len − max_new_tokens` by cutting AXTree lines from the bottom, as AgentLab does.
    pub max_len: usize,
    /// The most tokens of one answer; an answer cut here is counted as `truncated`.
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy decoding.
    pub temperature: f32,
    /// Nucleus sampling's probability mass (1: the whole vocabulary). Ignored when greedy.
    pub top_p: f32,
}

impl Default for AgentOptions {
    fn default() -> AgentOptions {
        AgentOptions {
            prompt: PromptOptions::default(),
            max_len: agentmerge_sft::BuildConfig::default().max_len,
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
        }
    }
}

impl AgentOptions {
    /// What is wrong with these options, if anything: (field, message).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.max_new_tokens == 0 {
            return Some(("max_new_tokens", "must be at least 1".into()));
        }
        if self.max_new_tokens >= self.max_len {
            return Some(("max_new_tokens", format!("{} leaves no room for the prompt in max_len {}", self.max_new_tokens, self.max_len)));
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Some(("temperature", "must be 0 (greedy) or positive".into()));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Some(("top_p", "must be in (0, 1]".into()));
        }
        if self.prompt.max_history == Some(0) && self.prompt.use_history {
            return Some(("prompt.max_history", "0 keeps no history; set `prompt.use_history: false` instead".into()));
        }
        None
    }
}

/// What happened on an agent's steps (one episode's, or summed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCounts {
    /// Turns answered by the model.
    pub actions: usize,
    /// Answers without a closed `<action>…</action>` (or with an unclosed `<think>`), or whose
    /// action is not one BrowserGym action.
    pub parse_errors: usize,
    /// Actions that parse but that the environment rejected (an element not on the page, a
    /// value a field does not take...): steps followed by a `last_action_error`.
    pub invalid_actions: usize,
    /// Answers cut by `max_new_tokens` (or the model's context) before they ended.
    pub truncated: usize,
    /// Turns whose prompt did not fit even without its AXTree and history: the episode ended
    /// there.
    pub prompt_too_long: usize,
    /// Prompts cut to fit: AXTree lines, or (when that was not enough) past steps.
    pub cut_prompts: usize,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
}

impl StepCounts {
    pub fn add(&mut self, o: &StepCounts) {
        self.actions += o.actions;
        self.parse_errors += o.parse_errors;
        self.invalid_actions += o.invalid_actions;
        self.truncated += o.truncated;
        self.prompt_too_long += o.prompt_too_long;
        self.cut_prompts += o.cut_prompts;
        self.prompt_tokens += o.prompt_tokens;
        self.new_tokens += o.new_tokens;
    }
}

/// Whatever continues token prompts: the model ([`LoadedModel`]), or a stand-in in tests.
pub trait Decoder {
    /// One continuation per prompt, as [`agentmerge_model::generate::generate`] returns them.
    fn generate(&mut self, prompts: &[Vec<u32>], s: &Sampling, seed: u64, decode: &dyn Fn(&[u32]) -> anyhow::Result<String>) -> anyhow::Result<Vec<Generated>>;
}

/// A model directory loaded into a backend, with its tokenizer and chat template.
pub struct LoadedModel {
    pub be: Box<dyn Backend>,
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    /// End-of-sequence ids: config.json's `eos_token_id` and the chat template's eos token.
    pub eos: Vec<u32>,
    pub dir: PathBuf,
}

impl LoadedModel {
    /// Loads the checkpoint `dir` into `be` (for inference: parameters only). The tokenizer and
    /// chat template come from `tokenizer_dir` when given, else from the checkpoint.
    pub fn load(mut be: Box<dyn Backend>, dir: &Path, tokenizer_dir: Option<&Path>) -> anyhow::Result<LoadedModel> {
        let (config, _, params) = checkpoint::load(dir)?;
        let tok_dir = tokenizer_dir.unwrap_or(dir);
        if !tok_dir.join("tokenizer.json").exists() {
            bail!("{} has no tokenizer.json; connect the `tokenizer` input (the tokenizer the model was trained with)", tok_dir.display());
        }
        let tokenizer = tk::load(tok_dir)?;
        let template = ChatTemplate::from_dir(tok_dir)?;
        if tokenizer.get_vocab_size(true) > config.vocab_size {
            bail!("{}: the tokenizer has {} tokens, more than the model's vocab_size {}", tok_dir.display(), tokenizer.get_vocab_size(true), config.vocab_size);
        }
        let mut eos: Vec<u32> = config.eos_token_id.clone();
        if let Some(id) = (!template.eos_token.is_empty()).then(|| tokenizer.token_to_id(&template.eos_token)).flatten() {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
        let model = Model::new(config)?;
        model.alloc_params(be.as_mut(), false)?;
        be.upload(model.all(agentmerge_model::Mem::Params), &params)?;
        Ok(LoadedModel { be, model, tokenizer, template, eos, dir: dir.to_path_buf() })
    }

    /// Gives the backend back (to load the next checkpoint into it).
    pub fn into_backend(self) -> Box<dyn Backend> {
        self.be
    }
}

impl Decoder for LoadedModel {
    fn generate(&mut self, prompts: &[Vec<u32>], s: &Sampling, seed: u64, decode: &dyn Fn(&[u32]) -> anyhow::Result<String>) -> anyhow::Result<Vec<Generated>> {
        generate(self.be.as_mut(), &mut self.model, prompts, s, seed, decode)
    }
}

/// Recorded answers against the answer budget (`ModelPolicy::answers_over_budget`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerBudget {
    /// Recorded answers measured, and those longer than `max_new_tokens`.
    pub answers: usize,
    pub over: usize,
    /// The longest answer, in tokens.
    pub longest: usize,
    pub max_new_tokens: usize,
}

/// The model-backed agent: a [`BatchPolicy`] for `agentmerge_miniarena::rollout_batch`.
pub struct ModelPolicy<D> {
    pub decoder: D,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    opts: AgentOptions,
    eos: Vec<u32>,
    seed: u64,
    rounds: u64,
    agent: AgentInfo,
    /// Step counts per episode (the index `rollout_batch` gives each job).
    counts: BTreeMap<usize, StepCounts>,
    /// Seconds spent building prompts, and decoding.
    pub seconds: Seconds,
}

/// Where an agent's time goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Seconds {
    /// Building, fitting and tokenizing prompts.
    pub prompts: f64,
    /// The decoder's `generate` calls (prefill and decoding).
    pub decoding: f64,
}

impl<D: Decoder> ModelPolicy<D> {
    /// An agent answering with `decoder`, prompting with `tokenizer` and `template`; `eos` ends
    /// an answer; sampled answers are reproducible from `seed`.
    pub fn new(
        decoder: D,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        eos: Vec<u32>,
        opts: AgentOptions,
        seed: u64,
        agent: AgentInfo,
    ) -> anyhow::Result<ModelPolicy<D>> {
        if let Some((field, msg)) = opts.problem() {
            bail!("agent options: `{field}` {msg}");
        }
        Ok(ModelPolicy { decoder, tokenizer, template, opts, eos, seed, rounds: 0, agent, counts: BTreeMap::new(), seconds: Seconds::default() })
    }

    /// The step counts of episode `i` so far.
    pub fn counts(&self, i: usize) -> StepCounts {
        self.counts.get(&i).cloned().unwrap_or_default()
    }

    /// Forgets the step counts (before the next set of episodes).
    pub fn take_counts(&mut self) -> BTreeMap<usize, StepCounts> {
        std::mem::take(&mut self.counts)
    }

    pub fn set_agent(&mut self, agent: AgentInfo) {
        self.agent = agent;
    }

    /// The recorded answers of `episodes` (each action step's `<action>…</action>`, with its
    /// `<think>` when the prompt asks for thoughts, as `sft/build` writes the target) that take
    /// more than `max_new_tokens` tokens: a model giving them is cut off before `</action>`, so
    /// no model can get those steps right. Their count and the longest answer's tokens.
    pub fn answers_over_budget(&self, episodes: &[Episode]) -> anyhow::Result<AnswerBudget> {
        let mut b = AnswerBudget { max_new_tokens: self.opts.max_new_tokens, ..Default::default() };
        for s in episodes.iter().flat_map(|e| &e.steps) {
            let Some(action) = s.action.as_deref() else { continue };
            let think = step_think(s).filter(|_| self.opts.prompt.use_thinking);
            let n = tk::encode(&self.tokenizer, &response_text(think, action))?.len();
            b.answers += 1;
            b.longest = b.longest.max(n);
            b.over += usize::from(n > self.opts.max_new_tokens);
        }
        Ok(b)
    }

    /// The prompt for one turn, as token ids, fitted to `max_len − max_new_tokens` as `sft/build`
    /// fits it (AXTree lines cut from the bottom). A prompt that does not fit even without its
    /// AXTree — long answers of the model's own in the history — keeps fewer past steps (the
    /// oldest go first), then none; `Ok(Err)` when even that does not fit. Also says whether
    /// the prompt was cut.
    fn prompt(&self, turn: &Turn<'_>) -> anyhow::Result<Result<(Vec<u32>, bool), String>> {
        let budget = self.opts.max_len - self.opts.max_new_tokens;
        let count = |text: &str| -> anyhow::Result<usize> { Ok(tk::encode(&self.tokenizer, text)?.len()) };
        let p = history_prompt("", turn.obs, turn.history);
        let shown = self.opts.prompt.max_history.map_or(p.history.len(), |m| m.min(p.history.len()));
        let mut opts = self.opts.prompt.clone();
        let mut fitted = fit_prompt(&p, &opts, &self.template, budget, None, &count)?;
        for keep in (0..shown).rev() {
            if fitted.dropped != Some(DropReason::TooLong) || !opts.use_history {
                break;
            }
            opts.max_history = Some(keep);
            opts.use_history = keep > 0;
            fitted = fit_prompt(&p, &opts, &self.template, budget, None, &count)?;
        }
        if fitted.dropped == Some(DropReason::TooLong) {
            return Ok(Err(format!(
                "the prompt is {} tokens even without its AXTree and history, more than max_len − max_new_tokens = {budget}; raise max_len or shorten the prompt options",
                fitted.tokens
            )));
        }
        let ids = tk::encode(&self.tokenizer, &self.template.render(&fitted.messages, true)?)?;
        Ok(Ok((ids, fitted.deleted_lines > 0 || opts.max_history != self.opts.prompt.max_history)))
    }
}

impl<D: Decoder> BatchPolicy for ModelPolicy<D> {
    fn agent_info(&self) -> AgentInfo {
        self.agent.clone()
    }

    fn act_batch(&mut self, turns: &[Turn<'_>]) -> anyhow::Result<Vec<anyhow::Result<AgentOutput>>> {
        let mut out: Vec<Option<anyhow::Result<AgentOutput>>> = (0..turns.len()).map(|_| None).collect();
        let (mut prompts, mut asked) = (Vec::new(), Vec::new());
        let start = Instant::now();
        for (k, t) in turns.iter().enumerate() {
            let prompt = self.prompt(t)?;
            let c = self.counts.entry(t.episode).or_default();
            match prompt {
                Ok((ids, cut)) => {
                    c.cut_prompts += usize::from(cut);
                    c.prompt_tokens += ids.len();
                    prompts.push(ids);
                    asked.push(k);
                }
                Err(msg) => {
                    c.prompt_too_long += 1;
                    out[k] = Some(Err(anyhow!(msg)));
                }
            }
        }
        let decoding = Instant::now();
        self.seconds.prompts += decoding.duration_since(start).as_secs_f64();
        let sampling = Sampling {
            temperature: self.opts.temperature,
            top_p: self.opts.top_p,
            max_new_tokens: self.opts.max_new_tokens,
            stop: vec!["</action>".into()],
            eos: self.eos.clone(),
        };
        // One stream per round: the draws of a round do not depend on earlier rounds' lengths.
        let seed = agentmerge_model::seed::derive(self.seed, &format!("round {}", self.rounds));
        self.rounds += 1;
        let tok = &self.tokenizer;
        let decode = |ids: &[u32]| tok.decode(ids, false).map_err(|e| anyhow!("detokenizing an answer failed: {e}"));
        let gens = if prompts.is_empty() {
            Vec::new()
        } else {
            self.decoder.generate(&prompts, &sampling, seed, &decode).context("generating the agents' answers")?
        };
        self.seconds.decoding += decoding.elapsed().as_secs_f64();
        anyhow::ensure!(gens.len() == prompts.len(), "the decoder answered {} of {} prompts", gens.len(), prompts.len());
        for (k, g) in asked.into_iter().zip(gens) {
            let r = parse_response(&g.text);
            let c = self.counts.entry(turns[k].episode).or_default();
            c.actions += 1;
            c.new_tokens += g.tokens.len();
            c.parse_errors += usize::from(!r.parses());
            c.truncated += usize::from(matches!(g.reason, StopReason::MaxTokens | StopReason::ContextFull));
            out[k] = Some(Ok(AgentOutput { think: r.think, action: r.action }));
        }
        Ok(out.into_iter().map(|o| o.expect("every turn answered")).collect())
    }
}
