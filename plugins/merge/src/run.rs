//! Shared by every kind: checking parameters against a method's definitions, and running a
//! plan with the node's progress, cancellation and output directory.

use agentmerge_checkpoint::parse_dtype;
use agentmerge_merge::{builtin, run_merge, MergePlan, Setting, Settings};
use agentmerge_sdk::prelude::*;
use serde_json::{json, Map, Value as Json};

/// Parses `parameters` (global, `field` names where it came from) and checks every name is one
/// the method reads.
pub fn check_settings(method: &str, field: &str, v: &Map<String, Json>, per_model: bool) -> Result<Settings, ConfigError> {
    let strategy = builtin(method).ok_or_else(|| ConfigError::new("", format!("unknown merge method `{method}`")))?;
    let defs = strategy.parameters();
    for name in v.keys() {
        if !defs.iter().any(|d| d.name == name && (!per_model || d.per_model)) {
            let valid: Vec<&str> = defs.iter().filter(|d| !per_model || d.per_model).map(|d| d.name).collect();
            return Err(ConfigError::new(
                format!("{field}.{name}"),
                format!("`{method}` has no {}parameter `{name}`; it reads: {}", if per_model { "per-model " } else { "" }, if valid.is_empty() { "none".into() } else { valid.join(", ") }),
            ));
        }
    }
    v.iter()
        .map(|(k, v)| Setting::from_json(v).map(|s| (k.clone(), s)).map_err(|e| ConfigError::new(format!("{field}.{k}"), e)))
        .collect()
}

/// Checks an output dtype name.
pub fn check_dtype(field: &str, d: &Option<String>) -> Result<(), ConfigError> {
    match d {
        Some(s) if parse_dtype(s).is_none() => Err(ConfigError::new(field, format!("unknown dtype `{s}`: use float32, bfloat16, float16 or float64"))),
        _ => Ok(()),
    }
}

/// Output dtype and engine options common to every kind (each kind's config has these fields).
#[derive(Clone, Default)]
pub struct Output {
    pub dtype: Option<String>,
    pub seed: Option<u64>,
    pub max_shard_bytes: Option<u64>,
}

/// Runs `plan` with `method` into `out_dir/model`, reporting progress to the host.
pub fn execute(ctx: &Ctx, method: &str, mut plan: MergePlan, out: &Output) -> anyhow::Result<Outputs> {
    let strategy = builtin(method).ok_or_else(|| anyhow!("unknown merge method `{method}`"))?;
    if let Some(d) = &out.dtype {
        plan.out_dtype = Some(parse_dtype(d).ok_or_else(|| anyhow!("unknown dtype `{d}`"))?);
    }
    plan.seed = out.seed.unwrap_or(ctx.seed());
    if let Some(m) = out.max_shard_bytes {
        plan.max_shard_bytes = m;
    }
    let dir = ctx.out_dir().join("model");
    let report = run_merge(&plan, strategy.as_ref(), &dir, &|done, total| ctx.progress(done, total, "tensors"), &|| ctx.is_cancelled())?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!("{} merged {} tensors ({} parameters) in {:.2}s", method, report.tensors, report.params, report.seconds);
    let mut m = Map::new();
    m.insert("method".into(), json!(report.method));
    m.insert("tensors".into(), json!(report.tensors));
    m.insert("params".into(), json!(report.params));
    m.insert("bytes_read".into(), json!(report.bytes_read));
    m.insert("bytes_written".into(), json!(report.bytes_written));
    m.insert("seconds".into(), json!(report.seconds));
    m.insert("read_gb_per_s".into(), json!(report.bytes_read as f64 / report.seconds.max(1e-9) / 1e9));
    m.insert("warnings".into(), json!(report.warnings));
    Ok(Outputs::new().with("model", Value::Model(report.out_dir)).with("report", m))
}

pub fn ports_out(p: Ports) -> Ports {
    p.output("model", PortType::Model, "the merged checkpoint (Hugging Face format)")
        .output("report", PortType::Metrics, "tensors, parameters, bytes read and written, time, warnings")
}
