//! Runs hot loops with the widest vector instructions the CPU has, chosen at run time, so one
//! portable binary (built for the x86-64 baseline, SSE2) still uses AVX2 or AVX-512 where the
//! machine has them.
//!
//! [`vectorized!`](crate::vectorized) runs a block from inside a function compiled with
//! those features; the block is inlined there, so the compiler vectorizes its loops for the
//! wider registers.
//! Results are bit-identical at every level: Rust never fuses a multiply and an add on its
//! own, and never reorders floating-point sums, so only the register width changes.
//! `AGENTMERGE_SIMD=baseline|avx2|avx512` caps the level (for tests and benchmarks).

use std::sync::OnceLock;

/// Instruction-set levels, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// The target's baseline (SSE2 on x86-64).
    Baseline,
    /// AVX2 (x86-64).
    Avx2,
    /// AVX-512 F and BW (x86-64).
    Avx512,
}

/// The level [`vectorized!`](crate::vectorized) uses: the best the CPU has, capped by `AGENTMERGE_SIMD`.
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("AGENTMERGE_SIMD").as_deref() {
            Ok("baseline") => SimdLevel::Baseline,
            Ok("avx2") => SimdLevel::Avx2,
            _ => SimdLevel::Avx512,
        };
        detected().min(cap)
    })
}

#[cfg(target_arch = "x86_64")]
fn detected() -> SimdLevel {
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
        SimdLevel::Avx512
    } else if is_x86_feature_detected!("avx2") {
        SimdLevel::Avx2
    } else {
        SimdLevel::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detected() -> SimdLevel {
    SimdLevel::Baseline
}

/// Runs `$body` (an expression, usually a block of loops) compiled for the best available
/// [`SimdLevel`], and returns its value. Write the loops plainly: zips over slices, no early
/// exits, so the compiler can vectorize them. A closure that `$body` passes on to a helper
/// (not an iterator adapter's small closure) needs `#[inline(always)]` too, or it is compiled
/// once, for the baseline.
///
/// ```
/// let (a, b) = (vec![1.0f32; 1000], vec![2.0f32; 1000]);
/// let sum: Vec<f32> = agentmerge_checkpoint::vectorized!(a.iter().zip(&b).map(|(x, y)| x + y).collect());
/// assert_eq!(sum[999], 3.0);
/// ```
#[macro_export]
macro_rules! vectorized {
    ($body:expr) => {
        $crate::run_vectorized(
            #[inline(always)]
            || $body,
        )
    };
}

/// Calls `f` from a function compiled for the best available [`SimdLevel`]. Use
/// [`vectorized!`](crate::vectorized), which marks the closure `#[inline(always)]`: a closure
/// that is not inlined keeps the baseline instructions.
#[inline]
pub fn run_vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx2")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match simd_level() {
            // SAFETY: the CPU reported these features (`detected`).
            SimdLevel::Avx512 => return unsafe { avx512(f) },
            SimdLevel::Avx2 => return unsafe { avx2(f) },
            SimdLevel::Baseline => {}
        }
    }
    f()
}
