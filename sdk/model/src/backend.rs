//! The op interface a device implements: buffers named by [`Mem`], addressed by [`Span`]s, and
//! one coarse call per op per layer (`*_fwd` / `*_bwd` pairs, and the two decoding ops of the
//! KV cache). The model, trainer and generation are written once against `&mut dyn Backend`;
//! the CPU backend is the reference that every other backend is checked against, op by op.
//!
//! Conventions, shared by every op:
//! - Tensors are row-major f32. A weight is stored as Hugging Face stores it, `[out, in]`, so a
//!   linear layer is `y = x · Wᵀ`.
//! - Token-major activations: `n` rows (batch × sequence), `d` columns. Attention tensors are
//!   `[n, heads, head_dim]`.
//! - Integer inputs (token ids, targets, positions, document ids) live in [`Mem::Ids`] as `u32`;
//!   [`IGNORE`] marks a target that is not in the loss.
//! - `*_bwd` ops that produce a parameter gradient **add** into it (gradient accumulation over
//!   micro-batches); activation gradients are overwritten unless the op says otherwise.
//! - Every op is deterministic: the same inputs give bit-identical outputs whatever the number of
//!   threads (reductions have a fixed order).
//!
//! What each op requires of its spans and shapes is checked once, in [`shapes`], which every
//! backend calls.

pub mod shapes;

use anyhow::Result;

/// A target id that is not predicted (prompt tokens, document starts, padding).
pub const IGNORE: u32 = u32::MAX;

/// The buffers a backend holds. Each is one allocation; its element type is fixed: `u32` for
/// [`Mem::Ids`], `f32` for the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mem {
    /// All parameters, in the order of [`crate::layout::Layout`].
    Params,
    /// Their gradients, same layout.
    Grads,
    /// AdamW first moments, same layout.
    AdamM,
    /// AdamW second moments, same layout.
    AdamV,
    /// Forward activations saved for the backward pass (planned once per batch shape).
    Acts,
    /// Activation gradients and temporaries of the backward pass.
    DActs,
    /// Integer inputs: token ids, targets, position ids, document ids (`u32`).
    Ids,
    /// Generation's key/value cache: per layer, the rotated keys and the values of every cached
    /// position, `[slots, max_len, kv_heads, head_dim]` each (see [`DecodeShape`]).
    Kv,
}

/// A contiguous range of elements inside one [`Mem`] buffer. Copyable, so an op can read and
/// write different parts of one buffer (as llm.c offsets pointers); a span maps onto a wgpu
/// binding range or a CUDA device pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub mem: Mem,
    pub off: usize,
    pub len: usize,
}

impl Span {
    pub const fn new(mem: Mem, off: usize, len: usize) -> Span {
        Span { mem, off, len }
    }
    /// The sub-range `[start, start + len)` of this span.
    pub fn slice(self, start: usize, len: usize) -> Span {
        assert!(start + len <= self.len, "span slice {start}+{len} outside a span of {}", self.len);
        Span { mem: self.mem, off: self.off + start, len }
    }
    pub fn end(self) -> usize {
        self.off + self.len
    }
}

/// Shapes of one causal attention call over packed rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    /// Rows (sequences) in the batch.
    pub batch: usize,
    /// Tokens per row; `n = batch × seq`.
    pub seq: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`; grouped-query attention when smaller).
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttnShape {
    pub fn tokens(&self) -> usize {
        self.batch * self.seq
    }
}

/// Shapes of one decoding step: `batch` sequences, one new token each, against a key/value cache
/// of `[slots, max_len, kv_heads, head_dim]` (one for keys, one for values, per layer; `slots`
/// is the cache span's length over `max_len · kv_heads · head_dim`). Sequence `b` of the step
/// uses cache slot `slots[b]`, so sequences that finish leave the batch without moving the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeShape {
    /// Sequences in the step (rows of `q`, `k`, `v` and `out`).
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Positions per cache slot.
    pub max_len: usize,
}

impl DecodeShape {
    /// Elements of one cache slot (`max_len · kv_heads · head_dim`).
    pub fn slot_len(&self) -> usize {
        self.max_len * self.kv_heads * self.head_dim
    }
}

/// One AdamW update, as `torch.optim.AdamW` computes it: decoupled weight decay
/// (`p ← p·(1 − lr·wd)`), then `p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1-based step count, for the bias corrections.
    pub t: u64,
    /// Multiplies every gradient before use (global-norm clipping's coefficient; 1 for none).
    pub grad_scale: f32,
}

/// Matrix operands of [`Backend::matmul`]: whether a stored matrix is used transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    N,
    T,
}

/// A device that runs the model's ops. Object-safe: the model and trainer compile once against
/// `&mut dyn Backend`.
pub trait Backend: Send {
    /// A short name for logs and reports (`cpu`, `wgpu: <adapter>`, `cuda: <device>`).
    fn name(&self) -> String;

    // ---- memory ----------------------------------------------------------------------------

    /// (Re)allocates `mem` with `len` zeroed elements; earlier contents are dropped.
    fn alloc(&mut self, mem: Mem, len: usize) -> Result<()>;
    /// The number of elements `mem` holds (0 when never allocated).
    fn mem_len(&self, mem: Mem) -> usize;
    /// Makes `mem` hold at least `len` elements: reallocates (zeroed) only when it holds fewer,
    /// else keeps the buffer and its contents. For buffers whose every read follows a write.
    fn grow(&mut self, mem: Mem, len: usize) -> Result<()> {
        if self.mem_len(mem) < len {
            self.alloc(mem, len)?;
        }
        Ok(())
    }
    fn upload(&mut self, dst: Span, src: &[f32]) -> Result<()>;
    fn download(&mut self, src: Span, dst: &mut [f32]) -> Result<()>;
    fn upload_ids(&mut self, dst: Span, src: &[u32]) -> Result<()>;
    /// Sets every element of `dst` to zero.
    fn zero(&mut self, dst: Span);
    /// `dst ← src` (same length, non-overlapping).
    fn copy(&mut self, dst: Span, src: Span);

    // ---- elementwise -----------------------------------------------------------------------

    /// `out ← a + b`, elementwise; `out` may be `a` or `b`.
    fn add(&mut self, out: Span, a: Span, b: Span);
    /// `x ← x · alpha`.
    fn scale(&mut self, x: Span, alpha: f32);

    // ---- matrix product --------------------------------------------------------------------

    /// `c ← op(a)·op(b)` (or `c ← c + op(a)·op(b)` when `accumulate`), `c` of `m × n`,
    /// `op(a)` of `m × k`, `op(b)` of `k × n`. With `Trans::T` the stored matrix is the transpose:
    /// `a` stored `k × m`, `b` stored `n × k`. A linear layer's forward is
    /// `matmul(y, x, w, N, T, n_tok, d_in, d_out, false)`.
    #[allow(clippy::too_many_arguments)]
    fn matmul(&mut self, c: Span, a: Span, ta: Trans, b: Span, tb: Trans, m: usize, k: usize, n: usize, accumulate: bool);

    // ---- layers ----------------------------------------------------------------------------

    /// `out[i] ← table[ids[i]]` for `n` ids (`ids` in [`Mem::Ids`]), rows of `d`.
    fn embedding_fwd(&mut self, out: Span, table: Span, ids: Span, n: usize, d: usize);
    /// `dtable[ids[i]] += dout[i]`.
    fn embedding_bwd(&mut self, dtable: Span, dout: Span, ids: Span, n: usize, d: usize);

    /// Hugging Face's LlamaRMSNorm: `out = w ⊙ x / √(mean(x²) + eps)`; saves `rstd[i] =
    /// 1/√(mean(x_i²) + eps)` for the backward pass.
    #[allow(clippy::too_many_arguments)]
    fn rmsnorm_fwd(&mut self, out: Span, rstd: Span, x: Span, w: Span, n: usize, d: usize, eps: f32);
    /// **Adds** the input gradient into `dx` (the residual stream's gradient) and the weight
    /// gradient into `dw`.
    #[allow(clippy::too_many_arguments)]
    fn rmsnorm_bwd(&mut self, dx: Span, dw: Span, dout: Span, x: Span, w: Span, rstd: Span, n: usize, d: usize);

    /// Rotary embeddings in place, Hugging Face's `rotate_half` convention (dimension `i` pairs
    /// with `i + head_dim/2`), angle `pos · theta^(−2i/head_dim)`; `pos` in [`Mem::Ids`].
    fn rope_fwd(&mut self, x: Span, pos: Span, n: usize, heads: usize, head_dim: usize, theta: f32);
    /// The inverse rotation, applied in place to a gradient.
    fn rope_bwd(&mut self, dx: Span, pos: Span, n: usize, heads: usize, head_dim: usize, theta: f32);

    /// Causal softmax attention with scale `1/√head_dim`: token `i` of a row attends to tokens
    /// `j ≤ i` of the same row whose document id equals its own (`doc` in [`Mem::Ids`], one per
    /// token), so packed documents never see each other. Query head `h` uses key/value head
    /// `h / (heads / kv_heads)`. Saves the softmax's log-sum-exp per (token, head) in `lse`
    /// (`n × heads`) for the backward pass.
    #[allow(clippy::too_many_arguments)]
    fn attention_fwd(&mut self, out: Span, lse: Span, q: Span, k: Span, v: Span, doc: Span, s: AttnShape);
    /// Overwrites `dq`, `dk`, `dv` from `dout`, recomputing the probabilities from `lse`.
    #[allow(clippy::too_many_arguments)]
    fn attention_bwd(&mut self, dq: Span, dk: Span, dv: Span, dout: Span, out: Span, lse: Span, q: Span, k: Span, v: Span, doc: Span, s: AttnShape);

    // ---- decoding ----------------------------------------------------------------------------

    /// Writes one token per sequence into the key/value caches: `k_cache[slots[b], pos[b]] ←
    /// k[b]` and `v_cache[slots[b], pos[b]] ← v[b]` for `b < s.batch` (`k`, `v`:
    /// `[batch, kv_heads, head_dim]`; `slots`, `pos` in [`Mem::Ids`]; every `slots[b]` below the
    /// cache's slot count and `pos[b] < max_len`, and no two `b` naming the same place).
    #[allow(clippy::too_many_arguments)]
    fn kv_store(&mut self, k_cache: Span, v_cache: Span, k: Span, v: Span, slots: Span, pos: Span, s: DecodeShape);
    /// Attention of one new token per sequence against its cache: query `b` (`q`:
    /// `[batch, heads, head_dim]`) attends to positions `0..lens[b]` of cache slot `slots[b]`
    /// (`1 ≤ lens[b] ≤ max_len`; the new token's own key and value already stored there), scale
    /// `1/√head_dim`, query head `h` reading key/value head `h / (heads / kv_heads)` as
    /// [`Backend::attention_fwd`] does. `out`: `[batch, heads, head_dim]`. No log-sum-exp (there
    /// is no backward).
    #[allow(clippy::too_many_arguments)]
    fn attention_decode(&mut self, out: Span, q: Span, k_cache: Span, v_cache: Span, slots: Span, lens: Span, s: DecodeShape);

    /// `out ← silu(gate) ⊙ up`.
    fn swiglu_fwd(&mut self, out: Span, gate: Span, up: Span);
    /// Overwrites `dgate` and `dup`.
    fn swiglu_bwd(&mut self, dgate: Span, dup: Span, dout: Span, gate: Span, up: Span);

    /// Cross-entropy of `n` rows of `vocab` logits against `targets` (in [`Mem::Ids`];
    /// [`IGNORE`] rows give loss 0). Writes each row's loss into `losses` (`n`). With
    /// `grad_scale = Some(s)` the logits are overwritten by their gradient, `s·(softmax − onehot)`
    /// (all zero on ignored rows).
    fn cross_entropy(&mut self, logits: Span, losses: Span, targets: Span, n: usize, vocab: usize, grad_scale: Option<f32>);

    // ---- optimizer -------------------------------------------------------------------------

    /// `Σ x²` over the span, in f64, with a summation order that does not depend on threads.
    fn sum_squares(&mut self, x: Span) -> f64;
    /// One AdamW update of `p` from `g` with moments `m`, `v` (four spans of one length).
    fn adamw(&mut self, p: Span, g: Span, m: Span, v: Span, step: AdamStep);
}
