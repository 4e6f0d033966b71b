//! One node kind per mergekit method: a list of models (and a base model for the task-vector
//! methods) in, the merged checkpoint out. Parameters are written as in mergekit: `parameters`
//! for global ones, `models: [{...}, ...]` for per-model ones in the order of the input list.

use std::path::PathBuf;

use agentmerge_merge::{builtin, MergePlan, ModelEntry, TokenizerSource};
use agentmerge_sdk::prelude::*;
use serde_json::{Map, Value as Json};

use crate::run::{check_dtype, check_settings, execute, ports_out, Output};

macro_rules! method_kind {
    ($ty:ident, $name:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $ty {
            /// Per-model parameters (e.g. `weight`, `density`), one mapping per model on the
            /// `models` input, in order; fewer entries than models leave the rest at defaults.
            #[serde(default)]
            pub models: Vec<Map<String, Json>>,
            /// Global parameters: a number, a list interpolated over layers (gradient), or
            /// `[{filter: name-substring, value: v}, {value: default}]`.
            #[serde(default)]
            pub parameters: Map<String, Json>,
            /// Take the tokenizer from the base model (`base`, the default when connected) or
            /// from model number N of the `models` input (`model:N`, from 0).
            #[serde(default)]
            pub tokenizer_source: Option<String>,
            /// Output dtype (float32, bfloat16, float16, float64); default: the inputs' dtype.
            #[serde(default)]
            pub dtype: Option<String>,
            /// Seed for the random methods (DARE, DELLA); default: the node's seed.
            #[serde(default)]
            pub seed: Option<u64>,
            /// Largest output shard in bytes (default 5 GB, as Hugging Face).
            #[serde(default)]
            pub max_shard_bytes: Option<u64>,
        }

        impl NodeKind for $ty {
            const NAME: &'static str = $name;
            const DOC: &'static str = $doc;
            fn ports() -> Ports {
                ports_out(
                    Ports::new()
                        .list_input("models", PortType::Model, "the checkpoints to merge")
                        .optional_input("base", PortType::Model, "the base model task vectors are taken against"),
                )
            }
            fn check(&self) -> Result<(), ConfigError> {
                check(self.name(), &self.models, &self.parameters, &self.tokenizer_source, &self.output())
            }
            fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
                let plan = plan(&inputs, &self.models, &self.parameters, &self.tokenizer_source, $name)?;
                execute(ctx, $name, plan, &self.output())
            }
        }

        impl $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn output(&self) -> Output {
                Output { dtype: self.dtype.clone(), seed: self.seed, max_shard_bytes: self.max_shard_bytes }
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

fn check(method: &str, models: &[Map<String, Json>], parameters: &Map<String, Json>, tokenizer_source: &Option<String>, output: &Output) -> Result<(), ConfigError> {
    builtin(method).ok_or_else(|| ConfigError::new("", format!("unknown merge method `{method}`")))?;
    check_settings(method, "parameters", parameters, false)?;
    for (i, m) in models.iter().enumerate() {
        check_settings(method, &format!("models[{i}]"), m, true)?;
    }
    match tokenizer_source.as_deref() {
        None | Some("base") => {}
        Some(s) if s.strip_prefix("model:").is_some_and(|n| n.parse::<usize>().is_ok()) => {}
        Some(s) => return Err(ConfigError::new("tokenizer_source", format!("`{s}`: use `base` or `model:N`"))),
    }
    check_dtype("dtype", &output.dtype)
}

fn plan(inputs: &Inputs, params: &[Map<String, Json>], parameters: &Map<String, Json>, tokenizer_source: &Option<String>, method: &str) -> anyhow::Result<MergePlan> {
    let models = inputs.models("models")?;
    anyhow::ensure!(params.len() <= models.len(), "`models` config has {} entries but only {} models are connected", params.len(), models.len());
    let base: Option<PathBuf> = if inputs.is_connected("base") { Some(inputs.model("base")?) } else { None };
    let entries = models
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let settings = match params.get(i) {
                Some(m) => check_settings(method, &format!("models[{i}]"), m, true).map_err(|e| anyhow!("{e}"))?,
                None => Default::default(),
            };
            Ok(ModelEntry { path: p.clone(), params: settings })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut plan = MergePlan::new(base, entries);
    plan.params = check_settings(method, "parameters", parameters, false).map_err(|e| anyhow!("{e}"))?;
    plan.tokenizer_source = match tokenizer_source.as_deref() {
        Some(s) if s.starts_with("model:") => {
            let n: usize = s["model:".len()..].parse()?;
            Some(TokenizerSource::Model(models.get(n).cloned().ok_or_else(|| anyhow!("tokenizer_source `{s}`: only {} models", models.len()))?))
        }
        _ => None,
    };
    Ok(plan)
}
