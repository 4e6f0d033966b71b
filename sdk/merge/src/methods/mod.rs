//! The built-in merge methods, one file each, and the registry that finds them by name.

mod linear;
mod model_stock;
mod nuslerp;
mod passthrough;
mod select;
mod slerp;
pub mod sparsify;
mod sums;
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

/// For methods that need whole-tensor statistics: every tensor streams, and
/// [`Strategy::merge`] runs the same generic `run(&TensorStream)` over one in-memory chunk.
macro_rules! stream_impls {
    () => {
        fn streams(&self, _shape: &[u64]) -> bool {
            true
        }
        fn merge_stream(&self, s: &$crate::TensorStream<'_, f32>) -> anyhow::Result<()> {
            self.run(s)
        }
        fn merge_stream_f64(&self, s: &$crate::TensorStream<'_, f64>) -> anyhow::Result<()> {
            self.run(s)
        }
        fn merge(&self, job: &$crate::TensorJob<'_, f32>) -> anyhow::Result<Vec<f32>> {
            job.run_stream(|s| self.run(s))
        }
        fn merge_f64(&self, job: &$crate::TensorJob<'_, f64>) -> anyhow::Result<Vec<f64>> {
            job.run_stream(|s| self.run(s))
        }
    };
}
pub(crate) use stream_impls;

/// Errors unless `x` is within `lo..=hi` (or `lo < x` when `open_low`).
pub(crate) fn check_range(name: &str, x: f64, lo: f64, hi: f64, open_low: bool) -> anyhow::Result<()> {
    let ok = x.is_finite() && (if open_low { x > lo } else { x >= lo }) && x <= hi;
    if !ok {
        let low = if open_low { "(" } else { "[" };
        anyhow::bail!("parameter `{name}` = {x} is outside {low}{lo}, {hi}]");
    }
    Ok(())
}

/// Elements per tile in [`tiled_into`] and weighted sums: a few vector registers' worth.
pub(crate) const TILE: usize = 256;

/// Builds an `n`-element output into `out` (cleared first, its allocation reused) a tile at
/// a time: `fill(range, tile)` gets a zeroed tile (the accumulator, small enough to stay in
/// registers and L1) and computes the outputs of `range` into it. Element-wise methods read
/// every input once this way, instead of once per input into a tensor-sized accumulator.
/// Call it inside [`vectorized!`](crate::vectorized), with `fill` marked `#[inline(always)]`.
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

/// Test helpers shared by the methods' tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::ops::Range;

    use crate::{Chunk, Input, Params, Strategy, StreamInput, TensorJob, TensorStream};

    /// Merges one tensor twice: whole (one in-memory chunk, [`Strategy::merge`]) and streamed
    /// in chunks of `chunk` elements ([`Strategy::merge_stream`]).
    pub(crate) fn whole_and_streamed(
        m: &dyn Strategy,
        shape: &[u64],
        global: &Params,
        params: &[Params],
        base: Option<&[f32]>,
        models: &[Vec<f32>],
        chunk: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let n = models[0].len();
        let inputs: Vec<Input<'_>> = models.iter().zip(params).map(|(v, p)| Input { model: "m", values: v, params: p, is_base: false }).collect();
        let job = TensorJob { name: "w", shape, layer: None, t: 0.0, base, inputs: &inputs, params: global, seed: 11, range: 0..n };
        let whole = m.merge(&job).unwrap();
        let stream_inputs: Vec<StreamInput<'_>> = params.iter().map(|p| StreamInput { model: "m", params: p, is_base: false }).collect();
        let read = |r: Range<usize>, c: &mut Chunk<f32>| -> anyhow::Result<()> {
            c.base = base.map(|b| b[r.clone()].to_vec());
            c.values = models.iter().map(|v| v[r.clone()].to_vec()).collect();
            c.range = r;
            Ok(())
        };
        let out = std::sync::Mutex::new(vec![f32::NAN; n]);
        let write = |start: usize, v: &[f32]| -> anyhow::Result<()> {
            out.lock().unwrap()[start..start + v.len()].copy_from_slice(v);
            Ok(())
        };
        let s = TensorStream::new("w", shape, None, 0.0, global, &stream_inputs, base.is_some(), 11, chunk, &read, &write);
        m.merge_stream(&s).unwrap();
        (whole, out.into_inner().unwrap())
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::{testing::whole_and_streamed, *};
    use crate::{Params, Value};

    /// The whole-tensor methods (norms, dot products, cosines) give the same bytes streamed
    /// in small chunks, over several passes, as merged in one piece; and they do merge.
    #[test]
    fn whole_tensor_methods_stream_exactly() {
        let mut g = ChaCha8Rng::seed_from_u64(5);
        let shape = [24u64, 40];
        let n = 24 * 40;
        let base: Vec<f32> = (0..n).map(|_| g.random_range(-1.0f32..1.0)).collect();
        let models: Vec<Vec<f32>> = (0..3).map(|_| base.iter().map(|b| b + g.random_range(-0.1f32..0.1)).collect()).collect();
        let flags = |pairs: &[(&str, Value)]| {
            let mut p = Params::default();
            for (k, v) in pairs {
                p.set(k, v.clone());
            }
            p
        };
        let weights: Vec<Params> = (0..3).map(|i| flags(&[("weight", Value::Num(0.4 + 0.3 * i as f64))])).collect();
        let cases: Vec<(&str, Params, usize, bool)> = vec![
            ("slerp", flags(&[("t", Value::Num(0.3))]), 1, true),
            ("model_stock", flags(&[("filter_wise", Value::Bool(false))]), 3, true),
            ("model_stock", flags(&[("filter_wise", Value::Bool(true))]), 3, true),
            ("nuslerp", flags(&[("nuslerp_flatten", Value::Bool(true)), ("nuslerp_row_wise", Value::Bool(false))]), 2, true),
            ("nuslerp", flags(&[("nuslerp_flatten", Value::Bool(false)), ("nuslerp_row_wise", Value::Bool(false))]), 2, true),
            ("nuslerp", flags(&[("nuslerp_flatten", Value::Bool(false)), ("nuslerp_row_wise", Value::Bool(true))]), 2, true),
            ("nuslerp", flags(&[("nuslerp_flatten", Value::Bool(false)), ("nuslerp_row_wise", Value::Bool(true))]), 2, false),
        ];
        for (method, global, count, with_base) in cases {
            let m = builtin(method).unwrap();
            let base = with_base.then_some(base.as_slice());
            for chunk in [100, 333] {
                let (whole, streamed) = whole_and_streamed(m.as_ref(), &shape, &global, &weights[..count], base, &models[..count], chunk);
                assert_eq!(streamed, whole, "{method} {global:?}, chunks of {chunk}");
                let moved = whole.iter().zip(&models[0]).filter(|(a, b)| a != b).count();
                assert!(moved > n / 2, "{method}: only {moved} of {n} elements differ from the first model");
            }
        }
    }
}
