//! The `miniarena` plugin: `collect` plays MiniArena's task templates with expert policies
//! and writes their traces; `evaluate` plays an agent policy through chosen templates and
//! seeds and reports success rates with standard errors. The environment, the experts and
//! the policy interface live in the SDK crate `agentmerge-miniarena`.

mod collect;
mod config;
mod evaluate;

pub use collect::Collect;
pub use evaluate::Evaluate;

agentmerge_sdk::export_plugin! { name: "miniarena", kinds: [Collect, Evaluate] }
