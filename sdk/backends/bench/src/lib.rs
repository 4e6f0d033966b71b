//! What the bench binaries share: opening a backend by name, so one run measures several
//! backends on the same configs (`--backend cpu,wgpu,cuda`), the model configs, and peak memory.

use agentmerge_model::Backend;

/// The backends the benches know.
pub const BACKENDS: &[&str] = &["cpu", "wgpu", "cuda"];

/// Opens the backend `name` (`cpu`, `wgpu`, `cuda`; the wgpu adapter as
/// `AGENTMERGE_WGPU_ADAPTER` says, CUDA device 0).
pub fn open(name: &str) -> anyhow::Result<Box<dyn Backend>> {
    Ok(match name {
        "cpu" => Box::new(agentmerge_backend_cpu::CpuBackend::new()),
        "wgpu" => Box::new(agentmerge_backend_wgpu::WgpuBackend::new()?),
        "cuda" => Box::new(agentmerge_backend_cuda::CudaBackend::new()?),
        other => anyhow::bail!("unknown backend `{other}`; one of {}", BACKENDS.join(", ")),
    })
}

/// A model and batch shape the benches run (`--config`).
pub struct Bench {
    pub name: &'static str,
    pub vocab: usize,
    pub hidden: usize,
    pub inter: usize,
    pub layers: usize,
    pub heads: usize,
    /// Training's tokens per row and rows per step.
    pub seq: usize,
    pub batch: usize,
}

/// The configs, smallest first. `h768l12` is GPT-2 small's size (123M parameters: 85M in the
/// layers, 38M in the untied embeddings), the scale GPU throughput is usually quoted at.
pub const CONFIGS: &[Bench] = &[
    Bench { name: "h128l4", vocab: 4096, hidden: 128, inter: 344, layers: 4, heads: 4, seq: 256, batch: 8 },
    Bench { name: "h256l4", vocab: 4096, hidden: 256, inter: 688, layers: 4, heads: 4, seq: 256, batch: 8 },
    Bench { name: "h512l8", vocab: 4096, hidden: 512, inter: 1376, layers: 8, heads: 8, seq: 256, batch: 8 },
    Bench { name: "h768l12", vocab: 24576, hidden: 768, inter: 2048, layers: 12, heads: 12, seq: 1024, batch: 4 },
];

/// The config called `name`.
pub fn config(name: &str) -> anyhow::Result<&'static Bench> {
    CONFIGS
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| anyhow::anyhow!("unknown config `{name}`; one of {}", CONFIGS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")))
}

/// The `--backend` list (default `cpu`).
pub fn backends(arg: Option<String>) -> Vec<String> {
    arg.unwrap_or_else(|| "cpu".into()).split(',').map(str::to_string).collect()
}

/// The process's peak resident memory in MiB (Linux), NaN elsewhere.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
