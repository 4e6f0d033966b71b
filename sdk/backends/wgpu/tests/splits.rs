//! Ops over spans larger than the adapter's largest storage binding run as several dispatches
//! and give the CPU backend's results. The binding limit is lowered to 32 KiB here
//! (`limit_bindings`) so that the splits run on small tensors; on lavapipe the real limit is
//! 128 MiB, on most GPUs a few GiB.

use agentmerge_backend_cpu::CpuBackend;
use agentmerge_backend_wgpu::WgpuBackend;
use agentmerge_model::{AdamStep, Backend, Mem, Span, Trans};

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// Worst |got − want| / (|want| + rms(want)).
fn worst(got: &[f32], want: &[f32]) -> f64 {
    let rms = (want.iter().map(|&w| (w as f64).powi(2)).sum::<f64>() / want.len() as f64).sqrt();
    got.iter().zip(want).map(|(&g, &w)| (g as f64 - w as f64).abs() / (w.abs() as f64 + rms)).fold(0.0, f64::max)
}

fn both(f: impl Fn(&mut dyn Backend)) -> (Vec<f32>, Vec<f32>, usize) {
    let mut gpu = WgpuBackend::new().unwrap_or_else(|e| panic!("{e:#}"));
    gpu.limit_bindings(32 << 10);
    let mut cpu = CpuBackend::new();
    let mut out = Vec::new();
    for b in [&mut gpu as &mut dyn Backend, &mut cpu] {
        f(b);
        let len = b.mem_len(Mem::Acts);
        let mut v = vec![0f32; len];
        b.download(Span::new(Mem::Acts, 0, len), &mut v).unwrap();
        out.push(v);
    }
    let len = out[0].len();
    (out.remove(0), out.remove(0), len)
}

#[test]
fn matmuls_larger_than_a_binding_split_into_blocks() {
    let (m, k, n) = (200, 90, 150);
    for ta in [Trans::N, Trans::T] {
        for tb in [Trans::N, Trans::T] {
            for accumulate in [false, true] {
                let (got, want, _) = both(|b| {
                    b.alloc(Mem::Acts, m * n).unwrap();
                    b.alloc(Mem::Params, m * k + k * n + 5).unwrap();
                    b.upload(Span::new(Mem::Acts, 0, m * n), &random(m * n, 1)).unwrap();
                    b.upload(Span::new(Mem::Params, 0, m * k + k * n + 5), &random(m * k + k * n + 5, 2)).unwrap();
                    let (a, w) = (Span::new(Mem::Params, 3, m * k), Span::new(Mem::Params, 3 + m * k, k * n));
                    b.matmul(Span::new(Mem::Acts, 0, m * n), a, ta, w, tb, m, k, n, accumulate);
                });
                let e = worst(&got, &want);
                assert!(e < 1e-5, "matmul {ta:?}{tb:?} accumulate={accumulate}: error {e:.2e}");
            }
        }
    }
}

#[test]
fn elementwise_ops_and_sums_larger_than_a_binding_split() {
    let len = 30_001;
    let (got, want, _) = both(|b| {
        b.alloc(Mem::Acts, 4 * len).unwrap();
        b.upload(Span::new(Mem::Acts, 0, 4 * len), &random(4 * len, 3)).unwrap();
        let s = |i: usize| Span::new(Mem::Acts, i * len, len);
        b.add(s(0), s(1), s(2));
        b.swiglu_fwd(s(1), s(2), s(3));
        // Second moments are never negative.
        b.upload(s(3), &random(len, 4).iter().map(|x| x.abs()).collect::<Vec<_>>()).unwrap();
        let step = AdamStep { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, t: 3, grad_scale: 0.5 };
        b.adamw(s(0), s(1), s(2), s(3), step);
        let sum = b.sum_squares(s(0)) as f32;
        b.upload(Span::new(Mem::Acts, 0, 1), &[sum]).unwrap();
    });
    let e = worst(&got, &want);
    assert!(e < 1e-5, "error {e:.2e}");
    assert!((got[0] as f64 - want[0] as f64).abs() < 1e-6 * want[0] as f64, "sum_squares {} against {}", got[0], want[0]);
}

#[test]
fn embeddings_and_cross_entropy_larger_than_a_binding_split() {
    let (vocab, d, n) = (300, 40, 250);
    let ids: Vec<u32> = (0..n).map(|i| (i * 37 % vocab) as u32).collect();
    let (got, want, _) = both(|b| {
        // Acts: [out (n·d) | dtable (vocab·d) | logits (20·1000) | losses (20)]
        b.alloc(Mem::Acts, n * d + vocab * d + 20 * 1000 + 20).unwrap();
        b.alloc(Mem::Params, vocab * d).unwrap();
        b.alloc(Mem::Ids, n + 20).unwrap();
        b.upload(Span::new(Mem::Params, 0, vocab * d), &random(vocab * d, 5)).unwrap();
        b.upload(Span::new(Mem::Acts, n * d, vocab * d + 20 * 1000), &random(vocab * d + 20 * 1000, 6)).unwrap();
        let targets: Vec<u32> = (0..20).map(|i| if i == 7 { u32::MAX } else { i * 41 % 1000 }).collect();
        b.upload_ids(Span::new(Mem::Ids, 0, n + 20), &ids.iter().copied().chain(targets).collect::<Vec<_>>()).unwrap();
        let (out, dtable) = (Span::new(Mem::Acts, 0, n * d), Span::new(Mem::Acts, n * d, vocab * d));
        b.embedding_fwd(out, Span::new(Mem::Params, 0, vocab * d), Span::new(Mem::Ids, 0, n), n, d);
        b.embedding_bwd(dtable, out, Span::new(Mem::Ids, 0, n), n, d);
        let logits = Span::new(Mem::Acts, n * d + vocab * d, 20 * 1000);
        b.cross_entropy(logits, Span::new(Mem::Acts, n * d + vocab * d + 20 * 1000, 20), Span::new(Mem::Ids, n, 20), 20, 1000, Some(0.5));
    });
    let e = worst(&got, &want);
    assert!(e < 1e-5, "error {e:.2e}");
}
