//! `passthrough`: copies the one model's tensors, multiplied by its optional `scale`.

use super::float_impls;
use crate::{Float, ParamDef, ParamsView, Strategy, TensorJob};

/// Copies a single model (optionally scaled).
pub struct Passthrough;

impl Passthrough {
    fn run<T: Float>(&self, job: &TensorJob<'_, T>) -> anyhow::Result<Vec<T>> {
        let [input] = job.inputs else {
            anyhow::bail!("passthrough takes exactly one model");
        };
        let scale = T::of(input.params.num("scale")?);
        Ok(input.values.iter().map(|x| *x * scale).collect())
    }
}

impl Strategy for Passthrough {
    fn name(&self) -> &str {
        "passthrough"
    }

    fn parameters(&self) -> Vec<ParamDef> {
        vec![ParamDef::num("scale", 1.0).per_model()]
    }

    fn elementwise(&self) -> bool {
        true
    }

    fn check(&self, p: &ParamsView<'_>) -> anyhow::Result<()> {
        if p.models.len() != 1 {
            anyhow::bail!("passthrough takes exactly one model under `models:`, got {}", p.models.len());
        }
        Ok(())
    }

    float_impls!();
}
