//! Outputs are bit-identical whatever the number of rayon threads: every op (the conformance
//! transcript at shapes large enough to split every op over threads) and gemm on its own, run in
//! pools of 1, 2 and 3 threads.

use agentmerge_backend_conformance::{transcript, Shapes};
use agentmerge_backend_cpu::CpuBackend;
use agentmerge_model::backend::{Backend, Mem, Span, Trans};

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn every_op_is_thread_count_independent() {
    let runs: Vec<_> = [1, 2, 3].map(|t| in_pool(t, || transcript(&mut CpuBackend::new(), Shapes::Large).unwrap())).into();
    for (t, run) in [2, 3].iter().zip(&runs[1..]) {
        assert_eq!(run.len(), runs[0].len());
        for ((name, one), (_, many)) in runs[0].iter().zip(run) {
            if let Some(i) = (0..one.len()).find(|&i| one[i].to_bits() != many[i].to_bits()) {
                panic!("{name}: element {i} is {:e} with 1 thread, {:e} with {t}", one[i], many[i]);
            }
        }
    }
    // And a second run in the same backend (scratch reused) gives the same bits.
    let again = in_pool(3, || {
        let mut b = CpuBackend::new();
        transcript(&mut b, Shapes::Large).unwrap();
        transcript(&mut b, Shapes::Large).unwrap()
    });
    for ((name, one), (_, two)) in runs[0].iter().zip(&again) {
        assert!(bits(one) == bits(two), "{name}: a second run differs");
    }
}

/// gemm splits its work over threads by output tiles; check that no shape it threads (above its
/// threshold of 48·48·256 multiply-adds, with the shared dimension longer than one of its depth
/// blocks, transposed operands, accumulation) changes a bit with the thread count.
#[test]
fn gemm_is_thread_count_independent() {
    let shapes = [(64, 1100, 300), (300, 700, 64), (513, 96, 257), (1, 4096, 1024), (1024, 64, 1)];
    let mut seed = 12345u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    for (m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
        let c0: Vec<f32> = (0..m * n).map(|_| next()).collect();
        for (ta, tb, acc) in [(Trans::N, Trans::N, false), (Trans::N, Trans::T, true), (Trans::T, Trans::N, false), (Trans::T, Trans::T, true)] {
            let run = |threads| {
                in_pool(threads, || {
                    let mut be = CpuBackend::new();
                    be.alloc(Mem::Acts, m * k + k * n + m * n).unwrap();
                    let (sa, sb, sc) = (Span::new(Mem::Acts, 0, m * k), Span::new(Mem::Acts, m * k, k * n), Span::new(Mem::Acts, m * k + k * n, m * n));
                    be.upload(sa, &a).unwrap();
                    be.upload(sb, &b).unwrap();
                    be.upload(sc, &c0).unwrap();
                    be.matmul(sc, sa, ta, sb, tb, m, k, n, acc);
                    let mut c = vec![0f32; m * n];
                    be.download(sc, &mut c).unwrap();
                    c.iter().map(|x| x.to_bits()).collect::<Vec<u32>>()
                })
            };
            let one = run(1);
            for t in [2, 3, 4] {
                assert!(run(t) == one, "gemm {ta:?}{tb:?} m={m} k={k} n={n}: {t} threads differ from 1");
            }
        }
    }
}
