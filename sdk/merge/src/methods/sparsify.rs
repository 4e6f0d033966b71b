//! The random sparsifications of task vectors, as mergekit's `sparsify.py` draws them: DARE
//! keeps each element with probability `density`; DELLA keeps with probabilities ranked by
//! magnitude within each row. Each element's draw depends only on the tensor's seed, the
//! model and the element's index ([`Draws`]), so a tensor cut into chunks (whole rows, for
//! DELLA) gets the same draws as the whole tensor, and passes that repeat them agree.
//! The magnitude-ranked sparsifications (TIES, breadcrumbs) are rank selections: see
//! [`super::select`].

use std::cmp::Ordering;

use crate::{vectorized, Float};

/// Uniform random draws by element index, for one model's mask of one tensor: a keyed
/// 32-bit hash of the index (two rounds of the `lowbias32` bijection), keyed by the
/// tensor's seed and the model. Random access (no generator state), so any chunking gets
/// the same draws, and the loops that use it vectorize. Indices are below 2³² (the
/// task-vector methods refuse to sparsify bigger tensors).
#[derive(Clone, Copy, Debug)]
pub struct Draws {
    keys: [u32; 2],
}

impl Draws {
    /// The draws of model `stream` (its position in `models:`) for a tensor's `seed`.
    pub fn new(seed: u64, stream: u64) -> Draws {
        // SplitMix64's output function spreads the seed and stream over both keys.
        let mut z = seed ^ stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Draws { keys: [z as u32, (z >> 32) as u32] }
    }

    /// A uniform 32-bit draw for element `index`.
    #[inline(always)]
    pub fn at(&self, index: u64) -> u32 {
        lowbias32(lowbias32(index as u32 ^ self.keys[0]).wrapping_add(self.keys[1]))
    }

    /// A uniform draw in [0, 1) for element `index`.
    pub fn unit(&self, index: u64) -> f64 {
        self.at(index) as f64 / 4_294_967_296.0
    }
}

/// Chris Wellons' `lowbias32` integer hash (a bijection on u32).
#[inline(always)]
fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7FEB_352D);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846C_A68B);
    x ^ (x >> 16)
}

/// DARE: zeroes each element of `x` (elements `first..` of the tensor) with probability
/// `1 − density`: kept when its 32-bit draw is below density·2³².
pub fn bernoulli<T: Float>(x: &mut [T], density: f64, draws: &Draws, first: usize) {
    if density >= 1.0 {
        return;
    }
    let threshold = (density * 4_294_967_296.0) as u32;
    let first = first as u64;
    vectorized!(x.iter_mut().enumerate().for_each(|(j, v)| *v = if draws.at(first + j as u64) < threshold { *v } else { T::zero() }));
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
/// `x` is elements `first..` of the tensor (whole groups).
pub fn della<T: Float>(x: &mut [T], shape: &[u64], density: f64, epsilon: f64, draws: &Draws, first: usize) {
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
    for (b, block) in x.chunks_mut(group.max(1)).enumerate() {
        let start = (first + b * group) as u64;
        // Vector j of the block: elements j + i·stride, i < len.
        for j in 0..stride {
            order.clear();
            order.extend(0..len);
            order.sort_by(|&a, &b| {
                let (p, q) = (block[j + a * stride].abs(), block[j + b * stride].abs());
                p.partial_cmp(&q).unwrap_or(Ordering::Equal).then(a.cmp(&b))
            });
            for (rank, &i) in order.iter().enumerate() {
                keep[i] = draws.unit(start + (j + i * stride) as u64) < density - epsilon + 2.0 * epsilon * rank as f64 / denom;
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
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn chunked_draws_equal_whole_draws() {
        let mut g = ChaCha8Rng::seed_from_u64(1);
        let x: Vec<f32> = (0..4 * 6 * 3).map(|_| g.random_range(-1.0f32..1.0)).collect();
        let shape = [4u64, 6, 3];
        let draws = Draws::new(3, 1);
        let (mut whole, mut parts) = (x.clone(), x.clone());
        della(&mut whole, &shape, 0.5, 0.2, &draws, 0);
        let group = della_group(&shape) * 2;
        for (i, c) in parts.chunks_mut(group).enumerate() {
            della(c, &shape, 0.5, 0.2, &draws, i * group);
        }
        assert_eq!(whole, parts);
        assert!(whole.iter().filter(|v| **v == 0.0).count() > 10);
        let (mut whole, mut parts) = (x.clone(), x);
        bernoulli(&mut whole, 0.3, &draws, 0);
        for (i, c) in parts.chunks_mut(7).enumerate() {
            bernoulli(c, 0.3, &draws, i * 7);
        }
        assert_eq!(whole, parts);
    }

    /// The draws are uniform (a χ² test over 64 bins), differ between models and seeds, and
    /// DARE keeps the asked fraction.
    #[test]
    fn draws_are_uniform_and_keep_the_density() {
        let n = 1 << 20;
        let draws = Draws::new(42, 0);
        let mut bins = [0u64; 64];
        for i in 0..n {
            bins[(draws.at(i) >> 26) as usize] += 1;
        }
        let expected = n as f64 / 64.0;
        let chi2: f64 = bins.iter().map(|&b| (b as f64 - expected).powi(2) / expected).sum();
        // 63 degrees of freedom: the 99.9% quantile is about 104.
        assert!(chi2 < 104.0, "chi2 {chi2}");
        // Another model's or seed's masks are independent: they agree on about
        // d² + (1 − d)² of the elements.
        for o in [Draws::new(42, 1), Draws::new(43, 0)] {
            let d = 1u32 << 30;
            let agree = (0..n).filter(|&i| (o.at(i) < d) == (draws.at(i) < d)).count() as f64 / n as f64;
            assert!((agree - 0.625).abs() < 0.003, "agree {agree}");
        }
        let mut x = vec![1.0f32; n as usize];
        bernoulli(&mut x, 0.3, &draws, 5);
        let kept = x.iter().filter(|v| **v != 0.0).count() as f64 / n as f64;
        assert!((kept - 0.3).abs() < 0.003, "kept {kept}");
    }
}
