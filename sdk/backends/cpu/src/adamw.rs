//! AdamW as `torch.optim.AdamW` (single-tensor, the CPU default) computes it: scalars in f64 and
//! then f32, elementwise in f32, in torch's operation order.
//!
//! ```text
//! g  = g·grad_scale                       (clip_grad_norm_ scales the gradients in place)
//! p  = p·(1 − lr·wd)                      param.mul_(1 - lr * weight_decay)
//! m  = m + (1−β1)·(g − m)                 exp_avg.lerp_(grad, 1 - beta1)   (= β1·m + (1−β1)·g)
//! v  = v·β2 + ((1−β2)·g)·g                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//! p  = p + (−lr/(1−β1ᵗ)·m) / (√v/√(1−β2ᵗ) + ε)   param.addcdiv_(exp_avg, denom, value=-step_size)
//! ```

use crate::elementwise::GRAIN;
use agentmerge_model::backend::AdamStep;
use rayon::prelude::*;

pub fn step(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamStep) {
    let (b1, b2, lr) = (s.beta1 as f64, s.beta2 as f64, s.lr as f64);
    let t = s.t as f64;
    let decay = (1.0 - lr * s.weight_decay as f64) as f32;
    let neg_step_size = (-lr / (1.0 - b1.powf(t))) as f32;
    let bc2_sqrt = (1.0 - b2.powf(t)).sqrt() as f32;
    let (w1, beta2, w2) = ((1.0 - b1) as f32, s.beta2, (1.0 - b2) as f32);
    let (eps, gs) = (s.eps, s.grad_scale);
    let moments = m.par_chunks_mut(GRAIN).zip(v.par_chunks_mut(GRAIN));
    p.par_chunks_mut(GRAIN).zip(g.par_chunks(GRAIN)).zip(moments).for_each(|((p, g), (m, v))| {
        for ((p, &g), (m, v)) in p.iter_mut().zip(g).zip(m.iter_mut().zip(v.iter_mut())) {
            let g = g * gs;
            *p *= decay;
            // torch's lerp: the form it uses depends on the weight's size.
            *m = if w1 < 0.5 { *m + w1 * (g - *m) } else { g - (g - *m) * (1.0 - w1) };
            *v = *v * beta2 + w2 * g * g;
            let denom = v.sqrt() / bc2_sqrt + eps;
            *p += neg_step_size * *m / denom;
        }
    });
}
