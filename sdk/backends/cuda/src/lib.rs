//! The CUDA backend: matrix products through cuBLAS, every other op a CUDA C kernel
//! (`kernels/*.cu`) compiled by NVRTC on first use, on NVIDIA GPUs.
//!
//! The driver, NVRTC and cuBLAS are loaded at run time (cudarc's `dynamic-loading`), so the
//! crate builds and links on any machine, with no CUDA toolkit; [`CudaBackend::new`] checks
//! each library before cudarc touches it and returns an error that names what is missing, never
//! a panic. One device allocation per [`Mem`]; a span is that allocation's base pointer plus its
//! offset, so an op's spans may share a buffer as they do on the CPU. Every op, copy and free is
//! queued on one stream, in order; the host waits only when it reads results back
//! ([`Backend::download`], [`Backend::sum_squares`]). Ops cannot return errors: a failed launch
//! (or a kernel that failed to compile) is kept, and the next call that returns a `Result`
//! reports it. Every kernel is deterministic: no atomics, every sum in a fixed order (cuBLAS's
//! SGEMM is deterministic on one GPU model, and runs in full f32: no TF32).
//!
//! Files: `device.rs` finds and opens the GPU, `kernels.rs` names the kernels and compiles them,
//! `kernels/*.cu` are the kernels, and this file maps each [`Backend`] call onto them.

mod device;
mod kernels;

use std::collections::BTreeMap;

use agentmerge_model::backend::{shapes, AdamStep, AttnShape, Backend, DecodeShape, Mem, Span, Trans};
use anyhow::{anyhow, bail, ensure, Result};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig, PushKernelArg};

use device::Gpu;
pub use device::{cublas_present, device_count, driver_present, nvrtc_present};
use kernels::{Kernel, Kernels, Source};

/// The largest head dimension the attention kernels hold in registers (`MAX_HD` in the prelude).
const MAX_HEAD_DIM: usize = 256;
/// Elements one `sum_squares` block sums (`SUM_CHUNK` in elementwise.cu).
const SUM_CHUNK: usize = 8192;
/// Threads per block of the 1-D kernels.
const THREADS: u32 = 256;
/// Threads per block of the warp-per-row kernels (attention): four warps.
const WARP_THREADS: u32 = 128;
/// The most blocks a grid-stride kernel is launched with.
const MAX_BLOCKS: usize = 1 << 20;

/// One device allocation: its owner, base pointer and length in elements (4 bytes each:
/// `f32`, or `u32` for [`Mem::Ids`]).
struct Buf {
    _slice: CudaSlice<u32>,
    ptr: u64,
    len: usize,
}

/// One kernel argument.
#[derive(Clone, Copy)]
enum Arg {
    /// A device pointer.
    P(u64),
    U(u32),
    L(u64),
    F(f32),
}

/// The CUDA backend. [`CudaBackend::new`] opens device 0, [`CudaBackend::on_devices`] the
/// device the host assigned a node.
pub struct CudaBackend {
    gpu: Gpu,
    bufs: BTreeMap<Mem, Buf>,
    /// f32 temporaries: attention's `D = rowsum(dO ⊙ O)`.
    scratch: Option<Buf>,
    /// `sum_squares`' per-block partial sums (f64).
    partials: Option<(CudaSlice<f64>, usize)>,
    /// Rope's frequencies for one (theta, head_dim).
    rope_freq: Option<(u32, usize, Buf)>,
    kernels: Kernels,
    /// The first error of an op (ops cannot return one); the next fallible call reports it.
    error: Option<String>,
}

impl CudaBackend {
    /// Opens CUDA device 0.
    pub fn new() -> Result<CudaBackend> {
        Self::on_devices(&[])
    }

    /// Opens the device the host gave a node: `devices[0]`, or device 0 when the list is empty.
    /// A clear error (never a panic) when the driver, NVRTC or cuBLAS is missing or the device
    /// does not exist.
    pub fn on_devices(devices: &[usize]) -> Result<CudaBackend> {
        let index = devices.first().copied().unwrap_or(0);
        let gpu = device::open(index)?;
        tracing::info!("cuda device {index}: {}", gpu.name);
        let arch = gpu.arch.clone();
        Ok(CudaBackend { gpu, bufs: BTreeMap::new(), scratch: None, partials: None, rope_freq: None, kernels: Kernels::new(arch), error: None })
    }

    /// Compiles every kernel file with NVRTC for `arch` (`compute_90`; NVRTC's default when
    /// `None`) and returns each file's name and PTX size in bytes. Needs NVRTC, not a GPU: the
    /// test that the kernels compile runs on machines without one.
    pub fn compile_all(arch: Option<&str>) -> Result<Vec<(&'static str, usize)>> {
        if !nvrtc_present() {
            bail!("NVRTC (libnvrtc.so) could not be loaded");
        }
        let mut out = Vec::new();
        for src in Source::ALL {
            let ptx = std::panic::catch_unwind(|| kernels::compile(src, arch)).map_err(|_| anyhow!("NVRTC panicked compiling {}", src.file().0))??;
            let text = ptx.to_src();
            for k in src.kernels() {
                ensure!(text.contains(&format!(".entry {k}(")), "{}: the PTX has no entry `{k}`", src.file().0);
            }
            out.push((src.file().0, text.len()));
        }
        Ok(out)
    }

    fn record(&mut self, op: &str, e: impl std::fmt::Display) {
        if self.error.is_none() {
            self.error = Some(format!("{op}: {e}"));
        }
    }

    fn take_error(&mut self) -> Result<()> {
        match self.error.take() {
            Some(e) => bail!("cuda ({}): {e}", self.gpu.name),
            None => Ok(()),
        }
    }

    /// The device pointer of `s`; panics (like the CPU backend) when the span lies outside its
    /// buffer — the model's spans always lie inside.
    fn ptr(&self, op: &str, s: Span) -> u64 {
        let b = self.bufs.get(&s.mem).unwrap_or_else(|| panic!("{op}: {:?} was never allocated ({s:?})", s.mem));
        assert!(s.end() <= b.len, "{op}: {s:?} lies outside {:?} ({} elements)", s.mem, b.len);
        b.ptr + (s.off * 4) as u64
    }

    fn new_buf(&self, len: usize) -> Result<Buf> {
        self.gpu.ctx.bind_to_thread().map_err(|e| anyhow!("binding the CUDA context: {e:?}"))?;
        let slice = self
            .gpu
            .stream
            .alloc_zeros::<u32>(len.max(1))
            .map_err(|e| anyhow!("allocating {} MiB on {}: {e:?}; use a smaller model or batch", (len * 4) >> 20, self.gpu.name))?;
        let ptr = {
            let (ptr, _sync) = slice.device_ptr(&self.gpu.stream);
            ptr
        };
        Ok(Buf { ptr, len, _slice: slice })
    }

    /// Makes sure the scratch buffer holds `len` elements and returns its pointer.
    fn scratch(&mut self, op: &str, len: usize) -> Option<u64> {
        if self.scratch.as_ref().is_none_or(|s| s.len < len) {
            match self.new_buf(len.next_power_of_two()) {
                Ok(b) => self.scratch = Some(b),
                Err(e) => {
                    self.record(op, format!("{e:#}"));
                    return None;
                }
            }
        }
        self.scratch.as_ref().map(|s| s.ptr)
    }

    /// Launches kernel `name` of `src` on `blocks` blocks of `threads`; an error is kept for
    /// the next fallible call.
    fn launch(&mut self, op: &str, src: Source, name: &'static str, blocks: usize, threads: u32, args: &[Arg]) {
        if blocks == 0 {
            return;
        }
        if let Err(e) = self.try_launch(src, name, blocks, threads, args) {
            self.record(op, format!("{e:#}"));
        }
    }

    fn try_launch(&mut self, src: Source, name: &'static str, blocks: usize, threads: u32, args: &[Arg]) -> Result<()> {
        let blocks = u32::try_from(blocks).map_err(|_| anyhow!("a launch of {blocks} blocks"))?;
        self.gpu.ctx.bind_to_thread().map_err(|e| anyhow!("binding the CUDA context: {e:?}"))?;
        let f = self.kernels.get(&self.gpu.ctx, Kernel(src, name))?;
        let mut b = self.gpu.stream.launch_builder(f);
        for a in args {
            match a {
                Arg::P(p) | Arg::L(p) => b.arg(p),
                Arg::U(u) => b.arg(u),
                Arg::F(x) => b.arg(x),
            };
        }
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: every kernel's parameters are (pointers as u64, u32, u64, f32) in the order the
        // .cu file declares them, and every pointer is a span checked against its buffer.
        unsafe { b.launch(cfg) }.map_err(|e| anyhow!("launching {name}: {e:?}"))?;
        Ok(())
    }

    /// A grid-stride kernel over `n` elements.
    fn elementwise(&mut self, op: &str, src: Source, name: &'static str, n: usize, args: &[Arg]) {
        self.launch(op, src, name, n.div_ceil(THREADS as usize).min(MAX_BLOCKS), THREADS, args);
    }

    /// Checks that `s` lies inside its buffer and holds `given` values, for the calls that
    /// return errors.
    fn check_span(&self, what: &str, s: Span, given: usize) -> Result<()> {
        let have = self.mem_len(s.mem);
        ensure!(s.end() <= have, "{what}: {s:?} lies outside {:?} ({have} elements)", s.mem);
        ensure!(given == s.len, "{what}: {given} values for a span of {}", s.len);
        Ok(())
    }

    fn upload_words<T>(&mut self, what: &str, dst: Span, src: &[T]) -> Result<()> {
        self.take_error()?;
        self.check_span(what, dst, src.len())?;
        if src.is_empty() {
            return Ok(());
        }
        let ptr = self.ptr(what, dst);
        self.gpu.ctx.bind_to_thread().map_err(|e| anyhow!("binding the CUDA context: {e:?}"))?;
        // SAFETY: the span lies inside its buffer (checked); a copy from pageable host memory
        // returns once the source has been staged, so `src` may be dropped after it.
        unsafe { cudarc::driver::result::memcpy_htod_async(ptr, src, self.gpu.stream.cu_stream()) }.map_err(|e| anyhow!("{what}: {e:?}"))
    }

    fn sync(&mut self, what: &str) -> Result<()> {
        self.gpu.stream.synchronize().map_err(|e| anyhow!("{what}: waiting for the GPU: {e:?}"))?;
        self.take_error()
    }

    #[allow(clippy::too_many_arguments)]
    fn rope(&mut self, op: &str, x: Span, pos: Span, n: usize, heads: usize, head_dim: usize, theta: f32, inverse: bool) {
        shapes::rope(op, x, pos, n, heads, head_dim);
        if n == 0 {
            return;
        }
        let (xp, pp) = (self.ptr(op, x), self.ptr(op, pos));
        if self.rope_freq.as_ref().is_none_or(|(t, hd, _)| *t != theta.to_bits() || *hd != head_dim) {
            // The frequencies exactly as the CPU backend computes them, in f32 on the host.
            let half = head_dim / 2;
            let inv_freq: Vec<f32> = (0..half).map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32)).collect();
            let buf = self.new_buf(half).and_then(|b| {
                // SAFETY: `b` holds `half` elements; see `upload_words` for the staging.
                unsafe { cudarc::driver::result::memcpy_htod_async(b.ptr, &inv_freq, self.gpu.stream.cu_stream()) }.map_err(|e| anyhow!("{e:?}"))?;
                Ok(b)
            });
            match buf {
                Ok(b) => self.rope_freq = Some((theta.to_bits(), head_dim, b)),
                Err(e) => return self.record(op, format!("uploading the frequencies: {e:#}")),
            }
        }
        let fp = self.rope_freq.as_ref().map_or(0, |(_, _, b)| b.ptr);
        let args = [Arg::P(xp), Arg::P(pp), Arg::P(fp), Arg::L(n as u64), Arg::L(heads as u64), Arg::L(head_dim as u64), Arg::U(inverse as u32)];
        self.elementwise(op, Source::Rope, "rope", n * heads * head_dim / 2, &args);
    }
}

fn u(x: usize) -> u32 {
    u32::try_from(x).expect("a size above 2³²")
}

fn l(x: usize) -> Arg {
    Arg::L(x as u64)
}

/// The cuda kernels' own limit, beyond the trait's shape rules: `head_dim` at most [`MAX_HEAD_DIM`].
#[track_caller]
fn check_head_dim(op: &str, head_dim: usize) {
    assert!(head_dim <= MAX_HEAD_DIM, "{op}: head_dim {head_dim} is above the cuda kernels' {MAX_HEAD_DIM}");
}

/// Blocks of four warps covering `warps` warps.
fn warp_blocks(warps: usize) -> usize {
    warps.div_ceil((WARP_THREADS / 32) as usize)
}

impl Backend for CudaBackend {
    fn name(&self) -> String {
        format!("cuda: {}", self.gpu.name)
    }

    // ---- memory ----------------------------------------------------------------------------

    fn alloc(&mut self, mem: Mem, len: usize) -> Result<()> {
        self.take_error()?;
        self.bufs.remove(&mem);
        let b = self.new_buf(len)?;
        self.bufs.insert(mem, b);
        Ok(())
    }

    fn mem_len(&self, mem: Mem) -> usize {
        self.bufs.get(&mem).map_or(0, |b| b.len)
    }

    fn upload(&mut self, dst: Span, src: &[f32]) -> Result<()> {
        ensure!(dst.mem != Mem::Ids, "upload: {dst:?} is an ids span; use upload_ids");
        self.upload_words("upload", dst, src)
    }

    fn download(&mut self, src: Span, dst: &mut [f32]) -> Result<()> {
        self.take_error()?;
        self.check_span("download", src, dst.len())?;
        if !dst.is_empty() {
            let ptr = self.ptr("download", src);
            self.gpu.ctx.bind_to_thread().map_err(|e| anyhow!("binding the CUDA context: {e:?}"))?;
            // SAFETY: the span lies inside its buffer (checked) and `dst` holds its length; the
            // stream is synchronised before `dst` is read.
            unsafe { cudarc::driver::result::memcpy_dtoh_async(dst, ptr, self.gpu.stream.cu_stream()) }.map_err(|e| anyhow!("download: {e:?}"))?;
        }
        self.sync("download")
    }

    fn upload_ids(&mut self, dst: Span, src: &[u32]) -> Result<()> {
        ensure!(dst.mem == Mem::Ids, "upload_ids: {dst:?} is not in Mem::Ids");
        self.upload_words("upload_ids", dst, src)
    }

    fn zero(&mut self, dst: Span) {
        if dst.len == 0 {
            return;
        }
        let ptr = self.ptr("zero", dst);
        let r = self.gpu.ctx.bind_to_thread().and_then(|()| {
            // SAFETY: the span lies inside its buffer.
            unsafe { cudarc::driver::result::memset_d8_async(ptr, 0, dst.len * 4, self.gpu.stream.cu_stream()) }
        });
        if let Err(e) = r {
            self.record("zero", format!("{e:?}"));
        }
    }

    fn copy(&mut self, dst: Span, src: Span) {
        shapes::copy(dst, src);
        if dst.len == 0 {
            return;
        }
        let (d, s) = (self.ptr("copy", dst), self.ptr("copy", src));
        let r = self.gpu.ctx.bind_to_thread().and_then(|()| {
            // SAFETY: both spans lie inside their buffers; the trait promises they do not overlap.
            unsafe { cudarc::driver::result::memcpy_dtod_async(d, s, dst.len * 4, self.gpu.stream.cu_stream()) }
        });
        if let Err(e) = r {
            self.record("copy", format!("{e:?}"));
        }
    }

    // ---- elementwise -----------------------------------------------------------------------

    fn add(&mut self, out: Span, a: Span, b: Span) {
        shapes::add(out, a, b);
        let args = [Arg::P(self.ptr("add", out)), Arg::P(self.ptr("add", a)), Arg::P(self.ptr("add", b)), l(out.len)];
        self.elementwise("add", Source::Elementwise, "add_f32", out.len, &args);
    }

    fn scale(&mut self, x: Span, alpha: f32) {
        let args = [Arg::P(self.ptr("scale", x)), Arg::F(alpha), l(x.len)];
        self.elementwise("scale", Source::Elementwise, "scale_f32", x.len, &args);
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
        let (cp, ap, bp) = (self.ptr("matmul", c), self.ptr("matmul", a), self.ptr("matmul", b));
        // cuBLAS is column-major: a row-major matrix is its transpose there, so row-major
        // C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, an n × m product whose operands are
        // the stored B and A, each transposed by cuBLAS when the trait's flag says so.
        let op = |t: Trans| if t == Trans::N { cublasOperation_t::CUBLAS_OP_N } else { cublasOperation_t::CUBLAS_OP_T };
        let ldb_stored = if tb == Trans::N { n } else { k };
        let lda_stored = if ta == Trans::N { k } else { m };
        let dims = [m, k, n].map(|x| i32::try_from(x).expect("a matrix dimension above 2³¹"));
        let (alpha, beta) = (1.0f32, if accumulate { 1.0f32 } else { 0.0 });
        let r = self.gpu.ctx.bind_to_thread().map_err(|e| format!("{e:?}")).and_then(|()| {
            // SAFETY: the three spans lie inside their buffers and hold m·n, m·k and k·n
            // elements (checked above), which are what the dimensions and leading dimensions
            // describe; alpha and beta are host pointers (cuBLAS's default pointer mode).
            unsafe {
                cudarc::cublas::result::sgemm(
                    *self.gpu.blas.handle(),
                    op(tb),
                    op(ta),
                    dims[2],
                    dims[0],
                    dims[1],
                    &alpha,
                    bp as *const f32,
                    ldb_stored as i32,
                    ap as *const f32,
                    lda_stored as i32,
                    &beta,
                    cp as *mut f32,
                    dims[2],
                )
            }
            .map_err(|e| format!("cublasSgemm: {e:?}"))
        });
        if let Err(e) = r {
            self.record("matmul", e);
        }
    }

    // ---- layers ----------------------------------------------------------------------------

    fn embedding_fwd(&mut self, out: Span, table: Span, ids: Span, n: usize, d: usize) {
        const OP: &str = "embedding_fwd";
        shapes::embedding_fwd(out, table, ids, n, d);
        let args = [Arg::P(self.ptr(OP, out)), Arg::P(self.ptr(OP, table)), Arg::P(self.ptr(OP, ids)), l(n), l(d), l(table.len / d)];
        self.elementwise(OP, Source::Embedding, "embedding_fwd", n * d, &args);
    }

    fn embedding_bwd(&mut self, dtable: Span, dout: Span, ids: Span, n: usize, d: usize) {
        const OP: &str = "embedding_bwd";
        shapes::embedding_bwd(dtable, dout, ids, n, d);
        if n == 0 {
            return;
        }
        let args = [Arg::P(self.ptr(OP, dtable)), Arg::P(self.ptr(OP, dout)), Arg::P(self.ptr(OP, ids)), l(n), l(d), l(dtable.len / d)];
        self.elementwise(OP, Source::Embedding, "embedding_bwd", d, &args);
    }

    fn rmsnorm_fwd(&mut self, out: Span, rstd: Span, x: Span, w: Span, n: usize, d: usize, eps: f32) {
        const OP: &str = "rmsnorm_fwd";
        shapes::rmsnorm_fwd(out, rstd, x, w, n, d);
        let args = [Arg::P(self.ptr(OP, out)), Arg::P(self.ptr(OP, rstd)), Arg::P(self.ptr(OP, x)), Arg::P(self.ptr(OP, w)), l(n), l(d), Arg::F(eps)];
        self.launch(OP, Source::Rmsnorm, "rmsnorm_fwd", n, THREADS, &args);
    }

    fn rmsnorm_bwd(&mut self, dx: Span, dw: Span, dout: Span, x: Span, w: Span, rstd: Span, n: usize, d: usize) {
        const OP: &str = "rmsnorm_bwd";
        shapes::rmsnorm_bwd(dx, dw, dout, x, w, rstd, n, d);
        if n == 0 {
            return;
        }
        let (dxp, dwp, gp, xp, wp, rp) = (self.ptr(OP, dx), self.ptr(OP, dw), self.ptr(OP, dout), self.ptr(OP, x), self.ptr(OP, w), self.ptr(OP, rstd));
        self.launch(OP, Source::Rmsnorm, "rmsnorm_bwd_dx", n, THREADS, &[Arg::P(dxp), Arg::P(gp), Arg::P(xp), Arg::P(wp), Arg::P(rp), l(n), l(d)]);
        self.elementwise(OP, Source::Rmsnorm, "rmsnorm_bwd_dw", d, &[Arg::P(dwp), Arg::P(gp), Arg::P(xp), Arg::P(rp), l(n), l(d)]);
    }

    fn rope_fwd(&mut self, x: Span, pos: Span, n: usize, heads: usize, head_dim: usize, theta: f32) {
        self.rope("rope_fwd", x, pos, n, heads, head_dim, theta, false);
    }

    fn rope_bwd(&mut self, dx: Span, pos: Span, n: usize, heads: usize, head_dim: usize, theta: f32) {
        self.rope("rope_bwd", dx, pos, n, heads, head_dim, theta, true);
    }

    fn attention_fwd(&mut self, out: Span, lse: Span, q: Span, k: Span, v: Span, doc: Span, s: AttnShape) {
        const OP: &str = "attention_fwd";
        check_head_dim(OP, s.head_dim);
        shapes::attention_fwd(out, lse, q, k, v, doc, &s);
        let n = s.tokens();
        let mut args = vec![
            Arg::P(self.ptr(OP, out)),
            Arg::P(self.ptr(OP, lse)),
            Arg::P(self.ptr(OP, q)),
            Arg::P(self.ptr(OP, k)),
            Arg::P(self.ptr(OP, v)),
            Arg::P(self.ptr(OP, doc)),
        ];
        args.extend(attn_args(&s));
        self.launch(OP, Source::Attention, "attention_fwd", warp_blocks(n * s.heads), WARP_THREADS, &args);
    }

    fn attention_bwd(&mut self, dq: Span, dk: Span, dv: Span, dout: Span, out: Span, lse: Span, q: Span, k: Span, v: Span, doc: Span, s: AttnShape) {
        const OP: &str = "attention_bwd";
        check_head_dim(OP, s.head_dim);
        shapes::attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, doc, &s);
        let n = s.tokens();
        if n == 0 {
            return;
        }
        let Some(dsum) = self.scratch(OP, n * s.heads) else { return };
        let (dop, op, lp, qp, kp, vp, docp) =
            (self.ptr(OP, dout), self.ptr(OP, out), self.ptr(OP, lse), self.ptr(OP, q), self.ptr(OP, k), self.ptr(OP, v), self.ptr(OP, doc));
        let mut args = vec![Arg::P(self.ptr(OP, dq)), Arg::P(dsum), Arg::P(dop), Arg::P(op), Arg::P(lp), Arg::P(qp), Arg::P(kp), Arg::P(vp), Arg::P(docp)];
        args.extend(attn_args(&s));
        self.launch(OP, Source::Attention, "attention_dq", warp_blocks(n * s.heads), WARP_THREADS, &args);
        let mut args =
            vec![Arg::P(self.ptr(OP, dk)), Arg::P(self.ptr(OP, dv)), Arg::P(dsum), Arg::P(dop), Arg::P(lp), Arg::P(qp), Arg::P(kp), Arg::P(vp), Arg::P(docp)];
        args.extend(attn_args(&s));
        self.launch(OP, Source::Attention, "attention_dkv", warp_blocks(n * s.kv_heads), WARP_THREADS, &args);
    }

    // ---- decoding ----------------------------------------------------------------------------

    fn kv_store(&mut self, k_cache: Span, v_cache: Span, k: Span, v: Span, slots: Span, pos: Span, s: DecodeShape) {
        const OP: &str = "kv_store";
        check_head_dim(OP, s.head_dim);
        shapes::kv_store(k_cache, v_cache, k, v, slots, pos, &s);
        let kd = s.kv_heads * s.head_dim;
        let args = [
            Arg::P(self.ptr(OP, k_cache)),
            Arg::P(self.ptr(OP, v_cache)),
            Arg::P(self.ptr(OP, k)),
            Arg::P(self.ptr(OP, v)),
            Arg::P(self.ptr(OP, slots)),
            Arg::P(self.ptr(OP, pos)),
            Arg::U(u(s.batch)),
            Arg::U(u(s.kv_heads)),
            Arg::U(u(s.head_dim)),
            Arg::U(u(s.max_len)),
        ];
        self.elementwise(OP, Source::Decode, "kv_store", s.batch * kd, &args);
    }

    fn attention_decode(&mut self, out: Span, q: Span, k_cache: Span, v_cache: Span, slots: Span, lens: Span, s: DecodeShape) {
        const OP: &str = "attention_decode";
        check_head_dim(OP, s.head_dim);
        shapes::attention_decode(out, q, k_cache, v_cache, slots, lens, &s);
        let args = [
            Arg::P(self.ptr(OP, out)),
            Arg::P(self.ptr(OP, q)),
            Arg::P(self.ptr(OP, k_cache)),
            Arg::P(self.ptr(OP, v_cache)),
            Arg::P(self.ptr(OP, slots)),
            Arg::P(self.ptr(OP, lens)),
            Arg::U(u(s.batch)),
            Arg::U(u(s.heads)),
            Arg::U(u(s.kv_heads)),
            Arg::U(u(s.head_dim)),
            Arg::U(u(s.max_len)),
            Arg::F(1.0 / (s.head_dim as f32).sqrt()),
        ];
        self.launch(OP, Source::Decode, "attention_decode", warp_blocks(s.batch * s.heads), WARP_THREADS, &args);
    }

    fn swiglu_fwd(&mut self, out: Span, gate: Span, up: Span) {
        const OP: &str = "swiglu_fwd";
        shapes::swiglu_fwd(out, gate, up);
        let args = [Arg::P(self.ptr(OP, out)), Arg::P(self.ptr(OP, gate)), Arg::P(self.ptr(OP, up)), l(out.len)];
        self.elementwise(OP, Source::Elementwise, "swiglu_fwd", out.len, &args);
    }

    fn swiglu_bwd(&mut self, dgate: Span, dup: Span, dout: Span, gate: Span, up: Span) {
        const OP: &str = "swiglu_bwd";
        shapes::swiglu_bwd(dgate, dup, dout, gate, up);
        let len = dout.len;
        let args =
            [Arg::P(self.ptr(OP, dgate)), Arg::P(self.ptr(OP, dup)), Arg::P(self.ptr(OP, dout)), Arg::P(self.ptr(OP, gate)), Arg::P(self.ptr(OP, up)), l(len)];
        self.elementwise(OP, Source::Elementwise, "swiglu_bwd", len, &args);
    }

    fn cross_entropy(&mut self, logits: Span, losses: Span, targets: Span, n: usize, vocab: usize, grad_scale: Option<f32>) {
        const OP: &str = "cross_entropy";
        shapes::cross_entropy(logits, losses, targets, n, vocab);
        let args = [
            Arg::P(self.ptr(OP, logits)),
            Arg::P(self.ptr(OP, losses)),
            Arg::P(self.ptr(OP, targets)),
            l(n),
            l(vocab),
            Arg::U(grad_scale.is_some() as u32),
            Arg::F(grad_scale.unwrap_or(0.0)),
        ];
        self.launch(OP, Source::Xent, "xent", n, THREADS, &args);
    }

    // ---- optimizer -------------------------------------------------------------------------

    /// Summed on the device in f64 (per block of 8,192 elements, a fixed tree), the blocks'
    /// partials added on the host in block order. A device error gives NaN here and is
    /// reported by the next call that returns a `Result`.
    fn sum_squares(&mut self, x: Span) -> f64 {
        const OP: &str = "sum_squares";
        let n = x.len;
        if n == 0 {
            return 0.0;
        }
        let xp = self.ptr(OP, x);
        let parts = n.div_ceil(SUM_CHUNK);
        if self.partials.as_ref().is_none_or(|(_, len)| *len < parts) {
            let len = parts.next_power_of_two();
            match self.gpu.ctx.bind_to_thread().and_then(|()| self.gpu.stream.alloc_zeros::<f64>(len)) {
                Ok(s) => self.partials = Some((s, len)),
                Err(e) => {
                    self.record(OP, format!("allocating partial sums: {e:?}"));
                    return f64::NAN;
                }
            }
        }
        let pp = {
            let (slice, _) = self.partials.as_ref().expect("allocated above");
            slice.device_ptr(&self.gpu.stream).0
        };
        self.launch(OP, Source::Elementwise, "sum_squares", parts, THREADS, &[Arg::P(pp), Arg::P(xp), l(n)]);
        let mut host = vec![0f64; parts];
        // SAFETY: the partials buffer holds at least `parts` values; the stream is synchronised
        // before `host` is read.
        let r = unsafe { cudarc::driver::result::memcpy_dtoh_async(&mut host, pp, self.gpu.stream.cu_stream()) }
            .map_err(|e| anyhow!("{e:?}"))
            .and_then(|()| self.gpu.stream.synchronize().map_err(|e| anyhow!("waiting for the GPU: {e:?}")));
        if let Err(e) = r {
            self.record(OP, format!("{e:#}"));
            return f64::NAN;
        }
        if self.error.is_some() {
            return f64::NAN;
        }
        host.iter().sum()
    }

    fn adamw(&mut self, p: Span, g: Span, m: Span, v: Span, step: AdamStep) {
        const OP: &str = "adamw";
        shapes::adamw(p, g, m, v, &step);
        // The constants exactly as the CPU backend computes them.
        let (b1, b2, lr) = (step.beta1 as f64, step.beta2 as f64, step.lr as f64);
        let t = step.t as f64;
        let decay = (1.0 - lr * step.weight_decay as f64) as f32;
        let neg_step_size = (-lr / (1.0 - b1.powf(t))) as f32;
        let bc2_sqrt = (1.0 - b2.powf(t)).sqrt() as f32;
        let (w1, w2) = ((1.0 - b1) as f32, (1.0 - b2) as f32);
        let args = [
            Arg::P(self.ptr(OP, p)),
            Arg::P(self.ptr(OP, g)),
            Arg::P(self.ptr(OP, m)),
            Arg::P(self.ptr(OP, v)),
            l(p.len),
            Arg::F(decay),
            Arg::F(neg_step_size),
            Arg::F(bc2_sqrt),
            Arg::F(w1),
            Arg::F(step.beta2),
            Arg::F(w2),
            Arg::F(step.eps),
            Arg::F(step.grad_scale),
        ];
        self.elementwise(OP, Source::Elementwise, "adamw", p.len, &args);
    }
}

/// Attention kernels' shape parameters: batch, seq, heads, kv_heads, head_dim, scale.
fn attn_args(s: &AttnShape) -> [Arg; 6] {
    [Arg::U(u(s.batch)), Arg::U(u(s.seq)), Arg::U(u(s.heads)), Arg::U(u(s.kv_heads)), Arg::U(u(s.head_dim)), Arg::F(1.0 / (s.head_dim as f32).sqrt())]
}
