//! What the bench binaries share: opening a backend by name, so one run measures several
//! backends on the same configs (`--backend cpu,wgpu`), and peak memory.

use agentmerge_model::Backend;

/// The backends the benches know.
pub const BACKENDS: &[&str] = &["cpu", "wgpu"];

/// Opens the backend `name` (`cpu`, `wgpu`; the wgpu adapter as `AGENTMERGE_WGPU_ADAPTER` says).
pub fn open(name: &str) -> anyhow::Result<Box<dyn Backend>> {
    Ok(match name {
        "cpu" => Box::new(agentmerge_backend_cpu::CpuBackend::new()),
        "wgpu" => Box::new(agentmerge_backend_wgpu::WgpuBackend::new()?),
        other => anyhow::bail!("unknown backend `{other}`; one of {}", BACKENDS.join(", ")),
    })
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
