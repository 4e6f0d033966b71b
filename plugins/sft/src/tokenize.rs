//! `sft/tokenize`: plain text (`.txt`, JSON Lines, or directories of them) + tokenizer → a token
//! file for next-token pretraining (`agentmerge_sft::text`): one example per document, or per
//! window of `max_len` tokens of a long one, every token in the loss.
//!
//! Files named in `paths` are fingerprinted into the resolved config (`crate::paths`): editing,
//! adding or removing one re-runs the node.

use std::path::PathBuf;

use agentmerge_sdk::{prelude::*, PortSpec};
use agentmerge_sft::{
    template::ChatTemplate,
    text::{list_files, tokenize_text, Split, TextConfig, TEXT_EXTENSIONS},
    tokenizer as tk,
};

use crate::{metrics, paths, tokenizer_type, TOKENS_SCHEMA};

/// The token file's name in the node's output directory.
pub const TOKENS_FILE: &str = "tokens.amsft";

/// Tokenizes plain text for next-token pretraining.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tokenize {
    /// Text files or directories to read, after those on the `text` input: `.txt`, `.jsonl`,
    /// `.jsonl.gz` or `.jsonl.zst` files, or directories whose such files are read in sorted
    /// order (not their subdirectories). A relative path is relative to the current directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// How a `.txt` file is cut into documents: `paragraph` (at blank lines), `line` (every
    /// non-blank line) or `file` (the whole file). A JSON Lines file has one document per line.
    #[serde(default)]
    pub split: Split,
    /// The key of each JSON Lines object that holds its document (a string).
    #[serde(default = "d_field")]
    pub field: String,
    /// The most tokens in one example. A longer document (bos/eos included) is cut into
    /// consecutive windows of at most `max_len` tokens, each its own example.
    #[serde(default = "d_max_len")]
    pub max_len: usize,
    /// Start each document with the tokenizer's bos token. Default: true when
    /// tokenizer_config.json names a bos_token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_bos: Option<bool>,
    /// End each document with the tokenizer's eos token. Default: true when
    /// tokenizer_config.json names an eos_token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_eos: Option<bool>,
    /// Documents with fewer text tokens (bos/eos not counted) are dropped and counted.
    #[serde(default = "d_min_tokens")]
    pub min_tokens: usize,
    /// Filled in when the pipeline is checked: a fingerprint (path, size, modification time)
    /// of the files `paths` stands for, so the cache notices when they change. Leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

fn d_field() -> String {
    "text".into()
}
fn d_max_len() -> usize {
    2048
}
fn d_min_tokens() -> usize {
    2
}

impl Tokenize {
    fn text_config(&self) -> TextConfig {
        TextConfig {
            max_len: self.max_len,
            add_bos: self.add_bos,
            add_eos: self.add_eos,
            min_tokens: self.min_tokens,
            split: self.split,
            field: self.field.clone(),
        }
    }
}

impl NodeKind for Tokenize {
    const NAME: &'static str = "tokenize";
    const DOC: &'static str = "Tokenizes plain text (.txt split at blank lines/lines/whole file, JSON Lines `text` fields, or directories of them) for next-token pretraining: one example per document, windows of at most `max_len` tokens, bos/eos added, every token in the loss.";

    fn resources() -> agentmerge_sdk::Resources {
        agentmerge_sdk::Resources::all_threads()
    }

    fn ports() -> Ports {
        let mut ports = Ports::new()
            .input("tokenizer", tokenizer_type(), "tokenizer.json + tokenizer_config.json (bos_token, eos_token), e.g. from sft/tokenizer")
            .output(
                "dataset",
                PortType::Dataset(Some(TOKENS_SCHEMA.into())),
                "the token file (AMSFT001, tokens.amsft): one example per document or window, loss mask 1 on every token",
            )
            .output(
                "report",
                PortType::Metrics,
                "files, documents, dropped_short, cut_documents, examples (windows), tokens, max_len, vocab_size, bos_token, eos_token",
            );
        // Optional and a list: any number of text datasets, or none when `paths` names the files.
        ports.inputs.insert(
            0,
            PortSpec {
                name: "text".into(),
                ty: PortType::Dataset(None),
                list: true,
                optional: true,
                doc: format!("text datasets of any schema: each a {TEXT_EXTENSIONS} file or a directory of them (read before `paths`)"),
            },
        );
        ports
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.max_len < 2 {
            return Err(ConfigError::new("max_len", "must be at least 2 (a window needs two tokens to predict one)"));
        }
        if self.min_tokens == 0 {
            return Err(ConfigError::new("min_tokens", "must be at least 1"));
        }
        if self.field.is_empty() {
            return Err(ConfigError::new("field", "is empty; name the JSON Lines key holding the text"));
        }
        paths::check(&self.paths, agentmerge_sft::text::is_text_file, "text source", TEXT_EXTENSIONS)?;
        Ok(())
    }

    fn resolve(&mut self) -> Result<(), ConfigError> {
        self.fingerprint = paths::fingerprint(&self.paths)?;
        Ok(())
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let mut sources: Vec<PathBuf> = inputs.datasets("text")?.into_iter().map(|(_, p)| p).collect();
        if sources.is_empty() && self.paths.is_empty() {
            bail!("no text to read: connect the `text` input or list files in `paths`");
        }
        paths::unchanged(self.fingerprint.as_ref(), &self.paths)?;
        sources.extend(self.paths.iter().map(PathBuf::from));
        let files = list_files(&sources)?;
        let (_, tok_dir) = inputs.dataset("tokenizer")?;
        let tok = tk::load(&tok_dir)?;
        let template = ChatTemplate::from_dir(&tok_dir)?;
        ctx.check()?;
        let out = ctx.out_path(TOKENS_FILE)?;
        let total = files.len() as u64;
        let report = tokenize_text(&files, &tok, &template, &self.text_config(), &out, &|done| {
            ctx.progress(done as u64, total, "files");
            ctx.check()
        })?;
        tracing::info!(
            "{} examples ({} tokens) from {} documents in {} files; {} documents dropped as shorter than {} tokens, {} cut into windows",
            report.examples,
            report.tokens,
            report.documents,
            report.files,
            report.dropped_short,
            self.min_tokens,
            report.cut_documents
        );
        Ok(Outputs::new().with("dataset", Value::Dataset { schema: TOKENS_SCHEMA.into(), path: out }).with("report", metrics(&report)?))
    }
}
