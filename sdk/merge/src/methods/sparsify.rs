//! The random sparsifications of task vectors, as mergekit's `sparsify.py` draws them: DARE
//! keeps each element with probability `density`; DELLA keeps with probabilities ranked by
//! magnitude within each row. Both draw in index order from one generator per model, so a
//! tensor cut into chunks (whole rows, for DELLA) gets the same draws as the whole tensor.
//! The magnitude-ranked sparsifications (TIES, breadcrumbs) are rank selections: see
//! [`super::select`].

use std::cmp::Ordering;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::Float;

/// DARE: zeroes each element with probability `1 − density`.
pub fn bernoulli<T: Float>(x: &mut [T], density: f64, rng: &mut ChaCha8Rng) {
    if density >= 1.0 {
        return;
    }
    for v in x.iter_mut() {
        if rng.random::<f64>() >= density {
            *v = T::zero();
        }
    }
}

/// The number of elements DELLA ranks together: a row of `shape`'s second dimension (times
/// the trailing dimensions), or the whole tensor when it is 1-D. Chunks must hold whole
/// groups of this many elements.
pub fn della_group(shape: &[u64]) -> usize {
    match shape {
        [] => 1,
        [n] => *n as usize,
        [_, d1, rest @ ..] => *d1 as usize * rest.iter().product::<u64>() as usize,
    }
}

/// DELLA's MAGPRUNE on whole groups (see [`della_group`]): within each vector along the
/// second dimension, the element of magnitude rank r (0 = smallest) of m is kept with
/// probability `density − ε + 2ε·r/(m−1)`.
pub fn della<T: Float>(x: &mut [T], shape: &[u64], density: f64, epsilon: f64, rng: &mut ChaCha8Rng) {
    if density >= 1.0 {
        return;
    }
    let (len, stride) = match shape {
        [] => (1, 1),
        [n] => (*n as usize, 1),
        [_, d1, rest @ ..] => (*d1 as usize, rest.iter().product::<u64>() as usize),
    };
    let group = len * stride;
    let mut order: Vec<usize> = Vec::with_capacity(len);
    let mut keep = vec![false; len];
    let denom = (len.max(2) - 1) as f64;
    for block in x.chunks_mut(group.max(1)) {
        // Vector j of the block: elements j + i·stride, i < len.
        for j in 0..stride {
            order.clear();
            order.extend(0..len);
            order.sort_by(|&a, &b| {
                let (p, q) = (block[j + a * stride].abs(), block[j + b * stride].abs());
                p.partial_cmp(&q).unwrap_or(Ordering::Equal).then(a.cmp(&b))
            });
            for (rank, &i) in order.iter().enumerate() {
                keep[i] = rng.random::<f64>() < density - epsilon + 2.0 * epsilon * rank as f64 / denom;
            }
            for (i, k) in keep.iter().enumerate() {
                if !k {
                    block[j + i * stride] = T::zero();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn chunked_draws_equal_whole_draws() {
        let mut g = ChaCha8Rng::seed_from_u64(1);
        let x: Vec<f32> = (0..4 * 6 * 3).map(|_| g.random_range(-1.0f32..1.0)).collect();
        let shape = [4u64, 6, 3];
        let (mut whole, mut parts) = (x.clone(), x.clone());
        della(&mut whole, &shape, 0.5, 0.2, &mut ChaCha8Rng::seed_from_u64(3));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for c in parts.chunks_mut(della_group(&shape) * 2) {
            della(c, &shape, 0.5, 0.2, &mut rng);
        }
        assert_eq!(whole, parts);
        assert!(whole.iter().filter(|v| **v == 0.0).count() > 10);
        let (mut whole, mut parts) = (x.clone(), x);
        bernoulli(&mut whole, 0.3, &mut ChaCha8Rng::seed_from_u64(4));
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for c in parts.chunks_mut(7) {
            bernoulli(c, 0.3, &mut rng);
        }
        assert_eq!(whole, parts);
    }
}
