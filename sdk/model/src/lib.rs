//! The Llama-family model, written once against the [`backend::Backend`] op interface, and
//! everything needed to train it: config.json ([`config`]), the flat parameter layout
//! ([`layout`]), explicit forward and backward ([`model`]), AdamW and schedules ([`optim`]),
//! batches from token files ([`data`]), the training loop with resumable checkpoints
//! ([`train`]), Hugging Face checkpoint I/O ([`checkpoint`]), and text generation with a KV cache
//! ([`generate`]). No device code lives here: a backend crate implements [`Backend`] and the
//! same model runs on it.

pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod generate;
pub mod layout;
pub mod model;
pub mod node;
pub mod optim;
pub mod seed;
pub mod train;

pub use backend::{AdamStep, AttnShape, Backend, DecodeShape, Mem, Span, Trans, IGNORE};
pub use config::LlamaConfig;
pub use model::{Batch, Model};
