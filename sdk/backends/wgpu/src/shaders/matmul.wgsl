// C ← op(A)·op(B) (+ C): a 64 × 64 tile of C per workgroup of 16 × 16 threads, each thread a 4 × 4
// block (rows 4·ty.., columns 4·tx..) held as four vec4 accumulators, depth in steps of 16
// through workgroup memory.
// Every output sums its k products in order, so the result does not depend on the grid.
// Parameters: 0 m, 1 k, 2 n, 3 op(A) transposed, 4 op(B) transposed, 5 accumulate, 6 lda,
// 7 ldb, 8 ldc (row strides as stored, so a kernel call can name a block of a larger matrix).

@group(0) @binding(1) var<storage, read_write> C: array<f32>;
@group(0) @binding(2) var<storage, read_write> A: array<f32>;
@group(0) @binding(3) var<storage, read_write> B: array<f32>;

const TM: u32 = 64u;
const TK: u32 = 16u;

// As[kk][r / 4][r % 4] = op(A)[row0 + r][k0 + kk]; Bs[kk][c / 4][c % 4] = op(B)[k0 + kk][col0 + c].
var<workgroup> As: array<vec4<f32>, 256>;
var<workgroup> Bs: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m = pu(0u);
    let k = pu(1u);
    let n = pu(2u);
    let ta = pu(3u);
    let tb = pu(4u);
    let lda = pu(6u);
    let ldb = pu(7u);
    let ldc = pu(8u);
    let oa = off(2u);
    let ob = off(3u);
    let row0 = wg.y * TM;
    let col0 = wg.x * TM;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < k; k0 += TK) {
        // 1024 values of each tile, 4 per thread, read along the stored matrix's rows.
        for (var t = 0u; t < 4u; t++) {
            let e = lid + t * 256u;
            var r: u32;
            var kk: u32;
            if (ta == 0u) { kk = e % TK; r = e / TK; } else { r = e % TM; kk = e / TM; }
            var a = 0.0;
            if (row0 + r < m && k0 + kk < k) {
                if (ta == 0u) { a = A[oa + (row0 + r) * lda + k0 + kk]; } else { a = A[oa + (k0 + kk) * lda + row0 + r]; }
            }
            As[kk * 16u + r / 4u][r % 4u] = a;
            var c: u32;
            var kb: u32;
            if (tb == 0u) { c = e % TM; kb = e / TM; } else { kb = e % TK; c = e / TK; }
            var b = 0.0;
            if (col0 + c < n && k0 + kb < k) {
                if (tb == 0u) { b = B[ob + (k0 + kb) * ldb + col0 + c]; } else { b = B[ob + (col0 + c) * ldb + k0 + kb]; }
            }
            Bs[kb * 16u + c / 4u][c % 4u] = b;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a = As[kk * 16u + l.y];
            let b = Bs[kk * 16u + l.x];
            acc0 = acc0 + a.x * b;
            acc1 = acc1 + a.y * b;
            acc2 = acc2 + a.z * b;
            acc3 = acc3 + a.w * b;
        }
        workgroupBarrier();
    }
    let oc = off(1u);
    let accumulate = pu(5u) != 0u;
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + 4u * l.y + i;
        var row: vec4<f32>;
        switch i {
            case 0u: { row = acc0; }
            case 1u: { row = acc1; }
            case 2u: { row = acc2; }
            default: { row = acc3; }
        }
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + 4u * l.x + j;
            if (r < m && c < n) {
                let at = oc + r * ldc + c;
                if (accumulate) { C[at] = C[at] + row[j]; } else { C[at] = row[j]; }
            }
        }
    }
}
