// Rotary embeddings in place (Hugging Face's rotate_half pairing: i with i + head_dim/2), or
// the inverse rotation for a gradient. One thread per (token, head, pair). The frequencies
// come from the host, computed in f32 exactly as the CPU backend computes them; the angle is
// rounded to f32 as there, and sincosf (not the fast intrinsic) reduces it accurately for
// angles of thousands of radians.
extern "C" __global__ void rope(float* x, const u32* pos, const float* inv_freq, u64 n, u64 heads, u64 head_dim, u32 inverse) {
    u64 half = head_dim / 2;
    FOR_EACH(e, n * heads * half) {
        u64 i = e % half;
        u64 th = e / half;  // token · heads + head
        u64 tok = th / heads;
        float angle = (float)pos[tok] * inv_freq[i];
        float s, c;
        sincosf(angle, &s, &c);
        if (inverse) s = -s;
        u64 at = th * head_dim + i;
        float x1 = x[at], x2 = x[at + half];
        x[at] = x1 * c - x2 * s;
        x[at + half] = x2 * c + x1 * s;
    }
}
