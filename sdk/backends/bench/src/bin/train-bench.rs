//! `train-bench`: training throughput of the model on each backend named by `--backend` (default
//! `cpu`) for fixed configs, the figures docs/performance.md quotes. Each config runs warm-up steps, then timed steps of
//! forward + backward + clipping + AdamW on random tokens (loss on every token), and prints one
//! JSON line: tokens/s (median step), ms/step, model FLOPs per token (6·N + 12·L·H·Q·T, N the
//! non-embedding parameters with lm_head), achieved GFLOP/s and peak RSS.
//! `tools/llama_reference/bench_torch.py` runs the same configs in PyTorch for comparison.
//!
//! ```text
//! cargo run --release -p agentmerge-backend-bench --bin train-bench -- [--backend cpu,wgpu,cuda] [--config h128l4,h256l4,h512l8,h768l12] [--steps 10] [--warmup 2]
//! ```

use std::time::Instant;

use agentmerge_backend_bench::{backends, config, open, peak_rss_mb};
use agentmerge_model::{
    checkpoint,
    optim::{AdamW, Decay, Schedule},
    Batch, LlamaConfig, Mem, Model, IGNORE,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let steps: usize = arg("--steps").map_or(Ok(10), |s| s.parse())?;
    let warmup: usize = arg("--warmup").map_or(Ok(2), |s| s.parse())?;
    let wanted = arg("--config").unwrap_or_else(|| "h128l4,h256l4".into());
    for backend in backends(arg("--backend")) {
        for name in wanted.split(',') {
            let b = config(name)?;
            let c = LlamaConfig::new(b.vocab, b.hidden, b.inter, b.layers, b.heads);
            let mut be = open(&backend)?;
            let mut model = Model::new(c.clone())?;
            model.alloc_params(be.as_mut(), true)?;
            be.upload(model.all(Mem::Params), &checkpoint::init(&c, 1))?;
            let adamw = AdamW { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, grad_clip: Some(1.0) };
            let schedule = Schedule { lr: 1e-3, warmup: 2, total: (warmup + steps) as u64, decay: Decay::Cosine, min_lr_ratio: 0.1 };
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let n = b.batch * b.seq;
            let mut times = Vec::new();
            let mut loss = 0.0;
            for s in 0..warmup + steps {
                let ids: Vec<u32> = (0..n).map(|_| rng.random_range(0..b.vocab as u32)).collect();
                let mut targets: Vec<u32> = ids[1..].to_vec();
                targets.push(IGNORE);
                for r in 1..=b.batch {
                    targets[r * b.seq - 1] = IGNORE;
                }
                let batch = Batch {
                    rows: b.batch,
                    seq: b.seq,
                    ids,
                    targets,
                    positions: (0..n).map(|i| (i % b.seq) as u32).collect(),
                    docs: (0..n).map(|i| (i / b.seq) as u32).collect(),
                };
                let t0 = Instant::now();
                be.zero(model.all(Mem::Grads));
                let (sum, count) = model.forward(be.as_mut(), &batch, Some(1.0 / batch.loss_tokens() as f32))?;
                model.backward(be.as_mut())?;
                adamw.step(be.as_mut(), &model.layout, s as u64 + 1, schedule.lr_at(s as u64));
                loss = sum / count as f64;
                if s >= warmup {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            let tps = n as f64 / median;
            let flops = c.train_flops_per_token(b.seq);
            println!(
                "{}",
                serde_json::json!({
                    "config": b.name, "backend": be.name(), "threads": rayon::current_num_threads(),
                    "hidden": b.hidden, "layers": b.layers, "seq": b.seq, "batch": b.batch, "vocab": b.vocab,
                    "non_embedding_params": c.non_embedding_params(), "flops_per_token": flops,
                    "tokens_per_s": tps, "ms_per_step": median * 1e3, "gflops_per_s": flops * tps / 1e9,
                    "peak_rss_mb": peak_rss_mb(), "final_loss": loss, "steps": steps,
                })
            );
        }
    }
    Ok(())
}
