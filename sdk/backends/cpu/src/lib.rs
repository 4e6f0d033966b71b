//! The CPU backend: the numerical reference every other backend is checked against.
//!
//! One `Vec<f32>` per [`Mem`] (`Vec<u32>` for [`Mem::Ids`]); an op names its input and output
//! spans, `buffers::Buffers::io` checks them (inside the buffer, outputs overlapping nothing
//! else) and hands out slices, and the op's own file does the arithmetic: matrix products
//! through the `gemm` crate, everything else with rayon over rows or fixed-size chunks.
//!
//! Determinism: every reduction has an order fixed by the shapes alone (fixed chunk sizes,
//! chunk partials combined in chunk order, one task per (row, kv head) for attention's key/value
//! gradients), and gemm splits work over threads by output tiles only, so outputs are
//! bit-identical whatever the number of rayon threads; `tests/determinism.rs` checks it with
//! pools of 1, 2 and 3 threads. Across machines, only the matrix products may differ: gemm picks
//! its kernel (AVX2, AVX-512) and depth blocking from the CPU. The elementwise code uses plain
//! IEEE f32/f64 operations (no fused multiply-add; `exp` is our own, in `math.rs`), so it gives
//! the same bits on every x86-64 CPU.

mod adamw;
mod attention;
mod buffers;
mod decode;
mod elementwise;
mod embedding;
mod math;
mod matmul;
mod rmsnorm;
mod rope;
mod swiglu;
mod xent;

use agentmerge_model::backend::{shapes, AdamStep, AttnShape, Backend, DecodeShape, Mem, Span, Trans};
use anyhow::Result;

use buffers::{Buffers, Ids};

/// The reference backend. Scratch buffers live here and are reused from call to call, so ops
/// allocate only when a shape grows.
pub struct CpuBackend {
    bufs: Buffers,
    ids: Ids,
    /// Scratch of the ops that need one (rope's frequencies, sum_squares' and rmsnorm's chunk
    /// partials).
    scratch: Vec<f32>,
    scratch64: Vec<f64>,
    /// One block of attention scratch per task running at once.
    attn: attention::ScratchPool,
}

impl CpuBackend {
    pub fn new() -> CpuBackend {
        CpuBackend { bufs: Buffers::default(), ids: Ids::default(), scratch: Vec::new(), scratch64: Vec::new(), attn: attention::ScratchPool::default() }
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// `v[..len]`, growing `v` first when it is shorter (contents unspecified).
pub(crate) fn grow<T: Copy + Default>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    if v.len() < len {
        v.resize(len, T::default());
    }
    &mut v[..len]
}

/// A pointer into an output that parallel tasks share, each writing elements no other task
/// touches (strided outputs, such as one attention head of every token).
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(*mut f32);
// SAFETY: users write disjoint elements from different tasks (see each use).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    pub fn new(s: &mut [f32]) -> SharedMut {
        SharedMut(s.as_mut_ptr())
    }
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not the raw pointer).
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    // ---- memory ----------------------------------------------------------------------------

    fn alloc(&mut self, mem: Mem, len: usize) -> Result<()> {
        match mem {
            Mem::Ids => self.ids.alloc(len),
            _ => self.bufs.alloc(mem, len),
        }
    }

    fn mem_len(&self, mem: Mem) -> usize {
        match mem {
            Mem::Ids => self.ids.len(),
            _ => self.bufs.len(mem),
        }
    }

    fn upload(&mut self, dst: Span, src: &[f32]) -> Result<()> {
        self.bufs.upload(dst, src)
    }

    fn download(&mut self, src: Span, dst: &mut [f32]) -> Result<()> {
        self.bufs.download(src, dst)
    }

    fn upload_ids(&mut self, dst: Span, src: &[u32]) -> Result<()> {
        self.ids.upload(dst, src)
    }

    fn zero(&mut self, dst: Span) {
        if dst.mem == Mem::Ids {
            self.ids.get_mut("zero", dst).fill(0);
        } else {
            let ([], [d]) = self.bufs.io("zero", [], [dst]);
            elementwise::fill(d, 0.0);
        }
    }

    fn copy(&mut self, dst: Span, src: Span) {
        shapes::copy(dst, src);
        if dst.mem == Mem::Ids {
            self.ids.copy(dst, src);
        } else {
            let ([s], [d]) = self.bufs.io("copy", [src], [dst]);
            elementwise::copy(d, s);
        }
    }

    // ---- elementwise -----------------------------------------------------------------------

    fn add(&mut self, out: Span, a: Span, b: Span) {
        shapes::add(out, a, b);
        match (out == a, out == b) {
            (true, true) => {
                let ([], [o]) = self.bufs.io("add", [], [out]);
                elementwise::double(o);
            }
            (true, false) => {
                let ([b], [o]) = self.bufs.io("add", [b], [out]);
                elementwise::add_into(o, b);
            }
            (false, true) => {
                let ([a], [o]) = self.bufs.io("add", [a], [out]);
                elementwise::add_into(o, a);
            }
            (false, false) => {
                let ([a, b], [o]) = self.bufs.io("add", [a, b], [out]);
                elementwise::add(o, a, b);
            }
        }
    }

    fn scale(&mut self, x: Span, alpha: f32) {
        let ([], [x]) = self.bufs.io("scale", [], [x]);
        elementwise::scale(x, alpha);
    }

    // ---- matrix product --------------------------------------------------------------------

    fn matmul(&mut self, c: Span, a: Span, ta: Trans, b: Span, tb: Trans, m: usize, k: usize, n: usize, accumulate: bool) {
        shapes::matmul(c, a, b, m, k, n);
        let ([a, b], [c]) = self.bufs.io("matmul", [a, b], [c]);
        matmul::matmul(c, a, ta, b, tb, m, k, n, accumulate);
    }

    // ---- layers ----------------------------------------------------------------------------

    fn embedding_fwd(&mut self, out: Span, table: Span, ids: Span, n: usize, d: usize) {
        shapes::embedding_fwd(out, table, ids, n, d);
        let ids = self.ids.get("embedding_fwd", ids);
        let ([table], [out]) = self.bufs.io("embedding_fwd", [table], [out]);
        embedding::forward(out, table, ids, d);
    }

    fn embedding_bwd(&mut self, dtable: Span, dout: Span, ids: Span, n: usize, d: usize) {
        shapes::embedding_bwd(dtable, dout, ids, n, d);
        let ids = self.ids.get("embedding_bwd", ids);
        let ([dout], [dtable]) = self.bufs.io("embedding_bwd", [dout], [dtable]);
        embedding::backward(dtable, dout, ids, d);
    }

    fn rmsnorm_fwd(&mut self, out: Span, rstd: Span, x: Span, w: Span, n: usize, d: usize, eps: f32) {
        shapes::rmsnorm_fwd(out, rstd, x, w, n, d);
        let ([x, w], [out, rstd]) = self.bufs.io("rmsnorm_fwd", [x, w], [out, rstd]);
        rmsnorm::forward(out, rstd, x, w, d, eps);
    }

    fn rmsnorm_bwd(&mut self, dx: Span, dw: Span, dout: Span, x: Span, w: Span, rstd: Span, n: usize, d: usize) {
        shapes::rmsnorm_bwd(dx, dw, dout, x, w, rstd, n, d);
        let ([dout, x, w, rstd], [dx, dw]) = self.bufs.io("rmsnorm_bwd", [dout, x, w, rstd], [dx, dw]);
        rmsnorm::backward(dx, dw, dout, x, w, rstd, d, &mut self.scratch64);
    }

    fn rope_fwd(&mut self, x: Span, pos: Span, n: usize, heads: usize, head_dim: usize, theta: f32) {
        self.rope("rope_fwd", x, pos, n, heads, head_dim, theta, false);
    }

    fn rope_bwd(&mut self, dx: Span, pos: Span, n: usize, heads: usize, head_dim: usize, theta: f32) {
        self.rope("rope_bwd", dx, pos, n, heads, head_dim, theta, true);
    }

    fn attention_fwd(&mut self, out: Span, lse: Span, q: Span, k: Span, v: Span, doc: Span, s: AttnShape) {
        shapes::attention_fwd(out, lse, q, k, v, doc, &s);
        let doc = self.ids.get("attention_fwd", doc);
        let ([q, k, v], [out, lse]) = self.bufs.io("attention_fwd", [q, k, v], [out, lse]);
        attention::forward(out, lse, q, k, v, doc, s, &self.attn);
    }

    fn attention_bwd(&mut self, dq: Span, dk: Span, dv: Span, dout: Span, out: Span, lse: Span, q: Span, k: Span, v: Span, doc: Span, s: AttnShape) {
        shapes::attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, doc, &s);
        let doc = self.ids.get("attention_bwd", doc);
        let ([dout, out, lse, q, k, v], [dq, dk, dv]) = self.bufs.io("attention_bwd", [dout, out, lse, q, k, v], [dq, dk, dv]);
        attention::backward(attention::Grads { dq, dk, dv }, attention::Saved { dout, out, lse, q, k, v }, doc, s, &self.attn);
    }

    fn kv_store(&mut self, k_cache: Span, v_cache: Span, k: Span, v: Span, slots: Span, pos: Span, s: DecodeShape) {
        decode::kv_store(&mut self.bufs, &self.ids, k_cache, v_cache, k, v, slots, pos, s);
    }

    fn attention_decode(&mut self, out: Span, q: Span, k_cache: Span, v_cache: Span, slots: Span, lens: Span, s: DecodeShape) {
        decode::attention_decode(&mut self.bufs, &self.ids, out, q, k_cache, v_cache, slots, lens, s);
    }

    fn swiglu_fwd(&mut self, out: Span, gate: Span, up: Span) {
        shapes::swiglu_fwd(out, gate, up);
        let ([gate, up], [out]) = self.bufs.io("swiglu_fwd", [gate, up], [out]);
        swiglu::forward(out, gate, up);
    }

    fn swiglu_bwd(&mut self, dgate: Span, dup: Span, dout: Span, gate: Span, up: Span) {
        shapes::swiglu_bwd(dgate, dup, dout, gate, up);
        let ([dout, gate, up], [dgate, dup]) = self.bufs.io("swiglu_bwd", [dout, gate, up], [dgate, dup]);
        swiglu::backward(dgate, dup, dout, gate, up);
    }

    fn cross_entropy(&mut self, logits: Span, losses: Span, targets: Span, n: usize, vocab: usize, grad_scale: Option<f32>) {
        shapes::cross_entropy(logits, losses, targets, n, vocab);
        let targets = self.ids.get("cross_entropy", targets);
        match grad_scale {
            Some(s) => {
                let ([], [logits, losses]) = self.bufs.io("cross_entropy", [], [logits, losses]);
                xent::forward_backward(logits, losses, targets, vocab, s);
            }
            None => {
                let ([logits], [losses]) = self.bufs.io("cross_entropy", [logits], [losses]);
                xent::forward(logits, losses, targets, vocab);
            }
        }
    }

    // ---- optimizer -------------------------------------------------------------------------

    fn sum_squares(&mut self, x: Span) -> f64 {
        let ([x], []) = self.bufs.io("sum_squares", [x], []);
        elementwise::sum_squares(x, &mut self.scratch64)
    }

    fn adamw(&mut self, p: Span, g: Span, m: Span, v: Span, step: AdamStep) {
        shapes::adamw(p, g, m, v, &step);
        let ([g], [p, m, v]) = self.bufs.io("adamw", [g], [p, m, v]);
        adamw::step(p, g, m, v, &step);
    }
}

impl CpuBackend {
    #[allow(clippy::too_many_arguments)]
    fn rope(&mut self, op: &str, x: Span, pos: Span, n: usize, heads: usize, head_dim: usize, theta: f32, inverse: bool) {
        shapes::rope(op, x, pos, n, heads, head_dim);
        let pos = self.ids.get(op, pos);
        let ([], [x]) = self.bufs.io(op, [], [x]);
        rope::rotate(x, pos, heads, head_dim, theta, inverse, &mut self.scratch);
    }
}
