//! One node kind per built-in method: a marker type naming the method, made a node by the
//! SDK's [`StrategyNode`]. Parameters are written as in mergekit (see docs/merging.md).

use agentmerge_merge::{builtin, node::StrategyKind, Strategy};

macro_rules! method_kind {
    ($ty:ident, $name:literal, $doc:literal) => {
        #[doc = $doc]
        pub enum $ty {}

        impl StrategyKind for $ty {
            const NAME: &'static str = $name;
            const DOC: &'static str = $doc;
            fn strategy() -> Box<dyn Strategy> {
                builtin($name).expect("a built-in method")
            }
        }
    };
}

method_kind!(Linear, "linear", "Model soup: a weighted average of the models (mergekit `linear`; weights normalized by default).");
method_kind!(TaskArithmetic, "task_arithmetic", "Task arithmetic: base + λ·Σ wᵢ(θᵢ − base).");
method_kind!(Ties, "ties", "TIES: keep the top-density |Δ| per tensor, elect signs by Σ wᵢΔᵢ, average the agreeing deltas.");
method_kind!(DareLinear, "dare_linear", "DARE: drop deltas at random (keep with probability density), rescale, add linearly.");
method_kind!(DareTies, "dare_ties", "DARE with TIES sign election.");
method_kind!(Breadcrumbs, "breadcrumbs", "Model Breadcrumbs: drop the largest (gamma) and the smallest deltas, add linearly.");
method_kind!(BreadcrumbsTies, "breadcrumbs_ties", "Model Breadcrumbs with TIES sign election.");
method_kind!(Della, "della", "DELLA: magnitude-ranked random dropping (epsilon) with TIES sign election.");
method_kind!(DellaLinear, "della_linear", "DELLA without sign election.");
method_kind!(Slerp, "slerp", "Spherical interpolation between the base and one other model by `t` (lerp when nearly parallel).");
method_kind!(Nuslerp, "nuslerp", "Normalized SLERP between two models (or two task vectors with a base), by weights.");
method_kind!(ModelStock, "model_stock", "Model Stock: interpolate the average of the models toward the base by their geometry.");
method_kind!(Passthrough, "passthrough", "Passthrough: copy one model's tensors unchanged (with an optional `scale`).");
