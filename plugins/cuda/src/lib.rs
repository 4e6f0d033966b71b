//! The `cuda` plugin: the model's node kinds on the CUDA backend. The same file as the `cpu`
//! plugin with another [`BackendKind`]: configs, ports and outputs are those of `cpu/...`, so a
//! pipeline switches with `--set backend=cuda`. The node runs on the GPU the host assigned it
//! (device 0 when none); a machine without the NVIDIA driver gets a clear error, not a crash.

use agentmerge_agent::{EvaluateNode, ForgettingNode, LikelihoodNode};
use agentmerge_backend_cuda::CudaBackend;
use agentmerge_model::{
    node::{BackendKind, Pretrain, Sft, TrainNode},
    Backend,
};

/// NVIDIA GPUs through the CUDA driver, cuBLAS and NVRTC.
pub struct Cuda;

impl BackendKind for Cuda {
    const NAME: &'static str = "cuda";
    fn create(devices: &[usize]) -> anyhow::Result<Box<dyn Backend>> {
        Ok(Box::new(CudaBackend::on_devices(devices)?))
    }
    fn resources() -> agentmerge_sdk::Resources {
        agentmerge_sdk::Resources::one_gpu()
    }
}

agentmerge_sdk::export_plugin! {
    name: "cuda",
    kinds: [TrainNode<Cuda, Pretrain>, TrainNode<Cuda, Sft>, EvaluateNode<Cuda>, LikelihoodNode<Cuda>, ForgettingNode<Cuda>]
}
