//! `eval_bench`: the evaluation throughput of a model as a MiniArena agent on the CPU backend,
//! the figures docs/performance.md quotes. The model plays the same instances at each batch size
//! (episodes in lockstep); each batch size prints one JSON line: episodes/s, actions/s, the
//! split between building prompts and decoding, prompt and new tokens, and the success rate.
//!
//! ```text
//! cargo run --release -p agentmerge-agent --example eval_bench -- MODEL_DIR [--template NAME]
//!     [--episodes 120] [--batch 1,16,64] [--max-len 768] [--max-new 40] [--max-steps 15] [--full-prompt]
//!     [--page-size full|small]
//! ```
//!
//! The prompt is the compact one of the built-in pipelines (no system text, the last two
//! history steps, no thinking) unless `--full-prompt` asks for `sft/build`'s defaults; it must
//! be the one the model was trained with for the success rate to mean anything.

use std::path::PathBuf;

use agentmerge_agent::{play, AgentOptions, LoadedModel, ModelPolicy};
use agentmerge_backend_cpu::CpuBackend;
use agentmerge_miniarena::PageSize;
use agentmerge_model::Backend;
use agentmerge_sft::prompt::PromptOptions;
use agentmerge_traces::AgentInfo;
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut model: Option<PathBuf> = None;
    let (mut template, mut episodes, mut batches) = ("miniarena.menu.impersonate_user".to_string(), 120u64, vec![1usize, 16, 64]);
    let (mut max_len, mut max_new, mut max_steps, mut full) = (768usize, 40usize, 15usize, false);
    let mut size = PageSize::Full;
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--template" => template = value()?,
            "--episodes" => episodes = value()?.parse()?,
            "--batch" => batches = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--max-len" => max_len = value()?.parse()?,
            "--max-new" => max_new = value()?.parse()?,
            "--max-steps" => max_steps = value()?.parse()?,
            "--full-prompt" => full = true,
            "--page-size" => size = value()?.parse()?,
            _ if model.is_none() && !a.starts_with("--") => model = Some(PathBuf::from(a)),
            _ => anyhow::bail!("unknown argument {a}; see the usage at the top of eval_bench.rs"),
        }
    }
    let dir = model.context("usage: eval_bench MODEL_DIR [--template NAME] [--episodes N] [--batch 1,16,64] ...")?;
    let prompt =
        if full { PromptOptions::default() } else { PromptOptions { system: String::new(), max_history: Some(2), use_thinking: false, ..Default::default() } };
    let opts = AgentOptions { prompt, max_len, max_new_tokens: max_new, ..Default::default() };
    let jobs: Vec<(&str, u64, PageSize)> = (0..episodes).map(|s| (template.as_str(), 200_000 + s, size)).collect();
    let mut be: Box<dyn Backend> = Box::new(CpuBackend::new());
    let threads = rayon_threads();
    for &batch in &batches {
        let loaded = LoadedModel::load(be, &dir, None)?;
        let params = loaded.model.layout.num_params();
        let (tok, template, eos) = (loaded.tokenizer.clone(), loaded.template.clone(), loaded.eos.clone());
        let mut policy = ModelPolicy::new(loaded, tok, template, eos, opts.clone(), 0, AgentInfo::default())?;
        let e = play(&mut policy, &jobs, max_steps, batch, &mut |_, _| Ok(()))?;
        be = policy.decoder.into_backend();
        let c = &e.counts;
        println!(
            "{}",
            serde_json::json!({
                "backend": be.name(), "threads": threads, "params": params, "template": jobs[0].0, "page_size": size, "episodes": jobs.len(), "batch": batch,
                "max_len": max_len, "max_new_tokens": max_new, "seconds": e.seconds, "episodes_per_s": jobs.len() as f64 / e.seconds,
                "actions": c.actions, "actions_per_s": c.actions as f64 / e.seconds, "prompt_seconds": e.split.prompts, "decoding_seconds": e.split.decoding,
                "prompt_tokens": c.prompt_tokens, "prompt_tokens_per_s": c.prompt_tokens as f64 / e.split.decoding, "new_tokens": c.new_tokens,
                "success_rate": e.report.overall.success_rate, "parse_errors": c.parse_errors, "invalid_actions": c.invalid_actions,
            })
        );
    }
    Ok(())
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
