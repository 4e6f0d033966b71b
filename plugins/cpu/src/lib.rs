//! The `cpu` plugin: the model's node kinds on the CPU backend. Every backend plugin is this
//! file with its own [`BackendKind`]; the node kinds themselves live in `agentmerge_model::node`
//! (training) and `agentmerge_agent::node` (evaluation).

use agentmerge_agent::{EvaluateNode, ForgettingNode, LikelihoodNode};
use agentmerge_backend_cpu::CpuBackend;
use agentmerge_model::{
    node::{BackendKind, Pretrain, Sft, TrainNode},
    Backend,
};

/// The CPU: always present; threads from rayon's pool (`RAYON_NUM_THREADS`).
pub struct Cpu;

impl BackendKind for Cpu {
    const NAME: &'static str = "cpu";
    fn create(_devices: &[usize]) -> anyhow::Result<Box<dyn Backend>> {
        Ok(Box::new(CpuBackend::new()))
    }
}

agentmerge_sdk::export_plugin! {
    name: "cpu",
    kinds: [TrainNode<Cpu, Pretrain>, TrainNode<Cpu, Sft>, EvaluateNode<Cpu>, LikelihoodNode<Cpu>, ForgettingNode<Cpu>]
}
