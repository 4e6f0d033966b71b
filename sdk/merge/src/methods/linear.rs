//! `linear`: the model soup, Σ wᵢ·θᵢ, divided by Σ wᵢ when `normalize` (default true).

use super::{float_impls, tiled};
use crate::{vectorized, Float, ParamDef, ParamsView, Strategy, TensorJob};

/// Weighted average of the models (Wortsman et al. 2022, "Model soups").
pub struct Linear;

impl Linear {
    fn run<T: Float>(&self, job: &TensorJob<'_, T>) -> anyhow::Result<Vec<T>> {
        let weights = job.inputs.iter().map(|i| i.params.num("weight")).collect::<anyhow::Result<Vec<f64>>>()?;
        let total = T::of(weights.iter().sum());
        let normalize = job.params.flag("normalize")?;
        // 0 + w₀x₀ + w₁x₁ + …, then ÷ Σw: the order of the reference, vectorized across elements.
        Ok(vectorized!(tiled(
            job.len(),
            #[inline(always)]
            |r, acc| {
                for (input, w) in job.inputs.iter().zip(&weights) {
                    let w = T::of(*w);
                    for (a, x) in acc.iter_mut().zip(&input.values[r.clone()]) {
                        *a += w * *x;
                    }
                }
                if normalize {
                    for a in acc {
                        *a = *a / total;
                    }
                }
            }
        )))
    }
}

impl Strategy for Linear {
    fn name(&self) -> &str {
        "linear"
    }

    fn parameters(&self) -> Vec<ParamDef> {
        vec![ParamDef::required("weight").per_model(), ParamDef::flag("normalize", true)]
    }

    fn elementwise(&self) -> bool {
        true
    }

    fn check(&self, p: &ParamsView<'_>) -> anyhow::Result<()> {
        if p.models.is_empty() {
            anyhow::bail!("linear needs at least one model under `models:`");
        }
        let mut total = 0.0;
        for (model, params, _) in p.models {
            let w = params.num("weight")?;
            if !w.is_finite() {
                anyhow::bail!("weight of {model} is {w}");
            }
            total += w;
        }
        if p.params.flag("normalize")? && total.abs() < 1e-12 {
            anyhow::bail!("the weights sum to 0, so `normalize: true` would divide by zero; change the weights or set normalize: false");
        }
        Ok(())
    }

    float_impls!();
}
