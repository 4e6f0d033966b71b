//! The README's main job: pipelines/quickstart.yaml through the real host and plugins, twice.

mod common;

use agentmerge_checkpoint::Checkpoint;
use common::*;

#[test]
fn quickstart_runs_then_is_fully_cached() {
    let store = tempfile::tempdir().unwrap();
    let s = store.path().to_str().unwrap();
    ok(&workspace(), &["run", "pipelines/quickstart.yaml", "--store", s]);
    let report = latest_report(store.path());
    assert!(statuses(&report).values().all(|st| st == "ran"), "{report}");
    let node = |id: &str| report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap().clone();

    // The base checkpoint is a real Llama-shaped HF checkpoint.
    let base = Checkpoint::open(std::path::Path::new(node("base")["outputs"]["model"].as_str().unwrap())).unwrap();
    assert_eq!(base.architecture(), Some("LlamaForCausalLM"));
    assert_eq!(base.info("model.layers.1.self_attn.k_proj.weight").unwrap().shape, vec![32, 64]); // 2 kv heads × 16
    assert_eq!(base.info("model.embed_tokens.weight").unwrap().shape, vec![256, 64]);
    let m = &node("agent_summary")["outputs"]["metrics"];
    assert_eq!(m["num_params"].as_u64(), Some(base.num_params()));
    let (dist, cos) = (m["distance"].as_f64().unwrap(), m["cosine"].as_f64().unwrap());
    assert!(dist > 0.0 && cos > 0.99 && cos < 1.0, "perturbation should move the model a little: {m}");

    ok(&workspace(), &["run", "pipelines/quickstart.yaml", "--store", s]);
    let again = latest_report(store.path());
    assert!(statuses(&again).values().all(|st| st == "cached"), "{again}");
}

#[test]
fn plugins_lists_kinds_ports_and_config() {
    let out = ok(&workspace(), &["plugins"]);
    for needle in ["models/random_llama", "models/summarize", "debug/sum", "hidden_size", "reference", "model (optional)"] {
        assert!(out.contains(needle), "`{needle}` missing from:\n{out}");
    }
    let one = ok(&workspace(), &["plugins", "models/random_llama"]);
    assert!(one.contains("hidden_size") && !one.contains("debug/sum"), "{one}");
    let json: serde_json::Value = serde_json::from_str(&ok(&workspace(), &["plugins", "--json"])).unwrap();
    assert!(json.as_array().unwrap().iter().any(|p| p["manifest"]["plugin"] == "models"));
}

#[test]
fn tensors_cross_the_boundary_and_the_store() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", "nodes:\n  - id: r\n    uses: debug/range\n    with: {shape: [3, 4], start: 1, step: 0.5}\n  - id: s\n    uses: debug/tensor_stats\n    inputs: {tensor: r.tensor}\n");
    ok(dir.path(), &["run", "p.yaml"]);
    let report = latest_report(&dir.path().join(".agentmerge"));
    let stats = &report["nodes"][1]["outputs"]["stats"];
    assert_eq!(stats["shape"], serde_json::json!([3, 4]));
    assert_eq!(stats["sum"].as_f64(), Some((0..12).map(|i| 1.0 + 0.5 * i as f64).sum()));
    // Cached run: the consumer reads the tensor back from the store (memory-mapped).
    ok(dir.path(), &["run", "p.yaml", "--force", "s"]);
    let again = latest_report(&dir.path().join(".agentmerge"));
    assert_eq!(again["nodes"][1]["outputs"]["stats"], *stats);
}
