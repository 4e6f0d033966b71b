//! Causal softmax attention over packed rows, flash-attention style: the forward keeps only the
//! output and the log-sum-exp per (token, head); the backward recomputes the probabilities.
//!
//! A token sees the earlier tokens of its row that carry its document id; query head `h` reads
//! key/value head `h / (heads / kv_heads)`. Queries go in blocks of [`BLOCK`]: a block's scores
//! against the keys it may see (`S`, at most `BLOCK × seq`, in the task's scratch) come from
//! gemm, are masked and turned into probabilities `P` in place, and gemm again gives `O = P·V`.
//! The forward runs one task per (row, query head, block). The backward runs one task per (row,
//! kv head), which walks its group's query heads and blocks in order, so that a key/value head's
//! gradient is summed by one task in a fixed order; per block: `dP = dO·Vᵀ`,
//! `D = rowsum(dO ⊙ O)`, `dS = P ⊙ (dP − D)`, `dQ = scale·dS·K`, `dK += scale·dSᵀ·Q`,
//! `dV += Pᵀ·dO`.

use crate::matmul::{gemm_strided, Strided};
use crate::{math, SharedMut};
use agentmerge_model::backend::AttnShape;
use gemm::Parallelism;
use rayon::prelude::*;
use std::sync::Mutex;

/// Queries per block.
const BLOCK: usize = 64;

/// One task's scratch: scores/probabilities, their gradients, and which keys each query sees.
#[derive(Default)]
pub(crate) struct Scratch {
    p: Vec<f32>,
    dp: Vec<f32>,
    vis: Visible,
}

/// Scratch blocks kept between calls; a task takes one and gives it back, so there are as many
/// as tasks ever ran at once (about the number of threads).
#[derive(Default)]
pub(crate) struct ScratchPool(Mutex<Vec<Scratch>>);

impl ScratchPool {
    fn take(&self) -> Scratch {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default()
    }
    fn put(&self, s: Scratch) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }
}

/// The gradients `attention_bwd` writes.
pub(crate) struct Grads<'a> {
    pub dq: &'a mut [f32],
    pub dk: &'a mut [f32],
    pub dv: &'a mut [f32],
}

/// What `attention_bwd` reads: the output's gradient, the forward's output and log-sum-exp, the
/// inputs.
pub(crate) struct Saved<'a> {
    pub dout: &'a [f32],
    pub out: &'a [f32],
    pub lse: &'a [f32],
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
}

/// Which keys each query of one row sees: `first[i]`, the row's first token with `i`'s document
/// id (no earlier key is seen), and `run[i]`, the start of the run of equal ids that ends at `i`.
/// When they are equal (always, unless a document resumes after another) query `i` sees exactly
/// keys `first[i]..=i`; otherwise the keys in between with another id are masked one by one.
#[derive(Default)]
struct Visible {
    first: Vec<usize>,
    run: Vec<usize>,
}

impl Visible {
    fn build(&mut self, doc: &[u32]) {
        self.first.clear();
        self.run.clear();
        for (i, &d) in doc.iter().enumerate() {
            let same = i > 0 && doc[i - 1] == d;
            // At a change of document, scan back for an earlier run of this one.
            self.first.push(if same { self.first[i - 1] } else { doc[..i].iter().position(|&e| e == d).unwrap_or(i) });
            self.run.push(if same { self.run[i - 1] } else { i });
        }
    }

    /// The first key any query of block `i0..i1` sees (the block's keys are `j0..i1`).
    fn block_start(&self, i0: usize, i1: usize) -> usize {
        self.first[i0..i1].iter().copied().min().unwrap_or(i0)
    }

    /// Masks the scores of query `i` against keys `j0..` (`row`): zero outside
    /// `first[i]..=i`, −∞ for keys of other documents inside it. Returns that live range of `row`.
    fn mask<'r>(&self, row: &'r mut [f32], doc: &[u32], i: usize, j0: usize) -> &'r mut [f32] {
        let (lo, hi) = (self.first[i] - j0, i + 1 - j0);
        row[..lo].fill(0.0);
        row[hi..].fill(0.0);
        let live = &mut row[lo..hi];
        if self.run[i] != self.first[i] {
            for (j, x) in (self.first[i]..).zip(live.iter_mut()) {
                if doc[j] != doc[i] {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
        live
    }
}

/// The geometry of a task: which row and kv head, and where their data lie.
struct Task {
    /// Flat index of the row's first token.
    row0: usize,
    /// Key/value head.
    g: usize,
    /// Row strides of q-like (`heads·head_dim`) and k-like (`kv_heads·head_dim`) tensors.
    qs: usize,
    ks: usize,
    hd: usize,
    scale: f32,
}

impl Task {
    /// Row `b`, kv head `g`.
    fn new(s: &AttnShape, b: usize, g: usize) -> Task {
        let hd = s.head_dim;
        Task { row0: b * s.seq, g, qs: s.heads * hd, ks: s.kv_heads * hd, hd, scale: 1.0 / (hd as f32).sqrt() }
    }
    /// Rows `i..` of query-like tensor `x`, head `h`.
    fn q_at<P: Offset>(&self, x: P, i: usize, h: usize) -> Strided<P> {
        Strided { ptr: x.offset((self.row0 + i) * self.qs + h * self.hd), rs: self.qs, cs: 1 }
    }
    /// Rows `j..` of key-like tensor `x`, this task's kv head.
    fn k_at<P: Offset>(&self, x: P, j: usize) -> Strided<P> {
        Strided { ptr: x.offset((self.row0 + j) * self.ks + self.g * self.hd), rs: self.ks, cs: 1 }
    }
    /// `S = scale·Q·Kᵀ` for queries `i0..i0+mq` of head `h` against keys `j0..j0+nk`, into `sc`.
    ///
    /// # Safety
    /// The ranges must lie inside the row, `sc` must hold `mq·nk` values.
    #[allow(clippy::too_many_arguments)]
    unsafe fn scores(&self, sc: &mut [f32], q: &[f32], k: &[f32], h: usize, i0: usize, mq: usize, j0: usize, nk: usize) {
        let kt = Strided { rs: 1, cs: self.ks, ..self.k_at(k.as_ptr(), j0) };
        gemm_strided(mq, nk, self.hd, Strided { ptr: sc.as_mut_ptr(), rs: nk, cs: 1 }, self.q_at(q.as_ptr(), i0, h), kt, false, self.scale, Parallelism::None);
    }
}

trait Offset: Copy {
    fn offset(self, n: usize) -> Self;
}
impl Offset for *const f32 {
    fn offset(self, n: usize) -> Self {
        self.wrapping_add(n)
    }
}
impl Offset for *mut f32 {
    fn offset(self, n: usize) -> Self {
        self.wrapping_add(n)
    }
}

/// Parallel over (row, query head, query block): the forward has no shared sums.
#[allow(clippy::too_many_arguments)]
pub fn forward(out: &mut [f32], lse: &mut [f32], q: &[f32], k: &[f32], v: &[f32], doc: &[u32], s: AttnShape, pool: &ScratchPool) {
    let (t, heads, group) = (s.seq, s.heads, s.heads / s.kv_heads);
    let blocks = t.div_ceil(BLOCK);
    let (out, lse) = (SharedMut::new(out), SharedMut::new(lse));
    (0..s.batch * heads * blocks).into_par_iter().for_each(|task| {
        let (b, h, blk) = (task / (heads * blocks), task / blocks % heads, task % blocks);
        let tk = Task::new(&s, b, h / group);
        let doc = &doc[tk.row0..tk.row0 + t];
        let mut scratch = pool.take();
        let Scratch { p, vis, .. } = &mut scratch;
        vis.build(doc);
        let (i0, i1) = (blk * BLOCK, (blk * BLOCK + BLOCK).min(t));
        let j0 = vis.block_start(i0, i1);
        let (mq, nk) = (i1 - i0, i1 - j0);
        let p = crate::grow(p, mq * nk);
        // SAFETY: queries i0..i1 and keys j0..i1 lie inside the row.
        unsafe { tk.scores(p, q, k, h, i0, mq, j0, nk) };
        for (i, row) in (i0..i1).zip(p.chunks_exact_mut(nk)) {
            let live = vis.mask(row, doc, i, j0);
            let m = math::max(live);
            let sum = math::exp_sum(live, m);
            let inv = (1.0 / sum) as f32;
            live.iter_mut().for_each(|x| *x *= inv);
            // SAFETY: (token, head) of this task alone.
            unsafe { *lse.get().add((tk.row0 + i) * heads + h) = (m as f64 + sum.ln()) as f32 };
        }
        // O = P·V. SAFETY: rows i0..i1 of head h belong to this task.
        unsafe {
            let o = tk.q_at(out.get(), i0, h);
            gemm_strided(mq, tk.hd, nk, o, Strided { ptr: p.as_ptr(), rs: nk, cs: 1 }, tk.k_at(v.as_ptr(), j0), false, 1.0, Parallelism::None);
        }
        pool.put(scratch);
    });
}

/// Parallel over (row, kv head): the group's query heads and blocks add into one dK and dV, in
/// a fixed order.
pub fn backward(grads: Grads, saved: Saved, doc: &[u32], s: AttnShape, pool: &ScratchPool) {
    let (t, heads, group, hd) = (s.seq, s.heads, s.heads / s.kv_heads, s.head_dim);
    let Saved { dout, out, lse, q, k, v } = saved;
    let (dq, dk, dv) = (SharedMut::new(grads.dq), SharedMut::new(grads.dk), SharedMut::new(grads.dv));
    (0..s.batch * s.kv_heads).into_par_iter().for_each(|task| {
        let tk = Task::new(&s, task / s.kv_heads, task % s.kv_heads);
        let doc = &doc[tk.row0..tk.row0 + t];
        let mut scratch = pool.take();
        let Scratch { p, dp, vis } = &mut scratch;
        vis.build(doc);
        let p = crate::grow(p, BLOCK.min(t) * t);
        let dp = crate::grow(dp, BLOCK.min(t) * t);
        // dK and dV of this kv head accumulate over the group's heads and query blocks.
        for j in 0..t {
            // SAFETY: head g of the row's tokens belongs to this task.
            unsafe {
                std::slice::from_raw_parts_mut(tk.k_at(dk.get(), j).ptr, hd).fill(0.0);
                std::slice::from_raw_parts_mut(tk.k_at(dv.get(), j).ptr, hd).fill(0.0);
            }
        }
        for h in tk.g * group..(tk.g + 1) * group {
            for i0 in (0..t).step_by(BLOCK) {
                let i1 = (i0 + BLOCK).min(t);
                let j0 = vis.block_start(i0, i1);
                let (mq, nk) = (i1 - i0, i1 - j0);
                let (p, dp) = (&mut p[..mq * nk], &mut dp[..mq * nk]);
                // SAFETY (all gemm calls below): queries i0..i1 and keys j0..i1 lie inside the
                // row; dq rows i0..i1 of head h and dk/dv rows of head g belong to this task.
                unsafe {
                    tk.scores(p, q, k, h, i0, mq, j0, nk);
                    // dP = dO·Vᵀ
                    let vt = Strided { rs: 1, cs: tk.ks, ..tk.k_at(v.as_ptr(), j0) };
                    gemm_strided(mq, nk, hd, Strided { ptr: dp.as_mut_ptr(), rs: nk, cs: 1 }, tk.q_at(dout.as_ptr(), i0, h), vt, false, 1.0, Parallelism::None);
                }
                for (i, (pr, dpr)) in (i0..i1).zip(p.chunks_exact_mut(nk).zip(dp.chunks_exact_mut(nk))) {
                    let lse_i = lse[(tk.row0 + i) * heads + h];
                    let at = (tk.row0 + i) * tk.qs + h * hd;
                    let d_i = dout[at..at + hd].iter().zip(&out[at..at + hd]).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() as f32;
                    vis.mask(pr, doc, i, j0).iter_mut().for_each(|x| *x = math::exp(*x - lse_i));
                    for (x, dx) in pr.iter().zip(dpr.iter_mut()) {
                        *dx = x * (*dx - d_i);
                    }
                }
                let (p, ds) = (Strided { ptr: p.as_ptr(), rs: nk, cs: 1 }, Strided { ptr: dp.as_ptr(), rs: nk, cs: 1 });
                let (pt, dst) = (Strided { rs: 1, cs: nk, ..p }, Strided { rs: 1, cs: nk, ..ds });
                unsafe {
                    // dQ = scale·dS·K
                    gemm_strided(mq, hd, nk, tk.q_at(dq.get(), i0, h), ds, tk.k_at(k.as_ptr(), j0), false, tk.scale, Parallelism::None);
                    // dK += scale·dSᵀ·Q
                    gemm_strided(nk, hd, mq, tk.k_at(dk.get(), j0), dst, tk.q_at(q.as_ptr(), i0, h), true, tk.scale, Parallelism::None);
                    // dV += Pᵀ·dO
                    gemm_strided(nk, hd, mq, tk.k_at(dv.get(), j0), pt, tk.q_at(dout.as_ptr(), i0, h), true, 1.0, Parallelism::None);
                }
            }
        }
        pool.put(scratch);
    });
}
