use agentmerge_backend_cpu::CpuBackend;
use agentmerge_model::backend::*;
use std::time::Instant;

fn time(name: &str, flops: f64, mut f: impl FnMut()) {
    if let Ok(only) = std::env::var("ONLY") {
        if !name.contains(&only) {
            return;
        }
    }
    f();
    let reps: usize = std::env::var("REPS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let mut s = f64::INFINITY;
    let mut cpu = f64::INFINITY;
    for _ in 0..reps {
        let (t, c) = (Instant::now(), cpu_ns());
        f();
        s = s.min(t.elapsed().as_secs_f64());
        cpu = cpu.min((cpu_ns() - c) as f64 * 1e-9);
    }
    println!("{name:50} cpu {:9.3} ms", cpu * 1e3);
    println!("{name:50} {:9.3} ms  {:7.1} GFLOP/s", s * 1e3, flops / s / 1e9);
}

/// CPU time of all the process's threads, in ns (time on a CPU, not waiting for one).
fn cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("schedstat")).ok())
        .map(|s| s.split_whitespace().next().unwrap().parse::<u64>().unwrap())
        .sum()
}

fn main() {
    let mut b = CpuBackend::new();
    let big = 64 << 20;
    b.alloc(Mem::Acts, big).unwrap();
    b.alloc(Mem::DActs, big).unwrap();
    b.alloc(Mem::Ids, 1 << 20).unwrap();
    let fill: Vec<f32> = (0..big).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    b.upload(Span::new(Mem::Acts, 0, big), &fill).unwrap();
    b.upload(Span::new(Mem::DActs, 0, big), &fill).unwrap();
    let a = |off: usize, len: usize| Span::new(Mem::Acts, off, len);
    let d = |off: usize, len: usize| Span::new(Mem::DActs, off, len);
    let (n, dm, ff) = (2048usize, 512usize, 1376usize);
    for (ta, tb, m, k, nn) in [(Trans::N, Trans::T, n, dm, ff), (Trans::N, Trans::N, n, ff, dm), (Trans::T, Trans::N, ff, n, dm), (Trans::N, Trans::T, n, dm, 4096)] {
        time(&format!("matmul {ta:?}{tb:?} {m}x{k}x{nn}"), 2.0 * (m * k * nn) as f64, || {
            b.matmul(a(0, m * nn), a(20 << 20, m * k), ta, d(0, k * nn), tb, m, k, nn, false)
        });
    }
    for (batch, seq, heads, kvh, hd) in [(8, 256, 8, 8, 64), (2, 1024, 8, 2, 64), (1, 2048, 9, 3, 64)] {
        let s = AttnShape { batch, seq, heads, kv_heads: kvh, head_dim: hd };
        let nt = batch * seq;
        let doc: Vec<u32> = vec![0; nt];
        b.upload_ids(Span::new(Mem::Ids, 0, nt), &doc).unwrap();
        let ids = Span::new(Mem::Ids, 0, nt);
        let (qd, kd) = (heads * hd, kvh * hd);
        let fl = 2.0 * 2.0 * (batch * heads * seq * seq / 2 * hd) as f64;
        let q = a(0, nt * qd);
        let k = a(4 << 20, nt * kd);
        let v = a(8 << 20, nt * kd);
        let o = a(12 << 20, nt * qd);
        let l = a(16 << 20, nt * heads);
        time(&format!("attention fwd b{batch} t{seq} h{heads}/{kvh} d{hd}"), fl, || b.attention_fwd(o, l, q, k, v, ids, s));
        time(&format!("attention bwd b{batch} t{seq} h{heads}/{kvh} d{hd}"), 2.5 * fl, || {
            b.attention_bwd(d(0, nt * qd), d(4 << 20, nt * kd), d(8 << 20, nt * kd), d(12 << 20, nt * qd), o, l, q, k, v, ids, s)
        });
    }
    let ids: Vec<u32> = (0..n as u32).map(|i| i % 4096).collect();
    b.upload_ids(Span::new(Mem::Ids, 0, n), &ids).unwrap();
    let idsp = Span::new(Mem::Ids, 0, n);
    time("rmsnorm fwd 2048x512", 0.0, || b.rmsnorm_fwd(a(0, n * dm), a(2 << 20, n), a(4 << 20, n * dm), a(6 << 20, dm), n, dm, 1e-5));
    time("rmsnorm bwd 2048x512", 0.0, || b.rmsnorm_bwd(d(0, n * dm), d(2 << 20, dm), d(4 << 20, n * dm), a(4 << 20, n * dm), a(6 << 20, dm), a(2 << 20, n), n, dm));
    time("rope fwd 2048x8x64", 0.0, || b.rope_fwd(a(0, n * dm), idsp, n, 8, 64, 10000.0));
    time("swiglu fwd 2048x1376", 0.0, || b.swiglu_fwd(a(0, n * ff), a(4 << 20, n * ff), a(8 << 20, n * ff)));
    time("swiglu bwd 2048x1376", 0.0, || b.swiglu_bwd(d(0, n * ff), d(4 << 20, n * ff), d(8 << 20, n * ff), a(4 << 20, n * ff), a(8 << 20, n * ff)));
    time("embedding fwd 2048x512", 0.0, || b.embedding_fwd(a(0, n * dm), a(4 << 20, 4096 * dm), idsp, n, dm));
    time("embedding bwd 2048x512", 0.0, || b.embedding_bwd(d(0, 4096 * dm), d(4 << 20, n * dm), idsp, n, dm));
    time("cross_entropy+grad 2048x4096", 0.0, || {
        b.upload(a(0, n * 4096), &fill[..n * 4096]).unwrap();
        b.cross_entropy(a(0, n * 4096), a(10 << 20, n), idsp, n, 4096, Some(1.0 / n as f32))
    });
    time("upload 8M (for reference)", 0.0, || b.upload(a(0, n * 4096), &fill[..n * 4096]).unwrap());
    time("sum_squares 16M", 0.0, || {
        b.sum_squares(a(0, 16 << 20));
    });
    b.alloc(Mem::Params, 16 << 20).unwrap();
    b.alloc(Mem::Grads, 16 << 20).unwrap();
    b.alloc(Mem::AdamM, 16 << 20).unwrap();
    b.alloc(Mem::AdamV, 16 << 20).unwrap();
    let st = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1, t: 3, grad_scale: 1.0 };
    let sp = |m| Span::new(m, 0, 16 << 20);
    time("adamw 16M", 0.0, || b.adamw(sp(Mem::Params), sp(Mem::Grads), sp(Mem::AdamM), sp(Mem::AdamV), st));
}
