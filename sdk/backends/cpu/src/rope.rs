//! Rotary position embeddings in place, Hugging Face's `rotate_half` convention: dimension `i`
//! pairs with `i + head_dim/2` and turns by `pos · inv_freq_i`, with
//! `inv_freq_i = 1 / theta^(2i/head_dim)` computed in f32 as transformers does. The backward
//! turns the other way (the rotation's transpose).

use rayon::prelude::*;

/// Tokens per task.
const TOKENS: usize = 8;

/// Rotates every head of every token of `x` (`[n, heads, head_dim]`) by its position; by minus
/// the angle when `inverse`.
pub fn rotate(x: &mut [f32], pos: &[u32], heads: usize, head_dim: usize, theta: f32, inverse: bool, scratch: &mut Vec<f32>) {
    let half = head_dim / 2;
    let inv_freq = crate::grow(scratch, half);
    for (i, f) in inv_freq.iter_mut().enumerate() {
        *f = 1.0 / theta.powf((2 * i) as f32 / head_dim as f32);
    }
    let inv_freq = &*inv_freq;
    let row = heads * head_dim;
    x.par_chunks_mut(TOKENS * row).zip(pos.par_chunks(TOKENS)).for_each(|(x, pos)| {
        for (x, &p) in x.chunks_exact_mut(row).zip(pos) {
            for (i, &f) in inv_freq.iter().enumerate() {
                let (sin, cos) = (p as f32 * f).sin_cos();
                let sin = if inverse { -sin } else { sin };
                for head in x.chunks_exact_mut(head_dim) {
                    let (x1, x2) = (head[i], head[i + half]);
                    head[i] = x1 * cos - x2 * sin;
                    head[i + half] = x2 * cos + x1 * sin;
                }
            }
        }
    });
}
