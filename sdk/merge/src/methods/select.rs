//! Rank selection over a tensor read in chunks: which elements have magnitude rank in `a..b`,
//! without holding the tensor. Two ways find the keys at ranks `a` and `b − 1`:
//!
//! * [`BandSelect`], the fast one: a sample of the tensor brackets each wanted key in a narrow
//!   band of keys, then one counting pass counts the keys below the band and keeps those in
//!   it, and a selection among the kept keys finds the exact key. One pass over the tensor
//!   (none for a tensor small enough to sample whole); it reports when a band missed.
//! * [`RadixSelect`], the fallback that always works: one pass per 16-bit digit (two for f32,
//!   four for f64) with 64 Ki-bucket histograms.
//!
//! A [`RankMask`] then marks the elements in index order, breaking ties by position (the
//! earlier element ranks first), so the result equals a full sort's.

use std::ops::Range;

use num_traits::{Bounded, PrimInt, Zero};

use crate::{vectorized, Float};

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
    native_key(x, flip::<T>(order)).into()
}

/// [`key`] in `T`'s own width (u32 for f32, so twice as many fit a vector); `flip` from
/// [`flip`].
#[inline(always)]
pub fn native_key<T: Float>(x: T, flip: T::Key) -> T::Key {
    x.abs().magnitude_bits() ^ flip
}

/// What [`native_key`] XORs the bits with: all ones reverses the order (max − bits).
pub fn flip<T: Float>(order: Order) -> T::Key {
    match order {
        Order::Ascending => T::Key::zero(),
        Order::Descending => T::Key::max_value(),
    }
}

/// A key (of `T`'s width, as every key here is) in `T`'s own width.
fn narrow<K: PrimInt>(key: u64) -> K {
    K::from(key).unwrap_or_else(K::max_value)
}

/// The key found at a wanted rank: how many keys are smaller, and how many equal it (the
/// tensor's copies of the key; `usize::MAX` where that is not known, as for a guess).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Boundary {
    pub key: u64,
    pub below: usize,
    pub copies: usize,
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
    /// How many keys have this prefix (after the last pass: equal the answer).
    copies: usize,
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
        let targets = ranks.iter().map(|&rank| Target { rank, prefix: 0, below: 0, copies: 0, hist: vec![0u32; BUCKETS] }).collect();
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
            t.copies = t.hist[digit] as usize;
            t.prefix = (t.prefix << DIGIT) | digit as u64;
            t.hist.fill(0);
        }
        self.pass += 1;
    }

    /// After [`RadixSelect::passes`] passes: per rank, the key at that rank.
    pub fn result(&self) -> Vec<Boundary> {
        debug_assert_eq!(self.pass, self.passes());
        self.targets.iter().map(|t| Boundary { key: t.prefix, below: t.below, copies: t.copies }).collect()
    }
}

/// Exact keys at given ranks from a sample and one counting pass (see the module docs).
pub struct BandSelect {
    n: usize,
    /// Sample keys, gathered by [`BandSelect::sample`].
    sample: Vec<u64>,
    /// Whether the sample is the whole tensor (then no counting pass is needed).
    whole: bool,
    targets: Vec<Band>,
}

/// One wanted rank: its band of keys `lo..=hi`, and the keys counted below it, equal to its
/// ends (ties are common: the task vectors of bf16 models take few distinct values), and
/// kept strictly inside it.
struct Band {
    rank: usize,
    lo: u64,
    hi: u64,
    below: usize,
    at_lo: usize,
    at_hi: usize,
    inside: Vec<u64>,
    /// More keys fell inside than a band should hold: the sample was not representative.
    overflow: bool,
    /// When the band is one key (its ends are equal): the tensor's keys below it, estimated
    /// from the sample.
    guess_below: Option<usize>,
}

/// Where a rank lies against its band, once every key is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Below,
    Inside,
    Above,
    /// The band overflowed: its keys inside were not kept.
    Unknown,
}

impl Band {
    fn side(&self) -> Side {
        let Some(r) = self.rank.checked_sub(self.below) else { return Side::Below };
        if r < self.at_lo {
            Side::Inside
        } else if self.overflow {
            Side::Unknown
        } else if r - self.at_lo < self.inside.len() + self.at_hi {
            Side::Inside
        } else {
            Side::Above
        }
    }
}

/// Most keys a band may hold, as a fraction of the tensor, before the search gives up on it.
const BAND_CAP: f64 = 1.0 / 16.0;

impl BandSelect {
    /// Ranks (each `< n`) of a tensor of `n` elements; `whole`: the sample will be every key.
    pub fn new(n: usize, ranks: &[usize], whole: bool) -> BandSelect {
        let targets = ranks
            .iter()
            .map(|&rank| Band { rank, lo: 0, hi: u64::MAX, below: 0, at_lo: 0, at_hi: 0, inside: Vec::new(), overflow: false, guess_below: None })
            .collect();
        BandSelect { n, sample: Vec::new(), whole, targets }
    }

    /// Adds sample keys (every key of the tensor when `whole`).
    pub fn sample<K: PrimInt + Into<u64>>(&mut self, keys: &[K]) {
        self.sample.extend(keys.iter().map(|k| (*k).into()));
    }

    /// Ends the sample: brackets each rank by sample quantiles around it, with a margin of
    /// six standard errors of a sample quantile plus 0.3% of the ranks (the sample is runs of
    /// neighbouring elements, not independent ones).
    pub fn end_sample(&mut self) {
        let m = self.sample.len();
        if self.whole || m == 0 {
            return;
        }
        for t in &mut self.targets {
            let q = t.rank as f64 / self.n as f64;
            let margin = 0.003 + 6.0 * (q * (1.0 - q) / m as f64).sqrt();
            let at = |f: f64| ((f * m as f64) as usize).min(m - 1);
            // The high quantile is searched above the low one only.
            let (lo_at, hi_at) = (at((q - margin).max(0.0)), at(q + margin));
            t.lo = if q - margin <= 0.0 { 0 } else { *self.sample.select_nth_unstable(lo_at).1 };
            t.hi = if q + margin >= 1.0 { u64::MAX } else { *self.sample[lo_at..].select_nth_unstable(hi_at - lo_at).1 };
            if t.lo == t.hi {
                let below = self.sample.iter().filter(|k| **k < t.lo).count();
                t.guess_below = Some((below as f64 * self.n as f64 / m as f64).round() as usize);
            }
        }
        self.sample = Vec::new();
    }

    /// Counts a run of keys (every key of the tensor, once, over the counting pass).
    pub fn count<K: PrimInt + Into<u64>>(&mut self, keys: &[K]) {
        let cap = (self.n as f64 * BAND_CAP) as usize + 1024;
        for t in &mut self.targets {
            // An open top end is the largest key of this width.
            t.hi = t.hi.min(K::max_value().into());
            let (lo, hi): (K, K) = (narrow(t.lo), narrow(t.hi));
            // Branch-free counts in u32 (they vectorize at the keys' width); only the keys
            // strictly inside are kept.
            let (mut below, mut at_lo, mut at_hi, mut inside) = (0, 0, 0, 0);
            for part in keys.chunks(1 << 30) {
                let (b, l, h, i) = vectorized!(part.iter().fold((0u32, 0u32, 0u32, 0u32), |(b, l, h, i), k| {
                    (b + (*k < lo) as u32, l + (*k == lo) as u32, h + (*k == hi) as u32, i + ((*k > lo) & (*k < hi)) as u32)
                }));
                (below, at_lo, at_hi, inside) = (below + b as usize, at_lo + l as usize, at_hi + h as usize, inside + i as usize);
            }
            t.below += below;
            t.at_lo += at_lo;
            t.at_hi += if hi == lo { 0 } else { at_hi };
            if t.overflow || inside == 0 {
                continue;
            }
            // Keys inside are few (the band is a narrow slice of the ranks): a vectorized
            // compare gives each group of 64 keys a bit mask of those inside. A group holds
            // one or two in most bands, so its first two set bits are written without a
            // branch (into two spare slots; the count moves only past the real ones) and a
            // loop takes the rest: a loop for every group mispredicted its end.
            let start = t.inside.len();
            t.inside.resize(start + inside + 2, 0);
            let dst = &mut t.inside[start..];
            let is_inside = |k: &K| (*k > lo) & (*k < hi);
            let mut kept = 0usize;
            let mut groups = keys.chunks_exact(64);
            vectorized!(for group in &mut groups {
                let mut bits = 0u64;
                for (j, k) in group.iter().enumerate() {
                    bits |= (is_inside(k) as u64) << j;
                }
                let second = bits & bits.wrapping_sub(1);
                dst[kept] = group[(bits.trailing_zeros() & 63) as usize].into();
                dst[kept + 1] = group[(second.trailing_zeros() & 63) as usize].into();
                let n = bits.count_ones() as usize;
                let mut more = second & second.wrapping_sub(1);
                let mut at = kept + 2;
                while more != 0 {
                    dst[at] = group[more.trailing_zeros() as usize].into();
                    more &= more - 1;
                    at += 1;
                }
                kept += n;
            });
            for k in groups.remainder().iter().filter(|k| is_inside(k)) {
                dst[kept] = (*k).into();
                kept += 1;
            }
            debug_assert_eq!(kept, inside);
            t.inside.truncate(start + kept);
            if t.inside.len() > cap {
                t.overflow = true;
                t.inside = Vec::new();
            }
        }
    }

    /// Before the counting pass, when every band is one key (as with the few distinct values
    /// of bf16 task vectors): per rank, that key and an estimate of the keys below it, in the
    /// form of [`BandSelect::result`] (its copies not known). When the counts find the same
    /// keys, the masks made from the guesses differ from the exact ones only in which copies
    /// of those keys they keep (see [`RankMask::agrees`]).
    pub fn guess(&self) -> Option<Vec<Boundary>> {
        if self.whole {
            return None;
        }
        self.targets.iter().map(|t| Some(Boundary { key: t.lo, below: t.guess_below?, copies: usize::MAX })).collect()
    }

    /// [`BandSelect::count`] for bands that are one key (after [`BandSelect::guess`]): per
    /// rank, the keys counted below its key and the copies of it, in a run of keys counted
    /// elsewhere (as a merge counts them against the masks made from the guesses).
    pub fn tally(&mut self, counts: &[(usize, usize)]) {
        for (t, (below, at)) in self.targets.iter_mut().zip(counts) {
            debug_assert_eq!(t.lo, t.hi, "tallied band of more than one key");
            t.below += below;
            t.at_lo += at;
        }
    }

    /// Whether a band missed its rank (after the counting pass): what makes
    /// [`BandSelect::result`] `None`, without its selection.
    pub fn missed(&self) -> bool {
        !self.whole && self.targets.iter().any(|t| t.side() != Side::Inside)
    }

    /// A new search for the same ranks, for when this one missed: bands from `sample` (keys
    /// of single elements spread through the tensor), narrowed by what this one counted (a
    /// rank below its band lies below the band's low end, one above it above its high end).
    /// It needs its own counting pass.
    pub fn retry<K: PrimInt + Into<u64>>(&self, sample: &[K]) -> BandSelect {
        let ranks: Vec<usize> = self.targets.iter().map(|t| t.rank).collect();
        let mut again = BandSelect::new(self.n, &ranks, false);
        again.sample(sample);
        again.end_sample();
        for (new, old) in again.targets.iter_mut().zip(&self.targets) {
            // A sample at odds with the counts (its band on the wrong side of the old one)
            // searches all of the side the counts allow.
            (new.lo, new.hi) = match old.side() {
                Side::Below if new.lo <= old.lo => (new.lo, new.hi.min(old.lo)),
                Side::Below => (0, old.lo),
                Side::Above if new.hi >= old.hi => (new.lo.max(old.hi), new.hi),
                Side::Above => (old.hi, u64::MAX),
                Side::Inside | Side::Unknown => (new.lo, new.hi),
            };
        }
        again
    }

    /// Per rank, the key at that rank; `None` when a band missed its rank (then use
    /// [`BandSelect::retry`] or [`RadixSelect`]).
    pub fn result(mut self) -> Option<Vec<Boundary>> {
        if self.whole {
            let mut keys = std::mem::take(&mut self.sample);
            return Some(self.targets.iter().map(|t| exact(&mut keys, 0, t.rank)).collect());
        }
        self.targets
            .iter_mut()
            .map(|t| {
                if t.side() != Side::Inside {
                    return None;
                }
                // In key order: `below` keys, `at_lo` copies of lo, the inside keys, `at_hi`
                // copies of hi.
                let r = t.rank - t.below;
                Some(if r < t.at_lo {
                    Boundary { key: t.lo, below: t.below, copies: t.at_lo }
                } else if r - t.at_lo < t.inside.len() {
                    exact(&mut t.inside, t.below + t.at_lo, t.rank)
                } else {
                    Boundary { key: t.hi, below: t.below + t.at_lo + t.inside.len(), copies: t.at_hi }
                })
            })
            .collect()
    }
}

/// The key at `rank` among `below` smaller keys and `keys`, with its counts of smaller and
/// equal keys among them.
fn exact(keys: &mut [u64], below: usize, rank: usize) -> Boundary {
    let (smaller, key, larger) = keys.select_nth_unstable(rank - below);
    let key = *key;
    let smaller_equal = smaller.iter().filter(|k| **k == key).count();
    Boundary { key, below: below + smaller.len() - smaller_equal, copies: smaller_equal + 1 + larger.iter().filter(|k| **k == key).count() }
}

/// Marks the elements of rank in `keep`, visiting them in index order; made from the keys at
/// ranks `keep.start` and `keep.end − 1` and their counts of smaller keys.
#[derive(Clone, Debug)]
pub struct RankMask {
    keep: Range<usize>,
    lo: Boundary,
    hi: Boundary,
    seen_lo: usize,
    seen_hi: usize,
}

impl RankMask {
    /// `lo`/`hi`: the keys at ranks `keep.start` and `keep.end − 1`; `keep` must not be
    /// empty.
    pub fn new(keep: Range<usize>, lo: Boundary, hi: Boundary) -> RankMask {
        RankMask { keep, lo, hi, seen_lo: 0, seen_hi: 0 }
    }

    /// Whether the next element (in index order) is kept: one element at a time, what
    /// [`RankMask::apply`] does a block at a time (the tests check one against the other).
    pub fn keep(&mut self, key: u64) -> bool {
        if key != self.lo.key && key != self.hi.key {
            (key > self.lo.key) & (key < self.hi.key)
        } else {
            // Equal to a boundary key: its rank is the smaller keys plus the equal ones
            // already seen.
            let rank = if key == self.lo.key {
                self.seen_lo += 1;
                self.lo.below + self.seen_lo - 1
            } else {
                self.seen_hi += 1;
                self.hi.below + self.seen_hi - 1
            };
            self.keep.contains(&rank)
        }
    }

    /// Zeroes the elements of `x` (the next ones in index order) that are not kept. The
    /// elements strictly between the boundary keys are decided by a vectorized select; those
    /// equal to a boundary key are kept by occurrence (the `j`-th copy of a boundary key with
    /// `below` smaller keys has rank `below + j`): a block's copies are usually all kept or
    /// all dropped, decided once for the block.
    #[cfg(test)]
    pub fn apply<T: Float>(&mut self, x: &mut [T], order: Order) {
        vectorized!(self.apply_inline(x, order))
    }

    /// [`RankMask::apply`], inlined into a caller that is already
    /// [`vectorized!`](crate::vectorized) (as when masking a tile at a time).
    #[inline(always)]
    pub fn apply_inline<T: Float>(&mut self, x: &mut [T], order: Order) {
        let flip = flip::<T>(order);
        let (lo, hi): (T::Key, T::Key) = (narrow(self.lo.key), narrow(self.hi.key));
        for block in x.chunks_mut(MASK_BLOCK) {
            let mut keys = [T::Key::zero(); MASK_BLOCK];
            let keys = &mut keys[..block.len()];
            keys.iter_mut().zip(block.iter()).for_each(|(k, v)| *k = native_key(*v, flip));
            let (n_lo, n_hi) = keys.iter().fold((0u32, 0u32), |(l, h), k| (l + (*k == lo) as u32, h + (*k == hi) as u32));
            match self.block::<T>(order, n_lo as usize, n_hi as usize) {
                Some(m) => {
                    for (v, k) in block.iter_mut().zip(keys.iter()) {
                        *v = if m.keeps(*k) { *v } else { T::zero() };
                    }
                    self.advance(n_lo as usize, n_hi as usize);
                }
                // A window ends inside this block (at most twice per tensor): one at a time.
                None => {
                    for (v, k) in block.iter_mut().zip(keys.iter()) {
                        if !self.keep((*k).into()) {
                            *v = T::zero();
                        }
                    }
                }
            }
        }
    }

    /// The mask of the next elements, as a [`BlockMask`], when they hold at most `n_lo`
    /// copies of the low boundary key and `n_hi` of the high one, and all those copies are
    /// kept alike; `None` when the kept occurrences of a boundary key may start or end among
    /// them (then decide them one at a time with [`RankMask::keep`], or count the copies
    /// exactly and ask again). Follow it with [`RankMask::advance`].
    #[inline(always)]
    pub fn block<T: Float>(&self, order: Order, n_lo: usize, n_hi: usize) -> Option<BlockMask<T::Key>> {
        let (lo, hi): (T::Key, T::Key) = (narrow(self.lo.key), narrow(self.hi.key));
        // The occurrences of each boundary key that are kept. Copies of one key (lo = hi)
        // count as lo's.
        let window = |below: usize| self.keep.start.saturating_sub(below)..self.keep.end.saturating_sub(below);
        // No more copies than the tensor has left: once its last kept copy of a key is
        // seen (as with the one copy of most f32 keys), the rest decide alike.
        let n_lo = n_lo.min(self.lo.copies.saturating_sub(self.seen_lo));
        let n_hi = n_hi.min(self.hi.copies.saturating_sub(self.seen_hi));
        let keep_lo = all_or_none(self.seen_lo, n_lo, &window(self.lo.below))?;
        let keep_hi = if hi == lo { keep_lo } else { all_or_none(self.seen_hi, n_hi, &window(self.hi.below))? };
        Some(BlockMask { flip: flip::<T>(order), lo, hi, keep_lo, keep_hi })
    }

    /// Moves past elements that held `n_lo` copies of the low boundary key and `n_hi` of the
    /// high one (ignored when both boundaries are the same key).
    #[inline(always)]
    pub fn advance(&mut self, n_lo: usize, n_hi: usize) {
        self.seen_lo += n_lo;
        if self.hi.key != self.lo.key {
            self.seen_hi += n_hi;
        }
    }

    /// The same mask, ready for another pass from the first element.
    pub fn restart(&self) -> RankMask {
        RankMask::new(self.keep.clone(), self.lo, self.hi)
    }

    /// Whether both masks have the same boundary keys (their counts of smaller keys may
    /// differ).
    pub fn same_keys(&self, other: &RankMask) -> bool {
        (self.lo.key, self.hi.key) == (other.lo.key, other.hi.key)
    }

    /// This mask at the point `at` reached (a mask with the same keys, [`RankMask::same_keys`],
    /// that has seen the same elements).
    pub fn resume(&self, at: &RankMask) -> RankMask {
        RankMask { seen_lo: at.seen_lo, seen_hi: at.seen_hi, ..self.clone() }
    }

    /// Whether this mask decides the elements between the points `from` and `to` reached (two
    /// states of a mask with the same keys, [`RankMask::same_keys`]) as `from` does: the
    /// copies of the boundary keys among them are all kept, or all dropped, by both.
    pub fn agrees(&self, from: &RankMask, to: &RankMask) -> bool {
        let (n_lo, n_hi) = (to.seen_lo - from.seen_lo, to.seen_hi - from.seen_hi);
        let decide = |m: &RankMask| {
            let window = |below: usize| m.keep.start.saturating_sub(below)..m.keep.end.saturating_sub(below);
            // No copies: nothing to decide.
            let lo = if n_lo == 0 { Some(true) } else { all_or_none(from.seen_lo, n_lo, &window(m.lo.below)) };
            let hi = if m.hi.key == m.lo.key || n_hi == 0 { Some(true) } else { all_or_none(from.seen_hi, n_hi, &window(m.hi.below)) };
            (lo, hi)
        };
        let (a, b) = (decide(self), decide(from));
        a.0.is_some() && a.1.is_some() && a == b
    }
}

/// [`RankMask::apply`] decides the copies of the boundary keys for blocks of this many
/// elements at once.
const MASK_BLOCK: usize = 256;

/// A rank mask over a run of elements in which every copy of each boundary key is decided
/// alike: the key `k` of an element (see [`native_key`], with `flip`) is kept when
/// `lo < k < hi`, or `k = lo` and `keep_lo`, or `k = hi` and `keep_hi`. Branch-free, so a
/// loop over elements that tests it vectorizes.
#[derive(Clone, Copy, Debug)]
pub struct BlockMask<K> {
    pub flip: K,
    pub lo: K,
    pub hi: K,
    pub keep_lo: bool,
    pub keep_hi: bool,
}

impl<K: PrimInt> BlockMask<K> {
    /// Keeps every element.
    pub fn all() -> BlockMask<K> {
        BlockMask { flip: K::zero(), lo: K::zero(), hi: K::max_value(), keep_lo: true, keep_hi: true }
    }

    /// Keeps no element.
    pub fn none() -> BlockMask<K> {
        BlockMask { flip: K::zero(), lo: K::zero(), hi: K::zero(), keep_lo: false, keep_hi: false }
    }

    /// Whether the element of key `k` is kept.
    #[inline(always)]
    pub fn keeps(&self, k: K) -> bool {
        ((k > self.lo) & (k < self.hi)) | ((k == self.lo) & self.keep_lo) | ((k == self.hi) & self.keep_hi)
    }
}

/// Whether the next `count` copies of a boundary key (`seen` before them) are all kept
/// (`Some(true)`), all dropped (`Some(false)`), or some of each (`None`), given the
/// occurrences `window` that are kept.
#[inline(always)]
fn all_or_none(seen: usize, count: usize, window: &Range<usize>) -> Option<bool> {
    if seen >= window.start && seen + count <= window.end {
        Some(true)
    } else if seen + count <= window.start || seen >= window.end {
        Some(false)
    } else {
        None
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

    /// `apply` over chunks of any size zeroes exactly what `keep` element by element rejects,
    /// with many copies of each key and with (nearly) every key distinct, where the masks'
    /// copy counts decide the blocks after a boundary key's last copy.
    #[test]
    fn apply_in_chunks_equals_keep() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let tied: Vec<f32> = (0..5000).map(|_| rng.random_range(-20i32..=20) as f32 * 0.25 + 0.125).collect();
        let distinct: Vec<f32> = (0..5000).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        for (x, (lo, hi)) in [&tied, &distinct].into_iter().flat_map(|x| [(0, 2500), (100, 4000), (2499, 2501), (0, 1)].map(|r| (x, r))) {
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

    /// The band search finds the same keys as the radix search, sampled or whole, and says
    /// so when a band misses (a sample unlike the rest of the tensor).
    #[test]
    fn band_select_equals_radix_select() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let x: Vec<f32> = (0..300_000).map(|_| rng.random_range(-1.0f32..1.0) * 10f32.powi(rng.random_range(-3..2))).collect();
        let keys: Vec<u64> = x.iter().map(|v| key(*v, Order::Descending)).collect();
        let n = keys.len();
        for ranks in [vec![0], vec![n / 2], vec![17, n - 1], vec![n / 10, 9 * n / 10]] {
            let mut radix = RadixSelect::new(32, &ranks);
            for _ in 0..radix.passes() {
                radix.observe_all(keys.iter().copied());
                radix.end_pass();
            }
            let want = radix.result();
            let mut whole = BandSelect::new(n, &ranks, true);
            whole.sample(&keys);
            whole.end_sample();
            assert_eq!(whole.result().unwrap(), want, "{ranks:?} whole");
            let mut band = BandSelect::new(n, &ranks, false);
            for c in keys.chunks(4096).step_by(8) {
                band.sample(c);
            }
            band.end_sample();
            for c in keys.chunks(5000) {
                band.count(c);
            }
            assert_eq!(band.result().unwrap(), want, "{ranks:?} sampled");
        }
        // Heavy ties (few distinct values, as in bf16 task vectors): the band's ends are tied
        // keys, counted rather than kept.
        let tied: Vec<u64> = (0..200_000u64).map(|i| (i * 7919 % 13) * 1000 + (i % 3 == 0) as u64 * (i % 5)).collect();
        let n2 = tied.len();
        for rank in [0, n2 / 3, n2 / 2, n2 - 1] {
            let mut radix = RadixSelect::new(32, &[rank]);
            for _ in 0..radix.passes() {
                radix.observe_all(tied.iter().copied());
                radix.end_pass();
            }
            let mut band = BandSelect::new(n2, &[rank], false);
            for c in tied.chunks(1000).step_by(10) {
                band.sample(c);
            }
            band.end_sample();
            for c in tied.chunks(777) {
                band.count(c);
            }
            assert_eq!(band.result(), Some(radix.result()), "tied, rank {rank}");
        }
        // A sample of only the smallest magnitudes puts the band far from the median: a miss.
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        let mut band = BandSelect::new(n, &[n / 2], false);
        band.sample(&sorted[n - 1000..]);
        band.end_sample();
        band.count(&keys);
        assert!(band.result().is_none());
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
