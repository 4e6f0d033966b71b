// Cross-entropy of rows of logits, one workgroup of 256 threads per row (fixed-tree
// reductions). Parameters: 0 n (rows), 1 vocab, 2 with gradient (0/1), 3 gradient scale s.
// With the gradient, the logits are overwritten by s·(softmax − onehot); an ignored target
// (0xFFFFFFFF) gives loss 0 (and a zero gradient row).

@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> losses: array<f32>;
@group(0) @binding(3) var<storage, read_write> targets: array<u32>;

var<workgroup> red: array<f32, 256>;

fn reduce(lid: u32, v: f32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            if (is_max) { red[lid] = max(red[lid], red[lid + s]); } else { red[lid] = red[lid] + red[lid + s]; }
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn xent(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wg, nwg);
    let vocab = pu(1u);
    let live = row < pu(0u);
    var t = 0xFFFFFFFFu;
    if (live) { t = targets[off(3u) + row]; }
    let ignored = t >= vocab;
    let base = off(1u) + row * vocab;
    // Read the target's logit before the reductions' barriers: the gradient overwrites it.
    var xt = 0.0;
    if (live && !ignored) { xt = logits[base + t]; }
    var m = NEG_INF;
    if (live && !ignored) {
        for (var c = lid; c < vocab; c += 256u) { m = max(m, logits[base + c]); }
    }
    m = reduce(lid, m, true);
    var se = 0.0;
    if (live && !ignored) {
        for (var c = lid; c < vocab; c += 256u) { se = se + exp(logits[base + c] - m); }
    }
    let sum = reduce(lid, se, false);
    if (!live) { return; }
    if (ignored) {
        if (lid == 0u) { losses[off(2u) + row] = 0.0; }
        if (pu(2u) != 0u) {
            for (var c = lid; c < vocab; c += 256u) { logits[base + c] = 0.0; }
        }
        return;
    }
    if (lid == 0u) { losses[off(2u) + row] = (m + log(sum)) - xt; }
    if (pu(2u) != 0u) {
        let s = pf(3u);
        let k = s / sum;
        for (var c = lid; c < vocab; c += 256u) {
            var g = exp(logits[base + c] - m) * k;
            if (c == t) { g = g - s; }
            logits[base + c] = g;
        }
    }
}
