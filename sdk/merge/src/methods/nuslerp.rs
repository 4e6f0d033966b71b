//! `nuslerp`: slerp between two models at t = w₂/(w₁+w₂), over the whole tensor
//! (`nuslerp_flatten`, default true), its rows (last dimension) or its columns
//! (`nuslerp_row_wise: true`: vectors along the first dimension); with a `base_model`, the
//! two task vectors θᵢ − θ_base are slerped and added back to the base.

use super::{stream_impls, sums::LaneSum};
use crate::{Chunk, Float, ParamDef, ParamsView, Strategy, TensorStream};

/// mergekit's "NuSLERP".
pub struct NuSlerp;

/// Which vectors of a tensor are slerped.
enum Vectors {
    /// The whole tensor as one vector: a pass to measure, a pass to write.
    Whole,
    /// Each row (the last dimension, `len` contiguous elements): one pass, since a chunk
    /// holds whole rows.
    Rows(usize),
    /// Each column: elements `k + i·stride`, measured per column in one pass, written in a
    /// second.
    Columns(usize),
}

impl NuSlerp {
    fn run<T: Float>(&self, s: &TensorStream<'_, T>) -> anyhow::Result<()> {
        let [a, b] = s.others()[..] else {
            anyhow::bail!("nuslerp takes exactly two models besides the base");
        };
        let (wa, wb) = (s.inputs[a].params.num("weight")?, s.inputs[b].params.num("weight")?);
        let t = if (wa + wb).abs() < 1e-6 { 0.5 } else { wb / (wa + wb) };
        let n = s.numel;
        let vectors = if s.params.flag("nuslerp_flatten")? || s.shape.len() < 2 {
            Vectors::Whole
        } else if s.params.flag("nuslerp_row_wise")? {
            Vectors::Columns(n / (s.shape[0] as usize).max(1))
        } else {
            Vectors::Rows((s.shape[s.shape.len() - 1] as usize).max(1))
        };
        let (mut x, mut y, mut out) = (Vec::new(), Vec::new(), Vec::new());
        match vectors {
            Vectors::Whole => {
                let mut sums = Sums::default();
                let mut passes = s.passes(1);
                passes.each(|c| {
                    task_vectors(c, a, b, &mut x, &mut y);
                    sums.add(c.range.start, &x, &y);
                    Ok(())
                })?;
                let (s0, s1) = sums.coefficients(t);
                passes.each(|c| {
                    task_vectors(c, a, b, &mut x, &mut y);
                    out.clear();
                    combine(&x, &y, T::of(s0), T::of(s1), &mut out);
                    add_base(c, &mut out);
                    s.write(c.range.start, &out)
                })
            }
            Vectors::Rows(len) => s.passes(len).each(|c| {
                task_vectors(c, a, b, &mut x, &mut y);
                out.clear();
                for r in (0..x.len()).step_by(len).map(|k| k..k + len) {
                    let mut sums = Sums::default();
                    sums.add(c.range.start + r.start, &x[r.clone()], &y[r.clone()]);
                    let (s0, s1) = sums.coefficients(t);
                    combine(&x[r.clone()], &y[r], T::of(s0), T::of(s1), &mut out);
                }
                add_base(c, &mut out);
                s.write(c.range.start, &out)
            }),
            Vectors::Columns(stride) => {
                // Per column, in f64, each summed in row order (so however the tensor is cut).
                let (mut xx, mut yy, mut xy) = (vec![0f64; stride], vec![0f64; stride], vec![0f64; stride]);
                let f = |v: T| v.to_f64().unwrap_or(0.0);
                let mut passes = s.passes(stride);
                passes.each(|c| {
                    task_vectors(c, a, b, &mut x, &mut y);
                    for (xs, ys) in x.chunks(stride).zip(y.chunks(stride)) {
                        for k in 0..xs.len() {
                            let (p, q) = (f(xs[k]), f(ys[k]));
                            xx[k] += p * p;
                            yy[k] += q * q;
                            xy[k] += p * q;
                        }
                    }
                    Ok(())
                })?;
                let weights: Vec<(T, T)> = (0..stride)
                    .map(|k| {
                        let (s0, s1) = coefficients(t, xx[k], yy[k], xy[k]);
                        (T::of(s0), T::of(s1))
                    })
                    .collect();
                passes.each(|c| {
                    task_vectors(c, a, b, &mut x, &mut y);
                    out.clear();
                    for (xs, ys) in x.chunks(stride).zip(y.chunks(stride)) {
                        out.extend(xs.iter().zip(ys).zip(&weights).map(|((p, q), (s0, s1))| *s0 * *p + *s1 * *q));
                    }
                    add_base(c, &mut out);
                    s.write(c.range.start, &out)
                })
            }
        }
    }
}

/// Models `a` and `b` of the chunk, minus the base when there is one.
fn task_vectors<T: Float>(c: &Chunk<T>, a: usize, b: usize, x: &mut Vec<T>, y: &mut Vec<T>) {
    for (v, k) in [(&mut *x, a), (&mut *y, b)] {
        v.clear();
        match &c.base {
            Some(base) => v.extend(c.values[k].iter().zip(base).map(|(m, z)| *m - *z)),
            None => v.extend_from_slice(&c.values[k]),
        }
    }
}

/// Appends s₀·x + s₁·y to `out`.
fn combine<T: Float>(x: &[T], y: &[T], s0: T, s1: T, out: &mut Vec<T>) {
    out.extend(x.iter().zip(y).map(|(p, q)| s0 * *p + s1 * *q));
}

/// Adds the base back to the slerped task vectors (when there is a base).
fn add_base<T: Float>(c: &Chunk<T>, out: &mut [T]) {
    if let Some(base) = &c.base {
        for (o, z) in out.iter_mut().zip(base) {
            *o += *z;
        }
    }
}

/// Σx², Σy², Σxy over one vector.
#[derive(Default)]
struct Sums {
    xx: LaneSum,
    yy: LaneSum,
    xy: LaneSum,
}

impl Sums {
    fn add<T: Float>(&mut self, first: usize, x: &[T], y: &[T]) {
        self.xx.add_dot(first, x, x);
        self.yy.add_dot(first, y, y);
        self.xy.add_dot(first, x, y);
    }

    fn coefficients(&self, t: f64) -> (f64, f64) {
        coefficients(t, self.xx.total(), self.yy.total(), self.xy.total())
    }
}

/// mergekit's `nuslerp` weights of x and y at `t` from Σx², Σy², Σxy: norms clamped at
/// 1e-7, lerp when |sin θ| < 1e-8.
fn coefficients(t: f64, xx: f64, yy: f64, xy: f64) -> (f64, f64) {
    let (n0, n1) = (xx.sqrt().max(1e-7), yy.sqrt().max(1e-7));
    let theta = (xy / (n0 * n1)).clamp(-1.0, 1.0).acos();
    let sin = theta.sin();
    if sin.abs() < 1e-8 {
        (1.0 - t, t)
    } else {
        (((1.0 - t) * theta).sin() / sin, (t * theta).sin() / sin)
    }
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

    stream_impls!();
}
