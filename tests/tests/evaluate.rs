//! Evaluation through the real host and the real `cpu` plugin: a model plays MiniArena as an
//! agent (`cpu/evaluate`), every checkpoint of a run gets its row in step order, the likelihood
//! of expert trajectories (`cpu/likelihood`, `cpu/forgetting`), and an untrained model's
//! episodes end cleanly with its errors counted.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value as Json;

fn node<'a>(report: &'a Json, id: &str) -> &'a Json {
    report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}"))
}

fn episodes(path: &str) -> Vec<agentmerge_traces::Episode> {
    agentmerge_traces::read_episodes(Path::new(path), agentmerge_traces::OnBadLine::Fail).unwrap().0
}

/// collect → tokenizer → sft/build → a tiny cpu/sft run with a checkpoint every step, then
/// every evaluation kind on it, and on an untrained model.
fn pipeline(dir: &Path) -> PathBuf {
    write(
        dir,
        "eval.yaml",
        r#"name: eval-e2e
seed: 3
vars:
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
    with: {max_len: 1024, prompt: "${prompt}"}
    inputs: {traces: collect.traces, tokenizer: tokenizer.tokenizer}
  - id: base
    uses: models/random_llama
    with: {hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 400}
  - id: agent
    uses: cpu/sft
    with: {seq_len: 1024, batch_size: 1, max_steps: 3, lr: 0.003, checkpoint_every: 1, warmup_steps: 1}
    inputs: {model: base.model, data: sft_data.dataset, tokenizer: tokenizer.tokenizer}
  - id: eval
    uses: cpu/evaluate
    with:
      templates: [miniarena.menu.impersonate_user]
      seeds: {start: 1000, count: 2}
      max_steps: 2
      prompt: "${prompt}"
      max_len: 1024
      max_new_tokens: 8
      model_name: tiny
    inputs: {checkpoints: [agent.checkpoints, base.model], tokenizer: tokenizer.tokenizer}
  - id: untrained
    uses: cpu/evaluate
    with: {max_steps: 3, prompt: "${prompt}", max_len: 1024, max_new_tokens: 16, batch: 2}
    inputs: {model: base.model, tokenizer: tokenizer.tokenizer, traces: collect.traces}
  - id: likelihood
    uses: cpu/likelihood
    with: {batch_size: 2}
    inputs: {checkpoints: [agent.checkpoints], data: sft_data.dataset}
  - id: forgetting
    uses: cpu/forgetting
    inputs: {before: base.model, after: agent.model, data: sft_data.dataset}
"#,
    )
}

#[test]
fn every_checkpoint_gets_a_row_and_every_kind_runs_through_the_host() {
    let t = tempfile::tempdir().unwrap();
    let p = pipeline(t.path());
    let o = agentmerge(t.path(), &["run", p.to_str().unwrap()]);
    assert!(o.status.success(), "stderr:\n{}", stderr(&o));
    let report = latest_report(&t.path().join(".agentmerge"));

    // evaluate: the untrained model first (no trainer_state.json), then one row per checkpoint
    // in step order, the last row's fields at the top.
    let eval = node(&report, "eval");
    let m = &eval["outputs"]["metrics"];
    let rows = m["rows"].as_array().unwrap();
    let steps: Vec<Json> = rows.iter().map(|r| r["step"].clone()).collect();
    assert_eq!(steps, vec![Json::Null, 1.into(), 2.into(), 3.into()]);
    assert_eq!(rows[1]["checkpoint"], "step-0000001");
    assert_eq!(m["step"], 3);
    for r in rows {
        assert_eq!(r["overall"]["n"], 2);
        assert_eq!(r["per_task"][0]["task"], "miniarena.menu.impersonate_user");
        for field in ["actions", "parse_errors", "invalid_actions", "truncated", "parse_error_rate", "episodes_per_s"] {
            assert!(r[field].is_number(), "row lacks {field}: {r}");
        }
        assert!(r["agent"]["model_name"].as_str().unwrap().starts_with("tiny@"));
    }
    let eps = episodes(eval["outputs"]["traces"].as_str().unwrap());
    assert_eq!(eps.len(), 8);
    assert_eq!(eps[2].agent.model_name, "tiny@step-1");
    assert!(eps.iter().all(|e| e.err_msg.is_none() && e.n_steps == 2 && e.steps.len() == 3));

    // An untrained model plays the traces' instances to the step limit: nothing parses, nothing
    // is solved, no episode breaks; teacher-forced step accuracy on the recorded steps.
    let u = &node(&report, "untrained")["outputs"];
    let m = &u["metrics"];
    assert_eq!((m["overall"]["n"].as_u64(), m["overall"]["success_rate"].as_f64(), m["n_errors"].as_u64()), (Some(3), Some(0.0), Some(0)));
    assert_eq!(m["actions"], 9);
    assert_eq!(m["parse_errors"], 9);
    assert!(m["rows"].is_null());
    let acc = &m["step_accuracy"];
    assert_eq!((acc["steps"].as_u64(), acc["exact"].as_f64()), (Some(12), Some(0.0)));
    // Per task, as counts (one task here: all of it).
    assert_eq!(acc["per_task"].as_array().unwrap().len(), 1);
    let t = &acc["per_task"][0];
    assert_eq!((t["task"].as_str(), t["category"].as_str()), (Some("miniarena.menu.impersonate_user"), Some("menu")));
    assert_eq!((t["steps"].as_u64(), t["exact"].as_u64(), t["verb"].as_u64(), t["parses"].as_u64()), (Some(12), Some(0), Some(0), Some(0)));
    assert_eq!(t["element_steps"], acc["element_steps"]);
    // The recorded answers against max_new_tokens = 16: the expert's `select_option` answers
    // take more, so a model giving them would be cut off — counted, the longest named.
    let b = &m["answer_budget"];
    assert_eq!((b["answers"].as_u64(), b["max_new_tokens"].as_u64()), (Some(12), Some(16)), "{b}");
    let (over, longest) = (b["over"].as_u64().unwrap(), b["longest"].as_u64().unwrap());
    assert!(over >= 3 && over < 12 && longest > 16, "{b}");
    let log = stderr(&o);
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("recorded answers in `traces` take more than max_new_tokens")).collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("untrained") && warned[0].contains(&format!("at least {longest}")), "{}", warned[0]);
    let eps = episodes(u["traces"].as_str().unwrap());
    assert_eq!((eps.len(), eps[0].agent.model_name.as_str()), (3, "model"));
    assert!(eps.iter().all(|e| e.err_msg.is_none() && e.n_steps == 3 && e.steps[3].truncated && !e.steps[1].obs.last_action_error.is_empty()));
    let seeds: Vec<u64> = eps.iter().map(|e| e.seed).collect();
    assert_eq!(seeds, vec![0, 1, 2]);

    // likelihood: one row per checkpoint, every example scored with each; training raised it.
    let l = &node(&report, "likelihood")["outputs"];
    let rows = l["metrics"]["rows"].as_array().unwrap();
    assert_eq!(rows.iter().map(|r| r["step"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    let examples = rows[0]["examples"].as_u64().unwrap();
    assert_eq!(examples, node(&report, "sft_data")["outputs"]["report"]["examples"].as_u64().unwrap());
    assert!(rows.iter().all(|r| r["tokens"] == rows[0]["tokens"] && r["mean_logprob"].as_f64().unwrap() < 0.0));
    let lines = std::fs::read_to_string(l["per_example"].as_str().unwrap()).unwrap();
    assert_eq!(lines.lines().count() as u64, 3 * examples);
    let first: Json = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!((first["step"].as_u64(), first["example"].as_u64()), (Some(1), Some(0)));

    // forgetting: both sides on the same data, and their difference.
    let f = &node(&report, "forgetting")["outputs"]["metrics"];
    let (before, after) = (f["before"]["mean_logprob"].as_f64().unwrap(), f["after"]["mean_logprob"].as_f64().unwrap());
    assert!((f["forgetting"].as_f64().unwrap() - (before - after)).abs() < 1e-12);
    assert!(after > before, "three SFT steps on this very data raise its likelihood: {before} → {after}");
    assert_eq!(f["before"]["tokens"], f["after"]["tokens"]);
}

#[test]
fn evaluation_configs_are_checked_before_anything_runs() {
    let t = tempfile::tempdir().unwrap();
    let p = pipeline(t.path());
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("max_new_tokens: 8", "max_new_tokens: 2000")
        .replace("seeds: {start: 1000, count: 2}", "seeds: {start: 1000, count: 0}");
    std::fs::write(&p, text).unwrap();
    let o = agentmerge(t.path(), &["check", p.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("`seeds.count`") && err.contains("at least 1"), "{err}");
    let p2 = pipeline(t.path());
    let text = std::fs::read_to_string(&p2).unwrap().replace("max_new_tokens: 8", "max_new_tokens: 2000");
    std::fs::write(&p2, text).unwrap();
    let err = stderr(&agentmerge(t.path(), &["check", p2.to_str().unwrap()]));
    assert!(err.contains("`max_new_tokens`") && err.contains("leaves no room"), "{err}");
}
