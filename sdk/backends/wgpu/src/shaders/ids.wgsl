// Integer buffers: copy between spans of `Mem::Ids`. The element count is parameter 0.

@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read_write> src: array<u32>;

@compute @workgroup_size(256)
fn copy_u32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear(wg, nwg, lid);
    if (i >= pu(0u)) { return; }
    dst[off(1u) + i] = src[off(2u) + i];
}
