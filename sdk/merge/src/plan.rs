//! What to merge: [`MergePlan`], and reading it from a mergekit YAML recipe unchanged
//! ([`parse_mergekit_yaml`]). Features mergekit has and this engine does not (layer
//! `slices`, `modules`, vocabulary `tokenizer:` unions, LoRA references) are refused with a
//! message naming the field.

use std::path::{Path, PathBuf};

use agentmerge_checkpoint::{parse_dtype, DType, DTypeExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use yaml_rust2::{Yaml, YamlLoader};

use crate::{
    methods,
    params::{settings_from_json, Settings},
    MergeError,
};

/// One entry of `models:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub path: PathBuf,
    #[serde(default)]
    pub params: Settings,
}

/// Where the output's tokenizer files come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerSource {
    Base,
    Model(PathBuf),
}

/// A merge, independent of the method that runs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergePlan {
    /// `base_model`: the model task vectors are taken against.
    pub base: Option<PathBuf>,
    pub models: Vec<ModelEntry>,
    /// Global `parameters:`.
    #[serde(default)]
    pub params: Settings,
    /// mergekit's `dtype`: the output dtype when `out_dtype` is not set (computation is
    /// always f32, or f64 for f64 inputs).
    pub dtype: Option<DType>,
    pub out_dtype: Option<DType>,
    /// Default: the base model's tokenizer, else the first model's.
    pub tokenizer_source: Option<TokenizerSource>,
    /// Seed for the random methods (DARE, DELLA).
    #[serde(default)]
    pub seed: u64,
    /// Output shard size (default 5 GB, as Hugging Face).
    #[serde(default = "default_shard")]
    pub max_shard_bytes: u64,
    /// The recipe text to record with the output (written as `mergekit_config.yml`); when
    /// `None` one is generated from the plan.
    #[serde(default)]
    pub recipe: Option<String>,
    /// Files copied unchanged into the output directory under their own names, after
    /// everything else (e.g. an agent checkpoint's `trainer_state.json`, so a merged
    /// checkpoint keeps its training step). Names the engine writes itself are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_files: Vec<PathBuf>,
}

fn default_shard() -> u64 {
    5_000_000_000
}

impl MergePlan {
    /// A plan merging `models` with no parameters.
    pub fn new(base: Option<PathBuf>, models: Vec<ModelEntry>) -> MergePlan {
        MergePlan {
            base,
            models,
            params: Settings::new(),
            dtype: None,
            out_dtype: None,
            tokenizer_source: None,
            seed: 0,
            max_shard_bytes: default_shard(),
            recipe: None,
            extra_files: Vec::new(),
        }
    }

    /// Makes relative model paths relative to `dir` (e.g. the recipe file's directory).
    pub fn resolve_relative_to(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        if let Some(b) = &mut self.base {
            fix(b);
        }
        for m in &mut self.models {
            fix(&mut m.path);
        }
        if let Some(TokenizerSource::Model(p)) = &mut self.tokenizer_source {
            fix(p);
        }
    }

    /// The recipe as mergekit YAML (parameter values in flow style).
    pub fn to_yaml(&self, method: &str) -> String {
        let q = |p: &Path| json!(p.to_string_lossy()).to_string();
        let mut y = format!("merge_method: {method}\n");
        if let Some(b) = &self.base {
            y += &format!("base_model: {}\n", q(b));
        }
        y += "models:\n";
        for m in &self.models {
            y += &format!("  - model: {}\n", q(&m.path));
            if !m.params.is_empty() {
                y += &format!("    parameters: {}\n", json!(m.params));
            }
        }
        if !self.params.is_empty() {
            y += &format!("parameters: {}\n", json!(self.params));
        }
        if let Some(d) = self.dtype {
            y += &format!("dtype: {}\n", d.torch_name());
        }
        if let Some(d) = self.out_dtype {
            y += &format!("out_dtype: {}\n", d.torch_name());
        }
        match &self.tokenizer_source {
            Some(TokenizerSource::Base) => y += "tokenizer_source: base\n",
            Some(TokenizerSource::Model(p)) => y += &format!("tokenizer_source: {}\n", q(p)),
            None => {}
        }
        if self.seed != 0 {
            y += &format!("seed: {}\n", self.seed);
        }
        y
    }
}

const ACCEPTED: &str = "merge_method, base_model, models, parameters, dtype, out_dtype, tokenizer_source, seed";

/// Parses a mergekit YAML recipe. Returns the plan (with `recipe` set to `text`) and the
/// `merge_method`. Model paths are kept as written; see [`MergePlan::resolve_relative_to`].
pub fn parse_mergekit_yaml(text: &str, file_name: &str) -> Result<(MergePlan, String), MergeError> {
    let bad = |message: String| MergeError::Recipe { file: file_name.to_string(), message };
    let docs = YamlLoader::load_from_str(text).map_err(|e| bad(format!("not valid YAML: {e}")))?;
    let [doc] = &docs[..] else {
        return Err(bad(format!("expected one YAML document, found {}", docs.len())));
    };
    let root = yaml_to_json(doc).map_err(&bad)?;
    let Some(root) = root.as_object() else {
        return Err(bad("the recipe must be a mapping (merge_method: ..., models: ...)".into()));
    };
    for key in root.keys() {
        let why = match key.as_str() {
            "merge_method" | "base_model" | "models" | "parameters" | "dtype" | "out_dtype" | "tokenizer_source" | "seed" => continue,
            "slices" => "`slices` (layer ranges, frankenmerges) is not supported; list whole models under `models:`",
            "modules" => "`modules` is not supported; list whole models under `models:`",
            "tokenizer" => {
                "`tokenizer` (building a union vocabulary) is not supported; use `tokenizer_source: base` or a model path, with models that share a vocabulary"
            }
            "chat_template" => "`chat_template` is not supported; edit tokenizer_config.json of the output instead",
            _ => "",
        };
        return Err(bad(if why.is_empty() { format!("unknown field `{key}`; accepted fields: {ACCEPTED}") } else { why.to_string() }));
    }
    let method = match root.get("merge_method") {
        Some(Json::String(m)) => m.clone(),
        Some(other) => return Err(bad(format!("`merge_method` must be a name, got {other}"))),
        None => return Err(bad("`merge_method` is missing".into())),
    };
    if !methods::METHODS.contains(&method.as_str()) {
        return Err(bad(format!("unknown `merge_method: {method}`; supported: {}", methods::METHODS.join(", "))));
    }
    let model_ref = |field: &str, v: &Json| -> Result<PathBuf, MergeError> {
        let Some(s) = v.as_str() else {
            return Err(bad(format!("`{field}` must be a path, got {v}")));
        };
        if s.contains('+') {
            return Err(bad(format!("`{field}: {s}`: LoRA references (model+lora) are not supported; merge the adapter into the model first")));
        }
        Ok(PathBuf::from(s))
    };
    let base = root.get("base_model").map(|v| model_ref("base_model", v)).transpose()?;
    let Some(Json::Array(models_json)) = root.get("models") else {
        return Err(bad("`models` must be a list of {model: path, parameters: {...}}".into()));
    };
    let mut models = Vec::new();
    for (i, m) in models_json.iter().enumerate() {
        let field = format!("models[{i}]");
        let Some(obj) = m.as_object() else {
            return Err(bad(format!("`{field}` must be a mapping with `model:`")));
        };
        if let Some(k) = obj.keys().find(|k| *k != "model" && *k != "parameters") {
            return Err(bad(format!("`{field}.{k}` is not supported (only `model` and `parameters`)")));
        }
        let path = model_ref(&format!("{field}.model"), obj.get("model").unwrap_or(&Json::Null))?;
        let params = match obj.get("parameters") {
            None | Some(Json::Null) => Settings::new(),
            Some(p) => settings_from_json(p, &field).map_err(bad)?,
        };
        models.push(ModelEntry { path, params });
    }
    if models.is_empty() {
        return Err(bad("`models` is empty".into()));
    }
    let mut plan = MergePlan::new(base, models);
    if let Some(p) = root.get("parameters") {
        if !p.is_null() {
            plan.params = settings_from_json(p, "parameters").map_err(bad)?;
        }
    }
    let dtype = |field: &str| -> Result<Option<DType>, MergeError> {
        match root.get(field) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => match parse_dtype(s) {
                Some(d) if d.is_float() => Ok(Some(d)),
                _ => Err(bad(format!("`{field}: {s}` is not a floating-point dtype (float32, float16, bfloat16, float64)"))),
            },
            Some(other) => Err(bad(format!("`{field}` must be a dtype name, got {other}"))),
        }
    };
    plan.dtype = dtype("dtype")?;
    plan.out_dtype = dtype("out_dtype")?;
    plan.tokenizer_source = match root.get("tokenizer_source") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) if s == "base" => Some(TokenizerSource::Base),
        Some(Json::String(s)) if s == "union" => {
            return Err(bad("`tokenizer_source: union` is not supported; use `base` or a model path, with models that share a vocabulary".into()))
        }
        Some(v) => Some(TokenizerSource::Model(model_ref("tokenizer_source", v)?)),
    };
    if let Some(s) = root.get("seed") {
        plan.seed = s.as_u64().ok_or_else(|| bad(format!("`seed` must be a non-negative integer, got {s}")))?;
    }
    plan.recipe = Some(text.to_string());
    Ok((plan, method))
}

fn yaml_to_json(y: &Yaml) -> Result<Json, String> {
    Ok(match y {
        Yaml::Real(s) => {
            let x: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
            json!(x)
        }
        Yaml::Integer(i) => json!(i),
        Yaml::String(s) => json!(s),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(a) => Json::Array(a.iter().map(yaml_to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(h) => {
            let mut m = serde_json::Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    other => return Err(format!("mapping key {other:?} is not a string")),
                };
                m.insert(key, yaml_to_json(v)?);
            }
            Json::Object(m)
        }
        Yaml::Null => Json::Null,
        Yaml::Alias(_) | Yaml::BadValue => return Err("unsupported YAML value (alias or bad value)".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Setting, Value};

    #[test]
    fn parses_a_mergekit_ties_recipe() {
        let text = r#"
models:
  - model: psmathur/orca_mini_v3_13b
    parameters:
      density: [1, 0.7, 0.1] # density gradient
      weight: 1.0
  - model: garage-bAInd/Platypus2-13B
    parameters:
      density: 0.5
      weight: [0, 0.3, 0.7, 1] # weight gradient
  - model: WizardLM/WizardMath-13B-V1.0
    parameters:
      density: 0.33
      weight:
        - filter: mlp
          value: 0.5
        - value: 0
merge_method: ties
base_model: TheBloke/Llama-2-13B-fp16
parameters:
  normalize: true
  int8_mask: true
dtype: float16
"#;
        let (plan, method) = parse_mergekit_yaml(text, "ties.yml").unwrap();
        assert_eq!(method, "ties");
        assert_eq!(plan.models.len(), 3);
        assert_eq!(plan.dtype, Some(DType::F16));
        assert_eq!(plan.models[0].params["density"], Setting::Gradient(vec![1.0, 0.7, 0.1]));
        assert_eq!(plan.models[2].params["weight"].evaluate("model.layers.0.mlp.up_proj.weight", 0.0), Some(Value::Num(0.5)));
        assert_eq!(plan.params["normalize"], Setting::Value(Value::Bool(true)));
        // The generated YAML parses back to the same plan.
        let (again, m2) = parse_mergekit_yaml(&plan.to_yaml(&method), "gen.yml").unwrap();
        assert_eq!(m2, "ties");
        assert_eq!(again.models, plan.models);
        assert_eq!(again.params, plan.params);
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        let cases = [
            ("merge_method: frankenstein\nmodels: [{model: a}]", "unknown `merge_method"),
            ("merge_method: passthrough\nslices: []", "`slices`"),
            ("merge_method: linear\nmodels: [{model: a}]\ntokenizer: {source: union}", "`tokenizer`"),
            ("merge_method: linear\nmodels: [{model: a}]\ntokenizer_source: union", "union"),
            ("merge_method: linear\nmodels: [{model: a+lora}]", "LoRA"),
            ("merge_method: linear\nmodels: [{model: a}]\ndtyp: float16", "unknown field `dtyp`"),
            ("merge_method: linear\nmodels: [{model: a}]\ndtype: int8", "not a floating-point"),
            ("merge_method: linear\nmodels: [{model: a, parameters: {weight: [{filter: 1, value: 2}]}}]", "models[0]"),
            ("models: [{model: a}]", "`merge_method` is missing"),
            ("merge_method: linear\nmodels: [{model: a}]\n  bad: [", "not valid YAML"),
        ];
        for (text, want) in cases {
            let e = parse_mergekit_yaml(text, "r.yml").err().unwrap().to_string();
            assert!(e.contains(want) && e.contains("r.yml"), "{text}: {e}");
        }
    }
}
