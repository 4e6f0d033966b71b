//! `exp` written so that loops over it vectorize (no calls, no branches), and the softmax loops
//! built on it: the libm `expf` is a call per element, which dominated attention, SwiGLU and
//! cross-entropy. Accurate to within 2 ulp of the true value (a test sweeps it against f64).
//!
//! Every operation is a plain IEEE f32 operation (no fused multiply-add, which Rust never
//! introduces on its own), so results are the same on every x86-64 CPU, vectorized or not.

/// `e^x`: `x = n·ln2 + r` with `|r| ≤ ln2/2` (Cody–Waite: `ln2` split so that `n·LN2_HI` is
/// exact), `e^r` by its Taylor series to degree 7 (truncation below 1e-8 relative), times `2^n`
/// built from exponent bits in two factors, so that results down into the subnormals and up to
/// `f32::MAX` come out right. Below `LO` the result is 0, above `HI` infinity; NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 6.931_457_5e-1; // 0x3f317200: 15 significant bits
    const LN2_LO: f32 = 1.428_606_8e-6; // 0x35bfbe8e
    const LO: f32 = -103.972_08; // e^LO is half the smallest subnormal
    const HI: f32 = 88.722_84; // ln(f32::MAX)

    // Adding 1.5·2²³ rounds to an integer (ties to even), which then sits in the low bits.
    const ROUND: f32 = 12_582_912.0;
    #[allow(clippy::manual_clamp)] // clamp keeps NaN; this gives LO, and the select below restores NaN
    let xc = x.max(LO).min(HI);
    let t = xc * LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let n = t.to_bits() as i32 - ROUND.to_bits() as i32; // in [-150, 128]
    let (n1, n2) = (n >> 1, n - (n >> 1)); // each in [-75, 64]: 2^n1 and 2^n2 are normal
    let e = p * f32::from_bits(((n1 + 127) as u32) << 23) * f32::from_bits(((n2 + 127) as u32) << 23);
    if x < LO {
        0.0
    } else if x <= HI {
        e
    } else {
        x * f32::INFINITY // +∞ above HI, NaN for NaN
    }
}

/// The largest element (−∞ for an empty slice), on eight lanes.
pub fn max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = l.max(v);
        }
    }
    chunks.remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// Adds `x` into eight lanes (element `i` into lane `i % 8`) but the last `len % 8` elements,
/// which it returns.
#[inline(always)]
fn add_lanes<'a>(lanes: &mut [f64; 8], x: &'a [f32]) -> &'a [f32] {
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v as f64;
        }
    }
    chunks.remainder()
}

/// The lanes combined pairwise, then the leftover elements in order.
#[inline(always)]
fn finish(lanes: [f64; 8], tail: &[f32]) -> f64 {
    let l = lanes;
    tail.iter().fold(((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])), |s, &v| s + v as f64)
}

/// `x ← e^(x − m)` elementwise; returns `Σ x` (the new values) in f64, summed on eight lanes in
/// a fixed order. (Two passes: each loop vectorizes on its own.)
pub fn exp_sum(x: &mut [f32], m: f32) -> f64 {
    for v in x.iter_mut() {
        *v = exp(*v - m);
    }
    let mut lanes = [0f64; 8];
    let tail = add_lanes(&mut lanes, x);
    finish(lanes, tail)
}

/// `Σ e^(x − m)`, bit for bit what [`exp_sum`] returns, without writing `x`.
pub fn sum_exp(x: &[f32], m: f32) -> f64 {
    let (mut lanes, mut buf) = ([0f64; 8], [0f32; 64]);
    let mut last = 0;
    for c in x.chunks(64) {
        let b = &mut buf[..c.len()];
        for (b, &v) in b.iter_mut().zip(c) {
            *b = exp(v - m);
        }
        // Chunks are whole lanes apart from the last, so the lanes fill as in one pass.
        add_lanes(&mut lanes, b);
        last = c.len();
    }
    finish(lanes, &buf[last - last % 8..last])
}

#[cfg(test)]
mod tests {
    use super::{exp, exp_sum, max, sum_exp};

    #[test]
    fn sum_exp_matches_exp_sum_bit_for_bit() {
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 130, 1000] {
            let x: Vec<f32> = (0..len).map(|i| ((i * 7919) % 101) as f32 * 0.37 - 20.0).collect();
            let m = max(&x);
            assert_eq!(m, x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)));
            let mut y = x.clone();
            let s = exp_sum(&mut y, m);
            assert_eq!(s.to_bits(), sum_exp(&x, m).to_bits(), "len {len}");
            let naive: f64 = x.iter().map(|&v| ((v - m) as f64).exp()).sum();
            assert!((s - naive).abs() <= 1e-6 * naive.max(1.0), "len {len}: {s} against {naive}");
        }
    }

    /// Distance in units in the last place between an f32 and the exact value.
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        let ulp = (f32::from_bits(w.to_bits() + 1) - w).abs() as f64;
        if ulp == 0.0 || !ulp.is_finite() {
            return if got as f64 == want { 0.0 } else { f64::INFINITY };
        }
        (got as f64 - want).abs() / ulp
    }

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = (0.0, 0f32);
        // Every 97th f32 from −104 to 89, plus the edges.
        let negatives = (0u32..104f32.to_bits()).step_by(97).map(|b| -f32::from_bits(b)); // 0 down to −104
        let positives = (0u32..89f32.to_bits()).step_by(97).map(f32::from_bits);
        for x in negatives.chain(positives) {
            let want = (x as f64).exp();
            if want < f32::MIN_POSITIVE as f64 {
                // Subnormal results: absolute error within two subnormal steps.
                assert!((exp(x) as f64 - want).abs() <= 2.0 * 1.4e-45, "exp({x}) = {} want {want}", exp(x));
                continue;
            }
            if want > f32::MAX as f64 {
                continue;
            }
            let u = ulps(exp(x), want);
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= 2.0, "exp is {} ulp off at {}", worst.0, worst.1);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(88.72).is_finite());
    }
}
