//! The plugin author's API: a node kind's config, ports and `run` function, and the host
//! services it can use while running.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use abi_stable::std_types::RStr;
use anyhow::{anyhow, bail, Context as _};
use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::{
    abi::HostCtx,
    manifest::{PortSpec, PortType},
    tensor::Tensor,
    value::Value,
};

/// A node kind. The implementing type *is* the node's config: the host deserializes the
/// pipeline's `with:` block into it (unknown fields are an error when the type has
/// `#[serde(deny_unknown_fields)]`, which every kind should have).
pub trait NodeKind: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// The kind's name; pipelines write `uses: PLUGIN/NAME`.
    const NAME: &'static str;
    /// One line saying what the node does, shown by `agentmerge plugins`.
    const DOC: &'static str;

    /// The kind's input and output ports.
    fn ports() -> Ports;

    /// What one instance needs by default (threads, memory, GPUs, or light work that runs in
    /// the driver): one thread unless the kind says otherwise. A pipeline's per-node
    /// `resources:` block overrides it.
    fn resources() -> crate::Resources {
        crate::Resources::default()
    }

    /// Checks beyond the types (ranges, combinations). Called when a pipeline is validated,
    /// before anything runs. Return a [`ConfigError`] naming the field.
    fn check(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Fills in config values that depend on the environment (say, a fingerprint of files the
    /// config names), after [`NodeKind::check`] passed when the pipeline is validated. The
    /// resolved config is part of the node's cache key and is what `run` receives.
    fn resolve(&mut self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Does the work. Files go under [`Ctx::out_dir`]; returned paths must lie inside it.
    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs>;
}

/// A config error, located by the path of the offending field (`weights[1]`, `method.lambda`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigError {
    /// Dotted path of the field inside `with:`; empty for the block as a whole.
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { field: field.into(), message: message.into() }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.field, self.message)
        }
    }
}

/// Builder for a kind's ports.
#[derive(Default, Clone, Debug)]
pub struct Ports {
    pub inputs: Vec<PortSpec>,
    pub outputs: Vec<PortSpec>,
}

impl Ports {
    pub fn new() -> Ports {
        Ports::default()
    }

    fn spec(name: &str, ty: PortType, doc: &str) -> PortSpec {
        PortSpec { name: name.into(), ty, list: false, optional: false, doc: doc.into() }
    }

    /// A required input taking exactly one value.
    pub fn input(mut self, name: &str, ty: PortType, doc: &str) -> Ports {
        self.inputs.push(Ports::spec(name, ty, doc));
        self
    }

    /// An input that may be left unconnected.
    pub fn optional_input(mut self, name: &str, ty: PortType, doc: &str) -> Ports {
        self.inputs.push(PortSpec { optional: true, ..Ports::spec(name, ty, doc) });
        self
    }

    /// An input taking a list of values (at least one).
    pub fn list_input(mut self, name: &str, ty: PortType, doc: &str) -> Ports {
        self.inputs.push(PortSpec { list: true, ..Ports::spec(name, ty, doc) });
        self
    }

    pub fn output(mut self, name: &str, ty: PortType, doc: &str) -> Ports {
        self.outputs.push(Ports::spec(name, ty, doc));
        self
    }

    /// An output carrying a list of values.
    pub fn list_output(mut self, name: &str, ty: PortType, doc: &str) -> Ports {
        self.outputs.push(PortSpec { list: true, ..Ports::spec(name, ty, doc) });
        self
    }
}

/// The values on a node's input ports.
#[derive(Debug, Default)]
pub struct Inputs {
    ports: BTreeMap<String, Vec<Value>>,
}

impl Inputs {
    pub fn new(ports: BTreeMap<String, Vec<Value>>) -> Inputs {
        Inputs { ports }
    }

    /// All values on `port` (empty when an optional port is unconnected).
    pub fn get(&self, port: &str) -> &[Value] {
        self.ports.get(port).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn is_connected(&self, port: &str) -> bool {
        !self.get(port).is_empty()
    }

    /// The one value on `port`.
    pub fn one(&self, port: &str) -> anyhow::Result<&Value> {
        match self.get(port) {
            [v] => Ok(v),
            [] => bail!("input `{port}` is not connected"),
            vs => bail!("input `{port}` has {} values, expected one", vs.len()),
        }
    }

    pub fn model(&self, port: &str) -> anyhow::Result<PathBuf> {
        match self.one(port)? {
            Value::Model(p) => Ok(p.clone()),
            v => bail!("input `{port}`: expected a model, got {}", v.port_type()),
        }
    }

    pub fn models(&self, port: &str) -> anyhow::Result<Vec<PathBuf>> {
        self.get(port)
            .iter()
            .map(|v| match v {
                Value::Model(p) => Ok(p.clone()),
                v => Err(anyhow!("input `{port}`: expected models, got {}", v.port_type())),
            })
            .collect()
    }

    /// The dataset on `port`: (schema, path).
    pub fn dataset(&self, port: &str) -> anyhow::Result<(String, PathBuf)> {
        match self.one(port)? {
            Value::Dataset { schema, path } => Ok((schema.clone(), path.clone())),
            v => bail!("input `{port}`: expected a dataset, got {}", v.port_type()),
        }
    }

    pub fn datasets(&self, port: &str) -> anyhow::Result<Vec<(String, PathBuf)>> {
        self.get(port)
            .iter()
            .map(|v| match v {
                Value::Dataset { schema, path } => Ok((schema.clone(), path.clone())),
                v => Err(anyhow!("input `{port}`: expected datasets, got {}", v.port_type())),
            })
            .collect()
    }

    pub fn tensor(&self, port: &str) -> anyhow::Result<Tensor> {
        match self.one(port)? {
            Value::Tensor(t) => Ok(t.clone()),
            v => bail!("input `{port}`: expected a tensor, got {}", v.port_type()),
        }
    }

    pub fn scalar(&self, port: &str) -> anyhow::Result<f64> {
        match self.one(port)? {
            Value::Scalar(x) => Ok(*x),
            v => bail!("input `{port}`: expected a scalar, got {}", v.port_type()),
        }
    }

    pub fn metrics(&self, port: &str) -> anyhow::Result<Map<String, Json>> {
        match self.one(port)? {
            Value::Metrics(m) => Ok(m.clone()),
            v => bail!("input `{port}`: expected metrics, got {}", v.port_type()),
        }
    }

    /// Any JSON-like value (metrics, scalar or JSON) on `port`.
    pub fn json(&self, port: &str) -> anyhow::Result<Json> {
        let v = self.one(port)?;
        v.as_json().ok_or_else(|| anyhow!("input `{port}`: expected JSON, got {}", v.port_type()))
    }
}

/// The values a node produces, by output port.
#[derive(Debug, Default)]
pub struct Outputs {
    pub(crate) ports: Vec<(String, Vec<Value>)>,
}

impl Outputs {
    pub fn new() -> Outputs {
        Outputs::default()
    }

    /// Sets a single-valued output port.
    pub fn with(mut self, port: &str, value: impl Into<Value>) -> Outputs {
        self.ports.push((port.to_string(), vec![value.into()]));
        self
    }

    /// Sets a list output port.
    pub fn with_list(mut self, port: &str, values: Vec<Value>) -> Outputs {
        self.ports.push((port.to_string(), values));
        self
    }

    pub fn into_ports(self) -> Vec<(String, Vec<Value>)> {
        self.ports
    }
}

/// Host services available to a running node. `Ctx` is `Sync`: worker threads may report
/// progress and check for cancellation.
pub struct Ctx<'a> {
    raw: &'a HostCtx,
}

impl<'a> Ctx<'a> {
    pub fn from_raw(raw: &'a HostCtx) -> Ctx<'a> {
        Ctx { raw }
    }

    /// The node's id in the pipeline, e.g. `merge[lambda=0.5]`.
    pub fn node_id(&self) -> &str {
        &self.raw.node_id
    }

    /// The directory this node writes its outputs into. It exists and is empty at the start.
    pub fn out_dir(&self) -> &Path {
        Path::new(self.raw.out_dir.as_str())
    }

    /// A directory private to this node's cache key that outlives a failed, cancelled or killed
    /// run of the node (the out_dir does not): put resumable state here (training checkpoints).
    /// The host creates it before `run` and removes it once the node's outputs are committed to
    /// the store; a later run of the same node with the same key finds what an interrupted one
    /// left.
    pub fn work_dir(&self) -> &Path {
        Path::new(self.raw.work_dir.as_str())
    }

    /// The memo directory of this node's plugin and kind, shared across nodes and runs
    /// (`STORE/memo/<hash of the plugin's identity and the kind>/`): per-item results a node
    /// may look up before computing them again, e.g. one row per checkpoint of a list, under
    /// keys the node derives from everything the item depends on. `None` when the run must not
    /// reuse anything (`--no-cache`, or `--force` on this node). The directory may not exist
    /// yet; [`crate::Memo`] creates it on its first write. See [`Ctx::memo`].
    pub fn memo_dir(&self) -> Option<&Path> {
        let dir = self.raw.memo_dir.as_str();
        (!dir.is_empty()).then(|| Path::new(dir))
    }

    /// The memo of this node's plugin and kind ([`Ctx::memo_dir`]), or `None` when disabled.
    pub fn memo(&self) -> Option<crate::Memo> {
        self.memo_dir().map(crate::Memo::new)
    }

    /// The node's seed: the run's seed mixed with the node's id, stable across runs.
    pub fn seed(&self) -> u64 {
        self.raw.seed
    }

    /// Reports that `done` of `total` units are finished (the host draws the bar).
    pub fn progress(&self, done: u64, total: u64, message: &str) {
        (self.raw.progress)(self.raw.data, done, total, RStr::from(message));
    }

    /// The threads this node was given (the host shares the machine's cores out between the
    /// nodes running at once; a cluster job gets its allocation). The SDK runs the node inside
    /// a rayon pool of this size, so `rayon::current_num_threads()` agrees.
    pub fn threads(&self) -> usize {
        (self.raw.threads as usize).max(1)
    }

    /// The GPU devices this node was given, as indices of the machine's GPUs (for a backend
    /// to open; `CUDA_VISIBLE_DEVICES` numbering). Empty when the host assigned none: the
    /// backend picks its default.
    pub fn devices(&self) -> Vec<usize> {
        self.raw.devices.as_str().split(',').filter_map(|d| d.trim().parse().ok()).collect()
    }

    /// True once the user asked the run to stop.
    pub fn is_cancelled(&self) -> bool {
        (self.raw.cancelled)(self.raw.data)
    }

    /// An error when the run was cancelled; call it between units of work: `ctx.check()?`.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.is_cancelled() {
            bail!("cancelled");
        }
        Ok(())
    }

    /// A path inside the output directory, with its parent directories created.
    pub fn out_path(&self, relative: &str) -> anyhow::Result<PathBuf> {
        let p = self.out_dir().join(relative);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        Ok(p)
    }
}

/// Parses a node's `with:` block into `T`, naming the field on error.
pub fn parse_config<T: NodeKind>(config: &Json) -> Result<T, ConfigError> {
    let value: T = serde_path_to_error::deserialize(config).map_err(|e| {
        let field = e.path().to_string();
        ConfigError::new(if field == "." { String::new() } else { field }, e.into_inner().to_string())
    })?;
    value.check()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a checkpoint.
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        /// How many.
        count: u32,
        #[serde(default)]
        inner: Inner,
    }

    #[derive(Serialize, Deserialize, JsonSchema, Default)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default)]
        rate: f64,
    }

    impl NodeKind for Demo {
        const NAME: &'static str = "demo";
        const DOC: &'static str = "demo";
        fn ports() -> Ports {
            Ports::new()
        }
        fn check(&self) -> Result<(), ConfigError> {
            if self.count == 0 {
                return Err(ConfigError::new("count", "must be at least 1"));
            }
            Ok(())
        }
        fn run(&self, _: &Ctx, _: Inputs) -> anyhow::Result<Outputs> {
            Ok(Outputs::new())
        }
    }

    #[test]
    fn config_errors_name_the_field_and_list_valid_ones() {
        let e = parse_config::<Demo>(&serde_json::json!({"count": 1, "inner": {"rat": 1}})).err().unwrap();
        assert_eq!(e.field, "inner.rat");
        assert!(e.message.contains("unknown field `rat`, expected `rate`"), "{e}");
        let e = parse_config::<Demo>(&serde_json::json!({"count": "x"})).err().unwrap();
        assert_eq!(e.field, "count");
        let e = parse_config::<Demo>(&serde_json::json!({"count": 0})).err().unwrap();
        assert_eq!((e.field.as_str(), e.message.as_str()), ("count", "must be at least 1"));
        let e = parse_config::<Demo>(&serde_json::json!({})).err().unwrap();
        assert!(e.message.contains("missing field `count`"), "{e}");
    }
}
