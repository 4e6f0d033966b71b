//! Merge strategies as pipeline nodes: [`StrategyNode<K>`] turns any [`StrategyKind`] into a
//! node kind (a list of models and an optional base in, the merged checkpoint and a report
//! out), so a strategy plugin is the strategy itself plus one `export_plugin!` line. The
//! helpers below ([`execute`], [`merge_into`], [`execute_checkpoints`]) write a node's merged
//! checkpoints, one or one per checkpoint of a training run, for kinds with their own config.
//!
//! ```ignore
//! pub struct Median;
//! impl Strategy for Median { /* name, elementwise, merge */ }
//! impl StrategyKind for Median {
//!     const NAME: &'static str = "median";
//!     const DOC: &'static str = "Element-wise median of the models.";
//!     fn strategy() -> Box<dyn Strategy> { Box::new(Median) }
//! }
//! agentmerge_sdk::export_plugin! { name: "median", kinds: [StrategyNode<Median>] }
//! ```

use std::{
    borrow::Cow,
    marker::PhantomData,
    path::{Path, PathBuf},
};

use agentmerge_checkpoint::{parse_dtype, DTypeExt};
use agentmerge_sdk::prelude::*;
use serde_json::{json, Map, Value as Json};

use crate::{run_merge, MergePlan, MergeReport, ModelEntry, Setting, Settings, Strategy, TokenizerSource};

/// A strategy that can be a node kind: its kind name, doc line and constructor.
pub trait StrategyKind: 'static {
    /// The kind's name (`uses: PLUGIN/NAME`).
    const NAME: &'static str;
    /// One line shown by `agentmerge plugins`.
    const DOC: &'static str;
    fn strategy() -> Box<dyn Strategy>;
}

/// The config every strategy node takes, written as in mergekit: `parameters` for global
/// ones, `models: [{...}, ...]` for per-model ones in the order of the `models` input.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StrategyConfig {
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

impl StrategyConfig {
    pub fn output(&self) -> OutputOptions {
        OutputOptions { dtype: self.dtype.clone(), seed: self.seed, max_shard_bytes: self.max_shard_bytes }
    }
}

/// Output dtype and engine options common to every merge node (see [`StrategyConfig`]).
#[derive(Clone, Debug, Default)]
pub struct OutputOptions {
    pub dtype: Option<String>,
    pub seed: Option<u64>,
    pub max_shard_bytes: Option<u64>,
}

/// The node kind of strategy `K`; its config is a [`StrategyConfig`].
pub struct StrategyNode<K> {
    pub config: StrategyConfig,
    kind: PhantomData<fn() -> K>,
}

impl<K> Serialize for StrategyNode<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.config.serialize(s)
    }
}

impl<'de, K> Deserialize<'de> for StrategyNode<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StrategyConfig::deserialize(d).map(|config| StrategyNode { config, kind: PhantomData })
    }
}

impl<K> JsonSchema for StrategyNode<K> {
    fn schema_name() -> Cow<'static, str> {
        StrategyConfig::schema_name()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        StrategyConfig::json_schema(g)
    }
}

impl<K: StrategyKind> NodeKind for StrategyNode<K> {
    const NAME: &'static str = K::NAME;
    const DOC: &'static str = K::DOC;

    fn resources() -> agentmerge_sdk::Resources {
        agentmerge_sdk::Resources::all_threads()
    }

    fn ports() -> Ports {
        merge_outputs(Ports::new().list_input("models", PortType::Model, "the checkpoints to merge").optional_input(
            "base",
            PortType::Model,
            "the base model task vectors are taken against",
        ))
    }

    fn check(&self) -> Result<(), ConfigError> {
        let s = K::strategy();
        let c = &self.config;
        check_settings(s.as_ref(), "parameters", &c.parameters, false)?;
        for (i, m) in c.models.iter().enumerate() {
            check_settings(s.as_ref(), &format!("models[{i}]"), m, true)?;
        }
        match c.tokenizer_source.as_deref() {
            None | Some("base") => {}
            Some(t) if t.strip_prefix("model:").is_some_and(|n| n.parse::<usize>().is_ok()) => {}
            Some(t) => return Err(ConfigError::new("tokenizer_source", format!("`{t}`: use `base` or `model:N`"))),
        }
        check_dtype("dtype", &c.dtype)
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let s = K::strategy();
        let plan = self.plan(s.as_ref(), &inputs)?;
        execute(ctx, s.as_ref(), plan, &self.config.output())
    }
}

impl<K: StrategyKind> StrategyNode<K> {
    fn plan(&self, s: &dyn Strategy, inputs: &Inputs) -> anyhow::Result<MergePlan> {
        let c = &self.config;
        let models = inputs.models("models")?;
        anyhow::ensure!(
            c.models.len() <= models.len(),
            "`models` config has {} entries but only {} models are connected to the `models` input",
            c.models.len(),
            models.len()
        );
        let base: Option<PathBuf> = if inputs.is_connected("base") { Some(inputs.model("base")?) } else { None };
        let entries = models
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let params = match c.models.get(i) {
                    Some(m) => check_settings(s, &format!("models[{i}]"), m, true).map_err(|e| anyhow!("{e}"))?,
                    None => Settings::default(),
                };
                Ok(ModelEntry { path: p.clone(), params })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut plan = MergePlan::new(base, entries);
        plan.params = check_settings(s, "parameters", &c.parameters, false).map_err(|e| anyhow!("{e}"))?;
        if let Some(n) = c.tokenizer_source.as_deref().and_then(|t| t.strip_prefix("model:")) {
            let n: usize = n.parse()?;
            let m = models.get(n).ok_or_else(|| anyhow!("tokenizer_source `model:{n}`: only {} models are connected", models.len()))?;
            plan.tokenizer_source = Some(TokenizerSource::Model(m.clone()));
        }
        Ok(plan)
    }
}

/// Parses parameters (`field` says where they came from) and checks that the strategy reads
/// every one of them (`per_model`: as a per-model parameter).
pub fn check_settings(s: &dyn Strategy, field: &str, v: &Map<String, Json>, per_model: bool) -> Result<Settings, ConfigError> {
    let defs = s.parameters();
    for name in v.keys() {
        if !defs.iter().any(|d| d.name == name && (!per_model || d.per_model)) {
            let valid: Vec<&str> = defs.iter().filter(|d| !per_model || d.per_model).map(|d| d.name).collect();
            return Err(ConfigError::new(
                format!("{field}.{name}"),
                format!(
                    "`{}` has no {}parameter `{name}`; it reads: {}",
                    s.name(),
                    if per_model { "per-model " } else { "" },
                    if valid.is_empty() { "none".into() } else { valid.join(", ") }
                ),
            ));
        }
    }
    v.iter().map(|(k, v)| Setting::from_json(v).map(|s| (k.clone(), s)).map_err(|e| ConfigError::new(format!("{field}.{k}"), e))).collect()
}

/// Checks an output dtype name.
pub fn check_dtype(field: &str, d: &Option<String>) -> Result<(), ConfigError> {
    match d {
        Some(s) if !parse_dtype(s).is_some_and(|d| d.is_float()) => {
            Err(ConfigError::new(field, format!("`{s}` is not an output dtype for merged weights: use float32, bfloat16, float16 or float64")))
        }
        _ => Ok(()),
    }
}

/// Runs `plan` with strategy `s` into `OUT_DIR/model`, reporting progress to the host, and
/// returns the `model` and `report` outputs.
pub fn execute(ctx: &Ctx, s: &dyn Strategy, plan: MergePlan, out: &OutputOptions) -> anyhow::Result<Outputs> {
    let report = merge_into(ctx, s, plan, out, &ctx.out_dir().join("model"), "tensors")?;
    Ok(Outputs::new().with("model", Value::Model(report.out_dir.clone())).with("report", report_metrics(&report)))
}

/// Runs `plan` with strategy `s` into `dir` (which must not exist yet) with the node's output
/// options, reporting progress to the host under `progress` (e.g. `tensors`).
pub fn merge_into(ctx: &Ctx, s: &dyn Strategy, mut plan: MergePlan, out: &OutputOptions, dir: &Path, progress: &str) -> anyhow::Result<MergeReport> {
    if let Some(d) = &out.dtype {
        plan.out_dtype = Some(parse_dtype(d).ok_or_else(|| anyhow!("unknown dtype `{d}`"))?);
    }
    plan.seed = out.seed.unwrap_or(ctx.seed());
    if let Some(m) = out.max_shard_bytes {
        plan.max_shard_bytes = m;
    }
    let report = run_merge(&plan, s, dir, &|done, total| ctx.progress(done, total, progress), &|| ctx.is_cancelled())?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!("{} merged {} tensors ({} parameters) in {:.2}s", s.name(), report.tensors, report.params, report.seconds);
    Ok(report)
}

/// A merge report as the `report` output's metrics.
pub fn report_metrics(report: &MergeReport) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("method".into(), json!(report.method));
    m.insert("tensors".into(), json!(report.tensors));
    m.insert("params".into(), json!(report.params));
    m.insert("bytes_read".into(), json!(report.bytes_read));
    m.insert("bytes_written".into(), json!(report.bytes_written));
    m.insert("seconds".into(), json!(report.seconds));
    m.insert("read_gb_per_s".into(), json!(report.bytes_read as f64 / report.seconds.max(1e-9) / 1e9));
    m.insert("warnings".into(), json!(report.warnings));
    m
}

/// The file that records a checkpoint's training step (`global_step`), as the trainers write it.
pub const TRAINER_STATE: &str = "trainer_state.json";

/// One merge per checkpoint of a training run, for nodes that merge every checkpoint the way
/// they merge one model (the paper's Figure 3: each agent checkpoint merged into the instruct
/// model, then evaluated).
///
/// `plan_for(checkpoint)` builds the plan that merges one checkpoint. Each result is written to
/// `OUT_DIR/checkpoints/NAME/` — NAME is the checkpoint's own directory name (`step-0000200`
/// from a trainer), or `INDEX-NAME` for every one when two names repeat — and carries the
/// checkpoint's `trainer_state.json`, so evaluation nodes order the merged checkpoints by the
/// step they came from. The `model` output is the merge of `single` into `OUT_DIR/model/` when
/// given, else the last merged checkpoint without its `trainer_state.json` (hard links, or a
/// copy across file systems), as a trainer's `model` is its last state. Returns the `model`,
/// `report` and `checkpoints` outputs; the report is that of the `model` merge plus
/// `checkpoints`: one entry per checkpoint (`name`, `step`, `seconds`, bytes, `warnings`).
pub fn execute_checkpoints(
    ctx: &Ctx,
    s: &dyn Strategy,
    single: Option<&Path>,
    checkpoints: &[PathBuf],
    plan_for: &dyn Fn(&Path) -> anyhow::Result<MergePlan>,
    out: &OutputOptions,
) -> anyhow::Result<Outputs> {
    anyhow::ensure!(!checkpoints.is_empty(), "no checkpoints to merge");
    let names = checkpoint_names(checkpoints);
    let mut merged = Vec::new();
    let mut rows = Vec::new();
    for (i, (ck, name)) in checkpoints.iter().zip(&names).enumerate() {
        ctx.check()?;
        let mut plan = plan_for(ck)?;
        let state = ck.join(TRAINER_STATE);
        let step = if state.is_file() {
            plan.extra_files.push(state.clone());
            read_step(&state)?
        } else {
            tracing::info!("{} has no {TRAINER_STATE}; its merge records no training step", ck.display());
            None
        };
        let dir = ctx.out_path(&format!("checkpoints/{name}"))?;
        let progress = format!("tensors (checkpoint {}/{})", i + 1, checkpoints.len());
        let report = merge_into(ctx, s, plan, out, &dir, &progress)?;
        rows.push(json!({
            "name": name,
            "step": step,
            "seconds": report.seconds,
            "bytes_read": report.bytes_read,
            "bytes_written": report.bytes_written,
            "warnings": report.warnings,
        }));
        merged.push(report);
    }
    let model_dir = ctx.out_dir().join("model");
    let report = match single {
        Some(m) => merge_into(ctx, s, plan_for(m)?, out, &model_dir, "tensors")?,
        None => {
            let last = merged.last().expect("at least one checkpoint");
            link_checkpoint(&last.out_dir, &model_dir, &[TRAINER_STATE])?;
            MergeReport { out_dir: model_dir, ..last.clone() }
        }
    };
    let mut metrics = report_metrics(&report);
    metrics.insert("checkpoints".into(), Json::Array(rows));
    Ok(Outputs::new()
        .with("model", Value::Model(report.out_dir))
        .with("report", metrics)
        .with_list("checkpoints", merged.into_iter().map(|r| Value::Model(r.out_dir)).collect()))
}

/// The output directory names of merged checkpoints: each checkpoint's own directory name,
/// or `INDEX-NAME` for all of them when two names repeat (say, `model` from a sweep's gather).
pub fn checkpoint_names(checkpoints: &[PathBuf]) -> Vec<String> {
    let own: Vec<String> = checkpoints
        .iter()
        .map(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).unwrap_or_else(|| "checkpoint".into()))
        .collect();
    let unique = own.iter().collect::<std::collections::BTreeSet<_>>().len() == own.len();
    if unique {
        own
    } else {
        let width = (checkpoints.len() - 1).to_string().len().max(3);
        own.iter().enumerate().map(|(i, n)| format!("{i:0width$}-{n}")).collect()
    }
}

/// `global_step` of a `trainer_state.json`; an error naming the file when it is not JSON.
fn read_step(path: &Path) -> anyhow::Result<Option<u64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let state: Json = serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON; fix or remove it", path.display()))?;
    Ok(state["global_step"].as_u64())
}

/// Makes `dst` (which must not exist) a copy of the checkpoint directory `src` without the
/// files named in `except`: hard links where the file system allows, else copies. Written to a
/// temporary sibling and renamed into place, so `dst` is complete or absent.
pub fn link_checkpoint(src: &Path, dst: &Path, except: &[&str]) -> anyhow::Result<()> {
    anyhow::ensure!(!dst.exists(), "{} already exists", dst.display());
    let name = dst.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dst.with_file_name(format!(".{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    for e in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let e = e.with_context(|| format!("reading {}", src.display()))?;
        let file = e.file_name();
        if except.iter().any(|x| file.to_string_lossy() == *x) || !e.file_type()?.is_file() {
            continue;
        }
        let to = tmp.join(&file);
        if std::fs::hard_link(e.path(), &to).is_err() {
            std::fs::copy(e.path(), &to).with_context(|| format!("copying {} to {}", e.path().display(), to.display()))?;
        }
    }
    std::fs::rename(&tmp, dst).with_context(|| format!("renaming {} to {}", tmp.display(), dst.display()))?;
    Ok(())
}

/// Adds the `model` and `report` outputs every merge node has.
pub fn merge_outputs(p: Ports) -> Ports {
    p.output("model", PortType::Model, "the merged checkpoint (Hugging Face format)").output(
        "report",
        PortType::Metrics,
        "tensors, parameters, bytes read and written, time, warnings",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_keep_the_directory_names_unless_they_repeat() {
        let p = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(checkpoint_names(&p(&["/s/checkpoints/step-0000002", "/s/checkpoints/step-0000004"])), ["step-0000002", "step-0000004"]);
        assert_eq!(checkpoint_names(&p(&["/a/model", "/b/model", "/c/other"])), ["000-model", "001-model", "002-other"]);
        assert_eq!(checkpoint_names(&p(&["/"])), ["checkpoint"]);
    }

    #[test]
    fn link_checkpoint_copies_all_but_the_excepted_files_and_refuses_an_existing_output() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        for (f, text) in [("model.safetensors", "w"), ("config.json", "{}"), (TRAINER_STATE, "{}")] {
            std::fs::write(src.join(f), text).unwrap();
        }
        let dst = t.path().join("model");
        link_checkpoint(&src, &dst, &[TRAINER_STATE]).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dst).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["config.json", "model.safetensors"]);
        assert_eq!(std::fs::read_to_string(dst.join("model.safetensors")).unwrap(), "w");
        assert!(link_checkpoint(&src, &dst, &[]).unwrap_err().to_string().contains("already exists"));
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 2, "no temporary directory left");
    }
}
