//! Finite-difference checks of every backward op: on small random inputs, the analytic gradient
//! of `L = Σ r ⊙ out` (the backward run with `dout = r`) against central differences of `L`,
//! element by element, with `L` summed in f64 from the f32 forward.
//!
//! Each input element `x_i` moves to `fl(x_i ± EPS)`, the difference quotient divides by the
//! actual f32 step, and the gradient of the whole input is compared with the error measure of
//! [`crate::compare`] scaled by the gradient's RMS (`|a_i − fd_i| / rms(fd)`), so a wrong term,
//! sign or index shows as an O(1) error while rounding and the O(EPS²) truncation stay far below
//! [`TOL`]. Backwards that add into a gradient start from random values, which are subtracted.

use crate::arena::{read, Arena, Gen};
use crate::compare::rms;
use agentmerge_model::backend::{AttnShape, Backend, Mem, Span, Trans, IGNORE};
use anyhow::{bail, Result};

const EPS: f64 = 1e-2;
const TOL: f64 = 1e-2;

/// One input of the op and where the backward writes its gradient.
struct Wrt {
    name: &'static str,
    input: Span,
    grad: Span,
    /// The backward adds into `grad` (which starts random) rather than overwriting it.
    adds: bool,
}

type Op = Box<dyn Fn(&mut dyn Backend)>;

pub(crate) struct Diff {
    name: String,
    arena: Arena,
    wrt: Vec<Wrt>,
    /// The output `L` projects, and the projection.
    out: Span,
    r: Vec<f32>,
    /// Runs the forward from the inputs in memory, writing `out`.
    fwd: Op,
    /// Runs whatever the backward needs (its forward included), writing the gradients.
    bwd: Op,
}

impl Diff {
    fn loss(&self, b: &mut dyn Backend) -> Result<f64> {
        (self.fwd)(b);
        Ok(read(b, self.out)?.iter().zip(&self.r).map(|(&o, &r)| o as f64 * r as f64).sum())
    }

    pub fn check(&self, b: &mut dyn Backend) -> Result<()> {
        self.arena.load(b)?;
        (self.bwd)(b);
        self.arena.check_guards(b, &self.name)?;
        let mut analytic = Vec::new();
        for w in &self.wrt {
            let got = read(b, w.grad)?;
            let start = self.arena.host(w.grad);
            analytic.push(got.iter().zip(start).map(|(&g, &s)| if w.adds { g as f64 - s as f64 } else { g as f64 }).collect::<Vec<f64>>());
        }
        self.arena.load(b)?;
        let mut failures = Vec::new();
        for (w, analytic) in self.wrt.iter().zip(analytic) {
            let mut x = self.arena.host(w.input).to_vec();
            let mut fd = Vec::with_capacity(x.len());
            for i in 0..x.len() {
                let x0 = x[i];
                let (hi, lo) = ((x0 as f64 + EPS) as f32, (x0 as f64 - EPS) as f32);
                x[i] = hi;
                b.upload(w.input, &x)?;
                let l_hi = self.loss(b)?;
                x[i] = lo;
                b.upload(w.input, &x)?;
                let l_lo = self.loss(b)?;
                x[i] = x0;
                fd.push((l_hi - l_lo) / (hi as f64 - lo as f64));
            }
            b.upload(w.input, &x)?;
            let scale = rms(&fd).max(rms(&analytic));
            if scale == 0.0 {
                failures.push(format!("{}: d{}: the gradient is zero everywhere (a broken case)", self.name, w.name));
                continue;
            }
            let (i, err) = analytic.iter().zip(&fd).map(|(a, f)| (a - f).abs() / scale).enumerate().fold((0, 0.0), |(bi, be), (i, e)| {
                let e = if e.is_finite() { e } else { f64::INFINITY };
                if e > be {
                    (i, e)
                } else {
                    (bi, be)
                }
            });
            if crate::verbose() {
                eprintln!("finite differences {}: d{}: error {err:.3e} at element {i} (gradient rms {scale:.3e})", self.name, w.name);
            }
            if err > TOL {
                failures.push(format!(
                    "{}: d{} (len {}): error {err:.3e} > {TOL:e} at element {i}: analytic {:.6e}, finite difference {:.6e} (gradient rms {scale:.3e})",
                    self.name,
                    w.name,
                    fd.len(),
                    analytic[i],
                    fd[i]
                ));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!(failures.join("\n"))
        }
    }
}

/// The gradient checks, on inputs drawn from `seed`.
pub(crate) fn cases(seed: u64) -> Vec<Diff> {
    let mut g = Gen::new(seed);
    let mut out = Vec::new();
    for ta in [Trans::N, Trans::T] {
        for tb in [Trans::N, Trans::T] {
            out.push(matmul(&mut g, ta, tb, 5, 7, 3));
        }
    }
    out.push(embedding(&mut g, 9, 5, 6));
    out.push(rmsnorm(&mut g, 3, 8));
    out.push(rope(&mut g, 4, 2, 6));
    let shape = |batch, seq, heads, kv_heads, head_dim| AttnShape { batch, seq, heads, kv_heads, head_dim };
    // GQA, batch 2, two documents in the first row, one resuming in the second.
    out.push(attention(&mut g, shape(2, 5, 4, 2, 4), vec![0, 0, 1, 1, 1, 2, 2, 3, 3, 2]));
    // Multi-head, odd head_dim.
    out.push(attention(&mut g, shape(1, 4, 2, 2, 3), vec![4, 4, 4, 4]));
    out.push(swiglu(&mut g, 20));
    out.push(cross_entropy(&mut g, 5, 7));
    out
}

/// The random projection `r`, stored as the output gradient `dout`.
fn projection(g: &mut Gen, a: &mut Arena, len: usize) -> (Span, Vec<f32>) {
    let r = g.normal(len, 1.0);
    (a.put(Mem::DActs, r.clone()), r)
}

fn flip(t: Trans) -> Trans {
    match t {
        Trans::N => Trans::T,
        Trans::T => Trans::N,
    }
}

/// `C = op(A)·op(B)`; the gradients come from `matmul` itself (accumulating), so this checks
/// every transpose combination against every other.
fn matmul(g: &mut Gen, ta: Trans, tb: Trans, m: usize, k: usize, n: usize) -> Diff {
    let mut a = Arena::default();
    let x = a.put(Mem::Acts, g.normal(m * k, 1.0));
    let w = a.put(Mem::Params, g.normal(k * n, 1.0));
    let c = a.put(Mem::Acts, g.normal(m * n, 1.0));
    let (dc, r) = projection(g, &mut a, m * n);
    let dx = a.put(Mem::DActs, g.normal(m * k, 1.0));
    let dw = a.put(Mem::Grads, g.normal(k * n, 1.0));
    Diff {
        name: format!("matmul {ta:?}{tb:?} m={m} k={k} n={n}"),
        arena: a,
        wrt: vec![Wrt { name: "a", input: x, grad: dx, adds: true }, Wrt { name: "b", input: w, grad: dw, adds: true }],
        out: c,
        r,
        fwd: Box::new(move |b| b.matmul(c, x, ta, w, tb, m, k, n, false)),
        bwd: Box::new(move |b| {
            // d op(A) = dC·op(B)ᵀ and d op(B) = op(A)ᵀ·dC, written for the stored matrices.
            match ta {
                Trans::N => b.matmul(dx, dc, Trans::N, w, flip(tb), m, n, k, true),
                Trans::T => b.matmul(dx, w, tb, dc, Trans::T, k, n, m, true),
            }
            match tb {
                Trans::N => b.matmul(dw, x, flip(ta), dc, Trans::N, k, m, n, true),
                Trans::T => b.matmul(dw, dc, Trans::T, x, ta, n, m, k, true),
            }
        }),
    }
}

fn embedding(g: &mut Gen, n: usize, d: usize, vocab: usize) -> Diff {
    let mut a = Arena::default();
    let table = a.put(Mem::Params, g.normal(vocab * d, 1.0));
    let mut id = g.ids(n, vocab as u32);
    id[1] = id[0]; // a repeated token
    let ids = a.put_ids(id);
    let out = a.put(Mem::Acts, g.normal(n * d, 1.0));
    let (dout, r) = projection(g, &mut a, n * d);
    let dtable = a.put(Mem::Grads, g.normal(vocab * d, 1.0));
    Diff {
        name: format!("embedding n={n} d={d} vocab={vocab}"),
        arena: a,
        wrt: vec![Wrt { name: "table", input: table, grad: dtable, adds: true }],
        out,
        r,
        fwd: Box::new(move |b| b.embedding_fwd(out, table, ids, n, d)),
        bwd: Box::new(move |b| b.embedding_bwd(dtable, dout, ids, n, d)),
    }
}

fn rmsnorm(g: &mut Gen, n: usize, d: usize) -> Diff {
    let mut a = Arena::default();
    let eps = 1e-5;
    let x = a.put(Mem::Acts, g.normal(n * d, 1.0));
    let w = a.put(Mem::Params, g.uniform(d, 0.5, 1.5));
    let out = a.put(Mem::Acts, g.normal(n * d, 1.0));
    let rstd = a.put(Mem::Acts, g.normal(n, 1.0));
    let (dout, r) = projection(g, &mut a, n * d);
    let dx = a.put(Mem::DActs, g.normal(n * d, 1.0));
    let dw = a.put(Mem::Grads, g.normal(d, 1.0));
    Diff {
        name: format!("rmsnorm n={n} d={d}"),
        arena: a,
        wrt: vec![Wrt { name: "x", input: x, grad: dx, adds: true }, Wrt { name: "w", input: w, grad: dw, adds: true }],
        out,
        r,
        fwd: Box::new(move |b| b.rmsnorm_fwd(out, rstd, x, w, n, d, eps)),
        bwd: Box::new(move |b| {
            b.rmsnorm_fwd(out, rstd, x, w, n, d, eps);
            b.rmsnorm_bwd(dx, dw, dout, x, w, rstd, n, d);
        }),
    }
}

/// In place: the output is the input span, the gradient turns `dout` in place.
fn rope(g: &mut Gen, n: usize, heads: usize, hd: usize) -> Diff {
    let mut a = Arena::default();
    let theta = 10_000.0;
    let x = a.put(Mem::Acts, g.normal(n * heads * hd, 1.0));
    let pos = a.put_ids(vec![0, 1, 17, 3000]);
    let (dx, r) = projection(g, &mut a, n * heads * hd);
    Diff {
        name: format!("rope n={n} heads={heads} head_dim={hd}"),
        arena: a,
        wrt: vec![Wrt { name: "x", input: x, grad: dx, adds: false }],
        out: x,
        r,
        fwd: Box::new(move |b| b.rope_fwd(x, pos, n, heads, hd, theta)),
        bwd: Box::new(move |b| b.rope_bwd(dx, pos, n, heads, hd, theta)),
    }
}

fn attention(g: &mut Gen, s: AttnShape, doc: Vec<u32>) -> Diff {
    let mut a = Arena::default();
    let (n, qd, kd) = (s.tokens(), s.heads * s.head_dim, s.kv_heads * s.head_dim);
    let q = a.put(Mem::Acts, g.normal(n * qd, 1.0));
    let k = a.put(Mem::Acts, g.normal(n * kd, 1.0));
    let v = a.put(Mem::Acts, g.normal(n * kd, 1.0));
    let out = a.put(Mem::Acts, g.normal(n * qd, 1.0));
    let lse = a.put(Mem::Acts, g.normal(n * s.heads, 1.0));
    let doc = a.put_ids(doc);
    let (dout, r) = projection(g, &mut a, n * qd);
    let dq = a.put(Mem::DActs, g.normal(n * qd, 1.0));
    let dk = a.put(Mem::DActs, g.normal(n * kd, 1.0));
    let dv = a.put(Mem::DActs, g.normal(n * kd, 1.0));
    Diff {
        name: format!("attention batch={} seq={} heads={} kv_heads={} head_dim={}", s.batch, s.seq, s.heads, s.kv_heads, s.head_dim),
        arena: a,
        wrt: vec![
            Wrt { name: "q", input: q, grad: dq, adds: false },
            Wrt { name: "k", input: k, grad: dk, adds: false },
            Wrt { name: "v", input: v, grad: dv, adds: false },
        ],
        out,
        r,
        fwd: Box::new(move |b| b.attention_fwd(out, lse, q, k, v, doc, s)),
        bwd: Box::new(move |b| {
            b.attention_fwd(out, lse, q, k, v, doc, s);
            b.attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, doc, s);
        }),
    }
}

fn swiglu(g: &mut Gen, len: usize) -> Diff {
    let mut a = Arena::default();
    let gate = a.put(Mem::Acts, g.normal(len, 2.0));
    let up = a.put(Mem::Acts, g.normal(len, 1.0));
    let out = a.put(Mem::Acts, g.normal(len, 1.0));
    let (dout, r) = projection(g, &mut a, len);
    let dgate = a.put(Mem::DActs, g.normal(len, 1.0));
    let dup = a.put(Mem::DActs, g.normal(len, 1.0));
    Diff {
        name: format!("swiglu len={len}"),
        arena: a,
        wrt: vec![Wrt { name: "gate", input: gate, grad: dgate, adds: false }, Wrt { name: "up", input: up, grad: dup, adds: false }],
        out,
        r,
        fwd: Box::new(move |b| b.swiglu_fwd(out, gate, up)),
        bwd: Box::new(move |b| b.swiglu_bwd(dgate, dup, dout, gate, up)),
    }
}

/// `L = s·Σ loss`: the op's gradient is `s·(softmax − onehot)` for every row, so the projection
/// is `s` everywhere. One target is ignored.
fn cross_entropy(g: &mut Gen, n: usize, vocab: usize) -> Diff {
    let mut a = Arena::default();
    let logits = a.put(Mem::Acts, g.normal(n * vocab, 2.0));
    let mut t = g.ids(n, vocab as u32);
    t[2] = IGNORE;
    let targets = a.put_ids(t);
    let losses = a.put(Mem::Acts, g.normal(n, 1.0));
    let s = g.scalar(0.2, 2.0);
    Diff {
        name: format!("cross_entropy n={n} vocab={vocab}"),
        arena: a,
        wrt: vec![Wrt { name: "logits", input: logits, grad: logits, adds: false }],
        out: losses,
        r: vec![s; n],
        fwd: Box::new(move |b| b.cross_entropy(logits, losses, targets, n, vocab, None)),
        bwd: Box::new(move |b| b.cross_entropy(logits, losses, targets, n, vocab, Some(s))),
    }
}
