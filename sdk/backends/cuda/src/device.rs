//! Finding and opening the GPU: the driver, NVRTC and cuBLAS libraries checked before cudarc
//! touches them (its loaders panic when a library is missing), the device index checked against
//! the driver's count, and errors that say what is missing and what to do instead.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaStream};

/// What to do on a machine without a usable CUDA setup, appended to every such error.
const INSTEAD: &str = "or run on another backend: `--set backend=cpu` (any machine) or `--set backend=wgpu` (any GPU with a Vulkan, Metal or DX12 driver)";

/// An open device: its context, the stream every op runs on, and a cuBLAS handle on it.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub blas: CudaBlas,
    pub name: String,
    /// NVRTC's virtual architecture for this device, `compute_XY`.
    pub arch: String,
}

/// Whether the CUDA driver library (`libcuda.so.1`, `nvcuda.dll`) can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: loads and unloads the library by name; runs no code of it but its initialisers.
    catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() }).unwrap_or(false)
}

/// Whether NVRTC (`libnvrtc.so`) can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: as in `driver_present`.
    catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() }).unwrap_or(false)
}

/// Whether cuBLAS (`libcublas.so`, with the `libcublasLt.so` it links) can be loaded.
pub fn cublas_present() -> bool {
    // SAFETY: as in `driver_present`.
    catch_unwind(|| unsafe { cudarc::cublas::sys::is_culib_present() }).unwrap_or(false)
}

/// Runs `f`, turning a panic (cudarc panics on some failures it cannot report) into an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p.downcast_ref::<String>().map(String::as_str).or_else(|| p.downcast_ref::<&str>().copied()).unwrap_or("(no message)");
            Err(anyhow!("{what}: cudarc panicked: {msg}"))
        }
    }
}

/// Checks the libraries the backend needs, with an error naming the first missing one.
pub fn check_libraries() -> Result<()> {
    if !driver_present() {
        bail!(
            "no CUDA driver found: libcuda.so.1 could not be loaded, so this machine has no NVIDIA GPU driver (or it is not on the library path). \
             Install the NVIDIA driver, {INSTEAD}"
        );
    }
    if !nvrtc_present() {
        bail!(
            "the CUDA driver is present but NVRTC is not: libnvrtc.so (libnvrtc.so.12) could not be loaded. The cuda backend compiles its kernels at run time \
             with NVRTC, part of the CUDA toolkit (also the pip package nvidia-cuda-nvrtc-cu12); install it and add its lib directory to LD_LIBRARY_PATH, {INSTEAD}"
        );
    }
    if !cublas_present() {
        bail!(
            "the CUDA driver is present but cuBLAS is not: libcublas.so (libcublas.so.12, with libcublasLt.so.12) could not be loaded. The cuda backend's matrix \
             products run on cuBLAS, part of the CUDA toolkit (also the pip package nvidia-cublas-cu12); install it and add its lib directory to LD_LIBRARY_PATH, {INSTEAD}"
        );
    }
    Ok(())
}

/// The number of CUDA devices the driver sees (after checking the driver is there).
pub fn device_count() -> Result<usize> {
    if !driver_present() {
        bail!("no CUDA driver found: libcuda.so.1 could not be loaded. Install the NVIDIA driver, {INSTEAD}");
    }
    guarded("counting CUDA devices", || {
        cudarc::driver::result::init().map_err(|e| anyhow!("the CUDA driver failed to initialise ({e:?}): is an NVIDIA GPU visible to this process? Check `nvidia-smi` and CUDA_VISIBLE_DEVICES, {INSTEAD}"))?;
        let n = cudarc::driver::result::device::get_count().map_err(|e| anyhow!("the CUDA driver could not count devices ({e:?}), {INSTEAD}"))?;
        Ok(n.max(0) as usize)
    })
}

/// Opens CUDA device `index`: context (the device's primary one), stream, cuBLAS handle.
pub fn open(index: usize) -> Result<Gpu> {
    check_libraries()?;
    let count = device_count()?;
    if count == 0 {
        bail!("the CUDA driver is present but sees no device (CUDA_VISIBLE_DEVICES={:?}), {INSTEAD}", std::env::var("CUDA_VISIBLE_DEVICES").ok());
    }
    if index >= count {
        bail!(
            "CUDA device {index} does not exist: the driver sees {count} device(s), numbered 0..{} (CUDA_VISIBLE_DEVICES={:?}); the host assigns devices below AGENTMERGE_GPUS, so set that to at most {count}",
            count - 1,
            std::env::var("CUDA_VISIBLE_DEVICES").ok()
        );
    }
    guarded("opening the CUDA device", || {
        let ctx = CudaContext::new(index).map_err(|e| anyhow!("creating a CUDA context on device {index}: {e:?}"))?;
        // One stream for every op, so ops, copies and frees are ordered by the stream alone and
        // cudarc's per-buffer events are not needed.
        // SAFETY: no other stream ever touches this context's buffers.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let name = ctx.name().unwrap_or_else(|_| format!("device {index}"));
        let (major, minor) = ctx.compute_capability().map_err(|e| anyhow!("reading device {index}'s compute capability: {e:?}"))?;
        let blas = CudaBlas::new(stream.clone()).map_err(|e| anyhow!("creating a cuBLAS handle on device {index}: {e:?}"))?;
        let arch = format!("compute_{major}{minor}");
        Ok(Gpu { ctx, stream, blas, name: format!("{name} (sm_{major}{minor})"), arch })
    })
    .context("the cuda backend")
}
