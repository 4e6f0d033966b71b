//! The decoding ops against the training attention: storing every token of a row in a cache slot
//! one step at a time and attending with `attention_decode` gives, token by token, what
//! `attention_fwd` computes over the whole row at once. And bad slots, positions and lengths
//! are refused.

use agentmerge_backend_cpu::CpuBackend;
use agentmerge_model::backend::{AttnShape, Backend, DecodeShape, Mem, Span};

/// Deterministic values in [-1.5, 1.5).
fn values(n: usize, mut seed: u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
        })
        .collect()
}

#[test]
fn decoding_token_by_token_matches_attention_over_the_row() {
    let (t, heads, kv_heads, hd) = (90, 6, 2, 16);
    let (qd, kd) = (heads * hd, kv_heads * hd);
    let (q, k, v) = (values(t * qd, 1), values(t * kd, 2), values(t * kd, 3));
    let mut be = CpuBackend::new();
    // Training attention over the row: Acts = q | k | v | out | lse.
    be.alloc(Mem::Acts, t * (2 * qd + 2 * kd + heads)).unwrap();
    be.alloc(Mem::Ids, t).unwrap();
    let (sq, sk, sv) = (Span::new(Mem::Acts, 0, t * qd), Span::new(Mem::Acts, t * qd, t * kd), Span::new(Mem::Acts, t * (qd + kd), t * kd));
    let (out, lse) = (Span::new(Mem::Acts, t * (qd + 2 * kd), t * qd), Span::new(Mem::Acts, t * (2 * qd + 2 * kd), t * heads));
    be.upload(sq, &q).unwrap();
    be.upload(sk, &k).unwrap();
    be.upload(sv, &v).unwrap();
    be.upload_ids(Span::new(Mem::Ids, 0, t), &vec![0; t]).unwrap();
    be.attention_fwd(out, lse, sq, sk, sv, Span::new(Mem::Ids, 0, t), AttnShape { batch: 1, seq: t, heads, kv_heads, head_dim: hd });
    let mut want = vec![0f32; t * qd];
    be.download(out, &mut want).unwrap();

    // The same row decoded in slot 1 of a 3-slot cache, one token per step.
    let s = DecodeShape { batch: 1, heads, kv_heads, head_dim: hd, max_len: t + 5 };
    let cache = 3 * s.slot_len();
    be.alloc(Mem::Kv, 2 * cache).unwrap();
    be.upload(Span::new(Mem::Kv, 0, 2 * cache), &values(2 * cache, 4)).unwrap(); // stale contents
    let (kc, vc) = (Span::new(Mem::Kv, 0, cache), Span::new(Mem::Kv, cache, cache));
    be.alloc(Mem::Acts, qd + 2 * kd + qd).unwrap();
    let (dq, dk, dv, dout) =
        (Span::new(Mem::Acts, 0, qd), Span::new(Mem::Acts, qd, kd), Span::new(Mem::Acts, qd + kd, kd), Span::new(Mem::Acts, qd + 2 * kd, qd));
    be.alloc(Mem::Ids, 3).unwrap();
    let (slot, pos, len) = (Span::new(Mem::Ids, 0, 1), Span::new(Mem::Ids, 1, 1), Span::new(Mem::Ids, 2, 1));
    be.upload_ids(slot, &[1]).unwrap();
    let mut got = vec![0f32; qd];
    for i in 0..t {
        be.upload(dq, &q[i * qd..(i + 1) * qd]).unwrap();
        be.upload(dk, &k[i * kd..(i + 1) * kd]).unwrap();
        be.upload(dv, &v[i * kd..(i + 1) * kd]).unwrap();
        be.upload_ids(pos, &[i as u32]).unwrap();
        be.upload_ids(len, &[i as u32 + 1]).unwrap();
        be.kv_store(kc, vc, dk, dv, slot, pos, s);
        be.attention_decode(dout, dq, kc, vc, slot, len, s);
        be.download(dout, &mut got).unwrap();
        let err = got.iter().zip(&want[i * qd..(i + 1) * qd]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err <= 2e-6, "token {i}: decoding differs from attention_fwd by {err}");
    }
}

/// A cache of 2 slots × 4 positions, one kv head of 2, one sequence; runs `f` on it.
fn small(f: impl FnOnce(&mut CpuBackend, DecodeShape, [Span; 6])) {
    let mut be = CpuBackend::new();
    let s = DecodeShape { batch: 2, heads: 1, kv_heads: 1, head_dim: 2, max_len: 4 };
    be.alloc(Mem::Kv, 32).unwrap();
    be.alloc(Mem::Acts, 12).unwrap();
    be.alloc(Mem::Ids, 6).unwrap();
    let spans = [
        Span::new(Mem::Kv, 0, 16),
        Span::new(Mem::Kv, 16, 16),
        Span::new(Mem::Acts, 0, 4),
        Span::new(Mem::Acts, 4, 4),
        Span::new(Mem::Ids, 0, 2),
        Span::new(Mem::Ids, 2, 2),
    ];
    f(&mut be, s, spans)
}

#[test]
#[should_panic(expected = "outside a cache of 2 slots")]
fn kv_store_refuses_a_slot_past_the_cache() {
    small(|be, s, [kc, vc, k, v, slots, pos]| {
        be.upload_ids(slots, &[0, 2]).unwrap();
        be.kv_store(kc, vc, k, v, slots, pos, s);
    });
}

#[test]
#[should_panic(expected = "two sequences write slot 1, position 3")]
fn kv_store_refuses_two_writes_to_one_place() {
    small(|be, s, [kc, vc, k, v, slots, pos]| {
        be.upload_ids(slots, &[1, 1]).unwrap();
        be.upload_ids(pos, &[3, 3]).unwrap();
        be.kv_store(kc, vc, k, v, slots, pos, s);
    });
}

#[test]
#[should_panic(expected = "length 0 outside 1..=4")]
fn attention_decode_refuses_an_empty_length() {
    small(|be, s, [kc, vc, k, v, slots, lens]| {
        be.upload_ids(lens, &[1, 0]).unwrap();
        be.attention_decode(v, k, kc, vc, slots, lens, s);
    });
}
