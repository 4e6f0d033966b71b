// Causal attention with document masking, forward: one thread per (token, query head) walks the
// keys of its row up to itself with an online softmax (running maximum and sum), so memory stays
// O(tokens · heads) — no score matrix. Token i sees key j ≤ i of its row when doc[j] = doc[i];
// query head h reads key/value head h / (heads / kv_heads). Writes the output and the
// log-sum-exp. Parameters: 0 batch, 1 seq, 2 heads, 3 kv_heads, 4 head_dim (≤ 256), 5 scale.

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read_write> q: array<f32>;
@group(0) @binding(4) var<storage, read_write> k: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;
@group(0) @binding(6) var<storage, read_write> doc: array<u32>;

const MAX_HD: u32 = 256u;

@compute @workgroup_size(256)
fn attention_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
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
    let di = doc[off(6u) + i];
    let qa = off(3u) + i * qs + h * hd;
    var acc: array<f32, MAX_HD>;
    for (var d = 0u; d < hd; d++) { acc[d] = 0.0; }
    var m = NEG_INF;
    var l = 0.0;
    for (var j = row0; j <= i; j++) {
        if (doc[off(6u) + j] != di) { continue; }
        let ka = off(4u) + j * ks + g * hd;
        var s = 0.0;
        for (var d = 0u; d < hd; d++) { s = s + q[qa + d] * k[ka + d]; }
        s = s * scale;
        let mn = max(m, s);
        let corr = exp(m - mn);
        let p = exp(s - mn);
        l = l * corr + p;
        let va = off(5u) + j * ks + g * hd;
        for (var d = 0u; d < hd; d++) { acc[d] = acc[d] * corr + p * v[va + d]; }
        m = mn;
    }
    let oa = off(1u) + i * qs + h * hd;
    for (var d = 0u; d < hd; d++) { out[oa + d] = acc[d] / l; }
    lse[off(2u) + i * heads + h] = m + log(l);
}
