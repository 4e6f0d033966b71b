//! The `wgpu` plugin through the real host, on the adapter the machine has (Mesa's lavapipe in
//! CI): one pipeline run with `backend=cpu` and with `backend=wgpu` — pretraining from scratch,
//! fine-tuning, the likelihood of the traces and a played evaluation — gives the same loss
//! curves, weights and likelihoods within stated tolerances, and the same kind of outputs.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value as Json;

/// Relative tolerance of the per-step losses and of the trained weights (error over
/// |cpu value| + the tensor's RMS): f32 kernels that sum in another order drift apart slowly.
const TRAIN_TOL: f64 = 1e-3;
/// Relative tolerance of the likelihoods (one forward pass).
const LIKELIHOOD_TOL: f64 = 1e-4;

fn pipeline(dir: &Path) -> PathBuf {
    write(
        dir,
        "backends.yaml",
        r#"name: backends-e2e
seed: 11
vars:
  backend: cpu
  prompt: {system: "", max_history: 2, use_thinking: false}
nodes:
  - id: collect
    uses: miniarena/collect
    with:
      templates: [miniarena.menu.impersonate_user]
      seeds: {start: 0, count: 3}
      experts: [{preset: perfect, think: false}]
  - id: tokenizer
    uses: sft/tokenizer
    with: {vocab_size: 400}
    inputs: {traces: collect.traces}
  - id: sft_data
    uses: sft/build
    with: {max_len: 512, prompt: "${prompt}"}
    inputs: {traces: collect.traces, tokenizer: tokenizer.tokenizer}
  - id: base
    uses: "${backend}/pretrain"
    with:
      init: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2}
      seq_len: 512
      batch_size: 2
      max_steps: 6
      warmup_steps: 2
      lr: 0.01
    inputs: {data: sft_data.dataset, tokenizer: tokenizer.tokenizer}
  - id: agent
    uses: "${backend}/sft"
    with: {seq_len: 512, batch_size: 2, max_steps: 4, lr: 0.003, checkpoint_every: 2, warmup_steps: 1, grad_clip: 0.5}
    inputs: {model: base.model, data: sft_data.dataset, tokenizer: tokenizer.tokenizer}
  - id: likelihood
    uses: "${backend}/likelihood"
    with: {batch_size: 2}
    inputs: {checkpoints: [agent.checkpoints], data: sft_data.dataset}
  - id: eval
    uses: "${backend}/evaluate"
    with:
      templates: [miniarena.menu.impersonate_user]
      seeds: {start: 1000, count: 2}
      max_steps: 2
      prompt: "${prompt}"
      max_len: 512
      max_new_tokens: 8
      batch: 2
    inputs: {model: agent.model, tokenizer: tokenizer.tokenizer}
"#,
    )
}

fn node<'a>(report: &'a Json, id: &str) -> &'a Json {
    report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}"))
}

fn losses(report: &Json, id: &str) -> Vec<f64> {
    let log = std::fs::read_to_string(node(report, id)["outputs"]["log"].as_str().unwrap()).unwrap();
    log.lines().map(|l| serde_json::from_str::<Json>(l).unwrap()["loss"].as_f64().unwrap()).collect()
}

fn run(dir: &Path, backend: &str) -> Json {
    let p = pipeline(dir);
    ok(dir, &["run", p.to_str().unwrap(), "--set", &format!("backend={backend}")]);
    latest_report(&dir.join(".agentmerge"))
}

/// The worst error of `got` against `want`, relative to |want| + want's RMS.
fn worst(got: &[f32], want: &[f32]) -> f64 {
    let rms = (want.iter().map(|&w| (w as f64).powi(2)).sum::<f64>() / want.len() as f64).sqrt();
    got.iter().zip(want).map(|(&g, &w)| (g as f64 - w as f64).abs() / (w.abs() as f64 + rms)).fold(0.0, f64::max)
}

#[test]
fn the_same_pipeline_on_wgpu_tracks_the_cpu_backend() {
    let t = tempfile::tempdir().unwrap();
    let cpu = run(&t.path().join("cpu"), "cpu");
    let gpu = run(&t.path().join("wgpu"), "wgpu");

    for id in ["base", "agent"] {
        let m = &node(&gpu, id)["outputs"]["metrics"];
        assert_eq!(m["backend"], "wgpu", "{m}");
        assert!(m["device"].as_str().unwrap().starts_with("wgpu: "), "{m}");
        // The loss curves agree step by step.
        let (a, b) = (losses(&cpu, id), losses(&gpu, id));
        assert_eq!(a.len(), b.len(), "{id}: steps");
        let drift = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / x.abs()).fold(0.0, f64::max);
        eprintln!("{id}: {} steps, worst relative loss difference {drift:.2e}", a.len());
        for (step, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!((x - y).abs() <= TRAIN_TOL * x.abs(), "{id} step {}: cpu loss {x}, wgpu loss {y}", step + 1);
        }
    }
    // So do the trained weights.
    let (a, b) = (model_of(&cpu, "agent"), model_of(&gpu, "agent"));
    for name in ["model.embed_tokens.weight", "model.layers.1.self_attn.k_proj.weight", "model.layers.0.mlp.down_proj.weight", "model.norm.weight"] {
        let e = worst(&tensor(&b, name), &tensor(&a, name));
        eprintln!("{name}: worst relative weight difference {e:.2e}");
        assert!(e <= TRAIN_TOL, "{name}: wgpu against cpu, error {e:.2e}");
    }
    // Likelihood of the traces at each checkpoint.
    let rows = |r: &Json| node(r, "likelihood")["outputs"]["metrics"]["rows"].as_array().unwrap().clone();
    let (ra, rb) = (rows(&cpu), rows(&gpu));
    assert_eq!(ra.len(), 2);
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!(x["step"], y["step"]);
        let (x, y) = (x["mean_logprob"].as_f64().unwrap(), y["mean_logprob"].as_f64().unwrap());
        assert!((x - y).abs() <= LIKELIHOOD_TOL * x.abs(), "likelihood: cpu {x}, wgpu {y}");
    }
    // The evaluation plays every episode to its end on the GPU too, with the same metrics' shape.
    let (ea, eb) = (&node(&cpu, "eval")["outputs"]["metrics"], &node(&gpu, "eval")["outputs"]["metrics"]);
    assert_eq!(eb["overall"]["n"], 2);
    assert_eq!(eb["n_errors"], 0);
    for field in ["actions", "parse_errors", "invalid_actions", "truncated", "per_task"] {
        assert!(!eb[field].is_null() && !ea[field].is_null(), "evaluate lacks {field}: {eb}");
    }
}

#[test]
fn a_missing_adapter_is_a_clear_error_before_training() {
    let t = tempfile::tempdir().unwrap();
    let p = pipeline(t.path());
    let o = std::process::Command::new(agentmerge_path())
        .args(["run", p.to_str().unwrap(), "--set", "backend=wgpu"])
        .current_dir(t.path())
        .env("AGENTMERGE_WGPU_ADAPTER", "no-such-gpu")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("AGENTMERGE_WGPU_ADAPTER=no-such-gpu names no adapter"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The paper pipeline runs unchanged with `--set backend=wgpu` (at the smoke scale CI affords):
/// every trainer and evaluator node runs on the wgpu plugin and the report is written.
#[test]
fn the_paper_pipeline_runs_on_wgpu() {
    let store = tempfile::tempdir().unwrap();
    let s = store.path().to_str().unwrap();
    ok(&workspace(), &["run", "pipelines/paper.yaml", "--set", "scale=smoke", "--set", "backend=wgpu", "--store", s]);
    let report = latest_report(store.path());
    assert!(statuses(&report).values().all(|st| st == "ran"), "{report}");
    let nodes = report["nodes"].as_array().unwrap();
    let on_wgpu: Vec<&str> = nodes.iter().filter(|n| n["uses"].as_str().unwrap_or("").starts_with("wgpu/")).map(|n| n["id"].as_str().unwrap()).collect();
    assert!(on_wgpu.contains(&"base") && on_wgpu.contains(&"instruct"), "{on_wgpu:?}");
    assert!(nodes.iter().all(|n| !n["uses"].as_str().unwrap_or("").starts_with("cpu/")), "a node still ran on the cpu plugin");
    let base = &node(&report, "base")["outputs"]["metrics"];
    assert!(base["device"].as_str().unwrap().starts_with("wgpu: "), "{base}");
    let dir = std::path::PathBuf::from(node(&report, "report")["outputs"]["report"].as_str().unwrap());
    check_paper_report(&dir, &["## Table 1", "### Inter-task", "### Cross-task", "## Likelihood", "## Forgetting", "![Figure 2](figure2.png)"]);
}
