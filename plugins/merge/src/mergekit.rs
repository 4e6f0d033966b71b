//! A mergekit YAML recipe as a node: `merge_method`, `base_model`, `models`, `parameters`,
//! `dtype`, `out_dtype`, `tokenizer_source`, unchanged. Model paths are read from the recipe
//! (relative ones against the current directory, as mergekit does), so the node's cache key
//! includes a fingerprint of those files: editing a model re-runs the merge.

use std::{path::Path, time::UNIX_EPOCH};

use agentmerge_merge::{
    builtin,
    node::{execute, merge_outputs, OutputOptions},
    parse_mergekit_yaml, MergePlan,
};
use agentmerge_sdk::prelude::*;

/// Runs a mergekit recipe.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mergekit {
    /// Path of a mergekit YAML recipe.
    #[serde(default)]
    pub recipe_file: Option<String>,
    /// The recipe inline, as a mapping (instead of recipe_file).
    #[serde(default)]
    pub recipe: Option<serde_json::Value>,
    /// Filled in when the pipeline is checked: a fingerprint (sizes and times) of the model
    /// files the recipe names, so the cache notices when they change. Leave it out.
    #[serde(default)]
    pub models_fingerprint: Option<String>,
}

impl Mergekit {
    fn load(&self) -> Result<(MergePlan, String), ConfigError> {
        let (text, file, field) = match (&self.recipe_file, &self.recipe) {
            (Some(f), None) => {
                (std::fs::read_to_string(f).map_err(|e| ConfigError::new("recipe_file", format!("cannot read {f}: {e}")))?, f.clone(), "recipe_file")
            }
            // JSON is YAML: the inline mapping parses as a recipe.
            (None, Some(r)) => (r.to_string(), "recipe".to_string(), "recipe"),
            _ => return Err(ConfigError::new("", "give exactly one of `recipe_file` and `recipe`")),
        };
        let (mut plan, method) = parse_mergekit_yaml(&text, &file).map_err(|e| ConfigError::new(field, e.to_string()))?;
        builtin(&method).ok_or_else(|| ConfigError::new(field, format!("unknown merge_method `{method}`")))?;
        let cwd = std::env::current_dir().map_err(|e| ConfigError::new("", e.to_string()))?;
        plan.resolve_relative_to(&cwd);
        Ok((plan, method))
    }
}

fn fingerprint(plan: &MergePlan) -> String {
    let mut h = blake3::Hasher::new();
    let dirs = plan.base.iter().chain(plan.models.iter().map(|m| &m.path));
    for d in dirs {
        h.update(d.to_string_lossy().as_bytes());
        let mut files: Vec<_> = std::fs::read_dir(d).into_iter().flatten().flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if let Ok(meta) = std::fs::metadata(&f) {
                let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
                h.update(format!("{}:{}:{mtime};", f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), meta.len()).as_bytes());
            }
        }
    }
    h.finalize().to_hex()[..32].to_string()
}

impl NodeKind for Mergekit {
    const NAME: &'static str = "mergekit";
    const DOC: &'static str = "Runs a mergekit YAML recipe unchanged (methods: linear, task_arithmetic, ties, dare_*, breadcrumbs*, della*, slerp, nuslerp, model_stock, passthrough, agentmerge).";

    fn ports() -> Ports {
        merge_outputs(Ports::new())
    }

    fn resolve(&mut self) -> Result<(), ConfigError> {
        let (plan, _) = self.load()?;
        self.models_fingerprint = Some(fingerprint(&plan));
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        let (plan, _) = self.load()?;
        for p in plan.base.iter().chain(plan.models.iter().map(|m| &m.path)) {
            if !Path::new(p).exists() {
                return Err(ConfigError::new(
                    if self.recipe_file.is_some() { "recipe_file" } else { "recipe" },
                    format!("model {} does not exist (paths are relative to the current directory, as in mergekit)", p.display()),
                ));
            }
        }
        Ok(())
    }

    fn run(&self, ctx: &Ctx, _inputs: Inputs) -> anyhow::Result<Outputs> {
        let (plan, method) = self.load().map_err(|e| anyhow!("{e}"))?;
        if let Some(f) = &self.models_fingerprint {
            anyhow::ensure!(*f == fingerprint(&plan), "the models named by the recipe changed after the pipeline was checked; run again");
        }
        let strategy = builtin(&method).ok_or_else(|| anyhow!("unknown merge_method `{method}`"))?;
        // A recipe's own `seed:` wins over the node's.
        let seed = (plan.seed != 0).then_some(plan.seed);
        execute(ctx, strategy.as_ref(), plan, &OutputOptions { seed, ..Default::default() })
    }
}
