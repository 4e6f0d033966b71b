//! The optimizer step over the flat buffers: global-norm gradient clipping and AdamW (no weight
//! decay on RMSNorm weights), with the learning rate from a warm-up + decay schedule.

use serde::{Deserialize, Serialize};

use crate::{
    backend::{AdamStep, Backend, Mem},
    layout::Layout,
};

/// How the learning rate decays after the warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// Half a cosine from `lr` down to `lr · min_lr_ratio`.
    Cosine,
    /// A straight line from `lr` down to `lr · min_lr_ratio`.
    Linear,
    /// `lr` throughout.
    Constant,
}

/// The learning-rate schedule: a linear warm-up, then the decay, over `total` steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub lr: f64,
    pub warmup: u64,
    pub total: u64,
    pub decay: Decay,
    pub min_lr_ratio: f64,
}

impl Schedule {
    /// The learning rate of optimizer step `s` (0-based): `lr·(s+1)/warmup` during the warm-up
    /// (so the first step does learn), then the decay over the remaining steps.
    pub fn lr_at(&self, s: u64) -> f64 {
        if s < self.warmup {
            return self.lr * (s + 1) as f64 / self.warmup as f64;
        }
        let min = self.lr * self.min_lr_ratio;
        let progress = ((s - self.warmup) as f64 / (self.total.saturating_sub(self.warmup)).max(1) as f64).min(1.0);
        match self.decay {
            Decay::Constant => self.lr,
            Decay::Linear => self.lr - (self.lr - min) * progress,
            Decay::Cosine => min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        }
    }
}

/// AdamW's constants and clipping.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Clip the gradients' global L2 norm to this (`None`: no clipping).
    pub grad_clip: Option<f64>,
}

/// What one optimizer step did.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    /// The gradients' global norm before clipping.
    pub grad_norm: f64,
    pub lr: f64,
}

impl AdamW {
    /// Clips and applies the gradients in [`Mem::Grads`] as step `t` (1-based) with learning rate
    /// `lr`. A non-finite gradient norm is returned as is and nothing is updated: the caller
    /// stops with an error naming the step.
    pub fn step(&self, be: &mut dyn Backend, layout: &Layout, t: u64, lr: f64) -> StepInfo {
        let norm = layout.tensors.iter().map(|x| be.sum_squares(x.span(Mem::Grads))).sum::<f64>().sqrt();
        if !norm.is_finite() {
            return StepInfo { grad_norm: norm, lr };
        }
        // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
        let grad_scale = match self.grad_clip {
            Some(max) => (max / (norm + 1e-6)).min(1.0),
            None => 1.0,
        };
        for x in &layout.tensors {
            let step = AdamStep {
                lr: lr as f32,
                beta1: self.beta1 as f32,
                beta2: self.beta2 as f32,
                eps: self.eps as f32,
                weight_decay: if x.decay { self.weight_decay as f32 } else { 0.0 },
                t,
                grad_scale: grad_scale as f32,
            };
            be.adamw(x.span(Mem::Params), x.span(Mem::Grads), x.span(Mem::AdamM), x.span(Mem::AdamV), step);
        }
        StepInfo { grad_norm: norm, lr }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        let s = Schedule { lr: 1.0, warmup: 2, total: 4, decay: Decay::Cosine, min_lr_ratio: 0.1 };
        let lrs: Vec<f64> = (0..5).map(|i| s.lr_at(i)).collect();
        assert_eq!(&lrs[..3], &[0.5, 1.0, 1.0]);
        assert!((lrs[3] - 0.55).abs() < 1e-12, "{lrs:?}");
        assert!((lrs[4] - 0.1).abs() < 1e-12);
        let lin = Schedule { decay: Decay::Linear, ..s };
        assert!((lin.lr_at(3) - 0.55).abs() < 1e-12);
        assert_eq!(Schedule { decay: Decay::Constant, ..s }.lr_at(3), 1.0);
    }
}
