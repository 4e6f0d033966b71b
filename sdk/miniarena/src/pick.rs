//! Seeding: the random generators of templates and experts, and [`Pick`], which maps seeds
//! 0..N of a template to N *distinct* instances (a keyed permutation of its combinations).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The random generator used everywhere (deterministic across platforms).
pub type Rng = ChaCha8Rng;

/// splitmix64's finaliser: a fast, well-mixed 64-bit hash of one word.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a over the bytes, finished with [`mix`].
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// A generator for `tag` (e.g. a template name plus a purpose) and a seed.
pub fn rng(tag: &str, seed: u64) -> Rng {
    Rng::seed_from_u64(hash_bytes(tag.as_bytes()) ^ mix(seed))
}

/// A seed's position in a space of `space` combinations, read off digit by digit.
///
/// Seeds `0..space` land on distinct positions (a keyed permutation, so neighbouring seeds
/// look unrelated); larger seeds wrap round with a different key. Templates decode the
/// position with [`Pick::digit`] / [`Pick::branch`]; as long as the radices they use
/// multiply up to `space`, distinct seeds give distinct combinations.
pub struct Pick {
    rest: u64,
}

impl Pick {
    pub fn new(tag: &str, seed: u64, space: u64) -> Pick {
        let space = space.max(1);
        let key = hash_bytes(tag.as_bytes()) ^ mix(seed / space);
        Pick { rest: permute(seed % space, space, key) }
    }

    /// The next digit, in `0..radix`.
    pub fn digit(&mut self, radix: usize) -> usize {
        let radix = radix.max(1) as u64;
        let d = self.rest % radix;
        self.rest /= radix;
        d as usize
    }

    /// Chooses one of several sub-spaces of the given sizes; the rest of the position then
    /// indexes inside the chosen one (so the sizes must sum to the remaining space).
    pub fn branch(&mut self, sizes: &[u64]) -> usize {
        for (i, &size) in sizes.iter().enumerate() {
            if self.rest < size {
                return i;
            }
            self.rest -= size;
        }
        sizes.len().saturating_sub(1)
    }

    /// `k` distinct indices from `0..n`, in order (radices n, n-1, ..., n-k+1).
    pub fn distinct(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut pool: Vec<usize> = (0..n).collect();
        let mut out = Vec::with_capacity(k);
        for _ in 0..k.min(n) {
            let i = self.digit(pool.len());
            out.push(pool.remove(i));
        }
        out
    }
}

/// The number of ordered selections of `k` distinct items from `n`.
pub fn arrangements(n: u64, k: u64) -> u64 {
    (0..k).map(|i| n.saturating_sub(i)).product()
}

/// A bijection of `0..n` keyed by `key`: a 4-round Feistel network on the smallest even
/// number of bits that holds `n`, cycle-walked back into range.
fn permute(x: u64, n: u64, key: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    let bits = (64 - (n - 1).leading_zeros()).max(2);
    let bits = bits + (bits & 1);
    let half = bits / 2;
    let mask = (1u64 << half) - 1;
    let mut v = x;
    loop {
        let (mut l, mut r) = (v >> half, v & mask);
        for round in 0..4u64 {
            let f = mix(r ^ key.rotate_left(16 * round as u32) ^ round) & mask;
            (l, r) = (r, l ^ f);
        }
        v = (l << half) | r;
        if v < n {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_is_a_bijection() {
        for n in [1u64, 2, 3, 7, 64, 100, 1000, 4097] {
            let mut seen = vec![false; n as usize];
            for x in 0..n {
                let y = permute(x, n, 12345) as usize;
                assert!(!seen[y], "n={n}");
                seen[y] = true;
            }
        }
    }

    #[test]
    fn picks_are_distinct() {
        let mut all = std::collections::HashSet::new();
        for seed in 0..600u64 {
            let mut p = Pick::new("t", seed, 600);
            let v = (p.digit(10), p.digit(6), p.digit(10));
            assert!(all.insert(v));
        }
    }
}
