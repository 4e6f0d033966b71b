//! The `wgpu` plugin: the model's node kinds on the wgpu backend. The same file as the `cpu`
//! plugin with another [`BackendKind`]: configs, ports and outputs are those of `cpu/...`, so a
//! pipeline switches with `--set backend=wgpu`. The adapter is the best one found, or the one
//! `AGENTMERGE_WGPU_ADAPTER` names (a backend such as `vulkan`, part of an adapter's name, or an
//! index).

use agentmerge_agent::{EvaluateNode, ForgettingNode, LikelihoodNode};
use agentmerge_backend_wgpu::WgpuBackend;
use agentmerge_model::{
    node::{BackendKind, Pretrain, Sft, TrainNode},
    Backend,
};

/// Any GPU wgpu drives (Vulkan, Metal, DX12, GL), or a software adapter.
pub struct Wgpu;

impl BackendKind for Wgpu {
    const NAME: &'static str = "wgpu";
    fn create(devices: &[usize]) -> anyhow::Result<Box<dyn Backend>> {
        Ok(Box::new(WgpuBackend::on_devices(devices)?))
    }
    fn resources() -> agentmerge_sdk::Resources {
        agentmerge_sdk::Resources::one_gpu()
    }
}

agentmerge_sdk::export_plugin! {
    name: "wgpu",
    kinds: [TrainNode<Wgpu, Pretrain>, TrainNode<Wgpu, Sft>, EvaluateNode<Wgpu>, LikelihoodNode<Wgpu>, ForgettingNode<Wgpu>]
}
