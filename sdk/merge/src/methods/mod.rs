//! The built-in merge methods, one file each, and the registry that finds them by name.

mod linear;
mod model_stock;
mod nuslerp;
mod passthrough;
mod select;
mod slerp;
pub mod sparsify;
mod task_arithmetic;

pub use linear::Linear;
pub use model_stock::ModelStock;
pub use nuslerp::NuSlerp;
pub use passthrough::Passthrough;
pub use slerp::Slerp;
pub use task_arithmetic::{Consensus, Sparsification, TaskArithmetic};

use std::ops::Range;

use crate::{Float, Strategy};

/// The names [`builtin`] knows, as written in `merge_method:`.
pub const METHODS: &[&str] = &[
    "linear",
    "task_arithmetic",
    "ties",
    "dare_linear",
    "dare_ties",
    "breadcrumbs",
    "breadcrumbs_ties",
    "della",
    "della_linear",
    "slerp",
    "nuslerp",
    "model_stock",
    "passthrough",
    "agentmerge",
];

/// The built-in strategy called `name`.
pub fn builtin(name: &str) -> Option<Box<dyn Strategy>> {
    Some(match name {
        "linear" => Box::new(Linear),
        "slerp" => Box::new(Slerp),
        "nuslerp" => Box::new(NuSlerp),
        "model_stock" => Box::new(ModelStock),
        "passthrough" => Box::new(Passthrough),
        other => Box::new(TaskArithmetic::named(other)?),
    })
}

/// Implements [`Strategy::merge`] and [`Strategy::merge_f64`] with one generic `run` method.
macro_rules! float_impls {
    () => {
        fn merge(&self, job: &$crate::TensorJob<'_, f32>) -> anyhow::Result<Vec<f32>> {
            self.run(job)
        }
        fn merge_f64(&self, job: &$crate::TensorJob<'_, f64>) -> anyhow::Result<Vec<f64>> {
            self.run(job)
        }
    };
}
pub(crate) use float_impls;

/// Errors unless `x` is within `lo..=hi` (or `lo < x` when `open_low`).
pub(crate) fn check_range(name: &str, x: f64, lo: f64, hi: f64, open_low: bool) -> anyhow::Result<()> {
    let ok = x.is_finite() && (if open_low { x > lo } else { x >= lo }) && x <= hi;
    if !ok {
        let low = if open_low { "(" } else { "[" };
        anyhow::bail!("parameter `{name}` = {x} is outside {low}{lo}, {hi}]");
    }
    Ok(())
}

/// Elements per tile in [`tiled`]: a few vector registers' worth.
pub(crate) const TILE: usize = 256;

/// Builds an `n`-element output a tile at a time: `fill(range, tile)` gets a zeroed tile (the
/// accumulator, small enough to stay in registers and L1) and computes the outputs of
/// `range` into it. Element-wise methods read every input once this way, instead of once
/// per input into a tensor-sized accumulator. Call it inside
/// [`vectorized!`](crate::vectorized), with `fill` marked `#[inline(always)]`.
#[inline(always)]
pub(crate) fn tiled<T: Float>(n: usize, fill: impl FnMut(Range<usize>, &mut [T])) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    tiled_into(n, &mut out, fill);
    out
}

/// [`tiled`] into `out` (cleared first), reusing its allocation.
#[inline(always)]
pub(crate) fn tiled_into<T: Float>(n: usize, out: &mut Vec<T>, mut fill: impl FnMut(Range<usize>, &mut [T])) {
    out.clear();
    out.reserve(n);
    let mut start = 0;
    while start + TILE <= n {
        let mut tile = [T::zero(); TILE];
        fill(start..start + TILE, &mut tile);
        out.extend_from_slice(&tile);
        start += TILE;
    }
    let mut tile = [T::zero(); TILE];
    let rest = &mut tile[..n - start];
    fill(start..n, rest);
    out.extend_from_slice(rest);
}
