// RMSNorm (Hugging Face's LlamaRMSNorm) forward and backward. The row kernels run one block of
// 256 threads per row and reduce in f64 in a fixed tree (as the CPU backend sums in f64); the
// weight gradient runs one thread per column over the rows in order.

// out ← w ⊙ (x · rstd), rstd ← 1/√(mean(x²) + eps).
extern "C" __global__ void rmsnorm_fwd(float* out, float* rstd, const float* x, const float* w, u64 n, u64 d, float eps) {
    __shared__ double red[256];
    u64 row = blockIdx.x;
    if (row >= n) return;
    const float* xr = x + row * d;
    double ss = 0.0;
    for (u64 c = threadIdx.x; c < d; c += 256) {
        double v = (double)xr[c];
        ss += v * v;
    }
    double total = block_sum256(ss, red);
    float r = (float)(1.0 / sqrt(total / (double)d + (double)eps));
    if (threadIdx.x == 0) rstd[row] = r;
    for (u64 c = threadIdx.x; c < d; c += 256) out[row * d + c] = w[c] * (xr[c] * r);
}

// dx += rstd·(g − xhat·mean(g ⊙ xhat)) with g = dout ⊙ w, xhat = x·rstd.
extern "C" __global__ void rmsnorm_bwd_dx(float* dx, const float* dout, const float* x, const float* w, const float* rstd, u64 n, u64 d) {
    __shared__ double red[256];
    u64 row = blockIdx.x;
    if (row >= n) return;
    float r = rstd[row];
    const float* xr = x + row * d;
    const float* gr = dout + row * d;
    double dot = 0.0;
    for (u64 c = threadIdx.x; c < d; c += 256) dot += (double)((gr[c] * w[c]) * (xr[c] * r));
    double total = block_sum256(dot, red);
    float mean = (float)(total / (double)d);
    for (u64 c = threadIdx.x; c < d; c += 256) {
        float xhat = xr[c] * r;
        dx[row * d + c] += r * (gr[c] * w[c] - xhat * mean);
    }
}

// dw += Σ_rows dout ⊙ x·rstd, one thread per column, rows in order, summed in f64.
extern "C" __global__ void rmsnorm_bwd_dw(float* dw, const float* dout, const float* x, const float* rstd, u64 n, u64 d) {
    FOR_EACH(c, d) {
        double acc = 0.0;
        for (u64 i = 0; i < n; i++) acc += (double)(dout[i * d + c] * (x[i * d + c] * rstd[i]));
        dw[c] += (float)acc;
    }
}
