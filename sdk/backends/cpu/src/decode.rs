//! Decoding against the key/value cache: [`kv_store`] scatters one token's keys and values per
//! sequence into its cache slot, [`attention_decode`] runs one query per sequence against that
//! slot's cached positions.
//!
//! Attention runs one task per (sequence, kv head), for the query heads of its group together,
//! as `attention_fwd` computes a block: `S = scale·Q·Kᵀ` by gemm against the slot's keys, each
//! row turned into probabilities in place (the maximum subtracted, [`math::exp_sum`], one
//! reciprocal), and `O = P·V` by gemm again. Each task runs on its own thread with gemm's fixed
//! blocking, so the output is bit-identical whatever the number of threads.

use std::cell::RefCell;

use agentmerge_model::backend::{shapes, DecodeShape, Span};
use rayon::prelude::*;

use crate::buffers::{Buffers, Ids};
use crate::math;
use crate::matmul::{gemm_strided, Strided};
use gemm::Parallelism;

/// `k_cache[slots[b], pos[b]] ← k[b]`, `v_cache[slots[b], pos[b]] ← v[b]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn kv_store(bufs: &mut Buffers, ids: &Ids, k_cache: Span, v_cache: Span, k: Span, v: Span, slots: Span, pos: Span, s: DecodeShape) {
    const OP: &str = "kv_store";
    let nslots = shapes::kv_store(k_cache, v_cache, k, v, slots, pos, &s);
    let kd = s.kv_heads * s.head_dim;
    let (slots, pos) = (ids.get(OP, slots), ids.get(OP, pos));
    let mut places: Vec<(u32, u32)> = slots.iter().copied().zip(pos.iter().copied()).collect();
    for &(sl, p) in &places {
        assert!(
            (sl as usize) < nslots && (p as usize) < s.max_len,
            "{OP}: slot {sl}, position {p} outside a cache of {nslots} slots × {} positions",
            s.max_len
        );
    }
    places.sort_unstable();
    if let Some(w) = places.windows(2).find(|w| w[0] == w[1]) {
        panic!("{OP}: two sequences write slot {}, position {}", w[0].0, w[0].1);
    }
    let ([k, v], [kc, vc]) = bufs.io(OP, [k, v], [k_cache, v_cache]);
    for (b, (&sl, &p)) in slots.iter().zip(pos).enumerate() {
        let at = (sl as usize * s.max_len + p as usize) * kd;
        kc[at..at + kd].copy_from_slice(&k[b * kd..(b + 1) * kd]);
        vc[at..at + kd].copy_from_slice(&v[b * kd..(b + 1) * kd]);
    }
}

thread_local! {
    /// One task's scores (then probabilities), reused across calls.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Query `b` against positions `0..lens[b]` of slot `slots[b]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_decode(bufs: &mut Buffers, ids: &Ids, out: Span, q: Span, k_cache: Span, v_cache: Span, slots: Span, lens: Span, s: DecodeShape) {
    const OP: &str = "attention_decode";
    let nslots = shapes::attention_decode(out, q, k_cache, v_cache, slots, lens, &s);
    let (hd, kd) = (s.head_dim, s.kv_heads * s.head_dim);
    let (slots, lens) = (ids.get(OP, slots), ids.get(OP, lens));
    for (&sl, &len) in slots.iter().zip(lens) {
        assert!((sl as usize) < nslots, "{OP}: slot {sl} outside a cache of {nslots} slots");
        assert!(len >= 1 && len as usize <= s.max_len, "{OP}: length {len} outside 1..={} (the cache's positions)", s.max_len);
    }
    let ([q, kc, vc], [out]) = bufs.io(OP, [q, k_cache, v_cache], [out]);
    let (group, scale) = (s.heads / s.kv_heads, 1.0 / (hd as f32).sqrt());
    // Task (b, g): the group's query heads are consecutive rows of `q` and `out`.
    out.par_chunks_mut(group * hd).enumerate().for_each(|(task, o)| {
        let (b, g) = (task / s.kv_heads, task % s.kv_heads);
        let (slot, len) = (slots[b] as usize, lens[b] as usize);
        let qg = Strided { ptr: q[task * group * hd..].as_ptr(), rs: hd, cs: 1 };
        // Position j, head g of the slot: rows of stride kd.
        let at = (slot * s.max_len) * kd + g * hd;
        let (k, v) = (kc[at..].as_ptr(), vc[at..].as_ptr());
        SCORES.with_borrow_mut(|p| {
            let p = crate::grow(p, group * len);
            // SAFETY: rows 0..len of head g lie inside the slot (len ≤ max_len), the query rows
            // and `o` inside their tensors, `p` holds group × len values.
            unsafe {
                // S = scale·Q·Kᵀ
                gemm_strided(
                    group,
                    len,
                    hd,
                    Strided { ptr: p.as_mut_ptr(), rs: len, cs: 1 },
                    qg,
                    Strided { ptr: k, rs: 1, cs: kd },
                    false,
                    scale,
                    Parallelism::None,
                );
            }
            for row in p.chunks_exact_mut(len) {
                let m = math::max(row);
                let inv = (1.0 / math::exp_sum(row, m)) as f32;
                row.iter_mut().for_each(|x| *x *= inv);
            }
            // O = P·V. SAFETY: as above; `o` is this task's own rows.
            unsafe {
                gemm_strided(
                    group,
                    hd,
                    len,
                    Strided { ptr: o.as_mut_ptr(), rs: hd, cs: 1 },
                    Strided { ptr: p.as_ptr(), rs: len, cs: 1 },
                    Strided { ptr: v, rs: kd, cs: 1 },
                    false,
                    1.0,
                    Parallelism::None,
                );
            }
        });
    });
}
