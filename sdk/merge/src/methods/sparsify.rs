//! Sparsifying a task vector in place, as mergekit's `sparsify.py` does: keep the largest
//! magnitudes (TIES), drop at random (DARE), drop the largest outliers and the smallest
//! (breadcrumbs), or drop with magnitude-ranked probabilities (DELLA); and the L1 rescale
//! that restores the vector's ‖·‖₁ after dropping.
//!
//! Ties in magnitude are broken by position (the earlier element ranks as the larger), so
//! results are deterministic; the selections use `select_nth_unstable_by`, O(n).

use std::{cmp::Ordering, ops::Range};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::Float;

/// Marks the elements whose rank is in `keep`, ranking by |x| (largest first when
/// `largest_first`, else smallest first) with ties broken by position. O(n) time, one copy
/// of the magnitudes: two `select_nth_unstable_by` calls find the magnitudes at both ends of
/// the range, then one pass in index order resolves ties at those two values.
pub fn rank_mask<T: Float>(x: &[T], keep: Range<usize>, largest_first: bool) -> Vec<bool> {
    let n = x.len();
    let keep = keep.start.min(n)..keep.end.min(n);
    if keep.is_empty() {
        return vec![false; n];
    }
    if keep.len() == n {
        return vec![true; n];
    }
    // Sorting keys ascending gives the wanted order.
    let key = |v: T| if largest_first { -v.abs() } else { v.abs() };
    let cmp = |a: &T, b: &T| a.partial_cmp(b).unwrap_or(Ordering::Equal);
    let mut keys: Vec<T> = x.iter().map(|v| key(*v)).collect();
    let lo = *keys.select_nth_unstable_by(keep.start, cmp).1;
    let hi = *keys.select_nth_unstable_by(keep.end - 1, cmp).1;
    let (mut before_lo, mut before_hi) = (0, 0);
    for k in &keys {
        before_lo += (*k < lo) as usize;
        before_hi += (*k < hi) as usize;
    }
    drop(keys);
    let (mut seen_lo, mut seen_hi) = (0, 0);
    x.iter()
        .map(|v| {
            let k = key(*v);
            if k < lo || k > hi {
                false
            } else if k > lo && k < hi {
                true
            } else {
                // k equals lo or hi: its rank is the count before it plus the equal ones
                // already seen in index order.
                let rank = if k == lo {
                    seen_lo += 1;
                    before_lo + seen_lo - 1
                } else {
                    seen_hi += 1;
                    before_hi + seen_hi - 1
                };
                keep.contains(&rank)
            }
        })
        .collect()
}

fn apply<T: Float>(x: &mut [T], mask: &[bool]) {
    for (v, keep) in x.iter_mut().zip(mask) {
        if !keep {
            *v = T::zero();
        }
    }
}

fn l1<T: Float>(x: &[T]) -> f64 {
    x.iter().map(|v| v.abs().to_f64().unwrap_or(0.0)).sum()
}

/// Multiplies `x` by `before / ‖x‖₁` (mergekit's L1 rescale; skipped when either norm is
/// below 1e-7).
pub fn rescale_l1<T: Float>(x: &mut [T], before: f64) {
    let after = l1(x);
    if before < 1e-7 || after < 1e-7 {
        return;
    }
    let s = T::of(before / after);
    for v in x {
        *v = *v * s;
    }
}

/// TIES: keeps the `floor(density·n)` largest magnitudes.
pub fn magnitude<T: Float>(x: &mut [T], density: f64, rescale: bool) -> anyhow::Result<()> {
    if density >= 1.0 {
        return Ok(());
    }
    let k = (density * x.len() as f64) as usize;
    if k == 0 {
        anyhow::bail!(
            "density {density} keeps no element of a tensor of {} elements; raise `density` for this tensor (a `filter` entry can set it per tensor)",
            x.len()
        );
    }
    let before = l1(x);
    let mask = rank_mask(x, 0..k, true);
    apply(x, &mask);
    if rescale {
        rescale_l1(x, before);
    }
    Ok(())
}

/// Breadcrumbs: drops the `floor(gamma·n)` largest magnitudes and enough of the smallest to
/// keep `floor(density·n)` (fewer outliers are dropped when both do not fit).
pub fn magnitude_outliers<T: Float>(
    x: &mut [T],
    density: f64,
    gamma: f64,
    rescale: bool,
) -> anyhow::Result<()> {
    if density >= 1.0 {
        return Ok(());
    }
    let n = x.len() as i64;
    let target = (density * n as f64) as i64;
    let mut top = (gamma * n as f64) as i64;
    let mut bottom = n - target - top;
    if bottom < 0 {
        top += bottom;
        bottom = 0;
    }
    let before = l1(x);
    let mask = rank_mask(x, bottom as usize..(n - top) as usize, false);
    apply(x, &mask);
    if rescale {
        rescale_l1(x, before);
    }
    Ok(())
}

/// DARE: keeps each element with probability `density`.
pub fn bernoulli<T: Float>(x: &mut [T], density: f64, rescale: bool, rng: &mut ChaCha8Rng) {
    if density >= 1.0 {
        return;
    }
    let before = l1(x);
    for v in x.iter_mut() {
        if rng.random::<f64>() >= density {
            *v = T::zero();
        }
    }
    if rescale {
        rescale_l1(x, before);
    }
}

/// DELLA's MAGPRUNE: within each vector along the second dimension (the rows of a matrix;
/// the whole tensor when it is 1-D), the element of magnitude rank r (1 = smallest) of m is
/// kept with probability `density − ε + 2ε·(r−1)/(m−1)`.
pub fn della<T: Float>(
    x: &mut [T],
    shape: &[u64],
    density: f64,
    epsilon: f64,
    rescale: bool,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<()> {
    if density >= 1.0 {
        return Ok(());
    }
    if density + epsilon >= 1.0 || density - epsilon <= 0.0 {
        anyhow::bail!("della needs density ± epsilon inside (0, 1); got density {density}, epsilon {epsilon}");
    }
    let n = x.len();
    let (outer, len, stride) = match shape {
        [] | [_] => (1, n, 1),
        [d0, d1, rest @ ..] => {
            let stride = rest.iter().product::<u64>() as usize;
            (*d0 as usize * stride, *d1 as usize, stride)
        }
    };
    // Vector k (k < outer) is elements base(k) + i*stride, with k = a*stride + j.
    let base = |k: usize| (k / stride.max(1)) * len * stride + k % stride.max(1);
    let before = l1(x);
    let mut order: Vec<usize> = Vec::with_capacity(len);
    let mut keep = vec![false; len];
    for k in 0..outer {
        let b = base(k);
        order.clear();
        order.extend(0..len);
        order.sort_by(|&i, &j| {
            let (a, c) = (x[b + i * stride].abs(), x[b + j * stride].abs());
            a.partial_cmp(&c).unwrap_or(Ordering::Equal).then(i.cmp(&j))
        });
        let denom = (len.max(2) - 1) as f64;
        for (rank, &i) in order.iter().enumerate() {
            keep[i] = rng.random::<f64>() < density - epsilon + 2.0 * epsilon * rank as f64 / denom;
        }
        for (i, k) in keep.iter().enumerate() {
            if !k {
                x[b + i * stride] = T::zero();
            }
        }
    }
    if rescale {
        rescale_l1(x, before);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_mask_breaks_ties_by_position() {
        let x = [1.0f32, -3.0, 3.0, 0.5, 2.0];
        assert_eq!(rank_mask(&x, 0..2, true), [false, true, true, false, false]);
        assert_eq!(rank_mask(&x, 0..1, true), [false, true, false, false, false]);
        assert_eq!(rank_mask(&x, 1..4, false), [true, true, false, false, true]);
    }

    #[test]
    fn rank_mask_matches_a_full_sort() {
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for n in [1usize, 2, 7, 50, 301] {
            // Few distinct magnitudes, both signs: many ties.
            let x: Vec<f32> = (0..n).map(|_| (rng.random_range(0..6) as f32 - 2.5).round()).collect();
            for largest_first in [true, false] {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&i, &j| {
                    let (a, b) = (x[i].abs(), x[j].abs());
                    let o = if largest_first { b.total_cmp(&a) } else { a.total_cmp(&b) };
                    o.then(i.cmp(&j))
                });
                for lo in 0..=n.min(9) {
                    for hi in lo..=n {
                        let mut want = vec![false; n];
                        for &i in &order[lo..hi] {
                            want[i] = true;
                        }
                        assert_eq!(rank_mask(&x, lo..hi, largest_first), want, "{x:?} {lo}..{hi}");
                    }
                }
            }
        }
    }

    #[test]
    fn magnitude_rescales_to_the_l1_norm() {
        let mut x = vec![1.0f64, -4.0, 2.0, 0.5];
        magnitude(&mut x, 0.5, true).unwrap();
        assert_eq!(x, vec![0.0, -7.5 * 4.0 / 6.0, 7.5 * 2.0 / 6.0, 0.0]);
        assert!(magnitude(&mut [1.0f32, 2.0], 0.4, false).is_err());
    }

    #[test]
    fn outliers_drop_both_ends() {
        let mut x: Vec<f32> = (1..=10).map(|v| v as f32).collect();
        magnitude_outliers(&mut x, 0.5, 0.2, false).unwrap();
        assert_eq!(x, vec![0., 0., 0., 4., 5., 6., 7., 8., 0., 0.]);
    }
}
