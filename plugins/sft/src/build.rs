//! `sft/build`: traces + tokenizer → an SFT token file (one example per action step, the prompt
//! fitted to `max_len` by cutting AXTree lines, samples whose target was cut dropped), with a
//! readable preview next to it.

use agentmerge_sdk::prelude::*;
use agentmerge_sft::{
    build::{build_sft, preview_path, BuildConfig},
    template::ChatTemplate,
    tokenizer as tk,
};
use agentmerge_traces::{read_episodes, OnBadLine};
use serde_json::json;

use crate::{metrics, tokenizer_type, traces_type, SFT_SCHEMA};

/// The SFT token file's name in the node's output directory.
pub const SFT_FILE: &str = "sft.amsft";

/// Builds SFT data (the fields of `agentmerge_sft::BuildConfig`).
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct Build(pub BuildConfig);

/// The schema is BuildConfig's, inlined, so `agentmerge plugins` lists its fields.
impl JsonSchema for Build {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        BuildConfig::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        BuildConfig::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        BuildConfig::json_schema(generator)
    }
}

impl NodeKind for Build {
    const NAME: &'static str = "build";
    const DOC: &'static str = "Builds an SFT token file from traces: one example per action step, AgentLab's prompt fitted to `max_len` (AXTree cut from the bottom), the response `<think>…</think><action>…</action>` + EOS in the loss; drops missing_bid / too_long / unparsable_action.";

    fn resources() -> agentmerge_sdk::Resources {
        agentmerge_sdk::Resources::all_threads()
    }

    fn ports() -> Ports {
        Ports::new()
            .input("traces", traces_type(), "episodes")
            .input("tokenizer", tokenizer_type(), "tokenizer.json + tokenizer_config.json (chat template, eos_token), e.g. from sft/tokenizer")
            .output("dataset", PortType::Dataset(Some(SFT_SCHEMA.into())), "the SFT token file (AMSFT001: token ids and loss masks, memory-mappable)")
            .output("preview", PortType::Dataset(Some("text".into())), "the first `preview_examples` examples detokenized, the loss part marked")
            .output(
                "report",
                PortType::Metrics,
                "episodes, action_steps, examples, sequences, dropped.{missing_bid,too_long,unparsable_action}, with_think, total_tokens, loss_tokens, truncated_examples, mean_deleted_lines, vocab_size, preview_file",
            )
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.0.max_len == 0 {
            return Err(ConfigError::new("max_len", "must be at least 1"));
        }
        if self.0.prompt.max_history == Some(0) && self.0.prompt.use_history {
            return Err(ConfigError::new("prompt.max_history", "0 keeps no history; set `prompt.use_history: false` instead"));
        }
        Ok(())
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let (_, traces) = inputs.dataset("traces")?;
        let (_, tok_dir) = inputs.dataset("tokenizer")?;
        let (episodes, _) = read_episodes(&traces, OnBadLine::Fail)?;
        let tok = tk::load(&tok_dir)?;
        let template = ChatTemplate::from_dir(&tok_dir)?;
        anyhow::ensure!(
            !template.eos_token.is_empty(),
            "{}/tokenizer_config.json names no eos_token: responses would never end; set one (sft/tokenizer's `eos_token`)",
            tok_dir.display()
        );
        ctx.check()?;
        let out = ctx.out_path(SFT_FILE)?;
        let preview = preview_path(&out);
        let report = build_sft(&episodes, &tok, &template, &self.0, &out, Some(&preview))?;
        tracing::info!(
            "{} examples from {} action steps; dropped: {} missing bid, {} too long, {} unparsable",
            report.examples,
            report.action_steps,
            report.dropped.missing_bid,
            report.dropped.too_long,
            report.dropped.unparsable_action
        );
        if report.examples == 0 && report.action_steps > 0 {
            tracing::warn!("every sample was dropped; raise `max_len`");
        }
        let mut m = metrics(&report)?;
        m.insert("vocab_size".into(), json!(tok.get_vocab_size(true)));
        // A name, not a path: the output directory moves into the store after the run.
        let preview_name = preview.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        m.insert("preview_file".into(), json!(preview_name));
        Ok(Outputs::new()
            .with("dataset", Value::Dataset { schema: SFT_SCHEMA.into(), path: out })
            .with("preview", Value::Dataset { schema: "text".into(), path: preview })
            .with("report", m))
    }
}
