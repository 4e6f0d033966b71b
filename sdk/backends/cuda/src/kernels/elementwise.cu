// Elementwise ops, one thread per element (grid-stride): add, scale, SwiGLU forward and
// backward, AdamW, and the per-block partial sums of `sum_squares` (in f64).

// out ← a + b (out may be a or b: each element is read before it is written).
extern "C" __global__ void add_f32(float* out, const float* a, const float* b, u64 n) {
    FOR_EACH(i, n) out[i] = a[i] + b[i];
}

// x ← x · alpha.
extern "C" __global__ void scale_f32(float* x, float alpha, u64 n) {
    FOR_EACH(i, n) x[i] = x[i] * alpha;
}

__device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

// out ← silu(gate) ⊙ up.
extern "C" __global__ void swiglu_fwd(float* out, const float* gate, const float* up, u64 n) {
    FOR_EACH(i, n) {
        float g = gate[i];
        out[i] = g * sigmoid(g) * up[i];
    }
}

// dgate ← dout·up·σ·(1 + g·(1 − σ)), dup ← dout·silu(g).
extern "C" __global__ void swiglu_bwd(float* dgate, float* dup, const float* dout, const float* gate, const float* up, u64 n) {
    FOR_EACH(i, n) {
        float d = dout[i], g = gate[i], u = up[i];
        float s = sigmoid(g);
        dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
        dup[i] = d * (g * s);
    }
}

// AdamW as torch computes it (see the CPU backend's adamw.rs); the scalars come from the host,
// computed in f64 as the CPU backend computes them.
extern "C" __global__ void adamw(float* p, const float* g, float* m, float* v, u64 n, float decay, float neg_step_size, float bc2_sqrt,
                                 float w1, float beta2, float w2, float eps, float grad_scale) {
    FOR_EACH(i, n) {
        float gi = g[i] * grad_scale;
        float pi = p[i] * decay;
        float mi = m[i];
        mi = (w1 < 0.5f) ? mi + w1 * (gi - mi) : gi - (gi - mi) * (1.0f - w1);
        float vi = v[i] * beta2 + w2 * gi * gi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        pi = pi + neg_step_size * mi / denom;
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

// Elements per partial sum of `sum_squares`: block b sums [b·CHUNK, (b+1)·CHUNK) in f64 (each
// thread a fixed stride, then a fixed tree); the host adds the partials in block order.
#define SUM_CHUNK 8192

extern "C" __global__ void sum_squares(double* partials, const float* x, u64 n) {
    __shared__ double red[256];
    u64 start = (u64)blockIdx.x * SUM_CHUNK;
    double acc = 0.0;
    for (u64 i = start + threadIdx.x; i < start + SUM_CHUNK && i < n; i += 256) {
        double v = (double)x[i];
        acc += v * v;
    }
    double total = block_sum256(acc, red);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}
