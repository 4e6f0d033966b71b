//! AgentMerge in one node: θ = θ_instruct + λ·w·(θ_agent − θ_base), where θ_base is the model
//! the agent was fine-tuned from. Sweep `lambda` to trace the paper's curves.

use agentmerge_merge::{
    builtin,
    node::{check_dtype, execute, merge_outputs, OutputOptions},
    MergePlan, ModelEntry, Setting, Settings,
};
use agentmerge_sdk::prelude::*;

/// Adds the agentic vector (agent − base) to an instruction-tuned model.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentMerge {
    /// Scale of the agentic vector (λ).
    #[serde(default = "one")]
    pub lambda: f64,
    /// Output dtype (float32, bfloat16, float16, float64); default: the inputs' dtype.
    #[serde(default)]
    pub dtype: Option<String>,
    /// Largest output shard in bytes (default 5 GB, as Hugging Face).
    #[serde(default)]
    pub max_shard_bytes: Option<u64>,
}

fn one() -> f64 {
    1.0
}

impl NodeKind for AgentMerge {
    const NAME: &'static str = "agentmerge";
    const DOC: &'static str =
        "AgentMerge: instruct + λ·(agent − base), the agentic vector of a model fine-tuned on agent traces added to an instruction-tuned model.";

    fn ports() -> Ports {
        merge_outputs(
            Ports::new()
                .input("instruct", PortType::Model, "the instruction-tuned model that receives the agentic vector")
                .input("agent", PortType::Model, "the model fine-tuned on agent traces (behaviour cloning)")
                .input("base", PortType::Model, "the model the agent was fine-tuned from"),
        )
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !self.lambda.is_finite() {
            return Err(ConfigError::new("lambda", "must be a finite number"));
        }
        check_dtype("dtype", &self.dtype)
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let mut add_to = Settings::default();
        add_to.insert("add_to".into(), Setting::from_json(&serde_json::json!(true)).map_err(|e| anyhow!(e))?);
        let mut plan = MergePlan::new(
            Some(inputs.model("base")?),
            vec![ModelEntry { path: inputs.model("instruct")?, params: add_to }, ModelEntry { path: inputs.model("agent")?, params: Settings::default() }],
        );
        plan.params.insert("lambda".into(), Setting::num(self.lambda));
        plan.tokenizer_source = Some(agentmerge_merge::TokenizerSource::Model(inputs.model("instruct")?));
        let strategy = builtin("agentmerge").expect("agentmerge is built in");
        execute(ctx, strategy.as_ref(), plan, &OutputOptions { dtype: self.dtype.clone(), seed: None, max_shard_bytes: self.max_shard_bytes })
    }
}
