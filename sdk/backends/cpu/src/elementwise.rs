//! Elementwise ops (zero, copy, add, scale) over fixed-size chunks, and `sum_squares`, the one
//! global reduction (gradient clipping's norm), summed in an order fixed by the length alone.

use rayon::prelude::*;

/// Elements per parallel task: large enough to amortise the task, small enough to spread.
pub(crate) const GRAIN: usize = 1 << 14;

pub fn fill(x: &mut [f32], value: f32) {
    x.par_chunks_mut(GRAIN).for_each(|x| x.fill(value));
}

pub fn copy(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(GRAIN).zip(src.par_chunks(GRAIN)).for_each(|(d, s)| d.copy_from_slice(s));
}

/// `x ← x + x`.
pub fn double(x: &mut [f32]) {
    x.par_chunks_mut(GRAIN).for_each(|x| x.iter_mut().for_each(|x| *x += *x));
}

/// `out ← out + b`.
pub fn add_into(out: &mut [f32], b: &[f32]) {
    out.par_chunks_mut(GRAIN).zip(b.par_chunks(GRAIN)).for_each(|(o, b)| o.iter_mut().zip(b).for_each(|(o, b)| *o += b));
}

/// `out ← a + b`.
pub fn add(out: &mut [f32], a: &[f32], b: &[f32]) {
    out.par_chunks_mut(GRAIN).zip(a.par_chunks(GRAIN)).zip(b.par_chunks(GRAIN)).for_each(|((o, a), b)| {
        for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
            *o = a + b;
        }
    });
}

pub fn scale(x: &mut [f32], alpha: f32) {
    x.par_chunks_mut(GRAIN).for_each(|x| x.iter_mut().for_each(|x| *x *= alpha));
}

/// Elements per partial sum of [`sum_squares`]; part of the summation order, so fixed.
const SUM_CHUNK: usize = 1 << 13;

/// `Σ x²` in f64: each chunk of [`SUM_CHUNK`] elements summed on eight interleaved lanes
/// (lane `i % 8`, lanes combined pairwise), then the chunk sums added in chunk order.
pub fn sum_squares(x: &[f32], partials: &mut Vec<f64>) -> f64 {
    let partials = crate::grow(partials, x.len().div_ceil(SUM_CHUNK));
    partials.par_iter_mut().zip(x.par_chunks(SUM_CHUNK)).for_each(|(p, x)| {
        let mut lanes = [0f64; 8];
        let mut blocks = x.chunks_exact(8);
        for b in &mut blocks {
            for (l, v) in lanes.iter_mut().zip(b) {
                let v = *v as f64;
                *l += v * v;
            }
        }
        for (l, v) in lanes.iter_mut().zip(blocks.remainder()) {
            let v = *v as f64;
            *l += v * v;
        }
        *p = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    });
    partials.iter().sum()
}
