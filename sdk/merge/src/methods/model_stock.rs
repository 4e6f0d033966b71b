//! `model_stock` (Jang et al. 2024): moves from the base towards the average of N ≥ 2
//! fine-tuned models by t = N·cos θ / (1 + (N−1)·cos θ), where cos θ is the mean pairwise
//! cosine between their task vectors — over the whole tensor, or per row with
//! `filter_wise: true`.

use super::float_impls;
use crate::{Float, ParamDef, ParamsView, Strategy, TensorJob};

/// Geometric interpolation between the base and the average of the models.
pub struct ModelStock;

impl ModelStock {
    fn run<T: Float>(&self, job: &TensorJob<'_, T>) -> anyhow::Result<Vec<T>> {
        let w0 = job.base("model_stock")?;
        let ws: Vec<&[T]> = job.others().map(|i| i.values).collect();
        if ws.len() < 2 {
            anyhow::bail!("model_stock needs at least two models besides the base");
        }
        let n = w0.len();
        let row = if job.params.flag("filter_wise")? { job.shape.last().map_or(n, |&d| d as usize).max(1) } else { n };
        let f = |x: T| x.to_f64().unwrap_or(0.0);
        let mut out = vec![T::zero(); n];
        for start in (0..n).step_by(row) {
            let r = start..start + row;
            let mut cos_sum = 0.0;
            let mut pairs = 0;
            for i in 0..ws.len() {
                for j in i + 1..ws.len() {
                    let (mut dot, mut ni, mut nj) = (0.0, 0.0, 0.0);
                    for k in r.clone() {
                        let (a, b) = (f(ws[i][k] - w0[k]), f(ws[j][k] - w0[k]));
                        dot += a * b;
                        ni += a * a;
                        nj += b * b;
                    }
                    cos_sum += (dot / (ni.sqrt() * nj.sqrt()).max(1e-6)).clamp(-1.0, 1.0);
                    pairs += 1;
                }
            }
            let cos = cos_sum / pairs as f64;
            let count = ws.len() as f64;
            let t = count * cos / (1.0 + (count - 1.0) * cos);
            let (t, one_minus_t, inv) = (T::of(t), T::of(1.0 - t), T::of(1.0 / count));
            for k in r {
                let mut avg = T::zero();
                for w in &ws {
                    avg += w[k];
                }
                out[k] = t * (avg * inv) + one_minus_t * w0[k];
            }
        }
        Ok(out)
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

    float_impls!();
}
