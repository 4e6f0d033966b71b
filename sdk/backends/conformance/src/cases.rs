//! The op cases that [`crate::forward_references`], [`crate::parity`] and [`crate::transcript`]
//! run: each lays out random inputs, runs one op (or a forward and its backward) on a backend and
//! names the outputs to compare, with their naive f64 values when asked for.

use crate::arena::{read, Arena, Gen};
use crate::compare::f64s;
use crate::naive;
use crate::Shapes;
use agentmerge_model::backend::{AdamStep, AttnShape, Backend, DecodeShape, Mem, Span, Trans, IGNORE};
use anyhow::Result;

/// A forward value or a gradient (parity allows gradients more error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Value,
    Grad,
}

/// Where an output is read: a span, or the `i`-th scalar the case's `run` returned.
pub(crate) enum Source {
    Span(Span),
    Scalar(usize),
}

pub(crate) struct Output {
    pub name: &'static str,
    pub kind: Kind,
    pub source: Source,
    /// The naive f64 value, when the cases were built with `naive`.
    pub expected: Option<Vec<f64>>,
    /// The tolerance against `expected`.
    pub tol: f64,
}

type Run = Box<dyn Fn(&mut dyn Backend) -> Vec<f64>>;

pub(crate) struct Case {
    pub name: String,
    pub arena: Arena,
    pub run: Run,
    pub outputs: Vec<Output>,
}

impl Case {
    /// Loads the inputs into `b`, runs the case, checks the guards, and returns every output.
    pub fn execute(&self, b: &mut dyn Backend) -> Result<Vec<Vec<f64>>> {
        self.arena.load(b)?;
        let scalars = (self.run)(b);
        self.arena.check_guards(b, &self.name)?;
        self.outputs
            .iter()
            .map(|o| match o.source {
                Source::Span(s) => Ok(f64s(&read(b, s)?)),
                Source::Scalar(i) => Ok(vec![scalars[i]]),
            })
            .collect()
    }
}

/// Tolerances against the naive f64 values.
const VALUE: f64 = 1e-5;
const GRAD: f64 = 1e-4;

/// Builds the outputs' list, computing expected values only when asked.
struct Outputs {
    naive: bool,
    list: Vec<Output>,
}

impl Outputs {
    fn add(&mut self, name: &'static str, kind: Kind, source: Source, tol: f64, expected: impl FnOnce() -> Vec<f64>) {
        let expected = self.naive.then(expected);
        self.list.push(Output { name, kind, source, expected, tol });
    }
    fn span(&mut self, name: &'static str, kind: Kind, span: Span, expected: impl FnOnce() -> Vec<f64>) {
        let tol = if kind == Kind::Value { VALUE } else { GRAD };
        self.add(name, kind, Source::Span(span), tol, expected);
    }
}

/// Sizes of one family of cases.
struct Sizes {
    matmul: [(usize, usize, usize); 2],
    embed: (usize, usize, usize),
    norm: (usize, usize),
    rope: (usize, usize, usize),
    attn: Vec<(AttnShape, Vec<u32>)>,
    /// Decoding: the shape, the cache's slot count, and each sequence's slot and position.
    decode: Vec<(DecodeShape, usize, Vec<u32>, Vec<u32>)>,
    swiglu: usize,
    xent: (usize, usize),
    adamw: usize,
    sum: usize,
    elementwise: usize,
}

/// Document ids of one row of `seq` tokens: runs of the given lengths (the last one takes the
/// rest), ids repeating when `ids` is shorter than the runs.
fn docs(seq: usize, runs: &[usize], ids: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(seq);
    for (r, &len) in runs.iter().enumerate() {
        let len = if r + 1 == runs.len() { seq - out.len() } else { len };
        out.extend(std::iter::repeat_n(ids[r % ids.len()], len));
    }
    out
}

fn sizes(shapes: Shapes) -> Sizes {
    let shape = |batch, seq, heads, kv_heads, head_dim| AttnShape { batch, seq, heads, kv_heads, head_dim };
    let dshape = |batch, heads, kv_heads, head_dim, max_len| DecodeShape { batch, heads, kv_heads, head_dim, max_len };
    match shapes {
        Shapes::Small => Sizes {
            matmul: [(13, 17, 11), (37, 53, 29)],
            embed: (23, 12, 40),
            norm: (21, 48),
            rope: (11, 3, 16),
            attn: vec![
                // GQA, two rows, more tokens than a 64-query block, a document boundary, and a
                // document that resumes after another (ids compare equal, so it sees its start),
                // here inside the second query block, whose first query is in the other document.
                (shape(2, 70, 4, 2, 8), [docs(70, &[30, 40], &[0, 1]), docs(70, &[10, 56, 4], &[5, 6])].concat()),
                // Multi-head (no grouping), odd head_dim, one document.
                (shape(1, 9, 3, 3, 5), vec![7; 9]),
                // Multi-query: one kv head for four query heads, several short documents.
                (shape(2, 12, 4, 1, 6), [docs(12, &[1, 3, 4, 4], &[0, 1, 2, 3]), docs(12, &[12], &[9])].concat()),
            ],
            decode: vec![
                // GQA: a full slot, a short one, a first position; one slot left unused.
                (dshape(3, 4, 2, 8, 70), 4, vec![2, 0, 3], vec![69, 4, 0]),
                // Multi-query, odd head_dim.
                (dshape(2, 3, 1, 5, 9), 2, vec![1, 0], vec![8, 3]),
            ],
            swiglu: 300,
            xent: (9, 37),
            adamw: 500,
            sum: 20_000,
            elementwise: 1000,
        },
        Shapes::Large => Sizes {
            matmul: [(130, 150, 140), (97, 301, 203)],
            embed: (300, 200, 1000),
            norm: (300, 160),
            rope: (200, 4, 32),
            attn: vec![
                (shape(2, 150, 4, 2, 32), [docs(150, &[100, 50], &[0, 1]), docs(150, &[150], &[3])].concat()),
                (shape(3, 40, 4, 4, 16), docs(120, &[40, 30, 50], &[0, 1, 2])),
            ],
            decode: vec![(dshape(8, 8, 2, 32, 300), 10, vec![9, 0, 3, 5, 1, 8, 2, 7], vec![299, 0, 150, 64, 17, 200, 255, 1])],
            swiglu: 100_000,
            xent: (64, 1000),
            adamw: 100_000,
            sum: 300_000,
            elementwise: 100_000,
        },
    }
}

/// Every case of a family, on inputs drawn from `seed`; with `naive`, the outputs carry their
/// naive f64 values.
pub(crate) fn cases(shapes: Shapes, seed: u64, naive: bool) -> Vec<Case> {
    let s = sizes(shapes);
    let mut g = Gen::new(seed);
    let mut out = Vec::new();
    for &(m, k, n) in &s.matmul {
        for ta in [Trans::N, Trans::T] {
            for tb in [Trans::N, Trans::T] {
                for accumulate in [false, true] {
                    out.push(matmul(&mut g, naive, ta, tb, m, k, n, accumulate));
                }
            }
        }
    }
    out.push(embedding(&mut g, naive, s.embed));
    out.push(rmsnorm(&mut g, naive, s.norm));
    out.push(rope(&mut g, naive, s.rope, 10_000.0));
    out.push(rope(&mut g, naive, s.rope, 500_000.0));
    for (shape, doc) in s.attn {
        out.push(attention(&mut g, naive, shape, doc));
    }
    for (shape, slots, slot, pos) in s.decode {
        out.push(decode(&mut g, naive, shape, slots, slot, pos));
    }
    out.push(swiglu(&mut g, naive, s.swiglu));
    out.push(cross_entropy(&mut g, naive, s.xent));
    out.push(adamw(&mut g, naive, s.adamw));
    out.push(sum_squares(&mut g, naive, s.sum));
    out.push(elementwise(&mut g, naive, s.elementwise));
    out
}

fn outputs(naive: bool) -> Outputs {
    Outputs { naive, list: Vec::new() }
}

#[allow(clippy::too_many_arguments)]
fn matmul(g: &mut Gen, naive: bool, ta: Trans, tb: Trans, m: usize, k: usize, n: usize, accumulate: bool) -> Case {
    let mut a = Arena::default();
    let x = a.put(Mem::Acts, g.normal(m * k, 1.0));
    let w = a.put(Mem::Params, g.normal(k * n, 0.5));
    let c = a.put(Mem::Acts, g.normal(m * n, 1.0));
    let mut o = outputs(naive);
    let c0 = accumulate.then(|| a.host(c).to_vec());
    o.span("c", Kind::Value, c, || naive::matmul(c0.as_deref(), a.host(x), ta, a.host(w), tb, m, k, n));
    Case {
        name: format!("matmul {ta:?}{tb:?} m={m} k={k} n={n}{}", if accumulate { " accumulate" } else { "" }),
        arena: a,
        run: Box::new(move |b| {
            b.matmul(c, x, ta, w, tb, m, k, n, accumulate);
            vec![]
        }),
        outputs: o.list,
    }
}

fn embedding(g: &mut Gen, naive: bool, (n, d, vocab): (usize, usize, usize)) -> Case {
    let mut a = Arena::default();
    // Fewer distinct ids than tokens, so rows repeat and their gradients add up.
    let table = a.put(Mem::Params, g.normal(vocab * d, 1.0));
    let ids = a.put_ids(g.ids(n, (vocab as u32 / 2).max(1)));
    let out = a.put(Mem::Acts, g.normal(n * d, 1.0));
    let dout = a.put(Mem::DActs, g.normal(n * d, 1.0));
    let dtable = a.put(Mem::Grads, g.normal(vocab * d, 1.0));
    let mut o = outputs(naive);
    o.span("out", Kind::Value, out, || naive::embedding_fwd(a.host(table), a.host_ids(ids), d));
    o.span("dtable", Kind::Grad, dtable, || naive::embedding_bwd(a.host(dtable), a.host(dout), a.host_ids(ids), d));
    Case {
        name: format!("embedding n={n} d={d} vocab={vocab}"),
        arena: a,
        run: Box::new(move |b| {
            b.embedding_fwd(out, table, ids, n, d);
            b.embedding_bwd(dtable, dout, ids, n, d);
            vec![]
        }),
        outputs: o.list,
    }
}

fn rmsnorm(g: &mut Gen, naive: bool, (n, d): (usize, usize)) -> Case {
    let mut a = Arena::default();
    let eps = 1e-5;
    let mut xs = g.normal(n * d, 1.0);
    xs[..d].iter_mut().for_each(|v| *v *= 1e-3); // a row of small values, where eps matters
    let x = a.put(Mem::Acts, xs);
    let w = a.put(Mem::Params, g.uniform(d, 0.5, 1.5));
    let out = a.put(Mem::Acts, g.normal(n * d, 1.0));
    let rstd = a.put(Mem::Acts, g.normal(n, 1.0));
    let dout = a.put(Mem::DActs, g.normal(n * d, 1.0));
    let dx = a.put(Mem::DActs, g.normal(n * d, 1.0));
    let dw = a.put(Mem::Grads, g.normal(d, 1.0));
    let mut o = outputs(naive);
    let fwd = naive.then(|| naive::rmsnorm_fwd(a.host(x), a.host(w), d, eps));
    let bwd = naive.then(|| naive::rmsnorm_bwd(a.host(dx), a.host(dw), a.host(dout), a.host(x), a.host(w), d, eps));
    o.span("out", Kind::Value, out, || fwd.clone().unwrap().0);
    o.span("rstd", Kind::Value, rstd, || fwd.clone().unwrap().1);
    o.span("dx", Kind::Grad, dx, || bwd.clone().unwrap().0);
    o.span("dw", Kind::Grad, dw, || bwd.clone().unwrap().1);
    Case {
        name: format!("rmsnorm n={n} d={d}"),
        arena: a,
        run: Box::new(move |b| {
            b.rmsnorm_fwd(out, rstd, x, w, n, d, eps);
            b.rmsnorm_bwd(dx, dw, dout, x, w, rstd, n, d);
            vec![]
        }),
        outputs: o.list,
    }
}

fn rope(g: &mut Gen, naive: bool, (n, heads, hd): (usize, usize, usize), theta: f32) -> Case {
    let mut a = Arena::default();
    let x = a.put(Mem::Acts, g.normal(n * heads * hd, 1.0));
    let dx = a.put(Mem::DActs, g.normal(n * heads * hd, 1.0));
    // Positions from 0 to a few thousand, in no order (packed documents restart them).
    let mut p = g.ids(n, 4096);
    p[0] = 0;
    let pos = a.put_ids(p);
    let mut o = outputs(naive);
    o.span("x", Kind::Value, x, || naive::rope(a.host(x), a.host_ids(pos), heads, hd, theta, false));
    o.span("dx", Kind::Grad, dx, || naive::rope(a.host(dx), a.host_ids(pos), heads, hd, theta, true));
    Case {
        name: format!("rope n={n} heads={heads} head_dim={hd} theta={theta}"),
        arena: a,
        run: Box::new(move |b| {
            b.rope_fwd(x, pos, n, heads, hd, theta);
            b.rope_bwd(dx, pos, n, heads, hd, theta);
            vec![]
        }),
        outputs: o.list,
    }
}

fn attention(g: &mut Gen, naive: bool, s: AttnShape, doc: Vec<u32>) -> Case {
    let mut a = Arena::default();
    let (n, qd, kd) = (s.tokens(), s.heads * s.head_dim, s.kv_heads * s.head_dim);
    let q = a.put(Mem::Acts, g.normal(n * qd, 1.5));
    let k = a.put(Mem::Acts, g.normal(n * kd, 1.5));
    let v = a.put(Mem::Acts, g.normal(n * kd, 1.0));
    let out = a.put(Mem::Acts, g.normal(n * qd, 1.0));
    let lse = a.put(Mem::Acts, g.normal(n * s.heads, 1.0));
    let dout = a.put(Mem::DActs, g.normal(n * qd, 1.0));
    let dq = a.put(Mem::DActs, g.normal(n * qd, 1.0));
    let dk = a.put(Mem::DActs, g.normal(n * kd, 1.0));
    let dv = a.put(Mem::DActs, g.normal(n * kd, 1.0));
    let doc = a.put_ids(doc);
    let mut o = outputs(naive);
    let fwd = naive.then(|| naive::attention_fwd(a.host(q), a.host(k), a.host(v), a.host_ids(doc), &s));
    let bwd = naive.then(|| naive::attention_bwd(a.host(dout), a.host(q), a.host(k), a.host(v), a.host_ids(doc), &s));
    o.add("out", Kind::Value, Source::Span(out), 1e-4, || fwd.clone().unwrap().0);
    o.add("lse", Kind::Value, Source::Span(lse), 1e-5, || fwd.clone().unwrap().1);
    o.span("dq", Kind::Grad, dq, || bwd.clone().unwrap().0);
    o.span("dk", Kind::Grad, dk, || bwd.clone().unwrap().1);
    o.span("dv", Kind::Grad, dv, || bwd.clone().unwrap().2);
    Case {
        name: format!("attention batch={} seq={} heads={} kv_heads={} head_dim={}", s.batch, s.seq, s.heads, s.kv_heads, s.head_dim),
        arena: a,
        run: Box::new(move |b| {
            b.attention_fwd(out, lse, q, k, v, doc, s);
            b.attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, doc, s);
            vec![]
        }),
        outputs: o.list,
    }
}

/// `kv_store` of one token per sequence, then `attention_decode` over the caches it wrote into.
fn decode(g: &mut Gen, naive: bool, s: DecodeShape, slots: usize, slot: Vec<u32>, pos: Vec<u32>) -> Case {
    let mut a = Arena::default();
    let (qd, kd, cache) = (s.heads * s.head_dim, s.kv_heads * s.head_dim, slots * s.slot_len());
    let k_cache = a.put(Mem::Kv, g.normal(cache, 1.5));
    let v_cache = a.put(Mem::Kv, g.normal(cache, 1.0));
    let k = a.put(Mem::Acts, g.normal(s.batch * kd, 1.5));
    let v = a.put(Mem::Acts, g.normal(s.batch * kd, 1.0));
    let q = a.put(Mem::Acts, g.normal(s.batch * qd, 1.5));
    let out = a.put(Mem::Acts, g.normal(s.batch * qd, 1.0));
    let lens = a.put_ids(pos.iter().map(|p| p + 1).collect());
    let (slot, pos) = (a.put_ids(slot), a.put_ids(pos));
    let mut o = outputs(naive);
    let stored = naive.then(|| {
        let kc = naive::kv_store(a.host(k_cache), a.host(k), a.host_ids(slot), a.host_ids(pos), &s);
        let vc = naive::kv_store(a.host(v_cache), a.host(v), a.host_ids(slot), a.host_ids(pos), &s);
        (kc, vc)
    });
    let want = stored.as_ref().map(|(kc, vc)| naive::attention_decode(a.host(q), kc, vc, a.host_ids(slot), a.host_ids(lens), &s));
    o.add("k_cache", Kind::Value, Source::Span(k_cache), 0.0, || f64s(&stored.clone().unwrap().0));
    o.add("v_cache", Kind::Value, Source::Span(v_cache), 0.0, || f64s(&stored.clone().unwrap().1));
    o.add("out", Kind::Value, Source::Span(out), 1e-4, || want.clone().unwrap());
    Case {
        name: format!("decode batch={} heads={} kv_heads={} head_dim={} max_len={} slots={slots}", s.batch, s.heads, s.kv_heads, s.head_dim, s.max_len),
        arena: a,
        run: Box::new(move |b| {
            b.kv_store(k_cache, v_cache, k, v, slot, pos, s);
            b.attention_decode(out, q, k_cache, v_cache, slot, lens, s);
            vec![]
        }),
        outputs: o.list,
    }
}

fn swiglu(g: &mut Gen, naive: bool, len: usize) -> Case {
    let mut a = Arena::default();
    let mut gates = g.normal(len, 3.0);
    gates[0] = -100.0; // saturated sigmoid on both sides
    gates[1] = 100.0;
    let gate = a.put(Mem::Acts, gates);
    let up = a.put(Mem::Acts, g.normal(len, 1.0));
    let out = a.put(Mem::Acts, g.normal(len, 1.0));
    let dout = a.put(Mem::DActs, g.normal(len, 1.0));
    let dgate = a.put(Mem::DActs, g.normal(len, 1.0));
    let dup = a.put(Mem::DActs, g.normal(len, 1.0));
    let mut o = outputs(naive);
    let bwd = naive.then(|| naive::swiglu_bwd(a.host(dout), a.host(gate), a.host(up)));
    o.span("out", Kind::Value, out, || naive::swiglu_fwd(a.host(gate), a.host(up)));
    o.span("dgate", Kind::Grad, dgate, || bwd.clone().unwrap().0);
    o.span("dup", Kind::Grad, dup, || bwd.clone().unwrap().1);
    Case {
        name: format!("swiglu len={len}"),
        arena: a,
        run: Box::new(move |b| {
            b.swiglu_fwd(out, gate, up);
            b.swiglu_bwd(dgate, dup, dout, gate, up);
            vec![]
        }),
        outputs: o.list,
    }
}

fn cross_entropy(g: &mut Gen, naive: bool, (n, vocab): (usize, usize)) -> Case {
    let mut a = Arena::default();
    let mut x = g.normal(n * vocab, 3.0);
    x[vocab + 1] = 60.0; // a dominant logit: the max subtraction matters
    let logits = a.put(Mem::Acts, x);
    let mut t = g.ids(n, vocab as u32);
    t[n / 2] = IGNORE;
    t[n - 1] = vocab as u32 - 1;
    let targets = a.put_ids(t);
    let losses = a.put(Mem::Acts, g.normal(n, 1.0));
    let losses2 = a.put(Mem::Acts, g.normal(n, 1.0));
    let scale = g.scalar(0.1, 2.0);
    let mut o = outputs(naive);
    let want = naive.then(|| naive::cross_entropy(a.host(logits), a.host_ids(targets), vocab, scale as f64));
    o.span("losses", Kind::Value, losses, || want.clone().unwrap().0);
    o.span("losses (with the gradient)", Kind::Value, losses2, || want.clone().unwrap().0);
    o.span("dlogits", Kind::Grad, logits, || want.clone().unwrap().1);
    Case {
        name: format!("cross_entropy n={n} vocab={vocab}"),
        arena: a,
        run: Box::new(move |b| {
            b.cross_entropy(logits, losses, targets, n, vocab, None);
            b.cross_entropy(logits, losses2, targets, n, vocab, Some(scale));
            vec![]
        }),
        outputs: o.list,
    }
}

/// Three AdamW steps (t = 1, 2, 3) with different gradients and hyperparameters.
fn adamw(g: &mut Gen, naive: bool, len: usize) -> Case {
    let mut a = Arena::default();
    let p = a.put(Mem::Params, g.normal(len, 1.0));
    let m = a.put(Mem::AdamM, vec![0.0; len]);
    let v = a.put(Mem::AdamV, vec![0.0; len]);
    let grads: Vec<Span> = (0..3).map(|_| a.put(Mem::Grads, g.normal(len, 0.1))).collect();
    let steps: Vec<AdamStep> = (1..=3)
        .map(|t| AdamStep {
            lr: g.scalar(1e-3, 2e-2),
            beta1: 0.9,
            beta2: if t == 2 { 0.95 } else { 0.999 },
            eps: 1e-8,
            weight_decay: if t == 3 { 0.0 } else { 0.1 },
            t,
            grad_scale: if t == 1 { 1.0 } else { g.scalar(0.2, 1.0) },
        })
        .collect();
    let want = naive.then(|| {
        let (mut pp, mut mm, mut vv) = (f64s(a.host(p)), vec![0.0; len], vec![0.0; len]);
        for (gs, st) in grads.iter().zip(&steps) {
            (pp, mm, vv) = naive::adamw(&pp, a.host(*gs), &mm, &vv, st);
        }
        (pp, mm, vv)
    });
    let mut o = outputs(naive);
    o.span("p", Kind::Value, p, || want.clone().unwrap().0);
    o.span("m", Kind::Value, m, || want.clone().unwrap().1);
    o.span("v", Kind::Value, v, || want.clone().unwrap().2);
    Case {
        name: format!("adamw len={len}"),
        arena: a,
        run: Box::new(move |b| {
            for (gs, st) in grads.iter().zip(&steps) {
                b.adamw(p, *gs, m, v, *st);
            }
            vec![]
        }),
        outputs: o.list,
    }
}

fn sum_squares(g: &mut Gen, naive: bool, len: usize) -> Case {
    let mut a = Arena::default();
    let x = a.put(Mem::Grads, g.normal(len, 1.0));
    let small = a.put(Mem::Grads, g.normal(7, 1.0));
    let mut o = outputs(naive);
    o.add("sum", Kind::Value, Source::Scalar(0), 1e-10, || vec![naive::sum_squares(a.host(x))]);
    o.add("sum (7 elements)", Kind::Value, Source::Scalar(1), 1e-12, || vec![naive::sum_squares(a.host(small))]);
    Case { name: format!("sum_squares len={len}"), arena: a, run: Box::new(move |b| vec![b.sum_squares(x), b.sum_squares(small)]), outputs: o.list }
}

/// add (out apart, out = a, out = b, out = a = b), scale, copy, zero.
fn elementwise(g: &mut Gen, naive: bool, len: usize) -> Case {
    let mut a = Arena::default();
    let x = a.put(Mem::Acts, g.normal(len, 1.0));
    let y = a.put(Mem::DActs, g.normal(len, 1.0));
    let sum = a.put(Mem::Acts, g.normal(len, 1.0));
    let ina = a.put(Mem::Acts, g.normal(len, 1.0));
    let inb = a.put(Mem::Acts, g.normal(len, 1.0));
    let twice = a.put(Mem::DActs, g.normal(len, 1.0));
    let scaled = a.put(Mem::Grads, g.normal(len, 1.0));
    let copied = a.put(Mem::Acts, g.normal(len, 1.0));
    let zeroed = a.put(Mem::Acts, g.normal(len, 1.0));
    let alpha = g.scalar(-2.0, 2.0);
    let mut o = outputs(naive);
    let h = |s: Span| f64s(a.host(s));
    let add = |p: Span, q: Span| h(p).iter().zip(h(q)).map(|(p, q)| p + q).collect::<Vec<f64>>();
    o.span("a + b", Kind::Value, sum, || add(x, y));
    o.span("out = a, += b", Kind::Value, ina, || add(ina, y));
    o.span("out = b, a +", Kind::Value, inb, || add(x, inb));
    o.span("out = a = b", Kind::Value, twice, || add(twice, twice));
    o.span("scale", Kind::Value, scaled, || h(scaled).iter().map(|v| v * alpha as f64).collect());
    o.span("copy", Kind::Value, copied, || h(x));
    o.span("zero", Kind::Value, zeroed, || vec![0.0; len]);
    Case {
        name: format!("elementwise len={len}"),
        arena: a,
        run: Box::new(move |b| {
            b.add(sum, x, y);
            b.add(ina, ina, y);
            b.add(inb, x, inb);
            b.add(twice, twice, twice);
            b.scale(scaled, alpha);
            b.copy(copied, x);
            b.zero(zeroed);
            vec![]
        }),
        outputs: o.list,
    }
}
