// Causal attention with document masking over packed rows, forward and backward, one warp per
// (token, head): lane l holds dimensions l, l + 32, ... (up to MAX_HD), a dot product is a warp
// sum (the same bits in every lane). Token i sees key j ≤ i of its row when doc[j] = doc[i];
// query head h reads key/value head h / (heads / kv_heads). Memory stays O(tokens · heads):
// the forward keeps a running maximum and sum (online softmax) and saves the log-sum-exp; the
// backward recomputes the probabilities from it. No atomics: every sum has a fixed order.

// The warp's index over the whole launch and its lane (blocks of whole warps).
#define WARP_ID ((u64)(blockIdx.x * (u64)blockDim.x + threadIdx.x) / 32)
#define LANE (threadIdx.x & 31)

// Loads the warp's share of a head vector (zero beyond head_dim).
__device__ __forceinline__ void load_head(float* r, const float* src, u32 hd) {
    for (u32 t = 0; t < PER_LANE; t++) {
        u32 d = LANE + 32 * t;
        r[t] = d < hd ? src[d] : 0.0f;
    }
}

__device__ __forceinline__ float dot_head(const float* a, const float* b, u32 hd) {
    float s = 0.0f;
    for (u32 t = 0; t < PER_LANE; t++) {
        if (LANE + 32 * t < hd) s += a[t] * b[t];
    }
    return warp_sum(s);
}

// Dot product of the warp's registers `a` with a head vector in memory.
__device__ __forceinline__ float dot_mem(const float* a, const float* src, u32 hd) {
    float s = 0.0f;
    for (u32 t = 0; t < PER_LANE; t++) {
        u32 d = LANE + 32 * t;
        if (d < hd) s += a[t] * src[d];
    }
    return warp_sum(s);
}

// out, lse ← attention of q over k, v.
extern "C" __global__ void attention_fwd(float* out, float* lse, const float* q, const float* k, const float* v, const u32* doc,
                                         u32 batch, u32 seq, u32 heads, u32 kv_heads, u32 hd, float scale) {
    u64 w = WARP_ID;
    if (w >= (u64)batch * seq * heads) return;
    u64 i = w / heads;
    u32 h = (u32)(w % heads);
    u32 g = h / (heads / kv_heads);
    u64 row0 = (i / seq) * seq;
    u64 qs = (u64)heads * hd, ks = (u64)kv_heads * hd;
    u32 di = doc[i];
    float qv[PER_LANE], acc[PER_LANE];
    load_head(qv, q + i * qs + (u64)h * hd, hd);
    for (u32 t = 0; t < PER_LANE; t++) acc[t] = 0.0f;
    float m = NEG_INF, l = 0.0f;
    for (u64 j = row0; j <= i; j++) {
        if (doc[j] != di) continue;
        const float* kj = k + j * ks + (u64)g * hd;
        const float* vj = v + j * ks + (u64)g * hd;
        float s = dot_mem(qv, kj, hd) * scale;
        float mn = fmaxf(m, s);
        float corr = expf(m - mn);
        float p = expf(s - mn);
        l = l * corr + p;
        for (u32 t = 0; t < PER_LANE; t++) {
            u32 d = LANE + 32 * t;
            if (d < hd) acc[t] = acc[t] * corr + p * vj[d];
        }
        m = mn;
    }
    float* o = out + i * qs + (u64)h * hd;
    for (u32 t = 0; t < PER_LANE; t++) {
        u32 d = LANE + 32 * t;
        if (d < hd) o[d] = acc[t] / l;
    }
    if (LANE == 0) lse[i * heads + h] = m + logf(l);
}

// dq = scale·Σ_j dS_ij·k_j with p = exp(scale·q_i·k_j − lse_i), dS = p·(dO_i·v_j − D_i),
// D_i = dO_i·O_i (written to `dsum` for attention_dkv). One warp per (token, query head).
extern "C" __global__ void attention_dq(float* dq, float* dsum, const float* dout, const float* out, const float* lse, const float* q,
                                        const float* k, const float* v, const u32* doc, u32 batch, u32 seq, u32 heads, u32 kv_heads,
                                        u32 hd, float scale) {
    u64 w = WARP_ID;
    if (w >= (u64)batch * seq * heads) return;
    u64 i = w / heads;
    u32 h = (u32)(w % heads);
    u32 g = h / (heads / kv_heads);
    u64 row0 = (i / seq) * seq;
    u64 qs = (u64)heads * hd, ks = (u64)kv_heads * hd;
    u32 di = doc[i];
    u64 qa = i * qs + (u64)h * hd;
    float qv[PER_LANE], dov[PER_LANE], ov[PER_LANE], acc[PER_LANE];
    load_head(qv, q + qa, hd);
    load_head(dov, dout + qa, hd);
    load_head(ov, out + qa, hd);
    float D = dot_head(dov, ov, hd);
    if (LANE == 0) dsum[i * heads + h] = D;
    float li = lse[i * heads + h];
    for (u32 t = 0; t < PER_LANE; t++) acc[t] = 0.0f;
    for (u64 j = row0; j <= i; j++) {
        if (doc[j] != di) continue;
        const float* kj = k + j * ks + (u64)g * hd;
        const float* vj = v + j * ks + (u64)g * hd;
        float s = dot_mem(qv, kj, hd);
        float dp = dot_mem(dov, vj, hd);
        float p = expf(s * scale - li);
        float ds = p * (dp - D);
        for (u32 t = 0; t < PER_LANE; t++) {
            u32 d = LANE + 32 * t;
            if (d < hd) acc[t] += ds * kj[d];
        }
    }
    for (u32 t = 0; t < PER_LANE; t++) {
        u32 d = LANE + 32 * t;
        if (d < hd) dq[qa + d] = scale * acc[t];
    }
}

// dv_j = Σ p·dO_i, dk_j = scale·Σ dS·q_i over the group's query heads, then the queries i ≥ j of
// the row with j's document, in order. One warp per (token, key/value head); reads D from
// attention_dq.
extern "C" __global__ void attention_dkv(float* dk, float* dv, const float* dsum, const float* dout, const float* lse, const float* q,
                                         const float* k, const float* v, const u32* doc, u32 batch, u32 seq, u32 heads, u32 kv_heads,
                                         u32 hd, float scale) {
    u64 w = WARP_ID;
    if (w >= (u64)batch * seq * kv_heads) return;
    u64 j = w / kv_heads;
    u32 g = (u32)(w % kv_heads);
    u32 group = heads / kv_heads;
    u64 row_end = (j / seq + 1) * seq;
    u64 qs = (u64)heads * hd, ks = (u64)kv_heads * hd;
    u32 dj = doc[j];
    u64 ka = j * ks + (u64)g * hd;
    float kv[PER_LANE], vv[PER_LANE], adk[PER_LANE], adv[PER_LANE];
    load_head(kv, k + ka, hd);
    load_head(vv, v + ka, hd);
    for (u32 t = 0; t < PER_LANE; t++) {
        adk[t] = 0.0f;
        adv[t] = 0.0f;
    }
    for (u32 h = g * group; h < (g + 1) * group; h++) {
        for (u64 i = j; i < row_end; i++) {
            if (doc[i] != dj) continue;
            u64 qa = i * qs + (u64)h * hd;
            float s = dot_mem(kv, q + qa, hd);
            float dp = dot_mem(vv, dout + qa, hd);
            float p = expf(s * scale - lse[i * heads + h]);
            float ds = p * (dp - dsum[i * heads + h]);
            for (u32 t = 0; t < PER_LANE; t++) {
                u32 d = LANE + 32 * t;
                if (d < hd) {
                    adv[t] += p * dout[qa + d];
                    adk[t] += ds * q[qa + d];
                }
            }
        }
    }
    for (u32 t = 0; t < PER_LANE; t++) {
        u32 d = LANE + 32 * t;
        if (d < hd) {
            dk[ka + d] = scale * adk[t];
            dv[ka + d] = adv[t];
        }
    }
}
