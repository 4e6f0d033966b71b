//! What a plugin library publishes about itself: its name and version, the SDK it was built
//! against, and for each node kind the doc line, typed ports, config schema and the resources
//! one instance needs.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// A plugin library's self-description, sent to the host as JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub plugin: String,
    pub version: String,
    pub sdk_version: String,
    pub kinds: Vec<KindManifest>,
}

/// One node kind: `uses: plugin/name` in a pipeline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KindManifest {
    pub name: String,
    pub doc: String,
    pub inputs: Vec<PortSpec>,
    pub outputs: Vec<PortSpec>,
    /// JSON Schema of the `with:` block (from `schemars`).
    pub config_schema: serde_json::Value,
    /// What one instance needs by default; a pipeline may override it per node.
    #[serde(default)]
    pub resources: Resources,
}

/// What one instance of a node kind needs: the host's local scheduler and the cluster executors
/// read it (`--cpus-per-task`, `--mem`, `--gres=gpu:N`). A pipeline node's `resources:` block
/// overrides any field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Light work (statistics, reports, small files): runs in the driver, never as a cluster job,
    /// and takes no share of the machine's threads.
    #[serde(default)]
    pub light: bool,
    /// Threads one instance uses well; 0 for as many as it is given (a trainer).
    #[serde(default = "one")]
    pub cpus: u32,
    /// Memory, e.g. `512M`, `8G`; empty for the executor's default.
    #[serde(default)]
    pub mem: String,
    /// GPUs (each gets its own device).
    #[serde(default)]
    pub gpus: u32,
    /// A config field whose integer value, when set, is the number of GPUs instead of `gpus`
    /// (e.g. `devices` of a data-parallel trainer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_from: Option<String>,
}

fn one() -> u32 {
    1
}

impl Default for Resources {
    fn default() -> Resources {
        Resources { light: false, cpus: 1, mem: String::new(), gpus: 0, gpus_from: None }
    }
}

impl Resources {
    /// Light work: runs in the driver.
    pub fn light() -> Resources {
        Resources { light: true, cpus: 0, ..Resources::default() }
    }
    /// Uses every thread it is given.
    pub fn all_threads() -> Resources {
        Resources { cpus: 0, ..Resources::default() }
    }
    /// One GPU (and the threads that feed it).
    pub fn one_gpu() -> Resources {
        Resources { gpus: 1, ..Resources::default() }
    }
    pub fn with_mem(mut self, mem: &str) -> Resources {
        self.mem = mem.to_string();
        self
    }
}

impl KindManifest {
    pub fn input(&self, name: &str) -> Option<&PortSpec> {
        self.inputs.iter().find(|p| p.name == name)
    }
    pub fn output(&self, name: &str) -> Option<&PortSpec> {
        self.outputs.iter().find(|p| p.name == name)
    }

    /// The config fields as (name, type, default, description) rows, for `agentmerge plugins`.
    pub fn config_fields(&self) -> Vec<ConfigField> {
        let schema = &self.config_schema;
        let required: Vec<&str> = schema["required"].as_array().map(|r| r.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
        let Some(props) = schema["properties"].as_object() else {
            return Vec::new();
        };
        props
            .iter()
            .map(|(name, p)| ConfigField {
                name: name.clone(),
                ty: schema_type(p, schema),
                required: required.contains(&name.as_str()),
                default: p.get("default").cloned(),
                doc: p["description"].as_str().unwrap_or("").replace('\n', " "),
            })
            .collect()
    }
}

/// One row of a kind's config schema.
#[derive(Clone, Debug)]
pub struct ConfigField {
    pub name: String,
    pub ty: String,
    pub required: bool,
    pub default: Option<serde_json::Value>,
    pub doc: String,
}

/// A short type name for a JSON Schema node (`integer`, `number[]`, `string | null`, enum values).
fn schema_type(p: &serde_json::Value, root: &serde_json::Value) -> String {
    if let Some(r) = p["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        let def = &root["$defs"][name];
        if let Some(vals) = def["enum"].as_array() {
            return vals.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" | ");
        }
        if let Some(alts) = def["oneOf"].as_array() {
            let consts: Vec<String> = alts.iter().filter_map(|a| a.get("const").map(|c| c.to_string())).collect();
            if consts.len() == alts.len() {
                return consts.join(" | ");
            }
        }
        return name.to_string();
    }
    if let Some(vals) = p["enum"].as_array() {
        return vals.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" | ");
    }
    if let Some(any) = p["anyOf"].as_array() {
        return any.iter().map(|a| schema_type(a, root)).collect::<Vec<_>>().join(" | ");
    }
    match &p["type"] {
        serde_json::Value::String(t) if t == "array" => {
            format!("{}[]", schema_type(&p["items"], root))
        }
        serde_json::Value::String(t) => t.clone(),
        serde_json::Value::Array(ts) => ts.iter().filter_map(|t| t.as_str()).collect::<Vec<_>>().join(" | "),
        _ => "any".to_string(),
    }
}

/// A port of a node kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PortSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: PortType,
    /// A list port takes any number of values (several models for a merge, say).
    #[serde(default)]
    pub list: bool,
    /// An optional input may be left unconnected.
    #[serde(default)]
    pub optional: bool,
    #[serde(default)]
    pub doc: String,
}

/// What travels on a port. Written `model`, `dataset`, `dataset:SCHEMA`, `tensor`, `metrics`,
/// `scalar` or `json`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortType {
    Model,
    /// A dataset; `None` on an input accepts any schema.
    Dataset(Option<String>),
    Tensor,
    Metrics,
    Scalar,
    Json,
}

impl PortType {
    /// Can an output of type `self` feed an input of type `input`?
    pub fn feeds(&self, input: &PortType) -> bool {
        match (self, input) {
            (PortType::Dataset(_), PortType::Dataset(None)) => true,
            (PortType::Metrics | PortType::Scalar, PortType::Json) => true,
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for PortType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortType::Model => f.write_str("model"),
            PortType::Dataset(None) => f.write_str("dataset"),
            PortType::Dataset(Some(s)) => write!(f, "dataset:{s}"),
            PortType::Tensor => f.write_str("tensor"),
            PortType::Metrics => f.write_str("metrics"),
            PortType::Scalar => f.write_str("scalar"),
            PortType::Json => f.write_str("json"),
        }
    }
}

impl FromStr for PortType {
    type Err = String;
    fn from_str(s: &str) -> Result<PortType, String> {
        Ok(match s {
            "model" => PortType::Model,
            "dataset" => PortType::Dataset(None),
            "tensor" => PortType::Tensor,
            "metrics" => PortType::Metrics,
            "scalar" => PortType::Scalar,
            "json" => PortType::Json,
            _ => match s.strip_prefix("dataset:") {
                Some(schema) if !schema.is_empty() => PortType::Dataset(Some(schema.to_string())),
                _ => return Err(format!("unknown port type `{s}`: expected model, dataset, dataset:SCHEMA, tensor, metrics, scalar or json")),
            },
        })
    }
}

impl Serialize for PortType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PortType, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_types_round_trip_and_compat() {
        for s in ["model", "dataset", "dataset:sft", "tensor", "metrics", "scalar", "json"] {
            assert_eq!(s.parse::<PortType>().unwrap().to_string(), s);
        }
        assert!("dataset:".parse::<PortType>().is_err());
        let sft: PortType = "dataset:sft".parse().unwrap();
        assert!(sft.feeds(&PortType::Dataset(None)));
        assert!(!sft.feeds(&"dataset:traces".parse().unwrap()));
        assert!(!PortType::Dataset(None).feeds(&sft));
        assert!(PortType::Metrics.feeds(&PortType::Json));
        assert!(!PortType::Model.feeds(&PortType::Tensor));
    }
}
