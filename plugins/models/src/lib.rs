//! The `models` plugin: checkpoints without a GPU or a download. `random_llama` writes a
//! Llama-shaped Hugging Face checkpoint (real tensor names and config.json) from a seed,
//! `perturb` adds seeded noise to a checkpoint (a stand-in for fine-tuning in demos), and
//! `summarize` reports parameter counts, norms and distances as metrics. `load` brings a
//! Hugging Face checkpoint of your own into a pipeline.

mod load;
mod random;
mod summarize;

pub use load::Load;
pub use random::{Perturb, RandomLlama};
pub use summarize::Summarize;

agentmerge_sdk::export_plugin! { name: "models", kinds: [Load, RandomLlama, Perturb, Summarize] }
