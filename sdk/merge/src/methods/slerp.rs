//! `slerp`: spherical interpolation from the base model (t = 0) to the other model (t = 1),
//! over the whole tensor as one vector; plain lerp when the two are nearly colinear
//! (|cos θ| > 0.9995).

use super::{check_range, float_impls};
use crate::{Float, ParamDef, ParamsView, Strategy, TensorJob};

/// Spherical linear interpolation between two models.
pub struct Slerp;

/// Above this |cos θ| the vectors count as colinear and slerp falls back to lerp.
pub const DOT_THRESHOLD: f64 = 0.9995;

impl Slerp {
    fn run<T: Float>(&self, job: &TensorJob<'_, T>) -> anyhow::Result<Vec<T>> {
        let v0 = job.base("slerp")?;
        let mut others = job.others();
        let (Some(other), None) = (others.next(), others.next()) else {
            anyhow::bail!("slerp takes the base model and exactly one other model");
        };
        let t = job.params.num("t")?;
        Ok(slerp(t, v0, other.values))
    }
}

/// Slerp of two equally long vectors.
pub fn slerp<T: Float>(t: f64, v0: &[T], v1: &[T]) -> Vec<T> {
    let norm = |v: &[T]| v.iter().map(|x| x.to_f64().unwrap_or(0.0).powi(2)).sum::<f64>().sqrt();
    let eps = 1e-8;
    let (n0, n1) = (norm(v0), norm(v1));
    let (d0, d1) = (if n0 > eps { n0 } else { 1.0 }, if n1 > eps { n1 } else { 1.0 });
    let dot: f64 = v0.iter().zip(v1).map(|(a, b)| a.to_f64().unwrap_or(0.0) / d0 * (b.to_f64().unwrap_or(0.0) / d1)).sum();
    let (s0, s1) = if dot.abs() > DOT_THRESHOLD {
        (1.0 - t, t)
    } else {
        let theta0 = dot.acos();
        let sin0 = theta0.sin();
        let theta_t = theta0 * t;
        ((theta0 - theta_t).sin() / sin0, theta_t.sin() / sin0)
    };
    let (s0, s1) = (T::of(s0), T::of(s1));
    v0.iter().zip(v1).map(|(a, b)| s0 * *a + s1 * *b).collect()
}

impl Strategy for Slerp {
    fn name(&self) -> &str {
        "slerp"
    }

    fn needs_base(&self) -> bool {
        true
    }

    fn parameters(&self) -> Vec<ParamDef> {
        vec![ParamDef::required("t")]
    }

    fn check(&self, p: &ParamsView<'_>) -> anyhow::Result<()> {
        let others = p.models.iter().filter(|m| !m.2).count();
        if others != 1 {
            anyhow::bail!("slerp takes `base_model` plus exactly one other model under `models:`, got {others} others");
        }
        check_range("t", p.params.num("t")?, 0.0, 1.0, false)
    }

    float_impls!();
}
