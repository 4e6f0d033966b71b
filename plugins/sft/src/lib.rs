//! The `sft` plugin: from traces (and plain text) to training data. `tokenizer` trains a byte-level
//! BPE on the text of a traces dataset (the prompts the SFT builder will write, and the
//! responses) or takes a model's tokenizer; `build` turns traces into an SFT token file with
//! `agentmerge_sft::build_sft` (AgentLab's prompt fitted to `max_len`, drops counted by reason);
//! `tokenize` turns plain text (`.txt`, JSON Lines, or directories of them) into a `tokens` file
//! for next-token pretraining with `agentmerge_sft::tokenize_text` (one example per document or
//! window of `max_len` tokens, bos/eos added, every token in the loss); `reading` makes
//! page-reading exercises from the pages of traces (pretraining text, or instruction data);
//! `chat` turns instruction data (JSON Lines `messages`) into an SFT token file.
//!
//! A tokenizer travels as `dataset:tokenizer`: a directory with `tokenizer.json` and
//! `tokenizer_config.json` (chat template, bos/eos tokens), the files a Hugging Face model
//! directory has, so either can be read the same way.

mod build;
mod chat;
mod paths;
mod reading;
mod tokenize;
mod tokenizer;

use agentmerge_sdk::prelude::*;

pub use build::Build;
pub use chat::Chat;
pub use reading::Reading;
pub use tokenize::Tokenize;
pub use tokenizer::TokenizerKind;

/// The schema name of a tokenizer directory.
pub const TOKENIZER_SCHEMA: &str = "tokenizer";
/// The schema name of an SFT token file (`AMSFT001`, see `agentmerge_sft::dataset`).
pub const SFT_SCHEMA: &str = "sft";
/// The schema name of a pretraining token file: the SFT token file format with the loss mask 1
/// on every token, one example per document (or window of one).
pub const TOKENS_SCHEMA: &str = "tokens";

pub fn traces_type() -> PortType {
    PortType::Dataset(Some("traces".into()))
}

pub fn tokenizer_type() -> PortType {
    PortType::Dataset(Some(TOKENIZER_SCHEMA.into()))
}

/// A serializable report as metrics (a JSON object).
pub fn metrics(report: &impl Serialize) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::to_value(report)? {
        serde_json::Value::Object(m) => Ok(m),
        other => bail!("a report must serialize to a JSON object, got {other}"),
    }
}

agentmerge_sdk::export_plugin! { name: "sft", kinds: [TokenizerKind, Build, Tokenize, Reading, Chat] }
