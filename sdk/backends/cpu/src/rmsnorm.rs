//! RMSNorm as Hugging Face's LlamaRMSNorm computes it in f32: `rstd = 1/√(mean(x²) + eps)`,
//! `out = w ⊙ (x · rstd)`; the backward adds into `dx` and `dw`, the weight gradient summed over
//! fixed chunks of rows and then across chunks in chunk order.

use rayon::prelude::*;

/// Rows per task; also the chunk of rows whose weight-gradient partial is summed together, so
/// part of the summation order.
const ROWS: usize = 16;

pub fn forward(out: &mut [f32], rstd: &mut [f32], x: &[f32], w: &[f32], d: usize, eps: f32) {
    out.par_chunks_mut(ROWS * d).zip(rstd.par_chunks_mut(ROWS)).zip(x.par_chunks(ROWS * d)).for_each(|((out, rstd), x)| {
        for ((o, r), x) in out.chunks_exact_mut(d).zip(rstd.iter_mut()).zip(x.chunks_exact(d)) {
            let ms = x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / d as f64;
            *r = (1.0 / (ms + eps as f64).sqrt()) as f32;
            for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
                *o = w * (x * *r);
            }
        }
    });
}

/// With `xhat = x·rstd` and `g = dout ⊙ w`: `dx += rstd·(g − xhat·mean(g ⊙ xhat))` and
/// `dw += Σ_rows dout ⊙ xhat`.
#[allow(clippy::too_many_arguments)]
pub fn backward(dx: &mut [f32], dw: &mut [f32], dout: &[f32], x: &[f32], w: &[f32], rstd: &[f32], d: usize, scratch: &mut Vec<f64>) {
    let n = rstd.len();
    let chunks = n.div_ceil(ROWS);
    let partials = crate::grow(scratch, chunks * d);
    partials.par_chunks_mut(d).zip(dx.par_chunks_mut(ROWS * d)).enumerate().for_each(|(c, (dw_part, dx))| {
        dw_part.fill(0.0);
        let rows = c * ROWS..(c * ROWS + ROWS).min(n);
        for (i, dx) in rows.zip(dx.chunks_exact_mut(d)) {
            let (x, dout, r) = (&x[i * d..(i + 1) * d], &dout[i * d..(i + 1) * d], rstd[i]);
            let mut dot = 0f64;
            for ((&x, &g), &w) in x.iter().zip(dout).zip(w) {
                dot += ((g * w) * (x * r)) as f64;
            }
            let mean = (dot / d as f64) as f32;
            for (((dx, p), &x), (&g, &w)) in dx.iter_mut().zip(dw_part.iter_mut()).zip(x).zip(dout.iter().zip(w)) {
                let xhat = x * r;
                *dx += r * (g * w - xhat * mean);
                *p += (g * xhat) as f64;
            }
        }
    });
    let partials = &*partials;
    // Each column's partials summed in chunk order, 64 columns per task.
    dw.par_chunks_mut(64).enumerate().for_each(|(b, dw)| {
        let mut acc = [0f64; 64];
        for c in 0..chunks {
            let part = &partials[c * d + b * 64..][..dw.len()];
            for (a, p) in acc.iter_mut().zip(part) {
                *a += p;
            }
        }
        for (dw, a) in dw.iter_mut().zip(acc) {
            *dw += a as f32;
        }
    });
}
