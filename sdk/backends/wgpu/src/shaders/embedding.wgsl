// Embedding lookup and its backward. Parameters: 0 n (tokens), 1 d (columns), 2 rows of the bound
// part of the table, 3 the id of its first row (a table larger than one binding is bound in
// parts, one dispatch each). Ids outside the bound part are skipped: the other parts' dispatches
// handle them, and an id outside the whole table reads and writes nothing (the CPU backend panics
// on it; the model never passes one).

@group(0) @binding(1) var<storage, read_write> out: array<f32>;   // out, or dtable
@group(0) @binding(2) var<storage, read_write> inp: array<f32>;   // table, or dout
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;

// out[i, c] ← table[ids[i], c], one thread per element.
@compute @workgroup_size(256)
fn embedding_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = linear(wg, nwg, lid);
    let d = pu(1u);
    if (e >= pu(0u) * d) { return; }
    let i = e / d;
    let id = ids[off(3u) + i];
    if (id < pu(3u) || id - pu(3u) >= pu(2u)) { return; }
    out[off(1u) + e] = inp[off(2u) + (id - pu(3u)) * d + e % d];
}

// dtable[ids[i], c] += dout[i, c]: one thread per column, tokens in order, so repeated ids add
// up in a fixed order without atomics.
@compute @workgroup_size(256)
fn embedding_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = linear(wg, nwg, lid);
    let d = pu(1u);
    if (c >= d) { return; }
    for (var i = 0u; i < pu(0u); i++) {
        let id = ids[off(3u) + i];
        if (id >= pu(3u) && id - pu(3u) < pu(2u)) {
            let at = off(1u) + (id - pu(3u)) * d + c;
            out[at] = out[at] + inp[off(2u) + i * d + c];
        }
    }
}
