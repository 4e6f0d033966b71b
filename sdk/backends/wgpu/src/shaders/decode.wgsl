// Decoding against the key/value cache, `[slots, max_len, kv_heads, head_dim]` per cache.
// Parameters: 0 batch, 1 heads, 2 kv_heads, 3 head_dim (≤ 256), 4 max_len, 5 scale.

@group(0) @binding(1) var<storage, read_write> b1: array<f32>;   // k_cache, or out
@group(0) @binding(2) var<storage, read_write> b2: array<f32>;   // v_cache, or q
@group(0) @binding(3) var<storage, read_write> b3: array<f32>;   // k, or k_cache
@group(0) @binding(4) var<storage, read_write> b4: array<f32>;   // v, or v_cache
@group(0) @binding(5) var<storage, read_write> slots: array<u32>;
@group(0) @binding(6) var<storage, read_write> b6: array<u32>;   // pos, or lens

const MAX_HD: u32 = 256u;

// k_cache[slots[b], pos[b]] ← k[b], v_cache likewise: one thread per (b, element).
@compute @workgroup_size(256)
fn kv_store(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = linear(wg, nwg, lid);
    let kd = pu(2u) * pu(3u);
    if (e >= pu(0u) * kd) { return; }
    let b = e / kd;
    let at = (slots[off(5u) + b] * pu(4u) + b6[off(6u) + b]) * kd + e % kd;
    b1[off(1u) + at] = b3[off(3u) + e];
    b2[off(2u) + at] = b4[off(4u) + e];
}

// out[b, h] ← softmax(scale·q[b, h]·K[slot, 0..len]ᵀ)·V: one thread per (sequence, query head),
// online softmax over the cached positions.
@compute @workgroup_size(256)
fn attention_decode(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = linear(wg, nwg, lid);
    let heads = pu(1u);
    let kvh = pu(2u);
    let hd = pu(3u);
    let max_len = pu(4u);
    let scale = pf(5u);
    if (t >= pu(0u) * heads) { return; }
    let b = t / heads;
    let h = t % heads;
    let g = h / (heads / kvh);
    let kd = kvh * hd;
    let slot = slots[off(5u) + b];
    let len = b6[off(6u) + b];
    let qa = off(2u) + t * hd;
    var acc: array<f32, MAX_HD>;
    for (var d = 0u; d < hd; d++) { acc[d] = 0.0; }
    var m = NEG_INF;
    var l = 0.0;
    for (var j = 0u; j < len; j++) {
        let ka = (slot * max_len + j) * kd + g * hd;
        var s = 0.0;
        for (var d = 0u; d < hd; d++) { s = s + b2[qa + d] * b3[off(3u) + ka + d]; }
        s = s * scale;
        let mn = max(m, s);
        let corr = exp(m - mn);
        let p = exp(s - mn);
        l = l * corr + p;
        for (var d = 0u; d < hd; d++) { acc[d] = acc[d] * corr + p * b4[off(4u) + ka + d]; }
        m = mn;
    }
    for (var d = 0u; d < hd; d++) { b1[off(1u) + t * hd + d] = acc[d] / l; }
}
