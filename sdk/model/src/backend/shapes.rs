//! The shape contract of the [`Backend`] ops, written once: one function per op that panics,
//! with the op's name in the message, unless the spans' lengths and the shape arguments agree
//! as the op's documentation says. Every backend calls these first thing in its ops, so that a
//! bad call reads the same on every device. What only a backend knows (that a span lies inside
//! its buffer, that ids are in range, a kernel's own limits such as the GPU kernels' largest
//! head dimension) it checks itself.

#[cfg(doc)]
use super::Backend;
use super::{AdamStep, AttnShape, DecodeShape, Mem, Span};

/// Panics unless `span` holds exactly `len` elements (the shape arguments and the spans must agree).
#[track_caller]
pub fn expect_len(op: &str, what: &str, span: Span, len: usize) {
    assert!(span.len == len, "{op}: `{what}` span holds {} elements, the shape needs {len} ({span:?})", span.len);
}

/// [`Backend::copy`]: the same length, and either both spans in [`Mem::Ids`] or neither.
#[track_caller]
pub fn copy(dst: Span, src: Span) {
    assert!(dst.len == src.len, "copy: {dst:?} and {src:?} differ in length");
    assert!((dst.mem == Mem::Ids) == (src.mem == Mem::Ids), "copy: between Ids and an f32 buffer ({dst:?} <- {src:?})");
}

/// [`Backend::add`]: three spans of one length.
#[track_caller]
pub fn add(out: Span, a: Span, b: Span) {
    assert!(out.len == a.len && out.len == b.len, "add: spans differ in length ({out:?} = {a:?} + {b:?})");
}

/// [`Backend::matmul`]: `c` of `m × n`, `a` of `m × k`, `b` of `k × n` elements (whichever way
/// each is stored).
#[track_caller]
pub fn matmul(c: Span, a: Span, b: Span, m: usize, k: usize, n: usize) {
    expect_len("matmul", "c", c, m * n);
    expect_len("matmul", "a", a, m * k);
    expect_len("matmul", "b", b, k * n);
}

/// [`Backend::embedding_fwd`]: `n` ids, `n` rows of `d` out, a table of whole rows.
#[track_caller]
pub fn embedding_fwd(out: Span, table: Span, ids: Span, n: usize, d: usize) {
    embedding("embedding_fwd", ("out", out), table, ids, n, d);
}

/// [`Backend::embedding_bwd`]: as [`embedding_fwd`], with `dout` for `out`.
#[track_caller]
pub fn embedding_bwd(dtable: Span, dout: Span, ids: Span, n: usize, d: usize) {
    embedding("embedding_bwd", ("dout", dout), dtable, ids, n, d);
}

/// Both embedding ops: `rows` (named) of `n × d`, `n` ids, a table of whole rows of `d`.
#[track_caller]
fn embedding(op: &str, (what, rows): (&str, Span), table: Span, ids: Span, n: usize, d: usize) {
    expect_len(op, what, rows, n * d);
    expect_len(op, "ids", ids, n);
    assert!(d > 0 && table.len.is_multiple_of(d), "{op}: table of {} elements is not rows of {d}", table.len);
}

/// [`Backend::rmsnorm_fwd`]: `d > 0`, `n` rows of `d` in and out, `n` saved `rstd`, `d` weights.
#[track_caller]
pub fn rmsnorm_fwd(out: Span, rstd: Span, x: Span, w: Span, n: usize, d: usize) {
    const OP: &str = "rmsnorm_fwd";
    assert!(d > 0, "{OP}: d is 0");
    for (what, s, len) in [("out", out, n * d), ("rstd", rstd, n), ("x", x, n * d), ("w", w, d)] {
        expect_len(OP, what, s, len);
    }
}

/// [`Backend::rmsnorm_bwd`]: as [`rmsnorm_fwd`], with `dx`, `dout` of `n × d` and `dw` of `d`.
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub fn rmsnorm_bwd(dx: Span, dw: Span, dout: Span, x: Span, w: Span, rstd: Span, n: usize, d: usize) {
    const OP: &str = "rmsnorm_bwd";
    assert!(d > 0, "{OP}: d is 0");
    for (what, s, len) in [("dx", dx, n * d), ("dw", dw, d), ("dout", dout, n * d), ("x", x, n * d), ("w", w, d), ("rstd", rstd, n)] {
        expect_len(OP, what, s, len);
    }
}

/// [`Backend::rope_fwd`] and [`Backend::rope_bwd`] (`op` names which): positive `heads` and an
/// even, positive `head_dim`; `x` of `n × heads × head_dim`, `n` positions.
#[track_caller]
pub fn rope(op: &str, x: Span, pos: Span, n: usize, heads: usize, head_dim: usize) {
    assert!(heads > 0 && head_dim > 0 && head_dim.is_multiple_of(2), "{op}: heads {heads} and head_dim {head_dim} must be positive, head_dim even");
    expect_len(op, "x", x, n * heads * head_dim);
    expect_len(op, "pos", pos, n);
}

/// The heads rule of attention and decoding (`op` names the op): `kv_heads` and `head_dim`
/// positive, `heads` a multiple of `kv_heads`.
#[track_caller]
pub fn heads(op: &str, heads: usize, kv_heads: usize, head_dim: usize) {
    assert!(
        kv_heads > 0 && head_dim > 0 && heads.is_multiple_of(kv_heads),
        "{op}: heads {heads} must be a multiple of kv_heads {kv_heads} (and head_dim {head_dim} > 0)"
    );
}

/// [`Backend::attention_fwd`]: the heads rule; `out`, `q` of `n × heads × head_dim`, `k`, `v`
/// of `n × kv_heads × head_dim`, `lse` of `n × heads`, `n` document ids (`n` = [`AttnShape::tokens`]).
#[track_caller]
pub fn attention_fwd(out: Span, lse: Span, q: Span, k: Span, v: Span, doc: Span, s: &AttnShape) {
    const OP: &str = "attention_fwd";
    heads(OP, s.heads, s.kv_heads, s.head_dim);
    let (n, qd, kd) = (s.tokens(), s.heads * s.head_dim, s.kv_heads * s.head_dim);
    for (what, span, len) in [("out", out, n * qd), ("lse", lse, n * s.heads), ("q", q, n * qd), ("k", k, n * kd), ("v", v, n * kd), ("doc", doc, n)] {
        expect_len(OP, what, span, len);
    }
}

/// [`Backend::attention_bwd`]: as [`attention_fwd`], each gradient shaped as its tensor.
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub fn attention_bwd(dq: Span, dk: Span, dv: Span, dout: Span, out: Span, lse: Span, q: Span, k: Span, v: Span, doc: Span, s: &AttnShape) {
    const OP: &str = "attention_bwd";
    heads(OP, s.heads, s.kv_heads, s.head_dim);
    let (n, qd, kd) = (s.tokens(), s.heads * s.head_dim, s.kv_heads * s.head_dim);
    for (what, span, len) in [
        ("dq", dq, n * qd),
        ("dk", dk, n * kd),
        ("dv", dv, n * kd),
        ("dout", dout, n * qd),
        ("out", out, n * qd),
        ("lse", lse, n * s.heads),
        ("q", q, n * qd),
        ("k", k, n * kd),
        ("v", v, n * kd),
        ("doc", doc, n),
    ] {
        expect_len(OP, what, span, len);
    }
}

/// The key/value caches of a decoding op (`op` names it): the heads rule, `max_len > 0`, and
/// two caches of one length in whole slots. Returns the slot count.
#[track_caller]
pub fn decode(op: &str, k_cache: Span, v_cache: Span, s: &DecodeShape) -> usize {
    heads(op, s.heads, s.kv_heads, s.head_dim);
    assert!(s.max_len > 0, "{op}: max_len is 0");
    let slot = s.slot_len();
    assert!(k_cache.len.is_multiple_of(slot), "{op}: k_cache of {} elements is not slots of {} × {} × {}", k_cache.len, s.max_len, s.kv_heads, s.head_dim);
    assert!(v_cache.len == k_cache.len, "{op}: k_cache ({}) and v_cache ({}) differ in length", k_cache.len, v_cache.len);
    k_cache.len / slot
}

/// [`Backend::kv_store`]: the caches as [`decode`] checks them; `k`, `v` of
/// `batch × kv_heads × head_dim`, `batch` slots and positions. Returns the cache's slot count.
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub fn kv_store(k_cache: Span, v_cache: Span, k: Span, v: Span, slots: Span, pos: Span, s: &DecodeShape) -> usize {
    const OP: &str = "kv_store";
    let nslots = decode(OP, k_cache, v_cache, s);
    let kd = s.kv_heads * s.head_dim;
    for (what, span, len) in [("k", k, s.batch * kd), ("v", v, s.batch * kd), ("slots", slots, s.batch), ("pos", pos, s.batch)] {
        expect_len(OP, what, span, len);
    }
    nslots
}

/// [`Backend::attention_decode`]: the caches as [`decode`] checks them; `out`, `q` of
/// `batch × heads × head_dim`, `batch` slots and lengths. Returns the cache's slot count.
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub fn attention_decode(out: Span, q: Span, k_cache: Span, v_cache: Span, slots: Span, lens: Span, s: &DecodeShape) -> usize {
    const OP: &str = "attention_decode";
    let nslots = decode(OP, k_cache, v_cache, s);
    let qd = s.heads * s.head_dim;
    for (what, span, len) in [("out", out, s.batch * qd), ("q", q, s.batch * qd), ("slots", slots, s.batch), ("lens", lens, s.batch)] {
        expect_len(OP, what, span, len);
    }
    nslots
}

/// [`Backend::swiglu_fwd`]: three spans of one length.
#[track_caller]
pub fn swiglu_fwd(out: Span, gate: Span, up: Span) {
    assert!(out.len == gate.len && out.len == up.len, "swiglu_fwd: spans differ in length ({out:?}, {gate:?}, {up:?})");
}

/// [`Backend::swiglu_bwd`]: five spans of one length.
#[track_caller]
pub fn swiglu_bwd(dgate: Span, dup: Span, dout: Span, gate: Span, up: Span) {
    let len = dout.len;
    assert!([dgate, dup, gate, up].iter().all(|s| s.len == len), "swiglu_bwd: spans differ in length ({dgate:?}, {dup:?}, {dout:?}, {gate:?}, {up:?})");
}

/// [`Backend::cross_entropy`]: `vocab > 0`, `n` rows of `vocab` logits, `n` losses and targets.
#[track_caller]
pub fn cross_entropy(logits: Span, losses: Span, targets: Span, n: usize, vocab: usize) {
    const OP: &str = "cross_entropy";
    assert!(vocab > 0, "{OP}: vocab is 0");
    expect_len(OP, "logits", logits, n * vocab);
    expect_len(OP, "losses", losses, n);
    expect_len(OP, "targets", targets, n);
}

/// [`Backend::adamw`]: four spans of one length and a 1-based step count.
#[track_caller]
pub fn adamw(p: Span, g: Span, m: Span, v: Span, step: &AdamStep) {
    assert!(g.len == p.len && m.len == p.len && v.len == p.len, "adamw: spans differ in length (p {p:?}, g {g:?}, m {m:?}, v {v:?})");
    assert!(step.t >= 1, "adamw: the step count t is 1-based (got 0)");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(len: usize) -> Span {
        Span::new(Mem::Acts, 0, len)
    }

    const ATTN: AttnShape = AttnShape { batch: 2, seq: 3, heads: 4, kv_heads: 2, head_dim: 8 };
    const DEC: DecodeShape = DecodeShape { batch: 2, heads: 4, kv_heads: 2, head_dim: 8, max_len: 5 };

    #[test]
    fn agreeing_shapes_pass_and_decoding_counts_slots() {
        matmul(span(6), span(10), span(15), 2, 5, 3);
        let (n, qd, kd) = (6, 32, 16);
        attention_bwd(
            span(n * qd),
            span(n * kd),
            span(n * kd),
            span(n * qd),
            span(n * qd),
            span(n * 4),
            span(n * qd),
            span(n * kd),
            span(n * kd),
            span(n),
            &ATTN,
        );
        let cache = span(3 * DEC.slot_len());
        assert_eq!(kv_store(cache, cache, span(32), span(32), span(2), span(2), &DEC), 3);
        assert_eq!(attention_decode(span(64), span(64), cache, cache, span(2), span(2), &DEC), 3);
    }

    #[test]
    #[should_panic(expected = "matmul: `b` span holds 14 elements, the shape needs 15")]
    fn a_span_of_the_wrong_length_names_op_and_operand() {
        matmul(span(6), span(10), span(14), 2, 5, 3);
    }

    #[test]
    #[should_panic(expected = "attention_fwd: heads 3 must be a multiple of kv_heads 2 (and head_dim 8 > 0)")]
    fn query_heads_come_in_whole_groups() {
        let s = AttnShape { heads: 3, ..ATTN };
        attention_fwd(span(144), span(18), span(144), span(96), span(96), span(6), &s);
    }

    #[test]
    #[should_panic(expected = "attention_decode: max_len is 0")]
    fn a_cache_has_positions() {
        let s = DecodeShape { max_len: 0, ..DEC };
        attention_decode(span(64), span(64), span(0), span(0), span(2), span(2), &s);
    }

    #[test]
    #[should_panic(expected = "kv_store: k_cache (160) and v_cache (80) differ in length")]
    fn the_two_caches_match() {
        kv_store(span(160), span(80), span(32), span(32), span(2), span(2), &DEC);
    }

    #[test]
    #[should_panic(expected = "adamw: the step count t is 1-based (got 0)")]
    fn adamw_steps_count_from_one() {
        let step = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, t: 0, grad_scale: 1.0 };
        adamw(span(4), span(4), span(4), span(4), &step);
    }
}
