//! Rank selection over a tensor read in chunks: which elements have magnitude rank in `a..b`,
//! without holding the tensor. A radix select finds the keys at ranks `a` and `b − 1` with one
//! pass per 16-bit digit (two for f32, four for f64) and 64 Ki-bucket histograms; a
//! [`RankMask`] then marks the elements in index order, breaking ties by position (the
//! earlier element ranks first), so the result equals a full sort's.

use std::ops::Range;

use crate::Float;

/// Order keys: sorting keys ascending gives the wanted order of magnitudes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Smallest |x| first.
    Ascending,
    /// Largest |x| first.
    Descending,
}

/// The order key of `x`: |x|'s bits (monotonic for non-negative floats), reversed for
/// [`Order::Descending`].
pub fn key<T: Float>(x: T, order: Order) -> u64 {
    let bits = x.abs().magnitude_bits();
    match order {
        Order::Ascending => bits,
        Order::Descending => T::KEY_MAX - bits,
    }
}

const DIGIT: u32 = 16;
const BUCKETS: usize = 1 << DIGIT;

/// Finds the key at one rank (0 = first in ascending key order) of a stream of keys.
struct Target {
    rank: usize,
    /// The digits found so far (the high `found` digits of the answer).
    prefix: u64,
    /// How many keys are below every key with this prefix.
    below: usize,
    /// Counts per digit (u32: tensors of up to 4 Gi elements).
    hist: Vec<u32>,
}

/// Radix selection of the keys at several ranks over passes of the same key stream.
pub struct RadixSelect {
    bits: u32,
    pass: u32,
    targets: Vec<Target>,
}

impl RadixSelect {
    /// `bits`: key width (32 or 64); `ranks`: the ranks wanted (each < the number of keys).
    pub fn new(bits: u32, ranks: &[usize]) -> RadixSelect {
        let targets = ranks.iter().map(|&rank| Target { rank, prefix: 0, below: 0, hist: vec![0u32; BUCKETS] }).collect();
        RadixSelect { bits, pass: 0, targets }
    }

    /// Passes over the keys this selection needs.
    pub fn passes(&self) -> u32 {
        self.bits / DIGIT
    }

    /// Counts the keys of a run of elements in the current pass. Keys must be the same, in the
    /// same order, in every pass.
    /// One loop per target, without a prefix test on the first pass: the hot loop of TIES.
    pub fn observe_all(&mut self, keys: impl Iterator<Item = u64> + Clone) {
        let shift = self.bits - DIGIT * (self.pass + 1);
        let first = self.pass == 0;
        for t in &mut self.targets {
            let hist: &mut [u32; BUCKETS] = (&mut t.hist[..]).try_into().expect("BUCKETS counts");
            if first {
                for k in keys.clone() {
                    hist[((k >> shift) as usize) & (BUCKETS - 1)] += 1;
                }
            } else {
                let prefix = t.prefix;
                for k in keys.clone() {
                    if k >> (shift + DIGIT) == prefix {
                        hist[((k >> shift) as usize) & (BUCKETS - 1)] += 1;
                    }
                }
            }
        }
    }

    /// Ends a pass: fixes the next digit of every target.
    pub fn end_pass(&mut self) {
        for t in &mut self.targets {
            let want = t.rank - t.below;
            let mut seen = 0;
            let mut digit = BUCKETS - 1;
            for (d, &c) in t.hist.iter().enumerate() {
                if seen + c as usize > want {
                    digit = d;
                    break;
                }
                seen += c as usize;
            }
            t.below += seen;
            t.prefix = (t.prefix << DIGIT) | digit as u64;
            t.hist.fill(0);
        }
        self.pass += 1;
    }

    /// After [`RadixSelect::passes`] passes: per rank, (the key at that rank, how many keys
    /// are smaller).
    pub fn result(&self) -> Vec<(u64, usize)> {
        debug_assert_eq!(self.pass, self.passes());
        self.targets.iter().map(|t| (t.prefix, t.below)).collect()
    }
}

/// Marks the elements of rank in `keep`, visiting them in index order; made from the keys at
/// ranks `keep.start` and `keep.end − 1` and their counts of smaller keys.
#[derive(Clone, Debug)]
pub struct RankMask {
    keep: Range<usize>,
    lo: (u64, usize),
    hi: (u64, usize),
    seen_lo: usize,
    seen_hi: usize,
}

impl RankMask {
    /// `lo`/`hi`: (key, smaller keys) at ranks `keep.start` and `keep.end − 1`; `keep` must
    /// not be empty.
    pub fn new(keep: Range<usize>, lo: (u64, usize), hi: (u64, usize)) -> RankMask {
        RankMask { keep, lo, hi, seen_lo: 0, seen_hi: 0 }
    }

    /// Whether the next element (in index order) is kept.
    #[inline]
    pub fn keep(&mut self, key: u64) -> bool {
        if key != self.lo.0 && key != self.hi.0 {
            // The common case, decided without a data-dependent branch.
            (key > self.lo.0) & (key < self.hi.0)
        } else {
            // Equal to a boundary key: its rank is the smaller keys plus the equal ones
            // already seen.
            let rank = if key == self.lo.0 {
                self.seen_lo += 1;
                self.lo.1 + self.seen_lo - 1
            } else {
                self.seen_hi += 1;
                self.hi.1 + self.seen_hi - 1
            };
            self.keep.contains(&rank)
        }
    }

    /// Zeroes the elements of `x` (the next ones in index order) that are not kept. The
    /// elements strictly between the boundary keys are decided by a vectorizable select; the
    /// few on a boundary key are found 64 at a time and ranked in index order.
    pub fn apply<T: Float>(&mut self, x: &mut [T], order: Order) {
        let (lo, hi) = (self.lo.0, self.hi.0);
        let mut kept_on_boundary: Vec<(usize, T)> = Vec::new();
        for (b, block) in x.chunks(64).enumerate() {
            let mut bits = 0u64;
            for (j, v) in block.iter().enumerate() {
                let k = key(*v, order);
                bits |= (((k == lo) | (k == hi)) as u64) << j;
            }
            while bits != 0 {
                let j = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if self.keep(key(block[j], order)) {
                    kept_on_boundary.push((b * 64 + j, block[j]));
                }
            }
        }
        for v in x.iter_mut() {
            let k = key(*v, order);
            *v = if (k > lo) & (k < hi) { *v } else { T::zero() };
        }
        for (i, v) in kept_on_boundary {
            x[i] = v;
        }
    }

    /// The same mask, ready for another pass from the first element.
    pub fn restart(&self) -> RankMask {
        RankMask::new(self.keep.clone(), self.lo, self.hi)
    }
}

/// Selects by rank over a whole slice (for tests and small tensors): the mask of elements of
/// rank in `keep` under `order`.
#[cfg(test)]
pub fn rank_mask<T: Float>(x: &[T], keep: Range<usize>, order: Order) -> Vec<bool> {
    let keep = keep.start.min(x.len())..keep.end.min(x.len());
    if keep.is_empty() {
        return vec![false; x.len()];
    }
    let mut sel = RadixSelect::new(T::KEY_BITS, &[keep.start, keep.end - 1]);
    for _ in 0..sel.passes() {
        sel.observe_all(x.iter().map(|v| key(*v, order)));
        sel.end_pass();
    }
    let r = sel.result();
    let mut mask = RankMask::new(keep, r[0], r[1]);
    x.iter().map(|v| mask.keep(key(*v, order))).collect()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn by_sort<T: Float>(x: &[T], keep: Range<usize>, order: Order) -> Vec<bool> {
        let mut idx: Vec<usize> = (0..x.len()).collect();
        idx.sort_by(|&i, &j| {
            let (a, b) = (x[i].abs(), x[j].abs());
            let o = a.partial_cmp(&b).unwrap();
            let o = if order == Order::Descending { o.reverse() } else { o };
            o.then(i.cmp(&j))
        });
        let mut want = vec![false; x.len()];
        for &i in &idx[keep] {
            want[i] = true;
        }
        want
    }

    #[test]
    fn matches_a_full_sort_with_many_ties() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for n in [1usize, 2, 7, 50, 301] {
            // Few distinct magnitudes, both signs and zeros: many ties.
            let x: Vec<f32> = (0..n).map(|_| rng.random_range(-3i32..=3) as f32 * 0.5).collect();
            let y: Vec<f64> = x.iter().map(|v| *v as f64 * 1.25).collect();
            for order in [Order::Ascending, Order::Descending] {
                for lo in 0..=n.min(9) {
                    for hi in lo..=n {
                        assert_eq!(rank_mask(&x, lo..hi, order), by_sort(&x, lo..hi, order), "{x:?} {lo}..{hi} {order:?}");
                        assert_eq!(rank_mask(&y, lo..hi, order), by_sort(&y, lo..hi, order), "{y:?} {lo}..{hi} {order:?}");
                    }
                }
            }
        }
    }

    /// `apply` over chunks of any size zeroes exactly what `keep` element by element rejects.
    #[test]
    fn apply_in_chunks_equals_keep() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x: Vec<f32> = (0..5000).map(|_| rng.random_range(-20i32..=20) as f32 * 0.25 + 0.125).collect();
        for (lo, hi) in [(0, 2500), (100, 4000), (2499, 2501)] {
            for order in [Order::Ascending, Order::Descending] {
                let mut sel = RadixSelect::new(32, &[lo, hi - 1]);
                for _ in 0..sel.passes() {
                    sel.observe_all(x.iter().map(|v| key(*v, order)));
                    sel.end_pass();
                }
                let r = sel.result();
                let mut one = RankMask::new(lo..hi, r[0], r[1]);
                let want: Vec<f32> = x.iter().map(|v| if one.keep(key(*v, order)) { *v } else { 0.0 }).collect();
                let mut got = x.clone();
                let mut mask = RankMask::new(lo..hi, r[0], r[1]);
                for c in got.chunks_mut(rng.random_range(1..700)) {
                    mask.apply(c, order);
                }
                assert_eq!(got, want, "{lo}..{hi} {order:?}");
                assert_eq!(got.iter().filter(|v| **v != 0.0).count(), hi - lo);
            }
        }
    }

    #[test]
    fn matches_a_full_sort_on_random_values() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let x: Vec<f32> = (0..20_000).map(|_| rng.random_range(-1.0f32..1.0) * 10f32.powi(rng.random_range(-8..3))).collect();
        for (lo, hi) in [(0, 1), (0, 2000), (19_999, 20_000), (137, 15_000), (0, 20_000)] {
            for order in [Order::Ascending, Order::Descending] {
                assert_eq!(rank_mask(&x, lo..hi, order), by_sort(&x, lo..hi, order), "{lo}..{hi} {order:?}");
            }
        }
    }
}
