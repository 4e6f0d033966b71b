//! `op-bench`: milliseconds per op call on each backend named by `--backend` (default `cpu`), at
//! the shapes one layer of `train-bench`'s h128l4 config sees (8 rows × 256 tokens, hidden 128,
//! 4 heads, vocabulary 4096): where a backend's training step goes. Each op runs once to warm up
//! (and compile kernels), then `--reps` times; the median is printed, after a download that waits
//! for the device, as one JSON line per op.
//!
//! ```text
//! cargo run --release -p agentmerge-backend-bench --bin op-bench -- [--backend cpu,wgpu,cuda] [--reps 5] [--tokens 2048]
//! ```

use std::time::Instant;

use agentmerge_backend_bench::{backends, open};
use agentmerge_model::{AttnShape, Backend, Mem, Span, Trans, IGNORE};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let reps: usize = arg("--reps").map_or(Ok(5), |s| s.parse())?;
    let n: usize = arg("--tokens").map_or(Ok(2048), |s| s.parse())?;
    let (d, inter, heads, hd, vocab, seq) = (128usize, 344usize, 4usize, 32usize, 4096usize, 256usize);
    anyhow::ensure!(n.is_multiple_of(seq), "--tokens must be a multiple of {seq}");
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut rand = |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect() };
    let big = n * vocab;
    let (x, w, y, g, lse) = (
        Span::new(Mem::Acts, 0, n * inter),
        Span::new(Mem::Params, 0, inter * d),
        Span::new(Mem::Acts, n * inter, n * d),
        Span::new(Mem::DActs, 0, n * inter),
        Span::new(Mem::Acts, n * (inter + d), n * heads),
    );
    let logits = Span::new(Mem::DActs, n * inter, big);
    let losses = Span::new(Mem::Acts, n * (inter + d + heads), n);
    let (ids, pos, doc) = (Span::new(Mem::Ids, 0, n), Span::new(Mem::Ids, n, n), Span::new(Mem::Ids, 2 * n, n));
    let table = Span::new(Mem::Params, inter * d, vocab * d);
    let grads = Span::new(Mem::Grads, 0, inter * d + vocab * d);
    let params = Span::new(Mem::Params, 0, inter * d + vocab * d);
    let acts_len = n * (inter + d + heads + 1) + 3 * n * d;
    let (q, k, v, o) = (
        Span::new(Mem::Acts, n * (inter + d + heads + 1), n * d),
        Span::new(Mem::Acts, n * (inter + 2 * d + heads + 1), n * d),
        Span::new(Mem::Acts, n * (inter + 3 * d + heads + 1), n * d),
        y,
    );
    let s = AttnShape { batch: n / seq, seq, heads, kv_heads: heads, head_dim: hd };
    let params_data = rand(params.len);
    let acts_data = rand(acts_len);
    let dacts_data = rand(n * inter + big);
    let id_data: Vec<u32> = (0..n).map(|i| (i * 7919 % vocab) as u32).chain((0..n).map(|i| (i % seq) as u32)).chain((0..n).map(|i| (i / seq) as u32)).collect();
    for backend in backends(arg("--backend")) {
        let mut be = open(&backend)?;
        be.alloc(Mem::Params, params.len)?;
        be.alloc(Mem::Grads, grads.len)?;
        be.alloc(Mem::AdamM, params.len)?;
        be.alloc(Mem::AdamV, params.len)?;
        be.alloc(Mem::Acts, acts_len)?;
        be.alloc(Mem::DActs, n * inter + big)?;
        be.alloc(Mem::Ids, 3 * n)?;
        be.upload(params, &params_data)?;
        be.upload(Span::new(Mem::Acts, 0, acts_len), &acts_data)?;
        be.upload(Span::new(Mem::DActs, 0, n * inter + big), &dacts_data)?;
        be.upload_ids(Span::new(Mem::Ids, 0, 3 * n), &id_data)?;
        let targets = Span::new(Mem::Ids, 0, n);
        type Op<'a> = (&'a str, f64, Box<dyn Fn(&mut dyn Backend)>);
        let ops: Vec<Op> = vec![
            ("matmul x·Wᵀ (n×344 → n×128)", 2.0 * (n * inter * d) as f64, Box::new(move |b| b.matmul(y, x, Trans::N, w, Trans::T, n, inter, d, false))),
            (
                "matmul dW += dyᵀ·x",
                2.0 * (n * inter * d) as f64,
                Box::new(move |b| b.matmul(Span::new(Mem::Grads, 0, inter * d), y, Trans::T, x, Trans::N, d, n, inter, true)),
            ),
            (
                "lm_head x·Eᵀ (n×128 → n×4096)",
                2.0 * (n * d * vocab) as f64,
                Box::new(move |b| b.matmul(logits, y, Trans::N, table, Trans::T, n, d, vocab, false)),
            ),
            ("attention_fwd", 4.0 * (n * seq / 2 * heads * hd) as f64, Box::new(move |b| b.attention_fwd(o, lse, q, k, v, doc, s))),
            (
                "attention_bwd",
                10.0 * (n * seq / 2 * heads * hd) as f64,
                Box::new(move |b| {
                    b.attention_bwd(
                        Span::new(Mem::DActs, 0, n * d),
                        Span::new(Mem::DActs, n * d, n * d),
                        Span::new(Mem::DActs, 2 * n * d, n * d),
                        q,
                        o,
                        lse,
                        q,
                        k,
                        v,
                        doc,
                        s,
                    )
                }),
            ),
            ("rmsnorm_fwd", 0.0, Box::new(move |b| b.rmsnorm_fwd(o, losses, q, Span::new(Mem::Params, 0, d), n, d, 1e-5))),
            (
                "rmsnorm_bwd",
                0.0,
                Box::new(move |b| {
                    b.rmsnorm_bwd(Span::new(Mem::DActs, 0, n * d), Span::new(Mem::Grads, 0, d), q, k, Span::new(Mem::Params, 0, d), losses, n, d)
                }),
            ),
            ("rope_fwd", 0.0, Box::new(move |b| b.rope_fwd(q, pos, n, heads, hd, 10000.0))),
            ("swiglu_fwd", 0.0, Box::new(move |b| b.swiglu_fwd(Span::new(Mem::DActs, n * inter, n * inter), x, g))),
            ("embedding_bwd", 0.0, Box::new(move |b| b.embedding_bwd(Span::new(Mem::Grads, inter * d, vocab * d), q, ids, n, d))),
            ("cross_entropy (with gradient)", 0.0, Box::new(move |b| b.cross_entropy(logits, losses, Span::new(Mem::Ids, 0, n), n, vocab, Some(1e-3)))),
            (
                "adamw (all params)",
                0.0,
                Box::new(move |b| {
                    b.adamw(
                        params,
                        grads,
                        Span::new(Mem::AdamM, 0, params.len),
                        Span::new(Mem::AdamV, 0, params.len),
                        agentmerge_model::AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, t: 1, grad_scale: 1.0 },
                    )
                }),
            ),
        ];
        let _ = (targets, IGNORE);
        let mut sink = [0f32; 1];
        for (name, flops, op) in &ops {
            let mut times = Vec::new();
            for r in 0..=reps {
                let t0 = Instant::now();
                op(be.as_mut());
                be.download(Span::new(Mem::Acts, 0, 1), &mut sink)?;
                if r > 0 {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
            times.sort_by(f64::total_cmp);
            let t = times[times.len() / 2];
            let gflops = if *flops > 0.0 { serde_json::json!(flops / t / 1e9) } else { serde_json::Value::Null };
            println!("{}", serde_json::json!({"backend": be.name(), "op": name, "tokens": n, "ms": t * 1e3, "gflops_per_s": gflops}));
        }
    }
    Ok(())
}
