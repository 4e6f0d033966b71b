//! AgentMerge in one node: θ = θ_instruct + λ·w·(θ_agent − θ_base), where θ_base is the model
//! the agent was fine-tuned from. Sweep `lambda` to trace the paper's curves; connect a
//! trainer's `checkpoints` to `agent_checkpoints` to merge every checkpoint of the agent's
//! fine-tuning run (the paper's Figure 3), one merged checkpoint per training step.

use std::path::{Path, PathBuf};

use agentmerge_merge::{
    builtin,
    node::{check_dtype, execute, execute_checkpoints, OutputOptions},
    MergePlan, ModelEntry, Setting, Settings,
};
use agentmerge_sdk::{prelude::*, PortSpec};

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

impl AgentMerge {
    /// The plan that adds λ·(agent − base) to `instruct`, with instruct's tokenizer.
    fn plan(&self, instruct: &Path, agent: &Path, base: &Path) -> anyhow::Result<MergePlan> {
        let mut add_to = Settings::default();
        add_to.insert("add_to".into(), Setting::from_json(&serde_json::json!(true)).map_err(|e| anyhow!(e))?);
        let mut plan = MergePlan::new(
            Some(base.to_path_buf()),
            vec![ModelEntry { path: instruct.to_path_buf(), params: add_to }, ModelEntry { path: agent.to_path_buf(), params: Settings::default() }],
        );
        plan.params.insert("lambda".into(), Setting::num(self.lambda));
        plan.tokenizer_source = Some(agentmerge_merge::TokenizerSource::Model(instruct.to_path_buf()));
        Ok(plan)
    }
}

impl NodeKind for AgentMerge {
    const NAME: &'static str = "agentmerge";
    const DOC: &'static str = "AgentMerge: instruct + λ·(agent − base), the agentic vector of a model fine-tuned on agent traces added to an instruction-tuned model; with `agent_checkpoints`, once per checkpoint of the agent's training run.";

    fn ports() -> Ports {
        let mut p = Ports::new().input("instruct", PortType::Model, "the instruction-tuned model that receives the agentic vector").optional_input(
            "agent",
            PortType::Model,
            "the model fine-tuned on agent traces (behaviour cloning); connect it, `agent_checkpoints`, or both",
        );
        p.inputs.push(PortSpec {
            name: "agent_checkpoints".into(),
            ty: PortType::Model,
            list: true,
            optional: true,
            doc: "checkpoints of the agent's fine-tuning run (a trainer's `checkpoints`), each merged on its own into `checkpoints`".into(),
        });
        p.input("base", PortType::Model, "the model the agent was fine-tuned from")
            .output(
                "model",
                PortType::Model,
                "the merged checkpoint (Hugging Face format): of `agent`, else of the last `agent_checkpoints` entry (without its trainer_state.json)",
            )
            .output(
                "report",
                PortType::Metrics,
                "tensors, parameters, bytes read and written, time, warnings; with `agent_checkpoints`, also `checkpoints`: name, step, seconds, bytes, warnings of each",
            )
            .list_output(
                "checkpoints",
                PortType::Model,
                "one merged model per `agent_checkpoints` entry, in the same order, each with that checkpoint's trainer_state.json (its global_step); empty when not connected",
            )
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !self.lambda.is_finite() {
            return Err(ConfigError::new("lambda", "must be a finite number"));
        }
        check_dtype("dtype", &self.dtype)
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let instruct = inputs.model("instruct")?;
        let base = inputs.model("base")?;
        let agent: Option<PathBuf> = if inputs.is_connected("agent") { Some(inputs.model("agent")?) } else { None };
        let checkpoints = inputs.models("agent_checkpoints")?;
        let strategy = builtin("agentmerge").expect("agentmerge is built in");
        let out = OutputOptions { dtype: self.dtype.clone(), seed: None, max_shard_bytes: self.max_shard_bytes };
        let plan_for = |agent: &Path| self.plan(&instruct, agent, &base);
        match (agent, checkpoints.is_empty()) {
            (None, true) => bail!(
                "nothing to merge: connect `agent` (one fine-tuned model) or `agent_checkpoints` (a list, e.g. a trainer's `checkpoints` output), or both"
            ),
            (Some(agent), true) => Ok(execute(ctx, strategy.as_ref(), plan_for(&agent)?, &out)?.with_list("checkpoints", Vec::new())),
            (agent, false) => execute_checkpoints(ctx, strategy.as_ref(), agent.as_deref(), &checkpoints, &plan_for, &out),
        }
    }
}
