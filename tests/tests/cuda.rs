//! The `cuda` plugin through the real host. Everywhere: `agentmerge plugins` lists its node
//! kinds. On a machine without the CUDA driver, a pipeline whose trainer is `cuda/pretrain`
//! fails with the backend's clear error in the node's error (exit code 1, no panic); on a
//! machine with one, the same pipeline trains a few steps on the GPU, with finite losses that
//! track the CPU backend's.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value as Json;

/// Relative tolerance of the per-step losses against the CPU backend (f32 kernels that sum in
/// another order drift apart slowly; the wgpu test uses the same).
const TRAIN_TOL: f64 = 1e-3;

fn pipeline(dir: &Path) -> PathBuf {
    write(
        dir,
        "cuda.yaml",
        &format!(
            r#"name: cuda-e2e
seed: 5
vars:
  backend: cuda
nodes:
{TRACES_TO_SFT_NODES}  - id: base
    uses: "${{backend}}/pretrain"
    with:
      init: {{hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2}}
      seq_len: 1024
      batch_size: 2
      max_steps: 4
      warmup_steps: 1
      lr: 0.01
    inputs: {{data: data.dataset, tokenizer: tokenizer.tokenizer}}
"#
        ),
    )
}

fn node<'a>(report: &'a Json, id: &str) -> &'a Json {
    report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}"))
}

fn losses(report: &Json, id: &str) -> Vec<f64> {
    let log = std::fs::read_to_string(node(report, id)["outputs"]["log"].as_str().unwrap()).unwrap();
    log.lines().map(|l| serde_json::from_str::<Json>(l).unwrap()["loss"].as_f64().unwrap()).collect()
}

/// Whether this machine can run the CUDA backend at all (the driver library loads).
fn driver_present() -> bool {
    ["libcuda.so.1", "libcuda.so"].iter().any(|name| {
        let c = std::ffi::CString::new(*name).unwrap();
        // SAFETY: dlopen/dlclose of the driver library, nothing called in it.
        unsafe {
            let h = libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
            if h.is_null() {
                return false;
            }
            libc::dlclose(h);
            true
        }
    })
}

#[test]
fn the_plugin_lists_its_kinds() {
    let t = tempfile::tempdir().unwrap();
    let out = ok(t.path(), &["plugins"]);
    for kind in ["cuda/pretrain", "cuda/sft", "cuda/evaluate", "cuda/likelihood", "cuda/forgetting"] {
        assert!(out.contains(kind), "`agentmerge plugins` does not list {kind}:\n{out}");
    }
}

#[test]
fn a_cuda_trainer_fails_clearly_without_a_driver_and_trains_with_one() {
    let t = tempfile::tempdir().unwrap();
    let p = pipeline(t.path());
    let o = agentmerge(t.path(), &["run", p.to_str().unwrap()]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!err.contains("panicked") && !out.contains("panicked"), "a panic:\nstdout:\n{out}\nstderr:\n{err}");
    let report = latest_report(&t.path().join(".agentmerge"));
    let base = node(&report, "base");
    if !driver_present() {
        assert_eq!(o.status.code(), Some(1), "stdout:\n{out}\nstderr:\n{err}");
        assert_eq!(base["status"], "failed", "{base}");
        let e = base["error"].as_str().unwrap_or_default();
        assert!(e.contains("no CUDA driver found: libcuda.so.1 could not be loaded"), "{e}");
        assert!(e.contains("--set backend=cpu"), "{e}");
        assert!(err.contains("no CUDA driver found"), "stderr does not show the node's error:\n{err}");
        assert!(!e.contains("panicked"), "{e}");
        eprintln!("no CUDA driver here: the node failed as it should: {e}");
        return;
    }
    // A GPU machine: the same pipeline trains, and its losses track the CPU backend's.
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    let m = &base["outputs"]["metrics"];
    assert_eq!(m["backend"], "cuda", "{m}");
    assert!(m["device"].as_str().unwrap().starts_with("cuda: "), "{m}");
    let gpu = losses(&report, "base");
    assert_eq!(gpu.len(), 4);
    assert!(gpu.iter().all(|l| l.is_finite() && *l > 0.0), "{gpu:?}");
    let cpu_dir = t.path().join("cpu");
    std::fs::create_dir_all(&cpu_dir).unwrap();
    let p = pipeline(&cpu_dir);
    ok(&cpu_dir, &["run", p.to_str().unwrap(), "--set", "backend=cpu"]);
    let cpu = losses(&latest_report(&cpu_dir.join(".agentmerge")), "base");
    for (step, (x, y)) in cpu.iter().zip(&gpu).enumerate() {
        eprintln!("step {}: cpu {x}, cuda {y}", step + 1);
        assert!((x - y).abs() <= TRAIN_TOL * x.abs(), "step {}: cpu loss {x}, cuda loss {y}", step + 1);
    }
}
