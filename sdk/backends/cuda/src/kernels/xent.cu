// Cross-entropy of rows of logits, one block of 256 threads per row: the maximum (a fixed
// tree), the sum of exponentials in f64 (a fixed tree), `loss = lse − logit[target]`; with a
// gradient scale s, the logits overwritten by s·(softmax − onehot). An ignored target (IGNORE,
// or any id outside the vocabulary) gives loss 0 and a zero gradient row.
extern "C" __global__ void xent(float* logits, float* losses, const u32* targets, u64 n, u64 vocab, u32 with_grad, float s) {
    __shared__ double red[256];
    __shared__ float redf[256];
    u64 row = blockIdx.x;
    if (row >= n) return;
    u64 t = targets[row];
    float* x = logits + row * vocab;
    if (t >= vocab) {
        if (threadIdx.x == 0) losses[row] = 0.0f;
        if (with_grad) {
            for (u64 c = threadIdx.x; c < vocab; c += 256) x[c] = 0.0f;
        }
        return;
    }
    // Read the target's logit before any thread overwrites it (the reductions' barriers order it).
    float xt = x[t];
    float m = NEG_INF;
    for (u64 c = threadIdx.x; c < vocab; c += 256) m = fmaxf(m, x[c]);
    m = block_max256(m, redf);
    double se = 0.0;
    for (u64 c = threadIdx.x; c < vocab; c += 256) se += (double)expf(x[c] - m);
    double sum = block_sum256(se, red);
    if (threadIdx.x == 0) losses[row] = (float)(((double)m + log(sum)) - (double)xt);
    if (with_grad) {
        float k = (float)((double)s / sum);
        for (u64 c = threadIdx.x; c < vocab; c += 256) {
            float gr = expf(x[c] - m) * k;
            if (c == t) gr = gr - s;
            x[c] = gr;
        }
    }
}
