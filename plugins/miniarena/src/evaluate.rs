//! `evaluate`: plays an agent through MiniArena templates and seeds and reports its success
//! rate per task, per category and overall, with standard errors. The agents available today
//! are the experts; the trainer plugs fine-tuned models in through the SDK's `Policy` trait.

use agentmerge_miniarena::summarize;
use agentmerge_sdk::prelude::*;
use serde_json::json;

use crate::config::{all, check_seeds, fifteen, play, templates, write_traces, ExpertSpec, PageSize, Seeds};

/// Evaluates an agent in MiniArena.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Evaluate {
    /// Templates: names, categories or `all`.
    #[serde(default = "all")]
    pub templates: Vec<String>,
    /// The task instances: `{start, count}` = seeds `start .. start+count` (use seeds not
    /// seen in training).
    pub seeds: Seeds,
    /// The agent: an expert, `{preset: perfect|strong|medium|weak, think, mistake_rate,
    /// wrong_element_rate, give_up_rate, name, model_name}`, all optional.
    pub agent: ExpertSpec,
    /// Step limit per episode.
    #[serde(default = "fifteen")]
    pub max_steps: usize,
    /// How much MiniArena's pages hold: `full` (the default) or `small` (the same tasks with a
    /// fraction of the page); evaluate a model on the size it was trained on.
    #[serde(default, skip_serializing_if = "PageSize::is_full")]
    pub page_size: PageSize,
}

impl NodeKind for Evaluate {
    const NAME: &'static str = "evaluate";
    const DOC: &'static str =
        "Plays an agent through MiniArena templates and seeds; reports success rates per task, category and overall with standard errors.";

    fn resources() -> agentmerge_sdk::Resources {
        agentmerge_sdk::Resources::all_threads()
    }

    fn ports() -> Ports {
        Ports::new().output("metrics", PortType::Metrics, "overall, per_category and per_task success_rate, std_err, mean_steps; n_errors").output(
            "traces",
            PortType::Dataset(Some("traces".into())),
            "the evaluation episodes",
        )
    }

    fn check(&self) -> Result<(), ConfigError> {
        templates(&self.templates, "templates")?;
        check_seeds(&self.seeds, "seeds")?;
        self.agent.check("agent")?;
        if self.max_steps == 0 {
            return Err(ConfigError::new("max_steps", "must be at least 1"));
        }
        Ok(())
    }

    fn run(&self, ctx: &Ctx, _inputs: Inputs) -> anyhow::Result<Outputs> {
        let tasks = templates(&self.templates, "templates").map_err(|e| anyhow!("{e}"))?;
        let agent = self.agent.resolve()?;
        let seeds = self.seeds.list();
        let jobs: Vec<_> = tasks.iter().flat_map(|t| seeds.iter().map(|s| (&agent, t.name, *s))).collect();
        let episodes = play(ctx, &jobs, self.max_steps, self.page_size)?;
        let traces = write_traces(ctx, &episodes)?;
        let report = summarize(&episodes);
        tracing::info!(
            "{} / {}: success rate {:.3} ± {:.3} over {} episodes",
            report.agent.model_name,
            report.agent.agent_name,
            report.overall.success_rate,
            report.overall.std_err,
            report.overall.n
        );
        let metrics = match json!(report) {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("an EvalReport serializes to an object"),
        };
        Ok(Outputs::new().with("metrics", metrics).with("traces", traces))
    }
}
