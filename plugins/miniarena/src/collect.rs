//! `collect`: templates × seeds × experts → a traces dataset, played in parallel and written
//! in a fixed order, so the same config gives byte-identical traces.

use agentmerge_miniarena::summarize;
use agentmerge_sdk::prelude::*;
use serde_json::json;

use crate::config::{all, check_seeds, fifteen, play, templates, write_traces, ExpertSpec, PageSize, Seeds};

/// Collects expert traces in MiniArena.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Collect {
    /// Templates: names (`miniarena.form.create_incident`), categories (`form`) or `all`.
    #[serde(default = "all")]
    pub templates: Vec<String>,
    /// The task instances: `{start: 0, count: N}` = seeds `start .. start+count`.
    pub seeds: Seeds,
    /// The expert pools ("expert model × agent config"): each `{preset: perfect|strong|medium|weak,
    /// think, mistake_rate, wrong_element_rate, give_up_rate, name, model_name}`, all optional.
    pub experts: Vec<ExpertSpec>,
    /// Step limit per episode (BrowserGym's `max_steps`).
    #[serde(default = "fifteen")]
    pub max_steps: usize,
    /// How much MiniArena's pages hold: `full` (the default, WorkArena-like) or `small` (the
    /// same tasks with a fraction of the page, for small models; the traces record it).
    #[serde(default, skip_serializing_if = "PageSize::is_full")]
    pub page_size: PageSize,
}

impl NodeKind for Collect {
    const NAME: &'static str = "collect";
    const DOC: &'static str = "Plays MiniArena templates × seeds with expert policies of chosen skill and writes their traces.";

    fn resources() -> agentmerge_sdk::Resources {
        agentmerge_sdk::Resources::all_threads()
    }

    fn ports() -> Ports {
        Ports::new().output("traces", PortType::Dataset(Some("traces".into())), "one episode per template × seed × expert").output(
            "report",
            PortType::Metrics,
            "episodes, steps and success rates per expert, category and task",
        )
    }

    fn check(&self) -> Result<(), ConfigError> {
        templates(&self.templates, "templates")?;
        check_seeds(&self.seeds, "seeds")?;
        if self.experts.is_empty() {
            return Err(ConfigError::new("experts", "list at least one expert, e.g. `[{preset: strong}]`"));
        }
        for (i, e) in self.experts.iter().enumerate() {
            e.check(&format!("experts[{i}]"))?;
        }
        if self.max_steps == 0 {
            return Err(ConfigError::new("max_steps", "must be at least 1"));
        }
        Ok(())
    }

    fn run(&self, ctx: &Ctx, _inputs: Inputs) -> anyhow::Result<Outputs> {
        let tasks = templates(&self.templates, "templates").map_err(|e| anyhow!("{e}"))?;
        let experts = self.experts.iter().map(ExpertSpec::resolve).collect::<anyhow::Result<Vec<_>>>()?;
        let seeds = self.seeds.list();
        let mut jobs = Vec::new();
        for e in &experts {
            for t in &tasks {
                jobs.extend(seeds.iter().map(|s| (e, t.name, *s)));
            }
        }
        let episodes = play(ctx, &jobs, self.max_steps, self.page_size)?;
        let traces = write_traces(ctx, &episodes)?;

        let mut report = serde_json::Map::new();
        report.insert("episodes".into(), json!(episodes.len()));
        report.insert("steps".into(), json!(episodes.iter().map(|e| e.n_steps).sum::<usize>()));
        report.insert("success_rate".into(), json!(episodes.iter().filter(|e| e.success).count() as f64 / episodes.len().max(1) as f64));
        let per_expert: Vec<serde_json::Value> = experts
            .iter()
            .map(|c| {
                let mine: Vec<_> = episodes.iter().filter(|e| e.agent.model_name == c.model_name && e.agent.agent_name == c.name).cloned().collect();
                json!(summarize(&mine))
            })
            .collect();
        report.insert("experts".into(), json!(per_expert));
        tracing::info!("collected {} episodes ({} templates × {} seeds × {} experts)", episodes.len(), tasks.len(), self.seeds.count, experts.len());
        Ok(Outputs::new().with("traces", traces).with("report", report))
    }
}
