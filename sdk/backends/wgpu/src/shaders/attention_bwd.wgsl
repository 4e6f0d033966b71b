// Causal attention with document masking, backward, recomputing probabilities from the saved
// log-sum-exp: p = exp(scale·q_i·k_j − lse_i), D_i = dO_i·O_i, dS = p·(dO_i·v_j − D_i).
// `attention_dq`: one thread per (token, query head) — writes D_i (scratch) and dq_i = scale·Σ_j
// dS·k_j. `attention_dkv`: one thread per (token, key/value head) — sums over its group's query
// heads, then the queries i ≥ j of its row and document, in order: dv_j = Σ p·dO_i,
// dk_j = scale·Σ dS·q_i. No atomics; every sum has a fixed order.
// Parameters: 0 batch, 1 seq, 2 heads, 3 kv_heads, 4 head_dim (≤ 256), 5 scale.

@group(0) @binding(1) var<storage, read_write> g1: array<f32>;   // dq, or dk
@group(0) @binding(2) var<storage, read_write> g2: array<f32>;   // D (written), or dv
@group(0) @binding(3) var<storage, read_write> dd: array<f32>;   // unused by dq, D for dkv
@group(0) @binding(4) var<storage, read_write> dout: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;
@group(0) @binding(7) var<storage, read_write> q: array<f32>;
@group(0) @binding(8) var<storage, read_write> k: array<f32>;
@group(0) @binding(9) var<storage, read_write> v: array<f32>;
@group(0) @binding(10) var<storage, read_write> doc: array<u32>;

const MAX_HD: u32 = 256u;

@compute @workgroup_size(256)
fn attention_dq(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = linear(wg, nwg, lid);
    let seq = pu(1u);
    let heads = pu(2u);
    let kvh = pu(3u);
    let hd = pu(4u);
    let scale = pf(5u);
    if (t >= pu(0u) * seq * heads) { return; }
    let i = t / heads;
    let h = t % heads;
    let g = h / (heads / kvh);
    let row0 = (i / seq) * seq;
    let qs = heads * hd;
    let ks = kvh * hd;
    let di = doc[off(10u) + i];
    let qa = i * qs + h * hd;
    var dsum = 0.0;
    for (var d = 0u; d < hd; d++) { dsum = dsum + dout[off(4u) + qa + d] * out[off(5u) + qa + d]; }
    g2[off(2u) + i * heads + h] = dsum;
    let l = lse[off(6u) + i * heads + h];
    var acc: array<f32, MAX_HD>;
    for (var d = 0u; d < hd; d++) { acc[d] = 0.0; }
    for (var j = row0; j <= i; j++) {
        if (doc[off(10u) + j] != di) { continue; }
        let ka = j * ks + g * hd;
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < hd; d++) {
            s = s + q[off(7u) + qa + d] * k[off(8u) + ka + d];
            dp = dp + dout[off(4u) + qa + d] * v[off(9u) + ka + d];
        }
        let p = exp(s * scale - l);
        let ds = p * (dp - dsum);
        for (var d = 0u; d < hd; d++) { acc[d] = acc[d] + ds * k[off(8u) + ka + d]; }
    }
    for (var d = 0u; d < hd; d++) { g1[off(1u) + qa + d] = scale * acc[d]; }
}

@compute @workgroup_size(256)
fn attention_dkv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = linear(wg, nwg, lid);
    let seq = pu(1u);
    let heads = pu(2u);
    let kvh = pu(3u);
    let hd = pu(4u);
    let scale = pf(5u);
    if (t >= pu(0u) * seq * kvh) { return; }
    let j = t / kvh;
    let g = t % kvh;
    let group = heads / kvh;
    let row_end = (j / seq + 1u) * seq;
    let qs = heads * hd;
    let ks = kvh * hd;
    let dj = doc[off(10u) + j];
    let ka = j * ks + g * hd;
    var dk: array<f32, MAX_HD>;
    var dv: array<f32, MAX_HD>;
    for (var d = 0u; d < hd; d++) { dk[d] = 0.0; dv[d] = 0.0; }
    for (var h = g * group; h < (g + 1u) * group; h++) {
        for (var i = j; i < row_end; i++) {
            if (doc[off(10u) + i] != dj) { continue; }
            let qa = i * qs + h * hd;
            var s = 0.0;
            var dp = 0.0;
            for (var d = 0u; d < hd; d++) {
                s = s + q[off(7u) + qa + d] * k[off(8u) + ka + d];
                dp = dp + dout[off(4u) + qa + d] * v[off(9u) + ka + d];
            }
            let p = exp(s * scale - lse[off(6u) + i * heads + h]);
            let ds = p * (dp - dd[off(3u) + i * heads + h]);
            for (var d = 0u; d < hd; d++) {
                dv[d] = dv[d] + p * dout[off(4u) + qa + d];
                dk[d] = dk[d] + ds * q[off(7u) + qa + d];
            }
        }
    }
    for (var d = 0u; d < hd; d++) {
        g1[off(1u) + ka + d] = scale * dk[d];
        g2[off(2u) + ka + d] = dv[d];
    }
}
