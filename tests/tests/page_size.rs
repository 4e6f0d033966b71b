//! MiniArena's `page_size` through the real host and plugins: `miniarena/collect` records small
//! pages (the same goals as full ones, fewer AXTree lines), `miniarena/evaluate` plays an expert
//! on them, and `cpu/evaluate` plays a model on the size of its `traces` input, or the size it is
//! given with `templates`/`seeds`.

mod common;

use std::path::{Path, PathBuf};

use agentmerge_traces::{read_episodes, Episode, OnBadLine};
use common::*;
use serde_json::Value as Json;

fn node<'a>(report: &'a Json, id: &str) -> &'a Json {
    report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}"))
}

fn episodes(report: &Json, id: &str) -> Vec<Episode> {
    let path = PathBuf::from(node(report, id)["outputs"]["traces"].as_str().unwrap());
    read_episodes(&path, OnBadLine::Fail).unwrap().0
}

fn mean_lines(eps: &[Episode]) -> f64 {
    let steps: Vec<_> = eps.iter().flat_map(|e| &e.steps).collect();
    steps.iter().map(|s| s.obs.axtree_txt.lines().count()).sum::<usize>() as f64 / steps.len() as f64
}

const TEMPLATES: &str = "[miniarena.menu.impersonate_user, miniarena.list_sort.sort_users, miniarena.knowledge_base.travel_policy]";

fn run(dir: &Path, name: &str, yaml: &str) -> Json {
    let p = write(dir, name, yaml);
    ok(dir, &["run", p.to_str().unwrap()]);
    latest_report(&dir.join(".agentmerge"))
}

#[test]
fn collect_and_evaluate_play_small_pages() {
    let t = tempfile::tempdir().unwrap();
    let report = run(
        t.path(),
        "small.yaml",
        &format!(
            r#"name: small-pages
nodes:
  - id: full
    uses: miniarena/collect
    with: {{templates: {TEMPLATES}, seeds: {{start: 0, count: 3}}, experts: [{{preset: perfect, think: false}}]}}
  - id: small
    uses: miniarena/collect
    with: {{templates: {TEMPLATES}, seeds: {{start: 0, count: 3}}, experts: [{{preset: perfect, think: false}}], page_size: small}}
  - id: eval
    uses: miniarena/evaluate
    with: {{templates: {TEMPLATES}, seeds: {{start: 100, count: 3}}, agent: {{preset: perfect}}, page_size: small}}
"#
        ),
    );
    let (full, small) = (episodes(&report, "full"), episodes(&report, "small"));
    assert_eq!((full.len(), small.len()), (9, 9));
    for (f, s) in full.iter().zip(&small) {
        assert_eq!((f.page_size.as_deref(), s.page_size.as_deref()), (None, Some("small")));
        assert_eq!((&s.task_name, s.seed, &s.goal), (&f.task_name, f.seed, &f.goal), "the same instance, the same goal");
        assert!(s.success);
    }
    let (lf, ls) = (mean_lines(&full), mean_lines(&small));
    assert!(ls < 0.6 * lf, "small pages: {ls:.1} AXTree lines per step, full: {lf:.1}");

    let m = &node(&report, "eval")["outputs"]["metrics"];
    assert_eq!((m["overall"]["n"].as_u64(), m["overall"]["success_rate"].as_f64()), (Some(9), Some(1.0)));
    assert!(episodes(&report, "eval").iter().all(|e| e.page_size.as_deref() == Some("small")));

    // An unknown size is a config error naming the field.
    let bad = write(
        t.path(),
        "bad.yaml",
        "name: bad\nnodes:\n  - id: c\n    uses: miniarena/collect\n    with: {seeds: {count: 1}, experts: [{}], page_size: tiny}\n",
    );
    let o = agentmerge(t.path(), &["check", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o) + &stdout(&o);
    assert!(err.contains("field `page_size`") && err.contains("expected `full` or `small`"), "{err}");
}

#[test]
fn a_model_is_evaluated_on_the_size_of_its_traces() {
    let t = tempfile::tempdir().unwrap();
    let report = run(
        t.path(),
        "eval.yaml",
        r#"name: small-eval
seed: 3
vars:
  prompt: {system: "", max_history: 2, use_thinking: false}
nodes:
  - id: small
    uses: miniarena/collect
    with: {templates: [miniarena.menu.impersonate_user], seeds: {start: 0, count: 2}, experts: [{preset: perfect, think: false}], page_size: small}
  - id: tokenizer
    uses: sft/tokenizer
    with: {vocab_size: 300}
    inputs: {traces: small.traces}
  - id: base
    uses: models/random_llama
    with: {hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 300}
  - id: on_traces
    uses: cpu/evaluate
    with: {max_steps: 1, prompt: "${prompt}", max_len: 1024, max_new_tokens: 4, step_accuracy: false}
    inputs: {model: base.model, tokenizer: tokenizer.tokenizer, traces: small.traces}
  - id: on_seeds
    uses: cpu/evaluate
    with: {templates: [miniarena.menu.impersonate_user], seeds: {start: 0, count: 2}, page_size: small, max_steps: 1, prompt: "${prompt}", max_len: 1024, max_new_tokens: 4}
    inputs: {model: base.model, tokenizer: tokenizer.tokenizer}
"#,
    );
    let recorded = episodes(&report, "small");
    for id in ["on_traces", "on_seeds"] {
        let played = episodes(&report, id);
        assert_eq!(played.len(), 2, "{id}");
        for (p, r) in played.iter().zip(&recorded) {
            assert_eq!(p.page_size.as_deref(), Some("small"), "{id}");
            assert_eq!((p.seed, &p.steps[0].obs), (r.seed, &r.steps[0].obs), "{id}: the recorded instance, at its size");
        }
    }

    // Asking for full pages of small traces is an error that says why.
    let bad = write(
        t.path(),
        "bad.yaml",
        r#"name: small-eval
seed: 3
nodes:
  - id: small
    uses: miniarena/collect
    with: {templates: [miniarena.menu.impersonate_user], seeds: {start: 0, count: 2}, experts: [{preset: perfect, think: false}], page_size: small}
  - id: tokenizer
    uses: sft/tokenizer
    with: {vocab_size: 300}
    inputs: {traces: small.traces}
  - id: base
    uses: models/random_llama
    with: {hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 300}
  - id: full
    uses: cpu/evaluate
    with: {page_size: full, max_steps: 1, max_len: 1024, max_new_tokens: 4}
    inputs: {model: base.model, tokenizer: tokenizer.tokenizer, traces: small.traces}
"#,
    );
    let o = agentmerge(t.path(), &["run", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o) + &stdout(&o);
    assert!(err.contains("page_size is `full`") && err.contains("small pages"), "{err}");
}
