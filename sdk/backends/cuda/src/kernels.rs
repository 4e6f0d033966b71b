//! The CUDA C kernels: each op's function, the `.cu` file it lives in, compiled by NVRTC into
//! PTX on first use (the prelude prepended), loaded into the backend's context and kept for
//! the backend's life.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};

const PRELUDE: &str = include_str!("kernels/prelude.cu");

/// One kernel source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Elementwise,
    Embedding,
    Rmsnorm,
    Rope,
    Attention,
    Decode,
    Xent,
}

impl Source {
    /// Every file, for the compile check.
    pub const ALL: [Source; 7] = [Source::Elementwise, Source::Embedding, Source::Rmsnorm, Source::Rope, Source::Attention, Source::Decode, Source::Xent];

    /// The file's name and text.
    pub fn file(self) -> (&'static str, &'static str) {
        match self {
            Source::Elementwise => ("elementwise.cu", include_str!("kernels/elementwise.cu")),
            Source::Embedding => ("embedding.cu", include_str!("kernels/embedding.cu")),
            Source::Rmsnorm => ("rmsnorm.cu", include_str!("kernels/rmsnorm.cu")),
            Source::Rope => ("rope.cu", include_str!("kernels/rope.cu")),
            Source::Attention => ("attention.cu", include_str!("kernels/attention.cu")),
            Source::Decode => ("decode.cu", include_str!("kernels/decode.cu")),
            Source::Xent => ("xent.cu", include_str!("kernels/xent.cu")),
        }
    }

    /// The kernels (`extern "C" __global__` functions) the file defines.
    pub fn kernels(self) -> &'static [&'static str] {
        match self {
            Source::Elementwise => &["add_f32", "scale_f32", "swiglu_fwd", "swiglu_bwd", "adamw", "sum_squares"],
            Source::Embedding => &["embedding_fwd", "embedding_bwd"],
            Source::Rmsnorm => &["rmsnorm_fwd", "rmsnorm_bwd_dx", "rmsnorm_bwd_dw"],
            Source::Rope => &["rope"],
            Source::Attention => &["attention_fwd", "attention_dq", "attention_dkv"],
            Source::Decode => &["kv_store", "attention_decode"],
            Source::Xent => &["xent"],
        }
    }
}

/// One kernel: its file and function name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kernel(pub Source, pub &'static str);

/// Compiles `src` (a kernel file, the prelude prepended) into PTX for `arch` (`compute_90`; the
/// NVRTC default when `None`). Needs NVRTC, not a GPU. Precise math: no `--use_fast_math`, so
/// `expf`, `logf`, `sincosf` and division are the accurate ones.
pub fn compile(src: Source, arch: Option<&str>) -> Result<Ptx> {
    let (file, text) = src.file();
    let mut options = Vec::new();
    if let Some(a) = arch {
        options.push(format!("--gpu-architecture={a}"));
    }
    let opts = CompileOptions { name: Some(file.to_string()), options, ..Default::default() };
    cudarc::nvrtc::compile_ptx_with_opts(format!("{PRELUDE}\n{text}"), opts).map_err(|e| match e {
        CompileError::CompileError { log, .. } => anyhow::anyhow!("NVRTC could not compile {file}:\n{}", log.to_string_lossy()),
        other => anyhow::anyhow!("NVRTC could not compile {file}: {other:?}"),
    })
}

/// Modules by file and functions by kernel, compiled and loaded on first use.
pub struct Kernels {
    /// The device's virtual architecture, `compute_XY`.
    arch: String,
    modules: HashMap<Source, Arc<CudaModule>>,
    functions: HashMap<Kernel, CudaFunction>,
}

impl Kernels {
    pub fn new(arch: String) -> Kernels {
        Kernels { arch, modules: HashMap::new(), functions: HashMap::new() }
    }

    /// The function of `k`, compiling and loading its file first when this is its first use.
    pub fn get(&mut self, ctx: &Arc<CudaContext>, k: Kernel) -> Result<&CudaFunction> {
        if !self.functions.contains_key(&k) {
            let module = match self.modules.get(&k.0) {
                Some(m) => m.clone(),
                None => {
                    let t0 = std::time::Instant::now();
                    let ptx = compile(k.0, Some(&self.arch))?;
                    let m = ctx.load_module(ptx).with_context(|| format!("loading the PTX of {} into the CUDA context", k.0.file().0))?;
                    tracing::debug!("cuda: compiled {} for {} in {:.0} ms", k.0.file().0, self.arch, t0.elapsed().as_secs_f64() * 1e3);
                    self.modules.insert(k.0, m.clone());
                    m
                }
            };
            let f = module.load_function(k.1).with_context(|| format!("no kernel `{}` in {}", k.1, k.0.file().0))?;
            self.functions.insert(k, f);
        }
        Ok(&self.functions[&k])
    }
}
