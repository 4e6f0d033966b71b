//! What runs on any machine: without the CUDA driver, opening the backend is a clear error
//! (never a panic) that says what is missing and what to do instead; and, where NVRTC can be
//! loaded (no GPU needed), every kernel file compiles and defines every kernel the backend
//! launches.

use agentmerge_backend_cuda::CudaBackend;

#[test]
fn without_a_driver_opening_is_a_clear_error() {
    if agentmerge_backend_cuda::driver_present() {
        eprintln!("skipped: this machine has a CUDA driver (the conformance tests cover it)");
        return;
    }
    for attempt in [CudaBackend::new().err(), CudaBackend::on_devices(&[1]).err()] {
        let e = format!("{:#}", attempt.expect("opening succeeded without a driver"));
        assert!(e.contains("no CUDA driver found: libcuda.so.1 could not be loaded"), "{e}");
        assert!(e.contains("Install the NVIDIA driver"), "{e}");
        assert!(e.contains("--set backend=cpu") && e.contains("--set backend=wgpu"), "{e}");
    }
    let e = format!("{:#}", agentmerge_backend_cuda::device_count().unwrap_err());
    assert!(e.contains("no CUDA driver found"), "{e}");
}

#[test]
fn every_kernel_compiles_with_nvrtc() {
    if !agentmerge_backend_cuda::nvrtc_present() {
        eprintln!("skipped: NVRTC (libnvrtc.so) cannot be loaded here; add the lib directory of the CUDA toolkit or of the pip package nvidia-cuda-nvrtc-cu12 to LD_LIBRARY_PATH to run it");
        return;
    }
    // NVRTC's default architecture, and those of the GPUs the backend targets first
    // (A100, H100).
    for arch in [None, Some("compute_80"), Some("compute_90")] {
        let files = CudaBackend::compile_all(arch).unwrap_or_else(|e| panic!("{arch:?}: {e:#}"));
        for (file, bytes) in &files {
            eprintln!("{arch:?}: {file}: {bytes} bytes of PTX");
        }
        assert_eq!(files.len(), 7);
    }
}
