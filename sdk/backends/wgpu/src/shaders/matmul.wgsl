// C ← op(A)·op(B) (+ C): a 64 × 64 tile of C per workgroup of 16 × 16 threads, each thread 4 × 4
// outputs (rows ty + 16·i, columns tx + 16·j), depth in steps of 16 through workgroup memory.
// Every output sums its k products in order, so the result does not depend on the grid.
// Parameters: 0 m, 1 k, 2 n, 3 op(A) transposed, 4 op(B) transposed, 5 accumulate, 6 lda,
// 7 ldb, 8 ldc (row strides as stored, so a kernel call can name a block of a larger matrix).

@group(0) @binding(1) var<storage, read_write> C: array<f32>;
@group(0) @binding(2) var<storage, read_write> A: array<f32>;
@group(0) @binding(3) var<storage, read_write> B: array<f32>;

const TM: u32 = 64u;
const TK: u32 = 16u;

// As[kk · 64 + r] = op(A)[row0 + r][k0 + kk]; Bs[kk · 64 + c] = op(B)[k0 + kk][col0 + c].
var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;

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
    var acc: array<array<f32, 4>, 4>;
    for (var i = 0u; i < 4u; i++) { for (var j = 0u; j < 4u; j++) { acc[i][j] = 0.0; } }
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
            As[kk * TM + r] = a;
            var c: u32;
            var kb: u32;
            if (tb == 0u) { c = e % TM; kb = e / TM; } else { kb = e % TK; c = e / TK; }
            var b = 0.0;
            if (col0 + c < n && k0 + kb < k) {
                if (tb == 0u) { b = B[ob + (k0 + kb) * ldb + col0 + c]; } else { b = B[ob + (col0 + c) * ldb + k0 + kb]; }
            }
            Bs[kb * TM + c] = b;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = As[kk * TM + l.y + 16u * i];
                bv[i] = Bs[kk * TM + l.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) { acc[i][j] = acc[i][j] + av[i] * bv[j]; }
            }
        }
        workgroupBarrier();
    }
    let oc = off(1u);
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + l.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + l.x + 16u * j;
            if (r < m && c < n) {
                let at = oc + r * ldc + c;
                if (pu(5u) != 0u) { C[at] = C[at] + acc[i][j]; } else { C[at] = acc[i][j]; }
            }
        }
    }
}
