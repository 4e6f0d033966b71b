//! The WGSL kernels: each op's entry point, its shader file and its bindings, compiled into
//! pipelines on first use and kept for the backend's life.

use std::collections::HashMap;

/// One compute entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kernel {
    CopyF32,
    CopyU32,
    Add,
    Scale,
    SwigluFwd,
    SwigluBwd,
    Adamw,
    SumSquares,
    Matmul,
    EmbeddingFwd,
    EmbeddingBwd,
    RmsnormFwd,
    RmsnormBwdDx,
    RmsnormBwdDw,
    Rope,
    Xent,
    AttentionFwd,
    AttentionDq,
    AttentionDkv,
    KvStore,
    AttentionDecode,
}

const PRELUDE: &str = include_str!("shaders/prelude.wgsl");

impl Kernel {
    /// The shader file and the entry point's name.
    fn source(self) -> (&'static str, &'static str, &'static str) {
        use Kernel::*;
        const ELEMENTWISE: (&str, &str) = ("elementwise.wgsl", include_str!("shaders/elementwise.wgsl"));
        const RMSNORM: (&str, &str) = ("rmsnorm.wgsl", include_str!("shaders/rmsnorm.wgsl"));
        const EMBEDDING: (&str, &str) = ("embedding.wgsl", include_str!("shaders/embedding.wgsl"));
        const ATTN_BWD: (&str, &str) = ("attention_bwd.wgsl", include_str!("shaders/attention_bwd.wgsl"));
        const DECODE: (&str, &str) = ("decode.wgsl", include_str!("shaders/decode.wgsl"));
        let ((file, src), entry) = match self {
            CopyF32 => (ELEMENTWISE, "copy_f32"),
            Add => (ELEMENTWISE, "add"),
            Scale => (ELEMENTWISE, "scale"),
            SwigluFwd => (ELEMENTWISE, "swiglu_fwd"),
            SwigluBwd => (ELEMENTWISE, "swiglu_bwd"),
            Adamw => (ELEMENTWISE, "adamw"),
            SumSquares => (ELEMENTWISE, "sum_squares"),
            CopyU32 => (("ids.wgsl", include_str!("shaders/ids.wgsl")), "copy_u32"),
            Matmul => (("matmul.wgsl", include_str!("shaders/matmul.wgsl")), "matmul"),
            EmbeddingFwd => (EMBEDDING, "embedding_fwd"),
            EmbeddingBwd => (EMBEDDING, "embedding_bwd"),
            RmsnormFwd => (RMSNORM, "rmsnorm_fwd"),
            RmsnormBwdDx => (RMSNORM, "rmsnorm_bwd_dx"),
            RmsnormBwdDw => (RMSNORM, "rmsnorm_bwd_dw"),
            Rope => (("rope.wgsl", include_str!("shaders/rope.wgsl")), "rope"),
            Xent => (("xent.wgsl", include_str!("shaders/xent.wgsl")), "xent"),
            AttentionFwd => (("attention_fwd.wgsl", include_str!("shaders/attention_fwd.wgsl")), "attention_fwd"),
            AttentionDq => (ATTN_BWD, "attention_dq"),
            AttentionDkv => (ATTN_BWD, "attention_dkv"),
            KvStore => (DECODE, "kv_store"),
            AttentionDecode => (DECODE, "attention_decode"),
        };
        (file, src, entry)
    }
}

/// Compiled pipelines, by kernel, and shader modules, by file.
#[derive(Default)]
pub(crate) struct Pipelines {
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    pipelines: HashMap<Kernel, wgpu::ComputePipeline>,
}

impl Pipelines {
    pub fn get(&mut self, device: &wgpu::Device, k: Kernel) -> &wgpu::ComputePipeline {
        if !self.pipelines.contains_key(&k) {
            let (file, src, entry) = k.source();
            let module = self.modules.entry(file).or_insert_with(|| {
                device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(file),
                    source: wgpu::ShaderSource::Wgsl(format!("{PRELUDE}\n{src}").into()),
                })
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
            self.pipelines.insert(k, pipeline);
        }
        &self.pipelines[&k]
    }
}

impl Pipelines {
    /// A pipeline [`Pipelines::get`] compiled before.
    pub fn compiled(&self, k: Kernel) -> &wgpu::ComputePipeline {
        &self.pipelines[&k]
    }
}
