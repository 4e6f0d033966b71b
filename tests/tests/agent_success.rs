//! The headline check of evaluation, end to end through the real plugins: a small model trained
//! with `cpu/sft` on traces of the `perfect` expert, played by `cpu/evaluate` on held-out seeds
//! of the same template, before and after training.
//!
//! What is reached (docs/evaluation.md, "What a small model reaches", has the table):
//!
//! - `a_trained_model_learns_the_format_ci` (CI, ~2 min in a debug build): SFT from a random
//!   model; before training every answer is a parse error; after 150 steps the answers parse and
//!   name the right verb; the success rate is reported (0 at this size).
//! - `the_grounding_pipeline_succeeds_on_held_out_seeds` (`#[ignore]`, ~45 min in a release
//!   build, beyond CI's budget): runs `pipelines/grounding.yaml` as it is (3,000 steps of
//!   page-reading pretraining, then SFT, every checkpoint played) and checks the issue's
//!   headline: success ≥ 0.8 on 40 held-out seeds after fine-tuning, about 0 before. Measured:
//!   0.00 before, 0.925 after 200 steps, 1.00 after 400. Run it with
//!   `cargo build --release --workspace && cargo test --release -p agentmerge-tests --test agent_success -- --ignored --nocapture`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value as Json;

/// The sizes of one experiment.
struct Recipe {
    train_seeds: u64,
    test_seeds: u64,
    vocab: usize,
    max_len: usize,
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    sft_steps: u64,
    sft_lr: f64,
    checkpoint_every: u64,
    max_steps: usize,
}

/// traces of the perfect expert → tokenizer → sft/build (compact prompt) → random model →
/// cpu/sft → cpu/evaluate of the model before training and every checkpoint, on held-out seeds.
fn pipeline(dir: &Path, r: &Recipe) -> PathBuf {
    write(
        dir,
        "headline.yaml",
        &format!(
            r#"name: headline
seed: 1
vars:
  templates: [miniarena.menu.impersonate_user]
  prompt: {{system: "", max_history: 2, use_thinking: false}}
nodes:
  - id: train_traces
    uses: miniarena/collect
    with: {{templates: "${{templates}}", seeds: {{start: 0, count: {train}}}, experts: [{{preset: perfect, think: false}}]}}
  - id: test_traces
    uses: miniarena/collect
    with: {{templates: "${{templates}}", seeds: {{start: 100000, count: {test}}}, experts: [{{preset: perfect, think: false}}]}}
  - id: tokenizer
    uses: sft/tokenizer
    with: {{vocab_size: {vocab}}}
    inputs: {{traces: train_traces.traces}}
  - id: sft_data
    uses: sft/build
    with: {{max_len: {len}, prompt: "${{prompt}}"}}
    inputs: {{traces: train_traces.traces, tokenizer: tokenizer.tokenizer}}
  - id: base
    uses: models/random_llama
    with: {{hidden_size: {hidden}, intermediate_size: {inter}, num_hidden_layers: {layers}, num_attention_heads: {heads}, num_key_value_heads: {heads}, vocab_size: {vocab}}}
  - id: agent
    uses: cpu/sft
    with: {{seq_len: {len}, batch_size: 8, max_steps: {sft}, lr: {lr}, warmup_steps: 10, checkpoint_every: {every}}}
    inputs: {{model: base.model, data: sft_data.dataset, tokenizer: tokenizer.tokenizer}}
  - id: eval
    uses: cpu/evaluate
    with: {{prompt: "${{prompt}}", max_len: {len}, max_new_tokens: 32, max_steps: {max_steps}, batch: 16}}
    inputs: {{checkpoints: [base.model, agent.checkpoints], tokenizer: tokenizer.tokenizer, traces: test_traces.traces}}
"#,
            train = r.train_seeds,
            test = r.test_seeds,
            vocab = r.vocab,
            len = r.max_len,
            hidden = r.hidden,
            inter = r.intermediate,
            layers = r.layers,
            heads = r.heads,
            sft = r.sft_steps,
            lr = r.sft_lr,
            every = r.checkpoint_every,
            max_steps = r.max_steps,
        ),
    )
}

/// Runs the recipe and returns the evaluation rows (the model before training first), printing
/// a table of them.
fn run(r: &Recipe) -> Vec<Json> {
    let t = tempfile::tempdir().unwrap();
    let p = pipeline(t.path(), r);
    rows(t.path(), &p)
}

/// Runs pipeline `p` with its store in `dir` and returns the `eval` node's rows, printed.
fn rows(dir: &Path, p: &Path) -> Vec<Json> {
    let store = dir.join(".agentmerge");
    ok(dir, &["run", p.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    let report = latest_report(&store);
    let eval = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "eval").unwrap();
    let rows = eval["outputs"]["metrics"]["rows"].as_array().unwrap().clone();
    eprintln!("step  success  parse_err  invalid  exact  verb  element  seconds");
    for row in &rows {
        let a = &row["step_accuracy"];
        eprintln!(
            "{:>4}  {:>7.3}  {:>9.3}  {:>7.3}  {:>5.3}  {:>4.2}  {:>7.3}  {:>7.1}",
            row["step"].as_u64().map_or("-".into(), |s| s.to_string()),
            row["overall"]["success_rate"].as_f64().unwrap(),
            row["parse_error_rate"].as_f64().unwrap(),
            row["invalid_action_rate"].as_f64().unwrap(),
            a["exact"].as_f64().unwrap(),
            a["verb"].as_f64().unwrap(),
            a["element"].as_f64().unwrap(),
            row["seconds"].as_f64().unwrap(),
        );
    }
    rows
}

fn f(row: &Json, path: &[&str]) -> f64 {
    path.iter().fold(row, |v, k| &v[*k]).as_f64().unwrap_or_else(|| panic!("no {path:?} in {row}"))
}

#[test]
fn a_trained_model_learns_the_format_ci() {
    let rows = run(&Recipe {
        train_seeds: 300,
        test_seeds: 10,
        vocab: 512,
        max_len: 512,
        hidden: 64,
        intermediate: 172,
        layers: 2,
        heads: 4,
        sft_steps: 150,
        sft_lr: 3e-3,
        checkpoint_every: 50,
        max_steps: 4,
    });
    let (before, after) = (&rows[0], rows.last().unwrap());
    assert_eq!(rows.len(), 4);
    assert!(before["step"].is_null() && after["step"] == 150);
    // Before training: nothing parses, nothing is solved, every episode runs to its limit.
    assert_eq!((f(before, &["overall", "success_rate"]), f(before, &["parse_error_rate"])), (0.0, 1.0));
    assert_eq!(f(before, &["step_accuracy", "verb"]), 0.0);
    assert_eq!(f(before, &["overall", "mean_steps"]), 4.0);
    // After: AgentLab's format and the verbs are learnt (measured: 1 to 5 parse errors in 40 answers,
    // verb accuracy 0.75 on the held-out steps); the success rate is reported (0.0 at this size).
    assert!(f(after, &["parse_error_rate"]) <= 0.25, "{after}");
    assert!(f(after, &["step_accuracy", "parses"]) >= 0.8, "{after}");
    assert!(f(after, &["step_accuracy", "verb"]) >= 0.6, "{after}");
    assert!(f(after, &["overall", "success_rate"]) >= 0.0);
}

#[test]
#[ignore = "about 45 minutes in a release build; see the module docs for the command and the result"]
fn the_grounding_pipeline_succeeds_on_held_out_seeds() {
    let t = tempfile::tempdir().unwrap();
    let rows = rows(t.path(), &workspace().join("pipelines/grounding.yaml"));
    let (before, after) = (&rows[0], rows.last().unwrap());
    // The pretrained base, before fine-tuning on the agent's traces: no episode solved.
    assert!(before["step"].is_null());
    assert!(f(before, &["overall", "success_rate"]) <= 0.05, "{before}");
    // After: measured 1.00 (40 of 40), with every recorded step's action exact.
    assert!(f(after, &["overall", "success_rate"]) >= 0.8, "{after}");
    assert!(f(after, &["step_accuracy", "exact"]) >= 0.8, "{after}");
    assert!(f(after, &["parse_error_rate"]) <= 0.05, "{after}");
}
