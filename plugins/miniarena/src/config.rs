//! What the kinds share: config pieces (which templates, which seeds, which expert) and
//! playing episodes in parallel into a trace file.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
};

use agentmerge_miniarena::{rollout_env, select_templates, Env, Episode, Expert, ExpertConfig, TemplateInfo};
pub use agentmerge_miniarena::{PageSize, Seeds};
use agentmerge_sdk::prelude::*;
use agentmerge_traces::write_episodes;
use rayon::prelude::*;

/// Checks the seeds of config field `field`.
pub fn check_seeds(seeds: &Seeds, field: &str) -> Result<(), ConfigError> {
    match seeds.problem() {
        Some((sub, message)) => Err(ConfigError::new(format!("{field}.{sub}"), message)),
        None => Ok(()),
    }
}

/// An expert: a preset (`perfect`, `strong`, `medium`, `weak`), with any field overridden.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpertSpec {
    /// The preset to start from (default `perfect`).
    #[serde(default)]
    pub preset: Option<String>,
    /// The agent configuration's name recorded in traces (AgentLab's `agent_name`).
    #[serde(default)]
    pub name: Option<String>,
    /// The emulated model's name recorded in traces (`chat_model_args.model_name`).
    #[serde(default)]
    pub model_name: Option<String>,
    /// Per-step probability of a plausible mistake (typo, wrong option, malformed action).
    #[serde(default)]
    pub mistake_rate: Option<f64>,
    /// Per-step probability of acting on a wrong element.
    #[serde(default)]
    pub wrong_element_rate: Option<f64>,
    /// Per-step probability of giving up.
    #[serde(default)]
    pub give_up_rate: Option<f64>,
    /// Write a chain of thought for every step (default true; `false` also drops the `-cot`
    /// from the agent name).
    #[serde(default)]
    pub think: Option<bool>,
}

impl ExpertSpec {
    pub fn resolve(&self) -> anyhow::Result<ExpertConfig> {
        let mut c = ExpertConfig::preset(self.preset.as_deref().unwrap_or("perfect"))?;
        if self.think == Some(false) {
            c = c.without_think();
        }
        if let Some(n) = &self.name {
            c.name = n.clone();
        }
        if let Some(m) = &self.model_name {
            c.model_name = m.clone();
        }
        if let Some(r) = self.mistake_rate {
            c.mistake_rate = r;
        }
        if let Some(r) = self.wrong_element_rate {
            c.wrong_element_rate = r;
        }
        if let Some(r) = self.give_up_rate {
            c.give_up_rate = r;
        }
        c.validate()?;
        Ok(c)
    }

    pub fn check(&self, field: &str) -> Result<(), ConfigError> {
        self.resolve().map(|_| ()).map_err(|e| ConfigError::new(field, format!("{e:#}")))
    }
}

/// Templates by name (`miniarena.form.create_incident`), category (`form`) or `all`.
pub fn templates(selectors: &[String], field: &str) -> Result<Vec<&'static TemplateInfo>, ConfigError> {
    let s: Vec<&str> = selectors.iter().map(String::as_str).collect();
    select_templates(&s).map_err(|e| {
        let categories = agentmerge_miniarena::CATEGORIES.join(", ");
        ConfigError::new(field, format!("{e:#}; besides template names, use a category ({categories}) or `all`"))
    })
}

pub fn all() -> Vec<String> {
    vec!["all".into()]
}

pub fn fifteen() -> usize {
    agentmerge_miniarena::DEFAULT_MAX_STEPS
}

/// Plays every (expert, template, seed) job in parallel on pages of `size`, returning the
/// episodes in job order (so the trace file does not depend on scheduling), with progress and
/// cancellation.
pub fn play(ctx: &Ctx, jobs: &[(&ExpertConfig, &str, u64)], max_steps: usize, size: PageSize) -> anyhow::Result<Vec<Episode>> {
    let total = jobs.len() as u64;
    let done = AtomicU64::new(0);
    jobs.par_iter()
        .map(|(expert, task, seed)| {
            ctx.check()?;
            let ep = rollout_env(Env::with_size(task, *seed, max_steps, size)?, &mut Expert::new((*expert).clone())?)?;
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            if d.is_multiple_of(64) || d == total {
                ctx.progress(d, total, "episodes");
            }
            Ok(ep)
        })
        .collect()
}

/// Writes episodes as the node's `traces.jsonl.zst`.
pub fn write_traces(ctx: &Ctx, episodes: &[Episode]) -> anyhow::Result<Value> {
    let path: PathBuf = ctx.out_path("traces.jsonl.zst")?;
    write_episodes(&path, episodes)?;
    Ok(Value::Dataset { schema: "traces".into(), path })
}
