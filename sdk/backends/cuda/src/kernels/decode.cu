// Decoding against the key/value cache, `[slots, max_len, kv_heads, head_dim]` per cache.

// k_cache[slots[b], pos[b]] ← k[b], v_cache likewise: one thread per (b, element).
extern "C" __global__ void kv_store(float* k_cache, float* v_cache, const float* k, const float* v, const u32* slots, const u32* pos,
                                    u32 batch, u32 kv_heads, u32 hd, u32 max_len) {
    u64 kd = (u64)kv_heads * hd;
    FOR_EACH(e, batch * kd) {
        u64 b = e / kd;
        u64 at = ((u64)slots[b] * max_len + pos[b]) * kd + e % kd;
        k_cache[at] = k[e];
        v_cache[at] = v[e];
    }
}

// out[b, h] ← softmax(scale·q[b, h]·K[slot, 0..len]ᵀ)·V: one warp per (sequence, query head),
// lanes over the head's dimensions, online softmax over the cached positions.
extern "C" __global__ void attention_decode(float* out, const float* q, const float* k_cache, const float* v_cache, const u32* slots,
                                            const u32* lens, u32 batch, u32 heads, u32 kv_heads, u32 hd, u32 max_len, float scale) {
    u64 w = ((u64)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    u32 lane = threadIdx.x & 31;
    if (w >= (u64)batch * heads) return;
    u64 b = w / heads;
    u32 h = (u32)(w % heads);
    u32 g = h / (heads / kv_heads);
    u64 kd = (u64)kv_heads * hd;
    u64 slot = slots[b];
    u32 len = lens[b];
    float qv[PER_LANE], acc[PER_LANE];
    for (u32 t = 0; t < PER_LANE; t++) {
        u32 d = lane + 32 * t;
        qv[t] = d < hd ? q[w * hd + d] : 0.0f;
        acc[t] = 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    for (u32 j = 0; j < len; j++) {
        u64 ka = (slot * max_len + j) * kd + (u64)g * hd;
        float s = 0.0f;
        for (u32 t = 0; t < PER_LANE; t++) {
            u32 d = lane + 32 * t;
            if (d < hd) s += qv[t] * k_cache[ka + d];
        }
        s = warp_sum(s) * scale;
        float mn = fmaxf(m, s);
        float corr = expf(m - mn);
        float p = expf(s - mn);
        l = l * corr + p;
        for (u32 t = 0; t < PER_LANE; t++) {
            u32 d = lane + 32 * t;
            if (d < hd) acc[t] = acc[t] * corr + p * v_cache[ka + d];
        }
        m = mn;
    }
    for (u32 t = 0; t < PER_LANE; t++) {
        u32 d = lane + 32 * t;
        if (d < hd) out[w * hd + d] = acc[t] / l;
    }
}
