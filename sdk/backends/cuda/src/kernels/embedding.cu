// Token embedding and its backward. An id outside the table reads and writes nothing (the CPU
// backend panics on one; the model never passes one).

// out[i, c] ← table[ids[i], c], one thread per element.
extern "C" __global__ void embedding_fwd(float* out, const float* table, const u32* ids, u64 n, u64 d, u64 rows) {
    FOR_EACH(e, n * d) {
        u64 id = ids[e / d];
        if (id < rows) out[e] = table[id * d + e % d];
    }
}

// dtable[ids[i], c] += dout[i, c]: one thread per column, tokens in order, so repeated ids add
// up in a fixed order without atomics.
extern "C" __global__ void embedding_bwd(float* dtable, const float* dout, const u32* ids, u64 n, u64 d, u64 rows) {
    FOR_EACH(c, d) {
        for (u64 i = 0; i < n; i++) {
            u64 id = ids[i];
            if (id < rows) dtable[id * d + c] += dout[i * d + c];
        }
    }
}
