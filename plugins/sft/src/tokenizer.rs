//! `sft/tokenizer`: a byte-level BPE trained on traces, or a model's own tokenizer, written as
//! a tokenizer directory (tokenizer.json + tokenizer_config.json with the chat template).

use std::path::{Path, PathBuf};

use agentmerge_sdk::{prelude::*, PortSpec};
use agentmerge_sft::{
    build::{response_text, step_prompt},
    prompt::{fit_prompt, PromptOptions},
    template::{ChatTemplate, DEFAULT_TEMPLATE},
    text::{list_files, read_documents, Split, TEXT_EXTENSIONS},
    tokenizer as tk,
};
use agentmerge_traces::{read_episodes, Episode, OnBadLine};
use serde_json::{json, Map, Value as Json};
use tokenizers::Tokenizer;

use crate::{tokenizer_type, traces_type, TOKENIZER_SCHEMA};

/// Trains a tokenizer on traces, or takes a model's.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizerKind {
    /// Vocabulary size of the trained byte-level BPE, special tokens included (at least 256
    /// plus their number). Training stops earlier when no pair of tokens occurs twice more.
    /// Not used when `model` is connected.
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Special tokens of the trained tokenizer, given the first ids in this order; never split,
    /// never merged with text. The defaults are the default chat template's tokens. Must
    /// include `bos_token` and `eos_token`. Not used when `model` is connected.
    #[serde(default = "d_specials")]
    pub special_tokens: Vec<String>,
    /// The chat template (Jinja, as in tokenizer_config.json). Default: the model's, else
    /// AgentMerge's default (`<|start|>ROLE\nTEXT<|end|>` turns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// Beginning-of-sequence token. Default: the model's, else `<|bos|>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token: Option<String>,
    /// End-of-sequence token, which ends every SFT response. Default: the model's, else `<|eos|>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token: Option<String>,
    /// How many corpus texts (spread evenly over it) measure tokens per character for the report.
    #[serde(default = "d_sample")]
    pub sample_texts: usize,
}

fn d_vocab() -> usize {
    2048
}
fn d_specials() -> Vec<String> {
    ["<|bos|>", "<|eos|>", "<|start|>", "<|end|>"].iter().map(|s| s.to_string()).collect()
}
fn d_sample() -> usize {
    2000
}

/// The text a tokenizer should be good at: for every action step, the system message and the
/// user prompt exactly as the SFT builder writes them (default prompt options, whole AXTree),
/// and the response. Special tokens are left out: they are added whole.
pub fn corpus(episodes: &[Episode]) -> anyhow::Result<Vec<String>> {
    let template = ChatTemplate::default();
    let no_count = |_: &str| -> anyhow::Result<usize> { Ok(0) };
    let mut texts = Vec::new();
    for e in episodes {
        for (i, s) in e.steps.iter().enumerate() {
            let Some(action) = &s.action else { continue };
            let think = s.think.as_deref().filter(|t| !t.trim().is_empty());
            let opts = PromptOptions { use_thinking: think.is_some(), ..PromptOptions::default() };
            let fitted = fit_prompt(&step_prompt(e, i), &opts, &template, usize::MAX, None, &no_count)?;
            texts.extend(fitted.messages.into_iter().map(|m| m.content));
            texts.push(response_text(think, action));
        }
    }
    Ok(texts)
}

/// Tokens per character over up to `n` texts spread evenly over `texts`: (texts, chars, tokens).
fn density(tok: &Tokenizer, texts: &[String], n: usize) -> anyhow::Result<(usize, usize, usize)> {
    if texts.is_empty() || n == 0 {
        return Ok((0, 0, 0));
    }
    let step = texts.len().div_ceil(n);
    let (mut count, mut chars, mut tokens) = (0, 0, 0);
    for t in texts.iter().step_by(step) {
        count += 1;
        chars += t.chars().count();
        tokens += tk::encode(tok, t)?.len();
    }
    Ok((count, chars, tokens))
}

impl TokenizerKind {
    fn template_check(&self) -> Result<(), ConfigError> {
        if let Some(src) = &self.chat_template {
            let t = ChatTemplate { source: src.clone(), ..ChatTemplate::default() };
            // Parse errors only; a template may legitimately raise on an empty conversation.
            if let Err(e) = t.render(&[], false) {
                if e.to_string().contains("does not parse") {
                    return Err(ConfigError::new("chat_template", e.to_string()));
                }
            }
        }
        Ok(())
    }

    fn read_traces(inputs: &Inputs) -> anyhow::Result<Option<Vec<Episode>>> {
        if !inputs.is_connected("traces") {
            return Ok(None);
        }
        let (_, path) = inputs.dataset("traces")?;
        Ok(Some(read_episodes(&path, OnBadLine::Fail)?.0))
    }

    /// Trains on the corpus and writes the tokenizer directory `dir`.
    fn train(&self, texts: &[String], dir: &Path) -> anyhow::Result<Tokenizer> {
        let bos = self.bos_token.clone().unwrap_or_else(|| "<|bos|>".into());
        let eos = self.eos_token.clone().unwrap_or_else(|| "<|eos|>".into());
        for (field, t) in [("bos_token", &bos), ("eos_token", &eos)] {
            anyhow::ensure!(
                self.special_tokens.contains(t),
                "{field} `{t}` is not among special_tokens ({}); add it there or change `{field}`",
                self.special_tokens.join(", ")
            );
        }
        anyhow::ensure!(!texts.is_empty(), "the traces have no action steps and the text no documents to train a tokenizer on");
        let tok = tk::train_bpe(texts.iter(), self.vocab_size, &self.special_tokens)?;
        let source = self.chat_template.as_deref().unwrap_or(DEFAULT_TEMPLATE);
        tk::save(&tok, dir, source, &bos, &eos, None)?;
        Ok(tok)
    }

    /// Copies a model's tokenizer.json into `out`, with its tokenizer_config.json where the chat
    /// template and special tokens are resolved (config overrides first).
    fn take_from_model(&self, dir: &Path, out: &Path) -> anyhow::Result<Tokenizer> {
        let tok = tk::load(dir)?;
        let cfg_path = dir.join("tokenizer_config.json");
        let mut cfg: Map<String, Json> = if cfg_path.exists() {
            match serde_json::from_str(&std::fs::read_to_string(&cfg_path)?).with_context(|| format!("{}: not valid JSON", cfg_path.display()))? {
                Json::Object(m) => m,
                _ => bail!("{}: not a JSON object", cfg_path.display()),
            }
        } else {
            Map::new()
        };
        let model = ChatTemplate::from_dir(dir)?;
        let source = self.chat_template.clone().unwrap_or(model.source);
        let bos = self.bos_token.clone().unwrap_or(model.bos_token);
        let eos = self.eos_token.clone().unwrap_or(model.eos_token);
        anyhow::ensure!(!eos.is_empty(), "{} names no eos_token; set `eos_token` in the config", cfg_path.display());
        if tok.token_to_id(&eos).is_none() {
            tracing::warn!("eos_token `{eos}` is not a single token of the model's tokenizer");
        }
        if source == DEFAULT_TEMPLATE && tok.token_to_id("<|start|>").is_none() {
            tracing::warn!("the model has no chat template; using AgentMerge's default, whose <|start|>/<|end|> are not tokens of this tokenizer");
        }
        cfg.insert("chat_template".into(), json!(source));
        cfg.insert("bos_token".into(), json!(bos));
        cfg.insert("eos_token".into(), json!(eos));
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::copy(dir.join("tokenizer.json"), out.join("tokenizer.json")).with_context(|| format!("copying {}/tokenizer.json", dir.display()))?;
        std::fs::write(out.join("tokenizer_config.json"), serde_json::to_string_pretty(&cfg)?)?;
        Ok(tok)
    }
}

impl NodeKind for TokenizerKind {
    const NAME: &'static str = "tokenizer";
    const DOC: &'static str = "Trains a byte-level BPE tokenizer on the prompts and responses of a traces dataset (and any `text` datasets), or takes a model's tokenizer (model input); writes tokenizer.json + tokenizer_config.json with the chat template.";

    fn resources() -> agentmerge_sdk::Resources {
        agentmerge_sdk::Resources::all_threads()
    }

    fn ports() -> Ports {
        let mut ports = Ports::new()
            .optional_input("traces", traces_type(), "episodes to train on (and to measure tokens per character on)")
            .optional_input("model", PortType::Model, "take this model's tokenizer instead of training one")
            .output("tokenizer", tokenizer_type(), "a directory with tokenizer.json and tokenizer_config.json (chat_template, bos_token, eos_token)")
            .output(
                "report",
                PortType::Metrics,
                "source (trained or model), vocab_size, bos/eos tokens, corpus_texts, corpus_chars, sample_texts, tokens_per_char",
            );
        // Optional and a list: text to train on besides the traces (e.g. sft/reading's
        // exercises, a pretraining corpus), so the vocabulary covers it too.
        ports.inputs.insert(
            1,
            PortSpec {
                name: "text".into(),
                ty: PortType::Dataset(None),
                list: true,
                optional: true,
                doc: format!("text datasets to train on too ({TEXT_EXTENSIONS} files or directories of them; JSON Lines documents in `text`)"),
            },
        );
        ports
    }

    fn check(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, t) in self.special_tokens.iter().enumerate() {
            if t.is_empty() {
                return Err(ConfigError::new(format!("special_tokens[{i}]"), "is empty"));
            }
            if !seen.insert(t) {
                return Err(ConfigError::new(format!("special_tokens[{i}]"), format!("`{t}` is listed twice")));
            }
        }
        let least = 256 + self.special_tokens.len();
        if self.vocab_size < least {
            return Err(ConfigError::new("vocab_size", format!("must be at least {least} (256 byte tokens + {} special tokens)", self.special_tokens.len())));
        }
        for (field, t) in [("bos_token", &self.bos_token), ("eos_token", &self.eos_token)] {
            if t.as_deref() == Some("") {
                return Err(ConfigError::new(field, "is empty"));
            }
        }
        self.template_check()
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let episodes = Self::read_traces(&inputs)?;
        let mut texts = match &episodes {
            Some(eps) => corpus(eps)?,
            None => Vec::new(),
        };
        drop(episodes);
        let sources: Vec<PathBuf> = inputs.datasets("text")?.into_iter().map(|(_, p)| p).collect();
        for f in list_files(&sources)? {
            texts.extend(read_documents(&f, Split::Paragraph, "text")?);
        }
        ctx.check()?;
        // Written beside its final name, then renamed: the directory appears complete.
        let dir = ctx.out_dir().join("tokenizer");
        let tmp = ctx.out_dir().join(".tokenizer.tmp");
        let mut report = Map::new();
        let tok = if inputs.is_connected("model") {
            report.insert("source".into(), json!("model"));
            self.take_from_model(&inputs.model("model")?, &tmp)?
        } else if inputs.is_connected("traces") || !sources.is_empty() {
            report.insert("source".into(), json!("trained"));
            tracing::info!("training a byte-level BPE ({} tokens) on {} texts", self.vocab_size, texts.len());
            self.train(&texts, &tmp)?
        } else {
            bail!("connect `traces` (and/or `text`) to train a tokenizer, or `model` to take a model's tokenizer");
        };
        std::fs::rename(&tmp, &dir).with_context(|| format!("moving {} into place", dir.display()))?;
        ctx.check()?;
        let written = ChatTemplate::from_dir(&dir)?;

        let (sampled, chars, tokens) = density(&tok, &texts, self.sample_texts)?;
        report.insert("vocab_size".into(), json!(tok.get_vocab_size(true)));
        report.insert("bos_token".into(), json!(written.bos_token));
        report.insert("eos_token".into(), json!(written.eos_token));
        report.insert("corpus_texts".into(), json!(texts.len()));
        report.insert("corpus_chars".into(), json!(texts.iter().map(|t| t.chars().count()).sum::<usize>()));
        report.insert("sample_texts".into(), json!(sampled));
        report.insert("tokens_per_char".into(), if chars > 0 { json!(tokens as f64 / chars as f64) } else { Json::Null });
        tracing::info!("tokenizer: {} tokens; {} tokens per character on the corpus", tok.get_vocab_size(true), report["tokens_per_char"]);
        Ok(Outputs::new().with("tokenizer", Value::Dataset { schema: TOKENIZER_SCHEMA.into(), path: dir }).with("report", report))
    }
}
