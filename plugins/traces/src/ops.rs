//! The dataset operations as nodes. Each config is the SDK operation's own config struct
//! (`#[serde(transparent)]`, so `with:` holds its fields directly and an unknown field is an
//! error naming it), except `split`, whose tagged-enum config is flattened into plain fields
//! so that every field has a line to point at and `agentmerge plugins` can list them.

use agentmerge_sdk::prelude::*;
use agentmerge_traces::ops::{self, DedupConfig, FilterConfig, MixConfig, SplitConfig, StatsConfig, ThinkConfig};

use crate::{metrics, read_input, traces_type, write_output};

/// A node kind whose config is an SDK config struct as is: its schema is the struct's, inlined,
/// so `agentmerge plugins` lists the fields (the derive for `transparent` gives a `$ref`).
macro_rules! schema_of {
    ($node:ty, $cfg:ty) => {
        impl JsonSchema for $node {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                <$cfg as JsonSchema>::schema_name()
            }
            fn schema_id() -> std::borrow::Cow<'static, str> {
                <$cfg as JsonSchema>::schema_id()
            }
            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                <$cfg as JsonSchema>::json_schema(generator)
            }
        }
    };
}

schema_of!(Filter, FilterConfig);
schema_of!(Think, ThinkConfig);
schema_of!(Dedup, DedupConfig);
schema_of!(Mix, MixConfig);
schema_of!(Stats, StatsConfig);

fn one_in_one_out(input_doc: &str, output_doc: &str, report_doc: &str) -> Ports {
    Ports::new().input("traces", traces_type(), input_doc).output("traces", traces_type(), output_doc).output("report", PortType::Metrics, report_doc)
}

// ---------------------------------------------------------------------------------------------

/// Keeps successful episodes (and/or those above a reward threshold).
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct Filter(pub FilterConfig);

impl NodeKind for Filter {
    const NAME: &'static str = "filter";
    const DOC: &'static str = "Keeps the episodes that succeeded (`success_only`, the default) and/or whose cum_reward is at least `min_reward`, in order.";

    fn ports() -> Ports {
        one_in_one_out("episodes", "the episodes kept", "kept, dropped, dropped_not_success, dropped_low_reward")
    }

    fn check(&self) -> Result<(), ConfigError> {
        match self.0.min_reward {
            Some(m) if !m.is_finite() => Err(ConfigError::new("min_reward", format!("must be a finite number, got {m}"))),
            _ => Ok(()),
        }
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let (kept, report) = ops::filter(read_input(&inputs, "traces")?, &self.0)?;
        tracing::info!("kept {} episodes, dropped {}", report.kept, report.dropped);
        Ok(Outputs::new().with("traces", write_output(ctx, "traces", &kept)?).with("report", metrics(&report)?))
    }
}

// ---------------------------------------------------------------------------------------------

/// The chain-of-thought variant of a dataset.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct Think(pub ThinkConfig);

impl NodeKind for Think {
    const NAME: &'static str = "think";
    const DOC: &'static str = "Chain-of-thought variant: `with_think` keeps fully-thought episodes, `without_think` strips thoughts (agent name +nothink), `both` is the first followed by the second.";

    fn ports() -> Ports {
        one_in_one_out("episodes", "the variant", "episodes, with_think, without_think, dropped_missing_think")
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let (out, report) = ops::think_variant(read_input(&inputs, "traces")?, &self.0);
        tracing::info!("{} episodes ({} with thoughts, {} without)", report.episodes, report.with_think, report.without_think);
        Ok(Outputs::new().with("traces", write_output(ctx, "traces", &out)?).with("report", metrics(&report)?))
    }
}

// ---------------------------------------------------------------------------------------------

/// Which generalization a split measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SplitKind {
    /// Held-out seeds (instances) of templates seen in training.
    InterTask,
    /// Held-out templates or whole categories.
    CrossTask,
}

/// Splits into train and test (the fields of `agentmerge_traces::ops::SplitConfig`, flat).
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// `inter_task` (held-out instances of seen templates: `test_fraction`, `split_seed`) or
    /// `cross_task` (held-out templates and categories: `held_out_tasks`, `held_out_categories`).
    pub kind: SplitKind,
    /// inter_task: expected fraction of each template's seeds held out for test, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_fraction: Option<f64>,
    /// inter_task: changes which seeds are held out (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_seed: Option<u64>,
    /// cross_task: task templates (`task_name`) held out for the test set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_out_tasks: Vec<String>,
    /// cross_task: categories held out for the test set (every template of each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_out_categories: Vec<String>,
    /// cross_task: a held-out name absent from the data is listed in the report
    /// (`missing_held_out`) and warned about instead of being an error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_missing: bool,
}

impl Split {
    /// The SDK's config, or an error naming the field that does not fit the kind.
    pub fn config(&self) -> Result<SplitConfig, ConfigError> {
        let only = |field: &str, kind: &str| ConfigError::new(field, format!("applies only to `kind: {kind}`"));
        match self.kind {
            SplitKind::InterTask => {
                if !self.held_out_tasks.is_empty() {
                    return Err(only("held_out_tasks", "cross_task"));
                }
                if !self.held_out_categories.is_empty() {
                    return Err(only("held_out_categories", "cross_task"));
                }
                if self.allow_missing {
                    return Err(only("allow_missing", "cross_task"));
                }
                let f = self.test_fraction.ok_or_else(|| ConfigError::new("test_fraction", "an inter_task split needs `test_fraction` (between 0 and 1)"))?;
                if !(0.0..=1.0).contains(&f) {
                    return Err(ConfigError::new("test_fraction", format!("must be between 0 and 1, got {f}")));
                }
                Ok(SplitConfig::InterTask { test_fraction: f, split_seed: self.split_seed.unwrap_or(0) })
            }
            SplitKind::CrossTask => {
                if self.test_fraction.is_some() {
                    return Err(only("test_fraction", "inter_task"));
                }
                if self.split_seed.is_some() {
                    return Err(only("split_seed", "inter_task"));
                }
                if self.held_out_tasks.is_empty() && self.held_out_categories.is_empty() {
                    return Err(ConfigError::new("held_out_tasks", "a cross_task split needs `held_out_tasks` or `held_out_categories` (none given)"));
                }
                Ok(SplitConfig::CrossTask {
                    held_out_tasks: self.held_out_tasks.clone(),
                    held_out_categories: self.held_out_categories.clone(),
                    allow_missing: self.allow_missing,
                })
            }
        }
    }
}

impl NodeKind for Split {
    const NAME: &'static str = "split";
    const DOC: &'static str = "Splits episodes into train and test: `inter_task` holds out seeds of seen templates (stable per instance), `cross_task` holds out whole templates or categories.";

    fn ports() -> Ports {
        Ports::new()
            .input("traces", traces_type(), "episodes")
            .output("train", traces_type(), "the training episodes, in input order")
            .output("test", traces_type(), "the held-out episodes, in input order")
            .output("report", PortType::Metrics, "train/test episodes and instances, test_tasks, tasks_only_in_test, missing_held_out")
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.config().map(|_| ())
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let cfg = self.config().map_err(|e| anyhow!("{e}"))?;
        let s = ops::split(read_input(&inputs, "traces")?, &cfg)?;
        tracing::info!("train {} episodes, test {}", s.report.train_episodes, s.report.test_episodes);
        if !s.report.missing_held_out.is_empty() {
            tracing::warn!("held out but absent from the data (allow_missing): {}", s.report.missing_held_out.join(", "));
        }
        if !s.report.tasks_only_in_test.is_empty() {
            tracing::warn!("templates with every seed in the test set: {}", s.report.tasks_only_in_test.join(", "));
        }
        Ok(Outputs::new()
            .with("train", write_output(ctx, "train", &s.train)?)
            .with("test", write_output(ctx, "test", &s.test)?)
            .with("report", metrics(&s.report)?))
    }
}

// ---------------------------------------------------------------------------------------------

/// Removes repeated episodes.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct Dedup(pub DedupConfig);

impl NodeKind for Dedup {
    const NAME: &'static str = "dedup";
    const DOC: &'static str =
        "Keeps the first episode of each (task_name, seed, action sequence, has thoughts) group; `per_agent` also requires the same agent.";

    fn ports() -> Ports {
        one_in_one_out("episodes", "the episodes kept, in input order", "kept, removed")
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let (kept, report) = ops::dedup(read_input(&inputs, "traces")?, &self.0);
        tracing::info!("kept {} episodes, removed {} duplicates", report.kept, report.removed);
        Ok(Outputs::new().with("traces", write_output(ctx, "traces", &kept)?).with("report", metrics(&report)?))
    }
}

// ---------------------------------------------------------------------------------------------

/// Mixes pools by weight.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct Mix(pub MixConfig);

impl NodeKind for Mix {
    const NAME: &'static str = "mix";
    const DOC: &'static str = "Mixes pools of episodes (e.g. one per expert model × agent config) into one dataset whose composition follows `weights`, sampled without replacement and shuffled, deterministic for `seed`.";

    fn ports() -> Ports {
        Ports::new().list_input("pools", traces_type(), "the pools, in the order of `weights`").output("traces", traces_type(), "the mixed episodes").output(
            "report",
            PortType::Metrics,
            "episodes, taken and available per pool, repeated",
        )
    }

    fn check(&self) -> Result<(), ConfigError> {
        let w = &self.0.weights;
        if w.is_empty() {
            return Err(ConfigError::new("weights", "give one weight per pool"));
        }
        if let Some((i, x)) = w.iter().enumerate().find(|(_, x)| !x.is_finite() || **x < 0.0) {
            return Err(ConfigError::new(format!("weights[{i}]"), format!("must be a finite, non-negative number, got {x}")));
        }
        if w.iter().all(|x| *x == 0.0) {
            return Err(ConfigError::new("weights", "all weights are zero"));
        }
        Ok(())
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let paths = inputs.datasets("pools")?;
        let mut pools = Vec::with_capacity(paths.len());
        for (_, p) in &paths {
            ctx.check()?;
            pools.push(crate::read_path(p)?);
        }
        let (out, report) = ops::mix(pools, &self.0)?;
        tracing::info!("mixed {} episodes: {:?} from the pools", report.episodes, report.taken);
        Ok(Outputs::new().with("traces", write_output(ctx, "traces", &out)?).with("report", metrics(&report)?))
    }
}

// ---------------------------------------------------------------------------------------------

/// Dataset statistics.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct Stats(pub StatsConfig);

impl NodeKind for Stats {
    const NAME: &'static str = "stats";
    const DOC: &'static str =
        "Counts episodes, instances, successes, action steps, rewards and thoughts, overall and per task, category and agent (model_name/agent_name).";

    fn resources() -> agentmerge_sdk::Resources {
        agentmerge_sdk::Resources::light()
    }

    fn ports() -> Ports {
        Ports::new().input("traces", traces_type(), "episodes").output(
            "stats",
            PortType::Metrics,
            "episodes, instances, successes, success_rate, steps, mean_steps, mean_reward, think_fraction, tasks, categories, per_task, per_category, per_agent",
        )
    }

    fn run(&self, _ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let m = ops::stats(&read_input(&inputs, "traces")?, &self.0);
        Ok(Outputs::new().with("stats", m))
    }
}
