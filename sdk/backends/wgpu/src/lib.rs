//! The wgpu backend: the model's ops as WGSL compute kernels, on any GPU wgpu drives (Vulkan,
//! Metal, DX12, GL) and on software adapters (Mesa's lavapipe and llvmpipe).
//!
//! One wgpu buffer per [`Mem`]; an op binds each of its spans as its own window of a buffer
//! (from the aligned byte offset at or below the span's start; the kernel adds the remainder,
//! passed in the dispatch's parameter block) and records a dispatch. Dispatches, uploads and
//! copies queue up in order and are submitted together when a result is read back
//! ([`Backend::download`], [`Backend::sum_squares`]), so a training step is a handful of
//! submissions. Every kernel is deterministic: no atomics, every sum in a fixed order.
//!
//! Files: `device.rs` opens the adapter, `kernels.rs` names the kernels and compiles them,
//! `shaders/*.wgsl` are the kernels, and this file maps each [`Backend`] call onto them.

mod device;
mod kernels;

use std::collections::BTreeMap;

use agentmerge_model::backend::{shapes, AdamStep, AttnShape, Backend, DecodeShape, Mem, Span, Trans};
use anyhow::{bail, ensure, Context, Result};
use wgpu::util::DeviceExt;

use device::Gpu;
pub use device::ADAPTER_ENV;
use kernels::{Kernel, Pipelines};

/// Words of a parameter block before the op's own parameters: the element offsets of bindings
/// 1..=12 (see `shaders/prelude.wgsl`).
const OFFSET_WORDS: usize = 12;
/// The largest head dimension the attention kernels hold in registers.
const MAX_HEAD_DIM: usize = 256;
/// Elements one `sum_squares` workgroup sums (in f32; the partials are added in f64).
const SUM_CHUNK: usize = 4096;
/// Threads per workgroup of the 1-D kernels.
const WG: usize = 256;

/// One allocated buffer and its length in elements.
struct Buf {
    buffer: wgpu::Buffer,
    len: usize,
}

/// What a binding names: a span of a [`Mem`], or a range of the backend's own scratch buffer.
#[derive(Clone, Copy, Debug)]
enum Src {
    Span(Span),
    Scratch { off: usize, len: usize },
}

/// One bound window: binding index, buffer, byte offset, byte size.
struct Bound {
    binding: u32,
    buffer: wgpu::Buffer,
    offset: u64,
    size: u64,
}

/// A recorded command, run in order at the next submission.
enum Cmd {
    Dispatch { kernel: Kernel, binds: Vec<Bound>, params_at: u64, params_len: u64, groups: [u32; 3] },
    Copy { src: wgpu::Buffer, src_off: u64, dst: wgpu::Buffer, dst_off: u64, size: u64 },
    Clear { buffer: wgpu::Buffer, offset: u64, size: u64 },
}

/// The wgpu backend. [`WgpuBackend::new`] opens the adapter [`ADAPTER_ENV`] names (or the best).
pub struct WgpuBackend {
    gpu: Gpu,
    bufs: BTreeMap<Mem, Buf>,
    /// Temporaries of the ops that need one (sum_squares' partial sums, attention's `D`).
    scratch: Option<Buf>,
    pipelines: Pipelines,
    pending: Vec<Cmd>,
    /// The pending dispatches' parameter blocks, each starting at an aligned word.
    params: Vec<u32>,
    params_buf: Option<wgpu::Buffer>,
    /// The largest storage binding, in bytes: the adapter's, or less for tests of the splits.
    max_binding: usize,
}

impl WgpuBackend {
    /// Opens the adapter `AGENTMERGE_WGPU_ADAPTER` names, or the best one found; a clear error
    /// when there is none.
    pub fn new() -> Result<WgpuBackend> {
        Self::with_adapter(std::env::var(ADAPTER_ENV).ok().as_deref())
    }

    /// Opens the adapter for a node the host gave `devices` (GPU indices): the user's
    /// `AGENTMERGE_WGPU_ADAPTER` when set, else the first device's GPU among the machine's
    /// hardware adapters (so two nodes on two GPUs never share one), else the best one found.
    pub fn on_devices(devices: &[usize]) -> Result<WgpuBackend> {
        match (std::env::var(ADAPTER_ENV).ok().filter(|c| !c.trim().is_empty()), devices.first()) {
            (None, Some(&i)) => {
                let gpu = device::open_gpu(i)?;
                Self::from_gpu(gpu)
            }
            (choice, _) => Self::with_adapter(choice.as_deref()),
        }
    }

    /// Opens the adapter `choice` names (a backend, part of a name, or an index; see
    /// [`ADAPTER_ENV`]); `None`: the best one found.
    pub fn with_adapter(choice: Option<&str>) -> Result<WgpuBackend> {
        Self::from_gpu(device::open(choice)?)
    }

    fn from_gpu(gpu: device::Gpu) -> Result<WgpuBackend> {
        tracing::info!("wgpu adapter: {}", gpu.describe());
        let max_binding = gpu.limits.max_storage_buffer_binding_size as usize;
        Ok(WgpuBackend {
            max_binding,
            gpu,
            bufs: BTreeMap::new(),
            scratch: None,
            pipelines: Pipelines::default(),
            pending: Vec::new(),
            params: Vec::new(),
            params_buf: None,
        })
    }

    /// The adapter's limits, as the device was opened with them.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.gpu.limits
    }

    /// Behaves as if the adapter's largest storage binding were `bytes` (at most the real one):
    /// ops over larger spans split as they would on such an adapter. For tests of the splits,
    /// which would otherwise need tensors of hundreds of MiB.
    pub fn limit_bindings(&mut self, bytes: usize) {
        let align = self.gpu.limits.min_storage_buffer_offset_alignment as usize;
        self.max_binding = bytes.clamp(4 * align, self.gpu.limits.max_storage_buffer_binding_size as usize);
    }

    fn take_error(&self) -> Result<()> {
        if let Some(e) = self.gpu.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bail!("wgpu ({}): {e}", self.gpu.describe());
        }
        Ok(())
    }

    fn new_buffer(&self, label: &str, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: bytes.max(4), usage, mapped_at_creation: false })
    }

    /// The buffer behind `s` and its length in elements; panics (like the CPU backend) when the
    /// span lies outside it — the model's spans always lie inside.
    fn resolve(&self, op: &str, s: Src) -> (wgpu::Buffer, usize, usize) {
        let (buf, off, len) = match s {
            Src::Span(sp) => {
                let b = self.bufs.get(&sp.mem).unwrap_or_else(|| panic!("{op}: {:?} was never allocated ({sp:?})", sp.mem));
                assert!(sp.end() <= b.len, "{op}: {sp:?} lies outside {:?} ({} elements)", sp.mem, b.len);
                (&b.buffer, sp.off, sp.len)
            }
            Src::Scratch { off, len } => {
                let b = self.scratch.as_ref().expect("scratch allocated before use");
                assert!(off + len <= b.len, "{op}: scratch {off}+{len} outside {}", b.len);
                (&b.buffer, off, len)
            }
        };
        (buf.clone(), off, len)
    }

    /// Makes sure the scratch buffer holds `len` elements. Call before recording the commands
    /// that use it (a grown scratch is a new buffer).
    fn scratch(&mut self, len: usize) {
        if self.scratch.as_ref().is_some_and(|s| s.len >= len) {
            return;
        }
        self.flush();
        let len = len.next_power_of_two();
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let buffer = self.new_buffer("scratch", (len * 4) as u64, usage);
        self.scratch = Some(Buf { buffer, len });
    }

    /// Records one dispatch of `kernel` over `groups` workgroups with the given bindings (index,
    /// what) and op parameters.
    fn dispatch(&mut self, op: &str, kernel: Kernel, binds: &[(u32, Src)], params: &[u32], groups: [u32; 3]) {
        if groups.contains(&0) {
            return;
        }
        let align = self.gpu.limits.min_storage_buffer_offset_alignment as usize;
        let max_binding = self.max_binding;
        let mut block = vec![0u32; OFFSET_WORDS + params.len()];
        block[OFFSET_WORDS..].copy_from_slice(params);
        let mut bound = Vec::with_capacity(binds.len());
        for &(binding, src) in binds {
            let (buffer, off, len) = self.resolve(op, src);
            let start = off * 4 / align * align;
            let size = ((off + len) * 4 - start).max(4).min(buffer.size() as usize - start);
            assert!(
                size <= max_binding,
                "{op}: a span of {} MiB exceeds the adapter's largest storage binding ({} MiB); this op does not split it yet — use a smaller model or another adapter",
                size >> 20,
                max_binding >> 20
            );
            block[binding as usize - 1] = ((off * 4 - start) / 4) as u32;
            bound.push(Bound { binding, buffer, offset: start as u64, size: size as u64 });
        }
        let words = align.div_ceil(4).max(1);
        let at = self.params.len().next_multiple_of(words);
        self.params.resize(at, 0);
        self.params.extend_from_slice(&block);
        self.pipelines.get(&self.gpu.device, kernel);
        self.pending.push(Cmd::Dispatch { kernel, binds: bound, params_at: (at * 4) as u64, params_len: (block.len() * 4) as u64, groups });
    }

    /// Submits every recorded command.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let device = &self.gpu.device;
        if !self.params.is_empty() {
            let bytes: &[u8] = bytemuck::cast_slice(&self.params);
            if self.params_buf.as_ref().is_none_or(|b| b.size() < bytes.len() as u64) {
                let size = (bytes.len() as u64).next_power_of_two().max(1024);
                let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
                self.params_buf = Some(device.create_buffer(&wgpu::BufferDescriptor { label: Some("params"), size, usage, mapped_at_creation: false }));
            }
            self.gpu.queue.write_buffer(self.params_buf.as_ref().expect("params buffer"), 0, bytes);
        }
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("ops") });
        let cmds = std::mem::take(&mut self.pending);
        let mut i = 0;
        while i < cmds.len() {
            match &cmds[i] {
                Cmd::Dispatch { .. } => {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
                    while let Some(Cmd::Dispatch { kernel, binds, params_at, params_len, groups }) = cmds.get(i) {
                        let pipeline = self.pipelines.compiled(*kernel);
                        let params = self.params_buf.as_ref().expect("params buffer");
                        let mut entries = vec![wgpu::BindGroupEntry {
                            binding: 0,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: params,
                                offset: *params_at,
                                size: std::num::NonZeroU64::new(*params_len),
                            }),
                        }];
                        entries.extend(binds.iter().map(|b| wgpu::BindGroupEntry {
                            binding: b.binding,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &b.buffer,
                                offset: b.offset,
                                size: std::num::NonZeroU64::new(b.size),
                            }),
                        }));
                        let group =
                            device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipeline.get_bind_group_layout(0), entries: &entries });
                        pass.set_pipeline(pipeline);
                        pass.set_bind_group(0, &group, &[]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        i += 1;
                    }
                }
                Cmd::Copy { src, src_off, dst, dst_off, size } => {
                    enc.copy_buffer_to_buffer(src, *src_off, dst, *dst_off, *size);
                    i += 1;
                }
                Cmd::Clear { buffer, offset, size } => {
                    enc.clear_buffer(buffer, *offset, Some(*size));
                    i += 1;
                }
            }
        }
        self.gpu.queue.submit([enc.finish()]);
        self.params.clear();
    }

    /// Reads `len` elements at `off` of `src`'s buffer back, after everything recorded so far.
    fn read_back(&mut self, src: Src) -> Result<Vec<u8>> {
        let (buffer, off, len) = self.resolve("download", src);
        let bytes = (len * 4) as u64;
        let staging = self.new_buffer("read back", bytes, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        if len > 0 {
            self.pending.push(Cmd::Copy { src: buffer, src_off: (off * 4) as u64, dst: staging.clone(), dst_off: 0, size: bytes });
        }
        self.flush();
        if len == 0 {
            return Ok(Vec::new());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.gpu.device.poll(wgpu::PollType::wait_indefinitely()).context("waiting for the GPU")?;
        self.take_error()?;
        rx.recv().context("the GPU dropped a read-back")?.context("mapping a read-back buffer")?;
        let data = staging.get_mapped_range(..).context("reading a mapped buffer")?.to_vec();
        staging.unmap();
        Ok(data)
    }

    /// Checks that `dst` lies inside its buffer, for the calls that return errors.
    fn check_span(&self, what: &str, s: Span, given: usize) -> Result<()> {
        let have = self.mem_len(s.mem);
        ensure!(s.end() <= have, "{what}: {s:?} lies outside {:?} ({have} elements)", s.mem);
        ensure!(given == s.len, "{what}: {given} values for a span of {}", s.len);
        Ok(())
    }

    fn upload_bytes(&mut self, dst: Src, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let staging = self.gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("upload"),
            contents: bytes,
            usage: wgpu::BufferUsages::COPY_SRC,
        });
        let (buffer, off, _) = self.resolve("upload", dst);
        self.pending.push(Cmd::Copy { src: staging, src_off: 0, dst: buffer, dst_off: (off * 4) as u64, size: bytes.len() as u64 });
    }

    /// The most elements of one binding, rounded down to whole `sum_squares` chunks, so that an
    /// elementwise op over a larger span runs as several dispatches.
    fn chunk_elems(&self) -> usize {
        (self.binding_elems() / SUM_CHUNK * SUM_CHUNK).max(SUM_CHUNK)
    }

    /// Elements one binding may hold, less the alignment slack of its window.
    fn binding_elems(&self) -> usize {
        (self.max_binding - self.gpu.limits.min_storage_buffer_offset_alignment as usize) / 4
    }

    /// Rows of stride `d` that one binding holds (at least one).
    fn rows_per_binding(&self, d: usize) -> usize {
        (self.binding_elems() / d.max(1)).max(1)
    }

    /// An elementwise kernel over spans of one length, split into dispatches no binding of which
    /// exceeds the adapter's limit. Parameter 0 is the element count; `extra` follows it.
    fn elementwise(&mut self, op: &str, kernel: Kernel, spans: &[Span], extra: &[u32]) {
        let n = spans[0].len;
        let chunk = self.chunk_elems();
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let binds: Vec<(u32, Src)> = spans.iter().enumerate().map(|(i, s)| (i as u32 + 1, Src::Span(s.slice(start, len)))).collect();
            let mut params = vec![len as u32];
            params.extend_from_slice(extra);
            self.dispatch(op, kernel, &binds, &params, grid(len));
            start += len;
        }
    }
}

/// Workgroups of 256 threads covering `threads`, laid out on a 2-D grid (at most 65,535 a side).
fn grid(threads: usize) -> [u32; 3] {
    groups(threads.div_ceil(WG))
}

/// `n` workgroups on a 2-D grid.
fn groups(n: usize) -> [u32; 3] {
    if n == 0 {
        return [0, 0, 0];
    }
    let x = n.min(65_535);
    let y = n.div_ceil(x);
    assert!(y <= 65_535, "a dispatch of {n} workgroups is larger than any grid");
    [x as u32, y as u32, 1]
}

fn f(x: f32) -> u32 {
    x.to_bits()
}

fn u(x: usize) -> u32 {
    u32::try_from(x).expect("a size above 2³² elements")
}

/// The wgpu kernels' own limit, beyond the trait's shape rules: `head_dim` at most [`MAX_HEAD_DIM`].
#[track_caller]
fn check_head_dim(op: &str, head_dim: usize) {
    assert!(head_dim <= MAX_HEAD_DIM, "{op}: head_dim {head_dim} is above the wgpu kernels' {MAX_HEAD_DIM}");
}

impl Backend for WgpuBackend {
    fn name(&self) -> String {
        format!("wgpu: {}", self.gpu.describe())
    }

    // ---- memory ----------------------------------------------------------------------------

    fn alloc(&mut self, mem: Mem, len: usize) -> Result<()> {
        self.flush();
        let bytes = len as u64 * 4;
        let max = self.gpu.limits.max_buffer_size;
        ensure!(
            bytes <= max,
            "wgpu: {mem:?} needs {} MiB, more than the largest buffer adapter {} allows ({} MiB); use a smaller model or batch, or another adapter ({ADAPTER_ENV})",
            bytes >> 20,
            self.gpu.describe(),
            max >> 20
        );
        self.bufs.remove(&mem);
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let err = self.gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.new_buffer(&format!("{mem:?}"), bytes, usage);
        if let Some(e) = pollster::block_on(err.pop()) {
            bail!("wgpu: allocating {} MiB for {mem:?} on {}: {e}; use a smaller model or batch", bytes >> 20, self.gpu.describe());
        }
        self.bufs.insert(mem, Buf { buffer, len });
        self.take_error()
    }

    fn mem_len(&self, mem: Mem) -> usize {
        self.bufs.get(&mem).map_or(0, |b| b.len)
    }

    fn upload(&mut self, dst: Span, src: &[f32]) -> Result<()> {
        ensure!(dst.mem != Mem::Ids, "upload: {dst:?} is an ids span; use upload_ids");
        self.check_span("upload", dst, src.len())?;
        self.upload_bytes(Src::Span(dst), bytemuck::cast_slice(src));
        Ok(())
    }

    fn download(&mut self, src: Span, dst: &mut [f32]) -> Result<()> {
        self.check_span("download", src, dst.len())?;
        let bytes = self.read_back(Src::Span(src))?;
        dst.copy_from_slice(bytemuck::cast_slice(&bytes));
        Ok(())
    }

    fn upload_ids(&mut self, dst: Span, src: &[u32]) -> Result<()> {
        ensure!(dst.mem == Mem::Ids, "upload_ids: {dst:?} is not in Mem::Ids");
        self.check_span("upload_ids", dst, src.len())?;
        self.upload_bytes(Src::Span(dst), bytemuck::cast_slice(src));
        Ok(())
    }

    fn zero(&mut self, dst: Span) {
        if dst.len == 0 {
            return;
        }
        let (buffer, off, len) = self.resolve("zero", Src::Span(dst));
        self.pending.push(Cmd::Clear { buffer, offset: (off * 4) as u64, size: (len * 4) as u64 });
    }

    fn copy(&mut self, dst: Span, src: Span) {
        shapes::copy(dst, src);
        if dst.len == 0 {
            return;
        }
        if dst.mem != src.mem {
            let (s, so, _) = self.resolve("copy", Src::Span(src));
            let (d, dof, _) = self.resolve("copy", Src::Span(dst));
            self.pending.push(Cmd::Copy { src: s, src_off: (so * 4) as u64, dst: d, dst_off: (dof * 4) as u64, size: (dst.len * 4) as u64 });
        } else {
            let k = if dst.mem == Mem::Ids { Kernel::CopyU32 } else { Kernel::CopyF32 };
            self.elementwise("copy", k, &[dst, src], &[]);
        }
    }

    // ---- elementwise -----------------------------------------------------------------------

    fn add(&mut self, out: Span, a: Span, b: Span) {
        shapes::add(out, a, b);
        self.elementwise("add", Kernel::Add, &[out, a, b], &[]);
    }

    fn scale(&mut self, x: Span, alpha: f32) {
        self.elementwise("scale", Kernel::Scale, &[x], &[f(alpha)]);
    }

    // ---- matrix product --------------------------------------------------------------------

    fn matmul(&mut self, c: Span, a: Span, ta: Trans, b: Span, tb: Trans, m: usize, k: usize, n: usize, accumulate: bool) {
        shapes::matmul(c, a, b, m, k, n);
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !accumulate {
                self.zero(c);
            }
            return;
        }
        self.matmul_blocks(c, a, ta, b, tb, m, k, n, accumulate);
    }

    // ---- layers ----------------------------------------------------------------------------

    fn embedding_fwd(&mut self, out: Span, table: Span, ids: Span, n: usize, d: usize) {
        shapes::embedding_fwd(out, table, ids, n, d);
        // Parts of the table, and of the tokens, that each fit a binding.
        let rows = self.rows_per_binding(d);
        for r0 in (0..table.len / d).step_by(rows) {
            let tr = rows.min(table.len / d - r0);
            for t0 in (0..n).step_by(rows) {
                let tn = rows.min(n - t0);
                let binds = [(1, Src::Span(out.slice(t0 * d, tn * d))), (2, Src::Span(table.slice(r0 * d, tr * d))), (3, Src::Span(ids.slice(t0, tn)))];
                self.dispatch("embedding_fwd", Kernel::EmbeddingFwd, &binds, &[u(tn), u(d), u(tr), u(r0)], grid(tn * d));
            }
        }
    }

    fn embedding_bwd(&mut self, dtable: Span, dout: Span, ids: Span, n: usize, d: usize) {
        shapes::embedding_bwd(dtable, dout, ids, n, d);
        // Token blocks in order, so each row's gradient still adds up in token order.
        let rows = self.rows_per_binding(d);
        for r0 in (0..dtable.len / d).step_by(rows) {
            let tr = rows.min(dtable.len / d - r0);
            for t0 in (0..n).step_by(rows) {
                let tn = rows.min(n - t0);
                let binds = [(1, Src::Span(dtable.slice(r0 * d, tr * d))), (2, Src::Span(dout.slice(t0 * d, tn * d))), (3, Src::Span(ids.slice(t0, tn)))];
                self.dispatch("embedding_bwd", Kernel::EmbeddingBwd, &binds, &[u(tn), u(d), u(tr), u(r0)], grid(d));
            }
        }
    }

    fn rmsnorm_fwd(&mut self, out: Span, rstd: Span, x: Span, w: Span, n: usize, d: usize, eps: f32) {
        shapes::rmsnorm_fwd(out, rstd, x, w, n, d);
        let binds = [(1, Src::Span(out)), (2, Src::Span(rstd)), (3, Src::Span(x)), (4, Src::Span(w))];
        self.dispatch("rmsnorm_fwd", Kernel::RmsnormFwd, &binds, &[u(n), u(d), f(eps)], groups(n));
    }

    fn rmsnorm_bwd(&mut self, dx: Span, dw: Span, dout: Span, x: Span, w: Span, rstd: Span, n: usize, d: usize) {
        shapes::rmsnorm_bwd(dx, dw, dout, x, w, rstd, n, d);
        let binds = [(1, Src::Span(dx)), (2, Src::Span(dout)), (3, Src::Span(x)), (4, Src::Span(w)), (5, Src::Span(rstd))];
        self.dispatch("rmsnorm_bwd", Kernel::RmsnormBwdDx, &binds, &[u(n), u(d), 0], groups(n));
        let binds = [(1, Src::Span(dw)), (2, Src::Span(dout)), (3, Src::Span(x)), (4, Src::Span(rstd))];
        self.dispatch("rmsnorm_bwd", Kernel::RmsnormBwdDw, &binds, &[u(n), u(d), 0], grid(d));
    }

    fn rope_fwd(&mut self, x: Span, pos: Span, n: usize, heads: usize, head_dim: usize, theta: f32) {
        self.rope("rope_fwd", x, pos, n, heads, head_dim, theta, false);
    }

    fn rope_bwd(&mut self, dx: Span, pos: Span, n: usize, heads: usize, head_dim: usize, theta: f32) {
        self.rope("rope_bwd", dx, pos, n, heads, head_dim, theta, true);
    }

    fn attention_fwd(&mut self, out: Span, lse: Span, q: Span, k: Span, v: Span, doc: Span, s: AttnShape) {
        check_head_dim("attention_fwd", s.head_dim);
        shapes::attention_fwd(out, lse, q, k, v, doc, &s);
        let n = s.tokens();
        let binds = [(1, Src::Span(out)), (2, Src::Span(lse)), (3, Src::Span(q)), (4, Src::Span(k)), (5, Src::Span(v)), (6, Src::Span(doc))];
        self.dispatch("attention_fwd", Kernel::AttentionFwd, &binds, &attn_params(&s), grid(n * s.heads));
    }

    fn attention_bwd(&mut self, dq: Span, dk: Span, dv: Span, dout: Span, out: Span, lse: Span, q: Span, k: Span, v: Span, doc: Span, s: AttnShape) {
        check_head_dim("attention_bwd", s.head_dim);
        shapes::attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, doc, &s);
        let n = s.tokens();
        self.scratch(n * s.heads);
        let d = Src::Scratch { off: 0, len: n * s.heads };
        let params = attn_params(&s);
        let common = [(4, Src::Span(dout)), (6, Src::Span(lse)), (7, Src::Span(q)), (8, Src::Span(k)), (9, Src::Span(v)), (10, Src::Span(doc))];
        let mut binds = vec![(1, Src::Span(dq)), (2, d), (5, Src::Span(out))];
        binds.extend(common);
        self.dispatch("attention_bwd", Kernel::AttentionDq, &binds, &params, grid(n * s.heads));
        let mut binds = vec![(1, Src::Span(dk)), (2, Src::Span(dv)), (3, d)];
        binds.extend(common);
        self.dispatch("attention_bwd", Kernel::AttentionDkv, &binds, &params, grid(n * s.kv_heads));
    }

    // ---- decoding ----------------------------------------------------------------------------

    fn kv_store(&mut self, k_cache: Span, v_cache: Span, k: Span, v: Span, slots: Span, pos: Span, s: DecodeShape) {
        const OP: &str = "kv_store";
        check_head_dim(OP, s.head_dim);
        shapes::kv_store(k_cache, v_cache, k, v, slots, pos, &s);
        let kd = s.kv_heads * s.head_dim;
        let binds = [(1, Src::Span(k_cache)), (2, Src::Span(v_cache)), (3, Src::Span(k)), (4, Src::Span(v)), (5, Src::Span(slots)), (6, Src::Span(pos))];
        self.dispatch(OP, Kernel::KvStore, &binds, &decode_params(&s), grid(s.batch * kd));
    }

    fn attention_decode(&mut self, out: Span, q: Span, k_cache: Span, v_cache: Span, slots: Span, lens: Span, s: DecodeShape) {
        const OP: &str = "attention_decode";
        check_head_dim(OP, s.head_dim);
        shapes::attention_decode(out, q, k_cache, v_cache, slots, lens, &s);
        let binds = [(1, Src::Span(out)), (2, Src::Span(q)), (3, Src::Span(k_cache)), (4, Src::Span(v_cache)), (5, Src::Span(slots)), (6, Src::Span(lens))];
        self.dispatch(OP, Kernel::AttentionDecode, &binds, &decode_params(&s), grid(s.batch * s.heads));
    }

    fn swiglu_fwd(&mut self, out: Span, gate: Span, up: Span) {
        shapes::swiglu_fwd(out, gate, up);
        self.elementwise("swiglu_fwd", Kernel::SwigluFwd, &[out, gate, up], &[]);
    }

    fn swiglu_bwd(&mut self, dgate: Span, dup: Span, dout: Span, gate: Span, up: Span) {
        shapes::swiglu_bwd(dgate, dup, dout, gate, up);
        self.elementwise("swiglu_bwd", Kernel::SwigluBwd, &[dgate, dup, dout, gate, up], &[]);
    }

    fn cross_entropy(&mut self, logits: Span, losses: Span, targets: Span, n: usize, vocab: usize, grad_scale: Option<f32>) {
        shapes::cross_entropy(logits, losses, targets, n, vocab);
        let grad = [grad_scale.is_some() as u32, f(grad_scale.unwrap_or(0.0))];
        // Rows of logits that fit a binding, one dispatch each.
        let rows = self.rows_per_binding(vocab);
        for r0 in (0..n).step_by(rows) {
            let rn = rows.min(n - r0);
            let binds = [(1, Src::Span(logits.slice(r0 * vocab, rn * vocab))), (2, Src::Span(losses.slice(r0, rn))), (3, Src::Span(targets.slice(r0, rn)))];
            self.dispatch("cross_entropy", Kernel::Xent, &binds, &[u(rn), u(vocab), grad[0], grad[1]], groups(rn));
        }
    }

    // ---- optimizer -------------------------------------------------------------------------

    fn sum_squares(&mut self, x: Span) -> f64 {
        let n = x.len;
        if n == 0 {
            return 0.0;
        }
        let parts = n.div_ceil(SUM_CHUNK);
        self.scratch(parts);
        let chunk = self.chunk_elems();
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let p = Src::Scratch { off: start / SUM_CHUNK, len: len.div_ceil(SUM_CHUNK) };
            self.dispatch("sum_squares", Kernel::SumSquares, &[(1, p), (2, Src::Span(x.slice(start, len)))], &[u(len)], groups(len.div_ceil(SUM_CHUNK)));
            start += len;
        }
        // The trait returns no error: a failed read-back is a lost device, which the next call
        // that returns errors reports too.
        let bytes = self.read_back(Src::Scratch { off: 0, len: parts }).unwrap_or_else(|e| panic!("sum_squares: {e:#}"));
        bytemuck::cast_slice::<u8, f32>(&bytes).iter().map(|&p| p as f64).sum()
    }

    fn adamw(&mut self, p: Span, g: Span, m: Span, v: Span, step: AdamStep) {
        shapes::adamw(p, g, m, v, &step);
        // The constants exactly as the CPU backend computes them.
        let (b1, b2, lr) = (step.beta1 as f64, step.beta2 as f64, step.lr as f64);
        let t = step.t as f64;
        let decay = (1.0 - lr * step.weight_decay as f64) as f32;
        let neg_step_size = (-lr / (1.0 - b1.powf(t))) as f32;
        let bc2_sqrt = (1.0 - b2.powf(t)).sqrt() as f32;
        let (w1, w2) = ((1.0 - b1) as f32, (1.0 - b2) as f32);
        let extra = [f(decay), f(neg_step_size), f(bc2_sqrt), f(w1), f(step.beta2), f(w2), f(step.eps), f(step.grad_scale)];
        self.elementwise("adamw", Kernel::Adamw, &[p, g, m, v], &extra);
    }
}

impl WgpuBackend {
    /// `matmul` as one dispatch, or — when an operand is larger than the adapter's largest
    /// storage binding — as blocks whose windows fit: rows of C (and of A when it is stored
    /// `m × k`), columns of C (rows of B stored `n × k`), and the depth (rows of A stored `k × m`
    /// or B stored `k × n`, the blocks after the first accumulating). Each block is a kernel
    /// call on sub-matrices named by their first element and the full matrices' row strides.
    #[allow(clippy::too_many_arguments)]
    fn matmul_blocks(&mut self, c: Span, a: Span, ta: Trans, b: Span, tb: Trans, m: usize, k: usize, n: usize, accumulate: bool) {
        let lda = if ta == Trans::N { k } else { m };
        let ldb = if tb == Trans::N { n } else { k };
        // A window of `rows` rows of stride `ld` spans about rows · ld elements.
        let rows_fitting = |ld: usize| self.rows_per_binding(ld);
        let mut mb = m.min(rows_fitting(n));
        let mut kb = k;
        let mut nb = n;
        if ta == Trans::N {
            mb = mb.min(rows_fitting(k));
        } else {
            kb = kb.min(rows_fitting(m));
        }
        if tb == Trans::N {
            kb = kb.min(rows_fitting(n));
        } else {
            nb = nb.min(rows_fitting(k));
        }
        // Blocks of whole 64-row/column tiles where they are that large.
        if mb < m && mb >= 64 {
            mb = mb / 64 * 64;
        }
        if nb < n && nb >= 64 {
            nb = nb / 64 * 64;
        }
        for i0 in (0..m).step_by(mb) {
            let mi = mb.min(m - i0);
            for j0 in (0..n).step_by(nb) {
                let nj = nb.min(n - j0);
                for k0 in (0..k).step_by(kb) {
                    let kk = kb.min(k - k0);
                    // First element and extent of each block inside its stored matrix.
                    let (a0, a_len) = match ta {
                        Trans::N => (i0 * lda + k0, (mi - 1) * lda + kk),
                        Trans::T => (k0 * lda + i0, (kk - 1) * lda + mi),
                    };
                    let (b0, b_len) = match tb {
                        Trans::N => (k0 * ldb + j0, (kk - 1) * ldb + nj),
                        Trans::T => (j0 * ldb + k0, (nj - 1) * ldb + kk),
                    };
                    let (c0, c_len) = (i0 * n + j0, (mi - 1) * n + nj);
                    let acc = accumulate || k0 > 0;
                    let params = [u(mi), u(kk), u(nj), (ta == Trans::T) as u32, (tb == Trans::T) as u32, acc as u32, u(lda), u(ldb), u(n)];
                    let binds = [(1, Src::Span(c.slice(c0, c_len))), (2, Src::Span(a.slice(a0, a_len))), (3, Src::Span(b.slice(b0, b_len)))];
                    self.dispatch("matmul", Kernel::Matmul, &binds, &params, [u(nj.div_ceil(64)), u(mi.div_ceil(64)), 1]);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rope(&mut self, op: &str, x: Span, pos: Span, n: usize, heads: usize, head_dim: usize, theta: f32, inverse: bool) {
        shapes::rope(op, x, pos, n, heads, head_dim);
        // The frequencies exactly as the CPU backend computes them, in f32 on the host.
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half).map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32)).collect();
        self.scratch(half);
        let freq = Src::Scratch { off: 0, len: half };
        self.upload_bytes(freq, bytemuck::cast_slice(&inv_freq));
        // 4/π and π/4 in three parts (8, 12 and 24 bits: the first two products with an
        // angle's quadrant count are exact), as Cephes' sinf has them.
        let params = [u(n), u(heads), u(head_dim), inverse as u32, f(4.0 / std::f32::consts::PI), f(0.785_156_25), f(2.418_756_5e-4), f(3.774_895e-8)];
        self.dispatch(op, Kernel::Rope, &[(1, Src::Span(x)), (2, Src::Span(pos)), (3, freq)], &params, grid(n * heads * half));
    }
}

fn attn_params(s: &AttnShape) -> [u32; 6] {
    [u(s.batch), u(s.seq), u(s.heads), u(s.kv_heads), u(s.head_dim), f(1.0 / (s.head_dim as f32).sqrt())]
}

fn decode_params(s: &DecodeShape) -> [u32; 6] {
    [u(s.batch), u(s.heads), u(s.kv_heads), u(s.head_dim), u(s.max_len), f(1.0 / (s.head_dim as f32).sqrt())]
}
