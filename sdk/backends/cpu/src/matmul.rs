//! Matrix products through the `gemm` crate: [`matmul`] for the op (transposes expressed as
//! strides, threads from the current rayon pool) and [`gemm_strided`] for the blocks of
//! attention, which run one per task on the calling thread.
//!
//! gemm splits its work over threads by output tiles and always walks the shared dimension in the
//! same blocks (their size follows the cache sizes, never the thread count), so every output
//! element is summed in the same order with 1 thread or 16; `tests/determinism.rs` checks it.

use agentmerge_model::backend::Trans;
use gemm::Parallelism;

/// A strided matrix operand: element `(i, j)` at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(crate) struct Strided<P> {
    pub ptr: P,
    pub rs: usize,
    pub cs: usize,
}

/// `c ← op(a)·op(b)`, or `c ← c + op(a)·op(b)` when `accumulate`; `c` is `m × n` row-major,
/// `a` is stored `m × k` (`k × m` when `ta` is `T`), `b` stored `k × n` (`n × k` when `tb` is `T`).
#[allow(clippy::too_many_arguments)]
pub fn matmul(c: &mut [f32], a: &[f32], ta: Trans, b: &[f32], tb: Trans, m: usize, k: usize, n: usize, accumulate: bool) {
    debug_assert!(c.len() == m * n && a.len() == m * k && b.len() == k * n);
    let a = match ta {
        Trans::N => Strided { ptr: a.as_ptr(), rs: k, cs: 1 },
        Trans::T => Strided { ptr: a.as_ptr(), rs: 1, cs: m },
    };
    let b = match tb {
        Trans::N => Strided { ptr: b.as_ptr(), rs: n, cs: 1 },
        Trans::T => Strided { ptr: b.as_ptr(), rs: 1, cs: k },
    };
    let threads = rayon::current_num_threads();
    let par = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    // SAFETY: the operands are whole slices of the sizes the strides describe.
    unsafe { gemm_strided(m, n, k, Strided { ptr: c.as_mut_ptr(), rs: n, cs: 1 }, a, b, accumulate, 1.0, par) }
}

/// `c ← beta·a·b` (`c ← c + beta·a·b` when `accumulate`) with `c` of `m × n`, `a` of `m × k`,
/// `b` of `k × n`, all strided.
///
/// # Safety
/// Every element the strides address must be valid (`c` for writes), and `c` must not overlap
/// `a` or `b`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    c: Strided<*mut f32>,
    a: Strided<*const f32>,
    b: Strided<*const f32>,
    accumulate: bool,
    beta: f32,
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    // gemm computes dst ← alpha·dst + beta·lhs·rhs, reading dst only when asked to.
    gemm::gemm(
        m,
        n,
        k,
        c.ptr,
        c.cs as isize,
        c.rs as isize,
        accumulate,
        a.ptr,
        a.cs as isize,
        a.rs as isize,
        b.ptr,
        b.cs as isize,
        b.rs as isize,
        1.0f32,
        beta,
        false,
        false,
        false,
        par,
    );
}
