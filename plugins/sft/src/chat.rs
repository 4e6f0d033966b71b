//! `sft/chat`: instruction data (JSON Lines conversations, `messages: [{role, content}]`) +
//! tokenizer → an SFT token file: the prompt rendered with the chat template, the last
//! (assistant) message and the eos token in the loss (`agentmerge_sft::chat`). Conversations come
//! from the `chat` input, from files named in `paths` (fingerprinted, `crate::paths`), or both.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use agentmerge_sdk::{prelude::*, PortSpec};
use agentmerge_sft::{
    build::{preview_path, show_example},
    chat::{chat_examples, read_conversations},
    dataset::SftWriter,
    template::ChatTemplate,
    text::list_files,
    tokenizer as tk,
};

use crate::{metrics, paths, tokenizer_type, SFT_SCHEMA};

/// The SFT token file's name in the node's output directory.
pub const CHAT_FILE: &str = "chat.amsft";

/// Builds SFT data from chat conversations.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Chat {
    /// Conversation files or directories to read, after those on the `chat` input: `.jsonl`,
    /// `.jsonl.gz` or `.jsonl.zst` files, or directories whose such files are read in sorted
    /// order. A relative path is relative to the current directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// The most tokens in one example (prompt + answer + eos); longer conversations are dropped
    /// and counted.
    #[serde(default = "d_max_len")]
    pub max_len: usize,
    /// The key of each line's list of messages.
    #[serde(default = "d_field")]
    pub field: String,
    /// How many examples the readable preview shows.
    #[serde(default = "d_preview")]
    pub preview_examples: usize,
    /// Filled in when the pipeline is checked: a fingerprint of the files `paths` stands for,
    /// so the cache notices when they change. Leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// What a conversation file's name ends in.
const CHAT_ENDINGS: &str = ".jsonl, .jsonl.gz or .jsonl.zst";

fn is_chat_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    [".jsonl", ".jsonl.gz", ".jsonl.zst"].iter().any(|e| name.ends_with(e) && name.len() > e.len())
}

fn d_max_len() -> usize {
    2048
}
fn d_field() -> String {
    "messages".into()
}
fn d_preview() -> usize {
    20
}

impl NodeKind for Chat {
    const NAME: &'static str = "chat";
    const DOC: &'static str = "Builds an SFT token file from instruction data: JSON Lines conversations (`messages: [{role, content}]`, the last the assistant's), the prompt rendered with the chat template, the last answer + EOS in the loss; conversations longer than `max_len` dropped and counted.";

    fn ports() -> Ports {
        let mut ports = Ports::new()
            .input("tokenizer", tokenizer_type(), "tokenizer.json + tokenizer_config.json (chat template, eos_token), e.g. from sft/tokenizer")
            .output("dataset", PortType::Dataset(Some(SFT_SCHEMA.into())), "the SFT token file (AMSFT001)")
            .output("preview", PortType::Dataset(Some("text".into())), "the first `preview_examples` examples detokenized, the loss part marked")
            .output("report", PortType::Metrics, "conversations, examples, dropped_too_long, total_tokens, loss_tokens");
        ports.inputs.insert(
            0,
            PortSpec {
                name: "chat".into(),
                ty: PortType::Dataset(None),
                list: true,
                optional: true,
                doc: "conversations: .jsonl / .jsonl.gz / .jsonl.zst files or directories of them (e.g. sft/reading with `format: chat`); read before `paths`"
                    .into(),
            },
        );
        ports
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.max_len < 2 {
            return Err(ConfigError::new("max_len", "must be at least 2"));
        }
        if self.field.is_empty() {
            return Err(ConfigError::new("field", "is empty; name the key holding each line's messages"));
        }
        paths::check(&self.paths, is_chat_file, "JSON Lines file", CHAT_ENDINGS)
    }

    fn resolve(&mut self) -> Result<(), ConfigError> {
        self.fingerprint = paths::fingerprint(&self.paths)?;
        Ok(())
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let mut sources: Vec<PathBuf> = inputs.datasets("chat")?.into_iter().map(|(_, p)| p).collect();
        if sources.is_empty() && self.paths.is_empty() {
            bail!("no conversations to read: connect the `chat` input or list files in `paths`");
        }
        paths::unchanged(self.fingerprint.as_ref(), &self.paths)?;
        sources.extend(self.paths.iter().map(PathBuf::from));
        let (_, tok_dir) = inputs.dataset("tokenizer")?;
        let tok = tk::load(&tok_dir)?;
        let template = ChatTemplate::from_dir(&tok_dir)?;
        anyhow::ensure!(!template.eos_token.is_empty(), "{}/tokenizer_config.json names no eos_token: answers would never end", tok_dir.display());
        let mut conversations = Vec::new();
        for f in list_files(&sources)? {
            ctx.check()?;
            conversations.extend(read_conversations(&f, &self.field)?);
        }
        anyhow::ensure!(!conversations.is_empty(), "no conversations in {}", sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
        let encode = |s: &str| tk::encode(&tok, s);
        let (examples, report) = chat_examples(&conversations, &encode, &template, self.max_len)?;
        anyhow::ensure!(!examples.is_empty(), "all {} conversations are longer than max_len = {} tokens; raise max_len", report.conversations, self.max_len);
        let out = ctx.out_path(CHAT_FILE)?;
        let mut w = SftWriter::new(&out, tok.get_vocab_size(true) as u64);
        for e in &examples {
            w.push(e)?;
        }
        w.finish()?;
        let preview = preview_path(&out);
        let mut s = format!(
            "# Chat SFT preview: the first {} of {} examples; the loss between the markers.\n\n",
            self.preview_examples.min(examples.len()),
            examples.len()
        );
        for (n, e) in examples.iter().take(self.preview_examples).enumerate() {
            writeln!(s, "======== example {n} | {} tokens ========", e.ids.len())?;
            s.push_str(&show_example(e, &tok)?);
            s.push_str("\n\n");
        }
        std::fs::write(&preview, s).with_context(|| format!("writing {}", preview.display()))?;
        tracing::info!(
            "{} examples from {} conversations; {} longer than {} tokens dropped",
            report.examples,
            report.conversations,
            report.dropped_too_long,
            self.max_len
        );
        Ok(Outputs::new()
            .with("dataset", Value::Dataset { schema: SFT_SCHEMA.into(), path: out })
            .with("preview", Value::Dataset { schema: "text".into(), path: preview })
            .with("report", metrics(&report)?))
    }
}
