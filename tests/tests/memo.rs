//! Per-checkpoint memoisation through the real host and the real `cpu` plugin: when a training
//! run is extended, `cpu/evaluate` and `cpu/likelihood` run again (their checkpoint list grew)
//! but take the unchanged checkpoint's row from the store's memo and evaluate only the new one;
//! the outputs equal a from-scratch evaluation; another config does not hit; `--no-cache` and
//! `--force` compute everything.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value as Json;

fn node<'a>(report: &'a Json, id: &str) -> &'a Json {
    report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}"))
}

/// collect → tokenizer → sft/build → a tiny cpu/sft run (constant learning rate, a checkpoint
/// every step: extending it keeps the earlier checkpoints' bytes), evaluated and scored per
/// checkpoint.
fn pipeline(dir: &Path) -> PathBuf {
    write(
        dir,
        "memo.yaml",
        r#"name: memo-e2e
seed: 5
vars:
  prompt: {system: "", max_history: 2, use_thinking: false}
nodes:
  - id: collect
    uses: miniarena/collect
    with:
      templates: [miniarena.menu.impersonate_user]
      seeds: {start: 0, count: 2}
      experts: [{preset: perfect, think: false}]
  - id: tokenizer
    uses: sft/tokenizer
    with: {vocab_size: 400}
    inputs: {traces: collect.traces}
  - id: sft_data
    uses: sft/build
    with: {max_len: 1024, prompt: "${prompt}"}
    inputs: {traces: collect.traces, tokenizer: tokenizer.tokenizer}
  - id: base
    uses: models/random_llama
    with: {hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 400}
  - id: agent
    uses: cpu/sft
    with: {seq_len: 1024, batch_size: 1, max_steps: 1, lr: 0.003, warmup_steps: 0, schedule: constant, checkpoint_every: 1}
    inputs: {model: base.model, data: sft_data.dataset, tokenizer: tokenizer.tokenizer}
  - id: eval
    uses: cpu/evaluate
    with: {max_steps: 2, prompt: "${prompt}", max_len: 1024, max_new_tokens: 8, model_name: tiny}
    inputs: {checkpoints: [agent.checkpoints], tokenizer: tokenizer.tokenizer, traces: collect.traces}
  - id: ll
    uses: cpu/likelihood
    with: {batch_size: 2}
    inputs: {checkpoints: [agent.checkpoints], data: sft_data.dataset}
"#,
    )
}

/// Runs the pipeline with `args`: (report, stderr).
fn run(dir: &Path, p: &Path, args: &[&str]) -> (Json, String) {
    let mut all = vec!["run", p.to_str().unwrap(), "--jobs", "1"];
    all.extend_from_slice(args);
    let o = agentmerge(dir, &all);
    assert!(o.status.success(), "agentmerge {all:?} failed:\n{}\n{}", stdout(&o), stderr(&o));
    (latest_report(&dir.join(".agentmerge")), stderr(&o))
}

/// (rows computed, rows reused) in a node's metrics.
fn reuse(report: &Json, id: &str) -> (u64, u64) {
    let m = &node(report, id)["outputs"]["metrics"];
    (m["rows_computed"].as_u64().unwrap(), m["rows_reused"].as_u64().unwrap())
}

/// A node's rows without what measures time (a reused row keeps its first run's timings).
fn rows(report: &Json, id: &str) -> Json {
    fn strip(j: &mut Json) {
        match j {
            Json::Object(m) => {
                m.retain(|k, _| !(k.ends_with("seconds") || k.ends_with("_per_s")));
                m.values_mut().for_each(strip);
            }
            Json::Array(v) => v.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut r = node(report, id)["outputs"]["metrics"]["rows"].clone();
    assert!(r.is_array(), "{id} has no rows");
    strip(&mut r);
    r
}

/// The bytes of a node's file output.
fn file(report: &Json, id: &str, port: &str) -> Vec<u8> {
    std::fs::read(node(report, id)["outputs"][port].as_str().unwrap()).unwrap()
}

#[test]
fn an_extended_run_evaluates_only_its_new_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let p = pipeline(t.path());

    // One checkpoint: computed, nothing to reuse.
    let (r1, _) = run(t.path(), &p, &[]);
    assert_eq!(reuse(&r1, "eval"), (1, 0));
    assert_eq!(reuse(&r1, "ll"), (1, 0));

    // The run extended to two steps: both nodes run again (their list grew), step 1 comes from
    // the memo — though its trainer_state.json now says max_steps 2 — and step 2 is computed.
    let (r2, log) = run(t.path(), &p, &["--set", "agent.max_steps=2"]);
    assert_eq!(statuses(&r2)["eval"], "ran");
    assert_eq!(reuse(&r2, "eval"), (1, 1));
    assert_eq!(reuse(&r2, "ll"), (1, 1));
    assert!(log.contains("tiny@step-1: from the memo"), "{log}");
    assert!(!log.contains("tiny@step-2: from the memo"), "{log}");
    let steps: Vec<u64> = node(&r2, "eval")["outputs"]["metrics"]["rows"].as_array().unwrap().iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [1, 2]);
    let (eval_rows, ll_rows) = (rows(&r2, "eval"), rows(&r2, "ll"));
    assert_eq!(eval_rows[0], rows(&r1, "eval")[0]);
    let (traces, per_example) = (file(&r2, "eval", "traces"), file(&r2, "ll", "per_example"));
    let eps =
        agentmerge_traces::read_episodes(Path::new(node(&r2, "eval")["outputs"]["traces"].as_str().unwrap()), agentmerge_traces::OnBadLine::Fail).unwrap().0;
    let names: Vec<&str> = eps.iter().map(|e| e.agent.model_name.as_str()).collect();
    assert_eq!(names, ["tiny@step-1", "tiny@step-1", "tiny@step-2", "tiny@step-2"]);

    // From scratch (--no-cache bypasses the memo too): every row computed, and the same rows,
    // the same traces file and the same per-example file, byte for byte.
    let (r3, log) = run(t.path(), &p, &["--set", "agent.max_steps=2", "--no-cache"]);
    assert_eq!(reuse(&r3, "eval"), (2, 0));
    assert_eq!(reuse(&r3, "ll"), (2, 0));
    assert!(!log.contains("from the memo"), "{log}");
    assert_eq!(rows(&r3, "eval"), eval_rows);
    assert_eq!(rows(&r3, "ll"), ll_rows);
    assert!(file(&r3, "eval", "traces") == traces, "the traces differ between reused and computed rows");
    assert!(file(&r3, "ll", "per_example") == per_example, "the per-example lines differ between reused and computed rows");

    // Another evaluation config never hits; the likelihood node, unchanged, stays cached.
    let (r4, log) = run(t.path(), &p, &["--set", "agent.max_steps=2", "--set", "eval.max_new_tokens=7"]);
    assert_eq!(reuse(&r4, "eval"), (2, 0));
    assert_eq!(statuses(&r4)["ll"], "cached");
    assert!(!log.contains("from the memo"), "{log}");

    // --force re-runs a node without its memo.
    let (r5, _) = run(t.path(), &p, &["--set", "agent.max_steps=2", "--force", "ll"]);
    assert_eq!(reuse(&r5, "ll"), (2, 0));
    assert_eq!(statuses(&r5)["eval"], "cached");
}
