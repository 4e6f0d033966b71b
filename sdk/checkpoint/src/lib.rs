//! Hugging Face checkpoint directories: `config.json`, `model.safetensors` or shards with
//! `model.safetensors.index.json`, and tokenizer files.
//!
//! [`Checkpoint`] memory-maps every shard and validates every header when opened, so reading a
//! tensor is a zero-copy slice and a corrupt file is an error naming the file and the tensor,
//! never a panic. [`CheckpointWriter`] lays out all shards up front so tensors can be written
//! in any order from many threads, and the directory appears atomically on
//! [`CheckpointWriter::finish`].

mod convert;
mod read;
mod simd;
mod write;

pub use agentmerge_sdk::DType;
pub use convert::{bf16_bits, cast_f32_into, cast_f64_into, f32_to_bytes, f64_to_bytes, to_f32_into, to_f64_into};
pub use read::{layer_index, num_layers, Checkpoint, Mapped, TensorInfo, TensorView};
pub use simd::{run_vectorized, simd_level, SimdLevel};
pub use write::{CheckpointWriter, TensorSpec, WriteOptions, TOKENIZER_FILES};

use std::path::PathBuf;

/// What can go wrong with a checkpoint; every message says which file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a valid safetensors file: {message}; the file may be truncated or corrupt — re-download or re-export it")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor { path: PathBuf, tensor: String, message: String },
    #[error("{dir}: no model.safetensors or model.safetensors.index.json; is this a Hugging Face checkpoint directory? (PyTorch .bin checkpoints must be converted to safetensors first)")]
    NotACheckpoint { dir: PathBuf },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl CheckpointError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> CheckpointError {
        CheckpointError::Io { path: path.into(), source }
    }
}

pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

/// Names for [`DType`] beyond its safetensors name: the PyTorch names used in `config.json`'s
/// `torch_dtype`, and whether it is a floating-point type. `DType` is `Copy`, so these take
/// it by value.
#[allow(clippy::wrong_self_convention)]
pub trait DTypeExt: Sized {
    /// `"F32"`, `"BF16"`, ... as in a safetensors header.
    fn as_safetensors_str(self) -> &'static str;
    /// `"float32"`, `"bfloat16"`, ... as in `config.json`'s `torch_dtype`.
    fn torch_name(self) -> &'static str;
    /// Parses a PyTorch name (`"bfloat16"`, also `"torch.bfloat16"`).
    fn from_torch_name(name: &str) -> Option<Self>;
    /// F32, F16, BF16 or F64.
    fn is_float(self) -> bool;
}

impl DTypeExt for DType {
    fn as_safetensors_str(self) -> &'static str {
        self.name()
    }

    fn torch_name(self) -> &'static str {
        torch_dtype_name(self)
    }

    fn from_torch_name(name: &str) -> Option<DType> {
        let name = name.strip_prefix("torch.").unwrap_or(name);
        DType::ALL.into_iter().find(|d| torch_dtype_name(*d) == name)
    }

    fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
    }
}

/// The PyTorch dtype names used in `config.json`'s `torch_dtype`.
pub fn torch_dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::F64 => "float64",
        DType::I64 => "int64",
        DType::I32 => "int32",
        DType::U8 => "uint8",
        DType::Bool => "bool",
    }
}

/// Parses a dtype written either way (`bfloat16`, `bf16`, `BF16`).
pub fn parse_dtype(s: &str) -> Option<DType> {
    match s.to_ascii_lowercase().as_str() {
        "float32" | "f32" | "fp32" => Some(DType::F32),
        "float16" | "f16" | "fp16" | "half" => Some(DType::F16),
        "bfloat16" | "bf16" => Some(DType::BF16),
        "float64" | "f64" | "fp64" | "double" => Some(DType::F64),
        other => DType::parse(other),
    }
}
