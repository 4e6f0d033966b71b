//! `model_stock` (Jang et al. 2024): moves from the base towards the average of N ≥ 2
//! fine-tuned models by t = N·cos θ / (1 + (N−1)·cos θ), where cos θ is the mean pairwise
//! cosine between their task vectors — over the whole tensor, or per row with
//! `filter_wise: true`.

use super::{stream_impls, sums::LaneSum};
use crate::{Float, ParamDef, ParamsView, Strategy, TensorStream};

/// Geometric interpolation between the base and the average of the models.
pub struct ModelStock;

impl ModelStock {
    /// Whole tensor: one pass measures the task vectors' norms and pairwise dot products,
    /// a second writes the interpolation. `filter_wise`: rows (the last dimension) are
    /// measured and written in one pass, since each chunk holds whole rows.
    fn run<T: Float>(&self, s: &TensorStream<'_, T>) -> anyhow::Result<()> {
        let others = s.others();
        if others.len() < 2 {
            anyhow::bail!("model_stock needs at least two models besides the base");
        }
        let mut stats = Stats::new(others.len());
        let mut deltas: Vec<Vec<T>> = vec![Vec::new(); others.len()];
        let mut out = Vec::new();
        if s.params.flag("filter_wise")? {
            let row = s.shape.last().map_or(s.numel, |&d| d as usize).max(1);
            return s.passes(row).each(|c| {
                let base = c.base("model_stock")?;
                out.clear();
                for start in (0..base.len()).step_by(row) {
                    let r = start..start + row;
                    stats.reset();
                    stats.add(c.range.start + start, &base[r.clone()], others.iter().map(|&k| &c.values[k][r.clone()]), &mut deltas);
                    stats.interpolate(&base[r.clone()], others.iter().map(|&k| &c.values[k][r.clone()]), &mut out);
                }
                s.write(c.range.start, &out)
            });
        }
        let mut passes = s.passes(1);
        passes.each(|c| {
            stats.add(c.range.start, c.base("model_stock")?, others.iter().map(|&k| c.values[k].as_slice()), &mut deltas);
            Ok(())
        })?;
        passes.each(|c| {
            out.clear();
            stats.interpolate(c.base("model_stock")?, others.iter().map(|&k| c.values[k].as_slice()), &mut out);
            s.write(c.range.start, &out)
        })
    }
}

/// The task vectors' squared norms and pairwise dot products over a tensor or a row.
struct Stats {
    norms: Vec<LaneSum>,
    /// Pairs (i, j), i < j, in order.
    dots: Vec<LaneSum>,
}

impl Stats {
    fn new(models: usize) -> Stats {
        Stats { norms: vec![LaneSum::default(); models], dots: vec![LaneSum::default(); models * (models - 1) / 2] }
    }

    fn reset(&mut self) {
        self.norms.iter_mut().chain(&mut self.dots).for_each(|s| *s = LaneSum::default());
    }

    /// Adds the elements `first..` of the models' task vectors (`deltas` is scratch).
    fn add<'v, T: Float>(&mut self, first: usize, base: &[T], models: impl Iterator<Item = &'v [T]>, deltas: &mut [Vec<T>]) {
        for (d, w) in deltas.iter_mut().zip(models) {
            d.clear();
            d.extend(w.iter().zip(base).map(|(x, b)| *x - *b));
        }
        let mut pair = 0;
        for i in 0..deltas.len() {
            self.norms[i].add_dot(first, &deltas[i], &deltas[i]);
            for j in i + 1..deltas.len() {
                self.dots[pair].add_dot(first, &deltas[i], &deltas[j]);
                pair += 1;
            }
        }
    }

    /// t = N·cos θ / (1 + (N−1)·cos θ), cos θ the mean pairwise cosine (each clamped to
    /// [−1, 1], norms' product floored at 1e-6).
    fn t(&self) -> f64 {
        let n = self.norms.len();
        let mut cos_sum = 0.0;
        let mut pair = 0;
        for i in 0..n {
            for j in i + 1..n {
                let norms = self.norms[i].total().sqrt() * self.norms[j].total().sqrt();
                cos_sum += (self.dots[pair].total() / norms.max(1e-6)).clamp(-1.0, 1.0);
                pair += 1;
            }
        }
        let cos = cos_sum / self.dots.len() as f64;
        let count = n as f64;
        count * cos / (1.0 + (count - 1.0) * cos)
    }

    /// Appends t·mean(models) + (1 − t)·base for these elements to `out`.
    fn interpolate<'v, T: Float>(&self, base: &[T], models: impl Iterator<Item = &'v [T]>, out: &mut Vec<T>) {
        let t = self.t();
        let (t, one_minus_t, inv) = (T::of(t), T::of(1.0 - t), T::of(1.0 / self.norms.len() as f64));
        let start = out.len();
        out.resize(start + base.len(), T::zero());
        let avg = &mut out[start..];
        for w in models {
            for (a, x) in avg.iter_mut().zip(w) {
                *a += *x;
            }
        }
        for (a, b) in avg.iter_mut().zip(base) {
            *a = t * (*a * inv) + one_minus_t * *b;
        }
    }
}

impl Strategy for ModelStock {
    fn name(&self) -> &str {
        "model_stock"
    }

    fn needs_base(&self) -> bool {
        true
    }

    fn parameters(&self) -> Vec<ParamDef> {
        vec![ParamDef::flag("filter_wise", false)]
    }

    fn check(&self, p: &ParamsView<'_>) -> anyhow::Result<()> {
        let others = p.models.iter().filter(|m| !m.2).count();
        if others < 2 {
            anyhow::bail!("model_stock needs `base_model` plus at least two other models under `models:`, got {others}");
        }
        Ok(())
    }

    stream_impls!();
}
