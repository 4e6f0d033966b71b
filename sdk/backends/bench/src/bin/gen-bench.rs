//! `gen-bench`: generation throughput of the model on each backend named by `--backend`
//! (default `cpu`), the figures
//! docs/training.md quotes. A fresh model of one of `train-bench`'s configs (`--config`, default
//! `h128l4`: hidden 128 × 4 layers) continues random prompts greedily, with the KV cache at several batch sizes,
//! and, for comparison, without a cache (the whole sequence through the forward pass for every
//! new token) at batch 1. Each case prints one JSON line: generated tokens/s end to end (prefill
//! included), decoding tokens/s (without the prefill: the time of `new` tokens minus that of one),
//! the prefill's and the whole run's milliseconds (medians of `--reps` runs after a warm-up),
//! and peak RSS.
//!
//! ```text
//! cargo run --release -p agentmerge-backend-bench --bin gen-bench -- [--backend cpu,wgpu,cuda] [--config h128l4] [--batch 1,8,32] [--prompt 400] [--new 64] [--vocab 4096] [--reps 3] [--no-uncached]
//! ```

use std::time::Instant;

use agentmerge_backend_bench::{backends, config, open, peak_rss_mb};
use agentmerge_model::{
    checkpoint,
    generate::{generate, Sampling},
    Backend, Batch, LlamaConfig, Mem, Model, IGNORE,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds of `f`, the median of `reps` runs after one warm-up.
fn timed(reps: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut times = Vec::new();
    for _ in 0..reps {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// Greedy continuation without a cache: the whole sequence through `Model::forward` per token.
fn uncached(be: &mut dyn Backend, model: &mut Model, prompt: &[u32], new: usize) -> anyhow::Result<Vec<u32>> {
    let v = model.config.vocab_size;
    let mut seq = prompt.to_vec();
    for _ in 0..new {
        let t = seq.len();
        let b = Batch { rows: 1, seq: t, ids: seq.clone(), targets: vec![IGNORE; t], positions: (0..t as u32).collect(), docs: vec![0; t] };
        model.forward(be, &b, None)?;
        let logits = model.logits(be)?;
        let last = &logits[(t - 1) * v..];
        seq.push((0..v).fold(0, |m, j| if last[j] > last[m] { j } else { m }) as u32);
    }
    Ok(seq[prompt.len()..].to_vec())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let batches: Vec<usize> = arg("--batch").unwrap_or_else(|| "1,8,32".into()).split(',').map(str::parse).collect::<Result<_, _>>()?;
    let prompt_len: usize = arg("--prompt").map_or(Ok(400), |s| s.parse())?;
    let new: usize = arg("--new").map_or(Ok(64), |s| s.parse())?;
    let bench = config(&arg("--config").unwrap_or_else(|| "h128l4".into()))?;
    // The config's vocabulary unless `--vocab` says otherwise.
    let vocab: usize = arg("--vocab").map_or(Ok(bench.vocab), |s| s.parse())?;
    let reps: usize = arg("--reps").map_or(Ok(3), |s| s.parse())?;
    let with_uncached = !args.iter().any(|a| a == "--no-uncached");
    anyhow::ensure!(new >= 2 && reps >= 1, "--new must be at least 2 and --reps at least 1");

    let (hidden, inter, layers, heads) = (bench.hidden, bench.inter, bench.layers, bench.heads);
    let c = LlamaConfig::new(vocab, hidden, inter, layers, heads);
    for backend in backends(arg("--backend")) {
        let mut be = open(&backend)?;
        let mut model = Model::new(c.clone())?;
        model.alloc_params(be.as_mut(), false)?;
        be.upload(model.all(Mem::Params), &checkpoint::init(&c, 1))?;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let max_batch = batches.iter().copied().max().unwrap_or(1);
        let prompts: Vec<Vec<u32>> = (0..max_batch).map(|_| (0..prompt_len).map(|_| rng.random_range(0..vocab as u32)).collect()).collect();
        let decode = |ids: &[u32]| -> anyhow::Result<String> { Ok(format!("{} tokens", ids.len())) };
        let line = |case: &str, batch: usize, total: f64, prefill: f64, be: &dyn Backend| {
            println!(
                "{}",
                serde_json::json!({
                    "case": case, "config": bench.name, "backend": be.name(), "threads": rayon::current_num_threads(),
                    "hidden": hidden, "layers": layers, "vocab": vocab, "batch": batch, "prompt": prompt_len, "new_tokens": new,
                    "tokens_per_s": (batch * new) as f64 / total,
                    "decode_tokens_per_s": (batch * (new - 1)) as f64 / (total - prefill),
                    "prefill_ms": prefill * 1e3, "total_ms": total * 1e3, "peak_rss_mb": peak_rss_mb(),
                })
            );
        };

        for &batch in &batches {
            let ps = &prompts[..batch];
            let mut run = |n: usize| -> anyhow::Result<()> {
                let s = Sampling { max_new_tokens: n, ..Sampling::default() };
                let out = generate(be.as_mut(), &mut model, ps, &s, 0, &decode)?;
                anyhow::ensure!(out.iter().all(|g| g.tokens.len() == n), "a sequence stopped early");
                Ok(())
            };
            let prefill = timed(reps, || run(1))?;
            let total = timed(reps, || run(new))?;
            line("kv_cache", batch, total, prefill, be.as_ref());
        }
        if with_uncached {
            let p = &prompts[0];
            let prefill = timed(reps, || uncached(be.as_mut(), &mut model, p, 1).map(drop))?;
            let total = timed(reps, || uncached(be.as_mut(), &mut model, p, new).map(drop))?;
            line("no_cache", 1, total, prefill, be.as_ref());
        }
    }
    Ok(())
}
