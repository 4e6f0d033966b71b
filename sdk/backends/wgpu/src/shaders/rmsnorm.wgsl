// RMSNorm (Hugging Face's LlamaRMSNorm) forward and backward. Parameters: 0 n (rows), 1 d
// (columns), 2 eps. Row kernels run one workgroup of 256 threads per row and reduce in a fixed
// tree; the weight gradient runs one thread per column over the rows in order.

@group(0) @binding(1) var<storage, read_write> b1: array<f32>;
@group(0) @binding(2) var<storage, read_write> b2: array<f32>;
@group(0) @binding(3) var<storage, read_write> b3: array<f32>;
@group(0) @binding(4) var<storage, read_write> b4: array<f32>;
@group(0) @binding(5) var<storage, read_write> b5: array<f32>;

var<workgroup> red: array<f32, 256>;

// Sums `v` over the workgroup; every thread gets the total.
fn reduce_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// out (b1), rstd (b2) from x (b3), w (b4).
@compute @workgroup_size(256)
fn rmsnorm_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wg, nwg);
    let d = pu(1u);
    let live = row < pu(0u);
    let x0 = off(3u) + row * d;
    var ss = 0.0;
    if (live) {
        for (var c = lid; c < d; c += 256u) { let x = b3[x0 + c]; ss = ss + x * x; }
    }
    let total = reduce_sum(lid, ss);
    if (!live) { return; }
    let r = 1.0 / sqrt(total / f32(d) + pf(2u));
    if (lid == 0u) { b2[off(2u) + row] = r; }
    for (var c = lid; c < d; c += 256u) {
        b1[off(1u) + row * d + c] = b4[off(4u) + c] * (b3[x0 + c] * r);
    }
}

// dx (b1) += input gradient, from dout (b2), x (b3), w (b4), rstd (b5).
@compute @workgroup_size(256)
fn rmsnorm_bwd_dx(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wg, nwg);
    let d = pu(1u);
    let live = row < pu(0u);
    var dot = 0.0;
    var r = 0.0;
    if (live) {
        r = b5[off(5u) + row];
        for (var c = lid; c < d; c += 256u) {
            let at = row * d + c;
            dot = dot + (b2[off(2u) + at] * b4[off(4u) + c]) * (b3[off(3u) + at] * r);
        }
    }
    let total = reduce_sum(lid, dot);
    if (!live) { return; }
    let mean = total / f32(d);
    for (var c = lid; c < d; c += 256u) {
        let at = row * d + c;
        let xhat = b3[off(3u) + at] * r;
        b1[off(1u) + at] = b1[off(1u) + at] + r * (b2[off(2u) + at] * b4[off(4u) + c] - xhat * mean);
    }
}

// dw (b1) += Σ_rows dout (b2) ⊙ x (b3) · rstd (b4), one thread per column.
@compute @workgroup_size(256)
fn rmsnorm_bwd_dw(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = linear(wg, nwg, lid);
    let d = pu(1u);
    if (c >= d) { return; }
    var acc = 0.0;
    for (var i = 0u; i < pu(0u); i++) {
        acc = acc + b2[off(2u) + i * d + c] * (b3[off(3u) + i * d + c] * b4[off(4u) + i]);
    }
    b1[off(1u) + c] = b1[off(1u) + c] + acc;
}
