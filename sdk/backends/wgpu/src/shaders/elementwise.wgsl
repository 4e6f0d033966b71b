// Elementwise ops, one thread per element: copy, add, scale, SwiGLU forward and backward,
// AdamW, and the per-workgroup partial sums of `sum_squares`. The element count is parameter 0.

@group(0) @binding(1) var<storage, read_write> b1: array<f32>;
@group(0) @binding(2) var<storage, read_write> b2: array<f32>;
@group(0) @binding(3) var<storage, read_write> b3: array<f32>;
@group(0) @binding(4) var<storage, read_write> b4: array<f32>;
@group(0) @binding(5) var<storage, read_write> b5: array<f32>;

// b1 ← b2
@compute @workgroup_size(256)
fn copy_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear(wg, nwg, lid);
    if (i >= pu(0u)) { return; }
    b1[off(1u) + i] = b2[off(2u) + i];
}

// b1 ← b2 + b3 (b1 may be b2 or b3: each element is read before it is written)
@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear(wg, nwg, lid);
    if (i >= pu(0u)) { return; }
    b1[off(1u) + i] = b2[off(2u) + i] + b3[off(3u) + i];
}

// b1 ← b1 · alpha (parameter 1)
@compute @workgroup_size(256)
fn scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear(wg, nwg, lid);
    if (i >= pu(0u)) { return; }
    b1[off(1u) + i] = b1[off(1u) + i] * pf(1u);
}

fn sigmoid(g: f32) -> f32 { return 1.0 / (1.0 + exp(-g)); }

// out (b1) ← silu(gate (b2)) ⊙ up (b3)
@compute @workgroup_size(256)
fn swiglu_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear(wg, nwg, lid);
    if (i >= pu(0u)) { return; }
    let g = b2[off(2u) + i];
    b1[off(1u) + i] = g * sigmoid(g) * b3[off(3u) + i];
}

// dgate (b1), dup (b2) from dout (b3), gate (b4), up (b5)
@compute @workgroup_size(256)
fn swiglu_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear(wg, nwg, lid);
    if (i >= pu(0u)) { return; }
    let d = b3[off(3u) + i];
    let g = b4[off(4u) + i];
    let u = b5[off(5u) + i];
    let s = sigmoid(g);
    b1[off(1u) + i] = d * u * s * (1.0 + g * (1.0 - s));
    b2[off(2u) + i] = d * (g * s);
}

// AdamW on p (b1) from g (b2) with moments m (b3), v (b4). Parameters (computed by the host in
// f64, as the CPU backend does): 1 decay, 2 −step size, 3 √(1−β2ᵗ), 4 1−β1, 5 β2, 6 1−β2, 7 ε,
// 8 gradient scale.
@compute @workgroup_size(256)
fn adamw(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear(wg, nwg, lid);
    if (i >= pu(0u)) { return; }
    let w1 = pf(4u);
    let g = b2[off(2u) + i] * pf(8u);
    var p = b1[off(1u) + i] * pf(1u);
    var m = b3[off(3u) + i];
    if (w1 < 0.5) { m = m + w1 * (g - m); } else { m = g - (g - m) * (1.0 - w1); }
    let v = b4[off(4u) + i] * pf(5u) + pf(6u) * g * g;
    let denom = sqrt(v) / pf(3u) + pf(7u);
    p = p + pf(2u) * m / denom;
    b1[off(1u) + i] = p;
    b3[off(3u) + i] = m;
    b4[off(4u) + i] = v;
}

var<workgroup> red: array<f32, 256>;

// Partial sums of squares: workgroup w sums elements [w·4096, (w+1)·4096) of b2 (16 per
// thread, then a fixed tree) into b1[w], in f32 (WGSL has no f64); the host adds the partials
// in f64. Relative error about 1e-7, against the CPU backend's f64 sums.
@compute @workgroup_size(256)
fn sum_squares(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = group_index(wg, nwg);
    let n = pu(0u);
    var acc = 0.0;
    for (var r = 0u; r < 16u; r++) {
        let i = w * 4096u + r * 256u + lid;
        if (i < n) {
            let x = b2[off(2u) + i];
            acc = acc + x * x;
        }
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u && w * 4096u < n) { b1[off(1u) + w] = red[0]; }
}
