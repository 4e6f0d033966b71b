//! Merging Hugging Face checkpoints, tensor by tensor: mergekit's methods and AgentMerge's
//! θ = θ_instruct + λ·(θ_agent − θ_base), streamed chunk by chunk from the inputs to a
//! [`CheckpointWriter`](agentmerge_checkpoint::CheckpointWriter) in parallel, with memory
//! bounded by a few tensors per input.
//!
//! * [`MergePlan`] says what to merge; [`parse_mergekit_yaml`] reads one from a mergekit
//!   recipe.
//! * A [`Strategy`] is one function per tensor; [`builtin`] finds mergekit's by name.
//! * [`run_merge`] runs a plan with a strategy into a new checkpoint directory.
//! * [`node::StrategyNode`] makes any strategy a pipeline node kind.
//! * [`vectorized!`] runs a strategy's loops with AVX2/AVX-512 where the CPU has them.
//!
//! See docs/merging.md for every method's formula, parameters and defaults.

mod engine;
pub mod methods;
pub mod node;
mod params;
mod plan;
mod strategy;
mod weighted;

pub use agentmerge_checkpoint::{run_vectorized, vectorized};
pub use engine::{run_merge, MergeReport, CHUNK_ELEMENTS};
pub use methods::{builtin, METHODS};
pub use params::{Conditional, ParamDef, Params, Setting, Settings, Value};
pub use plan::{parse_mergekit_yaml, MergePlan, ModelEntry, TokenizerSource};
pub use strategy::{
    Bf16, Chunk, Float, Input, ParamsView, Passes, ReadFn, ReadStoredFn, Stored, StoredChunk, Strategy, StreamInput, TensorJob, TensorStream, WriteFn,
};
pub use weighted::{Operand, WeightedSum};

use std::path::PathBuf;

use agentmerge_checkpoint::CheckpointError;

/// Why a merge did not happen. Nothing is left in the output directory in every case.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The recipe is not one this engine can run.
    #[error("{file}: {message}")]
    Recipe { file: String, message: String },
    /// A plan that cannot run (a missing base model, models that do not match).
    #[error("{0}")]
    Plan(String),
    /// Reading or writing a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Merging one tensor failed.
    #[error("tensor `{tensor}` ({models}): {message}")]
    Tensor { tensor: String, models: String, message: String },
    #[error("the merge was cancelled; {0} was not created")]
    Cancelled(PathBuf),
}
