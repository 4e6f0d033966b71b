// Rotary embeddings in place (Hugging Face's rotate_half pairing: i with i + head_dim/2), or the
// inverse rotation for a gradient. Parameters: 0 n (tokens), 1 heads, 2 head_dim, 3 inverse,
// 4..8 the reduction constants below. One thread per (token, head, pair).
//
// The angle pos · inv_freq is rounded to f32 as the CPU backend rounds it, then its sine and
// cosine are computed here (Cephes' sinf/cosf: reduction by π/4 in three parts, polynomials
// on [−π/4, π/4]; about 1e-7 absolute) rather than by WGSL's sin/cos, which drivers may
// evaluate far less accurately for angles of thousands of radians. The constants arrive as
// parameters so that no compiler folds the three-part reduction into one rounded constant.

@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> pos: array<u32>;
// 1 / theta^(2i / head_dim), computed by the host exactly as the CPU backend does.
@group(0) @binding(3) var<storage, read_write> inv_freq: array<f32>;

// (sin, cos) of a ≥ 0.
fn sin_cos(a: f32) -> vec2<f32> {
    let fopi = pf(4u);   // 4/π
    var j = u32(a * fopi);
    var y = f32(j);
    if ((j & 1u) == 1u) { j = j + 1u; y = y + 1.0; }
    j = j & 7u;
    let r = ((a - y * pf(5u)) - y * pf(6u)) - y * pf(7u);
    let z = r * r;
    let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
    let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
    switch j {
        case 0u: { return vec2<f32>(s, c); }
        case 2u: { return vec2<f32>(c, -s); }
        case 4u: { return vec2<f32>(-s, -c); }
        default: { return vec2<f32>(-c, s); }
    }
}

@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = linear(wg, nwg, lid);
    let heads = pu(1u);
    let hd = pu(2u);
    let half = hd / 2u;
    if (e >= pu(0u) * heads * half) { return; }
    let i = e % half;
    let th = e / half;           // token · heads + head
    let tok = th / heads;
    let angle = f32(pos[off(2u) + tok]) * inv_freq[off(3u) + i];
    let sc = sin_cos(angle);
    var s = sc.x;
    let c = sc.y;
    if (pu(3u) != 0u) { s = -s; }
    let at = off(1u) + th * hd + i;
    let x1 = x[at];
    let x2 = x[at + half];
    x[at] = x1 * c - x2 * s;
    x[at + half] = x2 * c + x1 * s;
}
