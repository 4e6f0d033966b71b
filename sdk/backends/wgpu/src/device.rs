//! Finding and opening the adapter: the user's choice (`AGENTMERGE_WGPU_ADAPTER`), the adapter's
//! own limits (not wgpu's conservative defaults), and errors that say what is missing and what
//! there is to choose from.

use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};

/// The environment variable that picks the adapter: a backend (`vulkan`, `metal`, `dx12`, `gl`),
/// part of an adapter's name (`llvmpipe`, `nvidia`, `rtx 4090`; case-insensitive), or an index
/// into the list the "no such adapter" error prints. Unset: the best adapter found — a discrete
/// GPU before an integrated one before a CPU (software) adapter; Vulkan, Metal and DX12 before GL.
pub const ADAPTER_ENV: &str = "AGENTMERGE_WGPU_ADAPTER";

/// The most storage buffers one kernel binds (attention's backward: ten spans and the parameter
/// block).
const STORAGE_BUFFERS: u32 = 11;

/// An open device.
pub(crate) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// The first validation or device-lost error wgpu reported (ops cannot return errors; the
    /// next call that can reports it).
    pub error: Arc<Mutex<Option<String>>>,
}

fn describe(a: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", a.name, a.backend, a.device_type)
}

fn rank(a: &wgpu::AdapterInfo) -> (u8, u8) {
    let ty = match a.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let be = if a.backend == wgpu::Backend::Gl { 1 } else { 0 };
    (ty, be)
}

fn backend_named(s: &str) -> Option<wgpu::Backends> {
    Some(match s {
        "vulkan" | "vk" => wgpu::Backends::VULKAN,
        "metal" => wgpu::Backends::METAL,
        "dx12" | "d3d12" => wgpu::Backends::DX12,
        "gl" | "opengl" | "gles" => wgpu::Backends::GL,
        _ => return None,
    })
}

fn adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    let mut list = pollster::block_on(instance.enumerate_adapters(backends));
    list.sort_by_key(|a| rank(&a.get_info()));
    list
}

/// Every adapter wgpu finds, best first (GL only looked for when nothing else is there, or when
/// asked: probing it prints noise on machines without a display).
fn all_adapters(want_gl: bool) -> Vec<wgpu::Adapter> {
    let primary = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
    let mut list = adapters(primary);
    if list.is_empty() || want_gl {
        list.extend(adapters(wgpu::Backends::GL));
    }
    list
}

fn choose(choice: Option<&str>) -> Result<wgpu::Adapter> {
    let choice = choice.map(str::trim).filter(|c| !c.is_empty()).map(str::to_lowercase);
    let Some(c) = choice else {
        return all_adapters(false).into_iter().next().context(
            "no wgpu adapter found: this machine has no Vulkan, Metal, DX12 or GL driver that wgpu can use. \
             On Linux without a GPU, install Mesa's software Vulkan driver (`apt-get install mesa-vulkan-drivers`) \
             or use the `cpu` backend (`--set backend=cpu`)",
        );
    };
    if let Some(b) = backend_named(&c) {
        if let Some(a) = adapters(b).into_iter().next() {
            return Ok(a);
        }
    }
    let list = all_adapters(true);
    let found = match c.parse::<usize>() {
        Ok(i) => list.get(i).cloned(),
        Err(_) => list.iter().find(|a| a.get_info().name.to_lowercase().contains(&c)).cloned(),
    };
    if let Some(a) = found {
        return Ok(a);
    }
    let names: Vec<String> = list.iter().enumerate().map(|(i, a)| format!("  {i}: {}", describe(&a.get_info()))).collect();
    if names.is_empty() {
        bail!("{ADAPTER_ENV}={c}: no wgpu adapter found at all (no Vulkan, Metal, DX12 or GL driver); unset it and install a driver, or use the `cpu` backend");
    }
    bail!("{ADAPTER_ENV}={c} names no adapter; set it to a backend (vulkan, metal, dx12, gl), part of a name or an index:\n{}", names.join("\n"))
}

/// Opens the adapter `choice` names (see [`ADAPTER_ENV`]), with its own limits.
pub(crate) fn open(choice: Option<&str>) -> Result<Gpu> {
    open_adapter(choose(choice)?)
}

/// Opens GPU `index` of the machine: the `index`-th hardware adapter (discrete, integrated or
/// virtual GPU; software adapters and GL left out), in the order the driver lists them — the
/// order `CUDA_VISIBLE_DEVICES` numbers NVIDIA GPUs in on a machine with only those.
pub(crate) fn open_gpu(index: usize) -> Result<Gpu> {
    let primary = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = primary;
    let instance = wgpu::Instance::new(desc);
    let gpus: Vec<wgpu::Adapter> = pollster::block_on(instance.enumerate_adapters(primary))
        .into_iter()
        .filter(|a| !matches!(a.get_info().device_type, wgpu::DeviceType::Cpu | wgpu::DeviceType::Other))
        .collect();
    let n = gpus.len();
    let adapter = gpus.into_iter().nth(index).with_context(|| {
        format!("the host assigned this node GPU {index}, but wgpu sees {n} hardware GPU adapter(s); set {ADAPTER_ENV} to choose one, or AGENTMERGE_GPUS to the number of GPUs")
    })?;
    open_adapter(adapter)
}

fn open_adapter(adapter: wgpu::Adapter) -> Result<Gpu> {
    let info = adapter.get_info();
    let limits = adapter.limits();
    if limits.max_storage_buffers_per_shader_stage < STORAGE_BUFFERS {
        bail!(
            "wgpu adapter {} allows {} storage buffers per shader stage; the kernels need {STORAGE_BUFFERS}. Choose another adapter ({ADAPTER_ENV}) or use the `cpu` backend",
            describe(&info),
            limits.max_storage_buffers_per_shader_stage
        );
    }
    let desc = wgpu::DeviceDescriptor {
        label: Some("agentmerge"),
        required_features: wgpu::Features::empty(),
        required_limits: limits.clone(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&desc)).with_context(|| format!("opening wgpu adapter {}", describe(&info)))?;
    let error = Arc::new(Mutex::new(None::<String>));
    let slot = error.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        if s.is_none() {
            *s = Some(e.to_string());
        }
    }));
    let slot = error.clone();
    device.set_device_lost_callback(move |reason, msg| {
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        if s.is_none() {
            *s = Some(format!("device lost ({reason:?}): {msg}"));
        }
    });
    Ok(Gpu { device, queue, info, limits, error })
}

impl Gpu {
    pub fn describe(&self) -> String {
        describe(&self.info)
    }
}
