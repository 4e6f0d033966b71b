//! Merge parameters as mergekit writes them: a scalar, a gradient across layers, or a list of
//! `{filter, value}` entries matched against the tensor name; and their resolved values.
//!
//! Resolution follows mergekit 0.1.5: a list of numbers is a gradient, interpolated linearly at
//! `t = layer / (num_layers - 1)` (1 for a single layer; tensors outside the layers — the
//! embeddings before them, the final norm and `lm_head` after them — get `t = 0`); a list of
//! `{filter, value}` entries takes the first entry whose `filter` is a substring of the tensor
//! name, an entry without a filter (or with `filter: "*"`) matching every tensor — so put the
//! default last.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

/// One resolved parameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Num(f64),
    Bool(bool),
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl Value {
    fn to_json(&self) -> Json {
        match self {
            Value::Num(x) => json!(x),
            Value::Bool(b) => json!(b),
            Value::Str(s) => json!(s),
        }
    }

    fn from_json(v: &Json) -> Option<Value> {
        match v {
            Json::Number(n) => n.as_f64().map(Value::Num),
            Json::Bool(b) => Some(Value::Bool(*b)),
            Json::String(s) => Some(Value::Str(s.clone())),
            _ => None,
        }
    }
}

/// A parameter as written in a recipe, before it is resolved for one tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Json", into = "Json")]
pub enum Setting {
    /// The same value for every tensor.
    Value(Value),
    /// Numbers interpolated across the layers.
    Gradient(Vec<f64>),
    /// Booleans or strings: the one at index `floor(t * (len - 1))`.
    Steps(Vec<Value>),
    /// The first entry whose filter matches the tensor name.
    Conditional(Vec<Conditional>),
}

/// One `{filter, value}` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Conditional {
    /// A substring of the tensor name; `None` (or `"*"`) matches every tensor.
    pub filter: Option<String>,
    pub value: Setting,
}

/// Parameters by name, as written in a recipe.
pub type Settings = BTreeMap<String, Setting>;

impl Setting {
    pub fn num(x: f64) -> Setting {
        Setting::Value(Value::Num(x))
    }

    /// Parses mergekit's forms: a scalar, a list of numbers, a list of booleans or strings, a
    /// `{filter, value}` mapping, or a list of those mappings.
    pub fn from_json(v: &Json) -> Result<Setting, String> {
        if let Some(x) = Value::from_json(v) {
            return Ok(Setting::Value(x));
        }
        match v {
            Json::Array(items) if items.is_empty() => Err("an empty list has no value".into()),
            Json::Array(items) if items.iter().all(Json::is_number) => Ok(Setting::Gradient(items.iter().filter_map(Json::as_f64).collect())),
            Json::Array(items) if items.iter().all(|i| Value::from_json(i).is_some()) => {
                Ok(Setting::Steps(items.iter().filter_map(Value::from_json).collect()))
            }
            Json::Array(items) => items.iter().map(Conditional::from_json).collect::<Result<Vec<_>, _>>().map(Setting::Conditional),
            Json::Object(_) => Ok(Setting::Conditional(vec![Conditional::from_json(v)?])),
            _ => Err(format!("`{v}` is not a number, boolean, string, list of numbers or list of {{filter, value}} entries")),
        }
    }

    pub fn to_json(&self) -> Json {
        match self {
            Setting::Value(v) => v.to_json(),
            Setting::Gradient(g) => json!(g),
            Setting::Steps(s) => Json::Array(s.iter().map(Value::to_json).collect()),
            Setting::Conditional(c) => Json::Array(
                c.iter()
                    .map(|c| match &c.filter {
                        Some(f) => json!({"filter": f, "value": c.value.to_json()}),
                        None => json!({"value": c.value.to_json()}),
                    })
                    .collect(),
            ),
        }
    }

    /// The value for tensor `tensor` at layer fraction `t`, or `None`
    /// when no filter matches.
    pub fn evaluate(&self, tensor: &str, t: f64) -> Option<Value> {
        match self {
            Setting::Value(v) => Some(v.clone()),
            Setting::Gradient(g) => {
                let scaled = t.clamp(0.0, 1.0) * (g.len() - 1) as f64;
                let i0 = scaled.floor() as usize;
                let i1 = (i0 + 1).min(g.len() - 1);
                let frac = scaled - i0 as f64;
                Some(Value::Num((1.0 - frac) * g[i0] + frac * g[i1]))
            }
            Setting::Steps(s) => Some(s[(t.clamp(0.0, 1.0) * (s.len() - 1) as f64).floor() as usize].clone()),
            Setting::Conditional(c) => c
                .iter()
                .find(|c| match c.filter.as_deref() {
                    None | Some("*") => true,
                    Some(f) => tensor.contains(f),
                })
                .and_then(|c| c.value.evaluate(tensor, t)),
        }
    }
}

impl Conditional {
    fn from_json(v: &Json) -> Result<Conditional, String> {
        let Some(obj) = v.as_object() else {
            return Err(format!("list entry `{v}` is not a {{filter, value}} mapping"));
        };
        if let Some(k) = obj.keys().find(|k| *k != "filter" && *k != "value") {
            return Err(format!("unexpected key `{k}` in a {{filter, value}} entry (only `filter` and `value` are allowed)"));
        }
        let filter = match obj.get("filter") {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(other) => return Err(format!("filter `{other}` is not a string")),
        };
        let value = obj.get("value").ok_or_else(|| format!("entry `{v}` has no `value`"))?;
        if value.is_object() {
            return Err(format!("value `{value}` cannot itself be a {{filter, value}} mapping"));
        }
        Ok(Conditional { filter, value: Setting::from_json(value)? })
    }
}

impl TryFrom<Json> for Setting {
    type Error = String;
    fn try_from(v: Json) -> Result<Setting, String> {
        Setting::from_json(&v)
    }
}

impl From<Setting> for Json {
    fn from(s: Setting) -> Json {
        s.to_json()
    }
}

/// Parses a JSON object of settings (the `parameters:` mapping of a recipe).
pub fn settings_from_json(v: &Json, context: &str) -> Result<Settings, String> {
    let Some(obj) = v.as_object() else {
        return Err(format!("{context}: `parameters` must be a mapping of name: value"));
    };
    obj.iter().map(|(k, v)| Setting::from_json(v).map(|s| (k.clone(), s)).map_err(|e| format!("{context}: parameter `{k}`: {e}"))).collect()
}

/// A parameter a strategy reads, with its default (`None`: required).
#[derive(Clone, Debug)]
pub struct ParamDef {
    pub name: &'static str,
    pub default: Option<Value>,
    /// Set per model (`models: [{parameters: ...}]`, falling back to the global value), like
    /// mergekit's `weight` and `density`; otherwise global only.
    pub per_model: bool,
}

impl ParamDef {
    /// A global number with a default.
    pub fn num(name: &'static str, default: f64) -> ParamDef {
        ParamDef { name, default: Some(Value::Num(default)), per_model: false }
    }

    /// A global boolean with a default.
    pub fn flag(name: &'static str, default: bool) -> ParamDef {
        ParamDef { name, default: Some(Value::Bool(default)), per_model: false }
    }

    /// A global string with a default.
    pub fn text(name: &'static str, default: &str) -> ParamDef {
        ParamDef { name, default: Some(Value::Str(default.into())), per_model: false }
    }

    /// A required parameter (no default).
    pub fn required(name: &'static str) -> ParamDef {
        ParamDef { name, default: None, per_model: false }
    }

    /// Makes it a per-model parameter.
    pub fn per_model(mut self) -> ParamDef {
        self.per_model = true;
        self
    }
}

/// Resolved parameter values for one tensor (global) or one model's tensor (per model).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params(pub BTreeMap<String, Value>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    pub fn set(&mut self, name: &str, v: Value) {
        self.0.insert(name.to_string(), v);
    }

    /// A number; errors when absent or not a number.
    pub fn num(&self, name: &str) -> anyhow::Result<f64> {
        match self.0.get(name) {
            Some(Value::Num(x)) => Ok(*x),
            Some(other) => anyhow::bail!("parameter `{name}` must be a number, got {other}"),
            None => anyhow::bail!("parameter `{name}` is not set"),
        }
    }

    /// A number, or `default` when absent.
    pub fn num_or(&self, name: &str, default: f64) -> anyhow::Result<f64> {
        if self.0.contains_key(name) {
            self.num(name)
        } else {
            Ok(default)
        }
    }

    /// A boolean (`true`/`false`, or the numbers 1/0); `false` when absent.
    pub fn flag(&self, name: &str) -> anyhow::Result<bool> {
        match self.0.get(name) {
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Num(x)) if *x == 0.0 || *x == 1.0 => Ok(*x == 1.0),
            Some(other) => anyhow::bail!("parameter `{name}` must be true or false, got {other}"),
            None => Ok(false),
        }
    }

    /// A string, or `default` when absent.
    pub fn text<'a>(&'a self, name: &str, default: &'a str) -> anyhow::Result<&'a str> {
        match self.0.get(name) {
            Some(Value::Str(s)) => Ok(s),
            Some(other) => anyhow::bail!("parameter `{name}` must be a string, got {other}"),
            None => Ok(default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_mergekit() {
        let g = Setting::from_json(&json!([0.0, 0.5, 1.0])).unwrap();
        assert_eq!(g.evaluate("x", 0.25), Some(Value::Num(0.25)));
        assert_eq!(g.evaluate("x", 1.0), Some(Value::Num(1.0)));
        let c = Setting::from_json(&json!([
            {"filter": "self_attn", "value": [0.0, 1.0]},
            {"filter": "mlp", "value": 0.3},
            {"value": 0.5}
        ]))
        .unwrap();
        assert_eq!(c.evaluate("model.layers.3.self_attn.q_proj.weight", 0.5), Some(Value::Num(0.5)));
        assert_eq!(c.evaluate("model.layers.3.mlp.up_proj.weight", 0.5), Some(Value::Num(0.3)));
        assert_eq!(c.evaluate("model.norm.weight", 0.0), Some(Value::Num(0.5)));
        let no_default = Setting::from_json(&json!([{"filter": "mlp", "value": 1}])).unwrap();
        assert_eq!(no_default.evaluate("model.norm.weight", 0.0), None);
        let steps = Setting::from_json(&json!([true, false])).unwrap();
        assert_eq!(steps.evaluate("x", 0.9), Some(Value::Bool(true)));
        assert_eq!(steps.evaluate("x", 1.0), Some(Value::Bool(false)));
        assert!(Setting::from_json(&json!([])).is_err());
        assert!(Setting::from_json(&json!([{"filter": 3, "value": 1}])).is_err());
        assert!(Setting::from_json(&json!({"value": 1, "fliter": "mlp"})).is_err());
        // serde round trip
        let back: Setting = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
