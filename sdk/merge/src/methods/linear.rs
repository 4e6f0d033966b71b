//! `linear`: the model soup, Σ wᵢ·θᵢ, divided by Σ wᵢ when `normalize` (default true).

use super::float_impls;
use crate::{Float, ParamDef, Params, ParamsView, Strategy, StreamInput, TensorJob, WeightedSum};

/// Weighted average of the models (Wortsman et al. 2022, "Model soups").
pub struct Linear;

impl Linear {
    /// Σ wᵢ·θᵢ (÷ Σ wᵢ when `normalize`): 0 + w₀x₀ + w₁x₁ + …, the order of the reference.
    fn sum(&self, params: &Params, inputs: &[StreamInput<'_>]) -> anyhow::Result<WeightedSum> {
        let terms = inputs.iter().enumerate().map(|(i, m)| Ok((i, m.params.num("weight")?))).collect::<anyhow::Result<_>>()?;
        Ok(WeightedSum { terms, centered: false, normalize: params.flag("normalize")?, onto: None })
    }

    fn run<T: Float>(&self, job: &TensorJob<'_, T>) -> anyhow::Result<Vec<T>> {
        self.sum(job.params, &job.stream_inputs())?.apply(job)
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
        // Sums this small divide by 1 in the compute type (as in task arithmetic): refused.
        if p.params.flag("normalize")? && total.abs() < 1e-8 {
            anyhow::bail!("the weights sum to 0, so `normalize: true` would divide by zero; change the weights or set normalize: false");
        }
        Ok(())
    }

    fn weighted_sum(&self, params: &Params, inputs: &[StreamInput<'_>]) -> anyhow::Result<Option<WeightedSum>> {
        self.sum(params, inputs).map(Some)
    }

    float_impls!();
}
