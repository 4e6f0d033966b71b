//! `slerp`: spherical interpolation from the base model (t = 0) to the other model (t = 1),
//! over the whole tensor as one vector; plain lerp when the two are nearly colinear
//! (|cos θ| > 0.9995).

use super::{check_range, stream_impls, sums::LaneSum};
use crate::{Float, ParamDef, ParamsView, Strategy, TensorStream};

/// Spherical linear interpolation between two models.
pub struct Slerp;

/// Above this |cos θ| the vectors count as colinear and slerp falls back to lerp.
pub const DOT_THRESHOLD: f64 = 0.9995;

impl Slerp {
    /// Two passes: the norms and the dot product, then `s₀·v₀ + s₁·v₁` chunk by chunk.
    fn run<T: Float>(&self, s: &TensorStream<'_, T>) -> anyhow::Result<()> {
        let [other] = s.others()[..] else {
            anyhow::bail!("slerp takes the base model and exactly one other model");
        };
        let t = s.params.num("t")?;
        let (mut n0, mut n1, mut dot) = (LaneSum::default(), LaneSum::default(), LaneSum::default());
        let mut passes = s.passes(1);
        passes.each(|c| {
            let (v0, v1) = (c.base("slerp")?, &c.values[other]);
            n0.add_dot(c.range.start, v0, v0);
            n1.add_dot(c.range.start, v1, v1);
            dot.add_dot(c.range.start, v0, v1);
            Ok(())
        })?;
        let (s0, s1) = coefficients(t, n0.total().sqrt(), n1.total().sqrt(), dot.total());
        let (s0, s1) = (T::of(s0), T::of(s1));
        let mut out = Vec::new();
        passes.each(|c| {
            out.clear();
            out.extend(c.base("slerp")?.iter().zip(&c.values[other]).map(|(a, b)| s0 * *a + s1 * *b));
            s.write(c.range.start, &out)
        })
    }
}

/// The weights of v₀ and v₁ at `t`, from their norms and dot product: the vectors are
/// normalised (a norm below 1e-8 counts as 1), and nearly colinear ones are lerped.
fn coefficients(t: f64, n0: f64, n1: f64, dot: f64) -> (f64, f64) {
    let eps = 1e-8;
    let (d0, d1) = (if n0 > eps { n0 } else { 1.0 }, if n1 > eps { n1 } else { 1.0 });
    let cos = dot / (d0 * d1);
    if cos.abs() > DOT_THRESHOLD {
        (1.0 - t, t)
    } else {
        let theta0 = cos.acos();
        let sin0 = theta0.sin();
        let theta_t = theta0 * t;
        ((theta0 - theta_t).sin() / sin0, theta_t.sin() / sin0)
    }
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

    stream_impls!();
}
