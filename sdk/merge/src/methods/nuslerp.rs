//! `nuslerp`: slerp between two models at t = w₂/(w₁+w₂), over the whole tensor
//! (`nuslerp_flatten`, default true), its rows (last dimension) or its columns
//! (`nuslerp_row_wise: true`: vectors along the first dimension); with a `base_model`, the
//! two task vectors θᵢ − θ_base are slerped and added back to the base.

use super::float_impls;
use crate::{Float, ParamDef, ParamsView, Strategy, TensorJob};

/// mergekit's "NuSLERP".
pub struct NuSlerp;

impl NuSlerp {
    fn run<T: Float>(&self, job: &TensorJob<'_, T>) -> anyhow::Result<Vec<T>> {
        let models: Vec<_> = job.others().collect();
        let [a, b] = models[..] else {
            anyhow::bail!("nuslerp takes exactly two models besides the base");
        };
        let (wa, wb) = (a.params.num("weight")?, b.params.num("weight")?);
        let t = if (wa + wb).abs() < 1e-6 { 0.5 } else { wb / (wa + wb) };
        let (mut v0, mut v1) = (a.values.to_vec(), b.values.to_vec());
        if let Some(base) = job.base {
            for ((x, y), z) in v0.iter_mut().zip(&mut v1).zip(base) {
                *x = *x - *z;
                *y = *y - *z;
            }
        }
        let n = v0.len();
        // Vector k is elements start(k) + i*stride for i in 0..len.
        let (count, len, stride) = if job.params.flag("nuslerp_flatten")? || job.shape.len() < 2 {
            (1, n, 1)
        } else if job.params.flag("nuslerp_row_wise")? {
            let rows = job.shape[0] as usize;
            (n / rows, rows, n / rows)
        } else {
            let cols = job.shape[job.shape.len() - 1] as usize;
            (n / cols, cols, 1)
        };
        let start = |k: usize| if stride == 1 { k * len } else { k };
        let mut out = vec![T::zero(); n];
        let mut x = vec![T::zero(); len];
        let mut y = vec![T::zero(); len];
        for k in 0..count {
            for i in 0..len {
                x[i] = v0[start(k) + i * stride];
                y[i] = v1[start(k) + i * stride];
            }
            let r = nuslerp(t, &x, &y);
            for (i, v) in r.into_iter().enumerate() {
                out[start(k) + i * stride] = v;
            }
        }
        if let Some(base) = job.base {
            for (o, z) in out.iter_mut().zip(base) {
                *o = *o + *z;
            }
        }
        Ok(out)
    }
}

/// mergekit's `nuslerp` of two vectors: norms clamped at 1e-7, lerp when |sin θ| < 1e-8.
fn nuslerp<T: Float>(t: f64, v0: &[T], v1: &[T]) -> Vec<T> {
    let f = |x: &T| x.to_f64().unwrap_or(0.0);
    let n0 = v0.iter().map(|x| f(x) * f(x)).sum::<f64>().sqrt().max(1e-7);
    let n1 = v1.iter().map(|x| f(x) * f(x)).sum::<f64>().sqrt().max(1e-7);
    let cos: f64 = v0.iter().zip(v1).map(|(a, b)| f(a) / n0 * (f(b) / n1)).sum();
    let theta = cos.clamp(-1.0, 1.0).acos();
    let sin = theta.sin();
    let (s0, s1) = if sin.abs() < 1e-8 { (1.0 - t, t) } else { (((1.0 - t) * theta).sin() / sin, (t * theta).sin() / sin) };
    let (s0, s1) = (T::of(s0), T::of(s1));
    v0.iter().zip(v1).map(|(a, b)| s0 * *a + s1 * *b).collect()
}

impl Strategy for NuSlerp {
    fn name(&self) -> &str {
        "nuslerp"
    }

    fn parameters(&self) -> Vec<ParamDef> {
        vec![ParamDef::required("weight").per_model(), ParamDef::flag("nuslerp_row_wise", false), ParamDef::flag("nuslerp_flatten", true)]
    }

    fn check(&self, p: &ParamsView<'_>) -> anyhow::Result<()> {
        let others = p.models.iter().filter(|m| !m.2).count();
        if others != 2 {
            anyhow::bail!("nuslerp takes exactly two models under `models:` (the base model, if any, must not be one of them), got {others}");
        }
        Ok(())
    }

    float_impls!();
}
