//! The task-vector family (mergekit's "generalized task arithmetic"): every model's task
//! vector Δᵢ = θᵢ − θ_base is optionally sparsified, weighted by wᵢ, optionally filtered by
//! sign election, summed, optionally divided by the summed weights, scaled by λ and added back:
//!
//! θ = θ_base + λ · Σᵢ mᵢ·wᵢ·Δᵢ / (normalize ? Σᵢ mᵢ·wᵢ : 1)
//!
//! where mᵢ = 1 for all i without sign election, and with it mᵢ = [sign(wᵢΔᵢ) = the elected
//! sign] (elected sign: that of Σᵢ wᵢΔᵢ for "sum", of Σᵢ sign(wᵢΔᵢ) for "count"; ≥ 0 counts as
//! +). `task_arithmetic`, `ties`, `dare_linear`, `dare_ties`, `breadcrumbs`,
//! `breadcrumbs_ties`, `della`, `della_linear` and `agentmerge` are this with different
//! sparsification, sign election and defaults (see [`TaskArithmetic::named`]).
//!
//! `agentmerge` adds the task vectors to the model marked `add_to: true` instead of the
//! base: θ = θ_instruct + λ·Σᵢ wᵢ(θ_agentᵢ − θ_base).

use super::{check_range, float_impls, sparsify};
use crate::{Float, ParamDef, ParamsView, Strategy, TensorJob};

/// How task vectors are sparsified before they are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sparsification {
    /// Keep the largest magnitudes (TIES).
    Magnitude,
    /// Keep each element with probability `density` (DARE).
    Random,
    /// Drop the `gamma` largest and the smallest (breadcrumbs).
    MagnitudeOutliers,
    /// Keep with magnitude-ranked probabilities (DELLA).
    Della,
}

/// How the sign of each element is elected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consensus {
    /// The sign of Σᵢ wᵢΔᵢ (TIES).
    Sum,
    /// The sign of Σᵢ sign(wᵢΔᵢ).
    Count,
}

/// One member of the family.
#[derive(Clone, Debug)]
pub struct TaskArithmetic {
    pub name: &'static str,
    pub sparsification: Option<Sparsification>,
    pub consensus: Option<Consensus>,
    pub default_normalize: bool,
    pub default_rescale: bool,
    /// Add the task vectors to the model marked `add_to: true` rather than to the base.
    pub add_to_model: bool,
}

impl TaskArithmetic {
    /// The member called `name`, with mergekit's defaults.
    pub fn named(name: &str) -> Option<TaskArithmetic> {
        use Consensus::Sum;
        use Sparsification::*;
        let (name, sparsification, consensus, default_normalize, default_rescale) = match name {
            "task_arithmetic" => ("task_arithmetic", None, None, false, false),
            "agentmerge" => ("agentmerge", None, None, false, false),
            "ties" => ("ties", Some(Magnitude), Some(Sum), true, false),
            "dare_ties" => ("dare_ties", Some(Random), Some(Sum), false, true),
            "dare_linear" => ("dare_linear", Some(Random), None, false, true),
            "breadcrumbs" => ("breadcrumbs", Some(MagnitudeOutliers), None, false, false),
            "breadcrumbs_ties" => ("breadcrumbs_ties", Some(MagnitudeOutliers), Some(Sum), false, false),
            "della" => ("della", Some(Della), Some(Sum), true, true),
            "della_linear" => ("della_linear", Some(Della), None, false, true),
            _ => return None,
        };
        Some(TaskArithmetic {
            name,
            sparsification,
            consensus,
            default_normalize,
            default_rescale,
            add_to_model: name == "agentmerge",
        })
    }

    fn consensus(&self, params: &crate::Params) -> anyhow::Result<Option<Consensus>> {
        let Some(default) = self.consensus else {
            return Ok(None);
        };
        match params.text("consensus_method", "")? {
            "" => Ok(Some(default)),
            "sum" => Ok(Some(Consensus::Sum)),
            "count" => Ok(Some(Consensus::Count)),
            other => anyhow::bail!("consensus_method must be \"sum\" or \"count\", got {other:?}"),
        }
    }

    fn run<T: Float>(&self, job: &TensorJob<'_, T>) -> anyhow::Result<Vec<T>> {
        let base = job.base(self.name)?;
        let n = job.len();
        let rescale = job.params.flag("rescale")?;
        let target = if self.add_to_model {
            let mut targets = job.inputs.iter().filter(|i| i.params.flag("add_to").unwrap_or(false));
            match (targets.next(), targets.next()) {
                (Some(t), None) => t.values,
                _ => anyhow::bail!("agentmerge needs exactly one model with `add_to: true`"),
            }
        } else {
            base
        };
        let mut weighted: Vec<Vec<T>> = Vec::new();
        let mut weights: Vec<T> = Vec::new();
        for (stream, input) in job.inputs.iter().enumerate() {
            if input.is_base || (self.add_to_model && input.params.flag("add_to")?) {
                continue;
            }
            let mut delta: Vec<T> = input.values.iter().zip(base).map(|(x, b)| *x - *b).collect();
            let density = input.params.num_or("density", 1.0)?;
            let mut rng = job.rng(stream as u64);
            match self.sparsification {
                None => {}
                Some(Sparsification::Magnitude) => sparsify::magnitude(&mut delta, density, rescale)?,
                Some(Sparsification::Random) => sparsify::bernoulli(&mut delta, density, rescale, &mut rng),
                Some(Sparsification::MagnitudeOutliers) => {
                    let gamma = input.params.num("gamma")?;
                    sparsify::magnitude_outliers(&mut delta, density, gamma, rescale)?
                }
                Some(Sparsification::Della) => {
                    let epsilon = input.params.num("epsilon")?;
                    sparsify::della(&mut delta, job.shape, density, epsilon, rescale, &mut rng)?
                }
            }
            let w = T::of(input.params.num("weight")?);
            for d in &mut delta {
                *d = *d * w;
            }
            weighted.push(delta);
            weights.push(w);
        }
        let lambda = T::of(job.params.num("lambda")?);
        let normalize = job.params.flag("normalize")?;
        let consensus = self.consensus(job.params)?;
        let sign = |x: T| {
            if x > T::zero() {
                T::one()
            } else if x < T::zero() {
                -T::one()
            } else {
                T::zero()
            }
        };
        let mut out = Vec::with_capacity(n);
        for e in 0..n {
            let (mut mixed, mut divisor) = (T::zero(), T::zero());
            match consensus {
                None => {
                    for (d, w) in weighted.iter().zip(&weights) {
                        mixed += d[e];
                        divisor += *w;
                    }
                    if divisor.abs() < T::of(1e-8) {
                        divisor = T::one();
                    }
                }
                Some(c) => {
                    let mut vote = T::zero();
                    for d in &weighted {
                        vote += match c {
                            Consensus::Sum => d[e],
                            Consensus::Count => sign(d[e]),
                        };
                    }
                    let elected = if vote >= T::zero() { T::one() } else { -T::one() };
                    for (d, w) in weighted.iter().zip(&weights) {
                        if sign(d[e]) == elected {
                            mixed += d[e];
                            divisor += *w;
                        }
                    }
                    if divisor == T::zero() {
                        divisor = T::one();
                    }
                }
            }
            if normalize {
                mixed = mixed / divisor;
            }
            out.push(target[e] + mixed * lambda);
        }
        Ok(out)
    }
}

impl Strategy for TaskArithmetic {
    fn name(&self) -> &str {
        self.name
    }

    fn needs_base(&self) -> bool {
        true
    }

    fn parameters(&self) -> Vec<ParamDef> {
        let mut p = vec![
            ParamDef::flag("normalize", self.default_normalize),
            ParamDef::flag("rescale", self.default_rescale),
            ParamDef::num("lambda", 1.0),
            ParamDef::flag("int8_mask", false),
            ParamDef::num("density", 1.0).per_model(),
        ];
        if self.add_to_model {
            p.push(ParamDef::num("weight", 1.0).per_model());
            p.push(ParamDef::flag("add_to", false).per_model());
        } else {
            p.push(ParamDef::required("weight").per_model());
        }
        if self.consensus.is_some() {
            p.push(ParamDef::text("consensus_method", ""));
        }
        match self.sparsification {
            Some(Sparsification::MagnitudeOutliers) => p.push(ParamDef::num("gamma", 0.01).per_model()),
            Some(Sparsification::Della) => p.push(ParamDef::num("epsilon", 0.15).per_model()),
            _ => {}
        }
        p
    }

    fn elementwise(&self) -> bool {
        self.sparsification.is_none()
    }

    fn check(&self, p: &ParamsView<'_>) -> anyhow::Result<()> {
        let lambda = p.params.num("lambda")?;
        if !lambda.is_finite() {
            anyhow::bail!("parameter `lambda` is {lambda}");
        }
        self.consensus(p.params)?;
        let mut targets = 0;
        let mut deltas = 0;
        for (model, params, is_base) in p.models {
            let context = |e: anyhow::Error| e.context(format!("model {model}"));
            if self.add_to_model && params.flag("add_to").map_err(context)? {
                targets += 1;
                continue;
            }
            if *is_base {
                continue;
            }
            deltas += 1;
            let w = params.num("weight").map_err(context)?;
            if !w.is_finite() {
                anyhow::bail!("weight of {model} is {w}");
            }
            let density = params.num("density").map_err(context)?;
            check_range("density", density, 0.0, 1.0, true).map_err(context)?;
            match self.sparsification {
                Some(Sparsification::Magnitude) if density < 1.0 && (density * p.numel as f64) < 1.0 => {
                    anyhow::bail!("density {density} of {model} keeps no element of this {}-element tensor; raise it (a `filter` entry can set it for this tensor only)", p.numel)
                }
                Some(Sparsification::MagnitudeOutliers) => {
                    check_range("gamma", params.num("gamma")?, 0.0, 1.0, false).map_err(context)?
                }
                Some(Sparsification::Della) => {
                    let eps = params.num("epsilon")?;
                    if density < 1.0 && (density + eps >= 1.0 || density - eps <= 0.0) {
                        anyhow::bail!("della needs density ± epsilon inside (0, 1); {model} has density {density}, epsilon {eps}");
                    }
                }
                _ => {}
            }
        }
        if self.add_to_model && targets != 1 {
            anyhow::bail!("agentmerge needs exactly one model with `parameters: {{add_to: true}}` (the instruct model the task vectors are added to), found {targets}");
        }
        if deltas == 0 {
            anyhow::bail!("{} needs at least one model besides the base (and the `add_to` model)", self.name);
        }
        Ok(())
    }

    float_impls!();
}
