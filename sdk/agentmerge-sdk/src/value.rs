//! The values nodes exchange, and their conversion to and from the ABI types.
//!
//! Small things travel in memory (tensors zero-copy, JSON as text); large things (models,
//! datasets) travel as paths to files in the host's artifact store.

use std::path::{Path, PathBuf};

use abi_stable::std_types::RString;
use serde_json::{Map, Value as Json};

use crate::{abi::FfiValue, manifest::PortType, tensor::Tensor};

/// One value on a port.
#[derive(Clone, Debug)]
pub enum Value {
    Tensor(Tensor),
    /// A Hugging Face-format checkpoint directory (config.json, *.safetensors, tokenizer files).
    Model(PathBuf),
    /// Records with a named schema (`traces`, `sft`, ...), stored at `path`.
    Dataset {
        schema: String,
        path: PathBuf,
    },
    Metrics(Map<String, Json>),
    Scalar(f64),
    Json(Json),
}

impl Value {
    /// The port type this value satisfies.
    pub fn port_type(&self) -> PortType {
        match self {
            Value::Tensor(_) => PortType::Tensor,
            Value::Model(_) => PortType::Model,
            Value::Dataset { schema, .. } => PortType::Dataset(Some(schema.clone())),
            Value::Metrics(_) => PortType::Metrics,
            Value::Scalar(_) => PortType::Scalar,
            Value::Json(_) => PortType::Json,
        }
    }

    /// The value as JSON, for values that are JSON-like (metrics, scalars, JSON).
    pub fn as_json(&self) -> Option<Json> {
        match self {
            Value::Metrics(m) => Some(Json::Object(m.clone())),
            Value::Scalar(x) => Some(Json::from(*x)),
            Value::Json(j) => Some(j.clone()),
            _ => None,
        }
    }

    /// The file or directory behind a model or dataset value.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Value::Model(p) | Value::Dataset { path: p, .. } => Some(p),
            _ => None,
        }
    }

    pub fn into_ffi(self) -> FfiValue {
        fn path(p: PathBuf) -> RString {
            RString::from(p.to_string_lossy().into_owned())
        }
        match self {
            Value::Tensor(t) => FfiValue::Tensor(t.into_raw()),
            Value::Model(p) => FfiValue::Model(path(p)),
            Value::Dataset { schema, path: p } => FfiValue::Dataset { schema: schema.into(), path: path(p) },
            Value::Metrics(m) => FfiValue::Metrics(Json::Object(m).to_string().into()),
            Value::Scalar(x) => FfiValue::Scalar(x),
            Value::Json(j) => FfiValue::Json(j.to_string().into()),
        }
    }

    pub fn from_ffi(v: FfiValue) -> anyhow::Result<Value> {
        Ok(match v {
            FfiValue::Tensor(t) => Value::Tensor(Tensor::from_raw(t)),
            FfiValue::Model(p) => Value::Model(PathBuf::from(p.as_str())),
            FfiValue::Dataset { schema, path } => Value::Dataset { schema: schema.into_string(), path: PathBuf::from(path.as_str()) },
            FfiValue::Metrics(s) => match serde_json::from_str(&s)? {
                Json::Object(m) => Value::Metrics(m),
                other => anyhow::bail!("metrics must be a JSON object, got {other}"),
            },
            FfiValue::Scalar(x) => Value::Scalar(x),
            FfiValue::Json(s) => Value::Json(serde_json::from_str(&s)?),
        })
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Value {
        Value::Scalar(x)
    }
}

impl From<Tensor> for Value {
    fn from(t: Tensor) -> Value {
        Value::Tensor(t)
    }
}

impl From<Map<String, Json>> for Value {
    fn from(m: Map<String, Json>) -> Value {
        Value::Metrics(m)
    }
}
