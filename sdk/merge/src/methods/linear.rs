//! `linear`: the model soup, Σ wᵢ·θᵢ, divided by Σ wᵢ when `normalize` (default true).

use super::float_impls;
use crate::{Float, ParamDef, ParamsView, Strategy, TensorJob};

/// Weighted average of the models (Wortsman et al. 2022, "Model soups").
pub struct Linear;

impl Linear {
    fn run<T: Float>(&self, job: &TensorJob<'_, T>) -> anyhow::Result<Vec<T>> {
        let mut out = vec![T::zero(); job.len()];
        let mut total = 0.0;
        for input in job.inputs {
            let w = input.params.num("weight")?;
            total += w;
            let w = T::of(w);
            for (o, x) in out.iter_mut().zip(input.values) {
                *o += w * *x;
            }
        }
        if job.params.flag("normalize")? {
            let total = T::of(total);
            for o in &mut out {
                *o = *o / total;
            }
        }
        Ok(out)
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
