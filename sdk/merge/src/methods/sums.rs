//! Whole-tensor sums (norms, dot products) accumulated chunk by chunk, in f64, so that the
//! result is the same however the engine cuts the tensor: element `i` always goes to lane
//! `i mod LANES`, and each lane adds its elements in index order.

use crate::{vectorized, Float};

/// Lanes of [`LaneSum`]: four 512-bit vectors of f64, enough to hide the adds' latency.
const LANES: usize = 32;

/// A sum over a tensor's elements, fed a chunk at a time (see the module comment).
#[derive(Clone, Debug, Default)]
pub(crate) struct LaneSum {
    lanes: [f64; LANES],
}

impl LaneSum {
    /// Adds `term(a[j], b[j])` for the elements `first..first + a.len()` of the tensor.
    #[inline(always)]
    fn add_with<T: Float>(&mut self, first: usize, a: &[T], b: &[T], term: impl Fn(T, T) -> f64) {
        let n = a.len();
        let b = &b[..n];
        // Up to the next lane boundary, then whole rows of lanes, then the rest.
        let head = ((LANES - first % LANES) % LANES).min(n);
        for j in 0..head {
            self.lanes[(first + j) % LANES] += term(a[j], b[j]);
        }
        let body = head..head + (n - head) / LANES * LANES;
        let lanes = &mut self.lanes;
        vectorized!(for (xs, ys) in a[body.clone()].chunks_exact(LANES).zip(b[body.clone()].chunks_exact(LANES)) {
            for ((l, x), y) in lanes.iter_mut().zip(xs).zip(ys) {
                *l += term(*x, *y);
            }
        });
        for j in body.end..n {
            self.lanes[(first + j) % LANES] += term(a[j], b[j]);
        }
    }

    /// Adds Σ |x − base| (Σ |x| without a base): the L1 norm of a task vector.
    pub(crate) fn add_abs<T: Float>(&mut self, first: usize, x: &[T], base: Option<&[T]>) {
        let f = |v: T| v.to_f64().unwrap_or(0.0);
        match base {
            Some(b) => self.add_with(first, x, b, |x, b| f((x - b).abs())),
            None => self.add_with(first, x, x, |x, _| f(x.abs())),
        }
    }

    /// Adds Σ a·b (products in f64).
    pub(crate) fn add_dot<T: Float>(&mut self, first: usize, a: &[T], b: &[T]) {
        let f = |v: T| v.to_f64().unwrap_or(0.0);
        self.add_with(first, a, b, |x, y| f(x) * f(y));
    }

    pub(crate) fn total(&self) -> f64 {
        self.lanes.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Adds a chunk (starting at an element index) of two vectors to a sum.
    type Add = dyn Fn(&mut LaneSum, usize, &[f32], &[f32]);

    /// Cut anywhere, the sums are bit-identical, and equal to a plain f64 sum up to rounding.
    #[test]
    fn sums_do_not_depend_on_the_cuts() {
        let mut g = ChaCha8Rng::seed_from_u64(9);
        // Magnitudes over many octaves, so that f64 sums taken in another order round differently.
        let mut draw = || g.random_range(-1.0f32..1.0) * 2f32.powi(g.random_range(-40..40));
        let a: Vec<f32> = (0..1000).map(|_| draw()).collect();
        let b: Vec<f32> = (0..1000).map(|_| draw()).collect();
        let whole = |f: &Add| {
            let mut s = LaneSum::default();
            f(&mut s, 0, &a, &b);
            s.total()
        };
        let cut = |f: &Add, step: usize| {
            let mut s = LaneSum::default();
            for start in (0..a.len()).step_by(step) {
                let end = (start + step).min(a.len());
                f(&mut s, start, &a[start..end], &b[start..end]);
            }
            s.total()
        };
        let dot = |s: &mut LaneSum, first: usize, x: &[f32], y: &[f32]| s.add_dot(first, x, y);
        let l1 = |s: &mut LaneSum, first: usize, x: &[f32], y: &[f32]| s.add_abs(first, x, Some(y));
        for step in [1, 7, 32, 100, 999] {
            assert_eq!(cut(&dot, step), whole(&dot), "dot, step {step}");
            assert_eq!(cut(&l1, step), whole(&l1), "l1, step {step}");
        }
        let plain: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        assert!((whole(&dot) - plain).abs() <= 1e-12 * plain.abs(), "{} vs {plain}", whole(&dot));
        assert_ne!(cut(&dot, 7).to_bits(), plain.to_bits(), "the test data should make the order visible");
        let plain: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).abs() as f64).sum();
        assert!((whole(&l1) - plain).abs() <= 1e-12 * plain, "{} vs {plain}", whole(&l1));
    }
}
