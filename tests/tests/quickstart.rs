//! The README's main job: pipelines/paper.yaml and the quickstart that extends it, through the
//! real host and plugins, at the smoke scale CI can afford; plus the plugin listing and tensors
//! crossing the boundary.

mod common;

use common::*;

/// The paper pipeline at `scale=smoke` (the same graph as the default, tiny sizes): every node
/// runs, the report holds Table 1 with finite numbers and both figures; a second run and the
/// quickstart at the same scale (it `extends:` the paper pipeline) come from the cache.
#[test]
fn the_paper_pipeline_runs_at_smoke_scale_and_reports() {
    let store = tempfile::tempdir().unwrap();
    let s = store.path().to_str().unwrap();
    let out = ok(&workspace(), &["run", "pipelines/paper.yaml", "--set", "scale=smoke", "--store", s]);
    let report = latest_report(store.path());
    assert!(statuses(&report).values().all(|st| st == "ran"), "{report}");
    let node = |report: &serde_json::Value, id: &str| report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap().clone();

    // Merge in the loop: one merged model per agent checkpoint, evaluated as rows in step order
    // after the instruct model (step 0).
    let ev = &node(&report, "ev_am[lr=0.001,lambda=0.5]")["outputs"]["metrics"];
    let steps: Vec<u64> = ev["rows"].as_array().unwrap().iter().map(|r| r["step"].as_u64().unwrap_or(0)).collect();
    assert_eq!(steps, [0, 2, 4], "{ev}");
    assert_eq!(ev["node"], "ev_am[lr=0.001,lambda=0.5]");

    // The report: where it is, what it holds.
    let dir = std::path::PathBuf::from(node(&report, "report")["outputs"]["report"].as_str().unwrap());
    assert!(out.contains(&format!("  report.report: {}", dir.display())), "the run should print where the report is:\n{out}");
    check_paper_report(
        &dir,
        &[
            "## Table 1",
            "### Inter-task",
            "### Cross-task",
            "| 0.001 |",
            "(λ = ",
            "## Table 2",
            "cross-task exact / verb / element",
            "## Likelihood",
            "## Forgetting",
            "![Figure 2](figure2.png)",
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json, node(&report, "report")["outputs"]["metrics"]);
    // Table 2's splits: every scored step falls in one of them, and the held-out tasks have some.
    for s in json["series"].as_array().unwrap() {
        let p = s["points"].as_array().unwrap().last().unwrap();
        let split = |k: &str| p["split_accuracy"][k]["steps"].as_u64().unwrap_or_else(|| panic!("no {k} steps: {s}"));
        assert_eq!(split("inter") + split("cross"), p["scored_steps"].as_u64().unwrap(), "{s}");
        assert!(split("cross") > 0, "{s}");
    }

    // A second run, and the quickstart at the same scale, are served from the cache.
    ok(&workspace(), &["run", "pipelines/paper.yaml", "--set", "scale=smoke", "--store", s]);
    assert!(statuses(&latest_report(store.path())).values().all(|st| st == "cached"));
    ok(&workspace(), &["run", "pipelines/quickstart.yaml", "--set", "scale=smoke", "--store", s]);
    let quick = latest_report(store.path());
    assert_eq!(quick["pipeline"], "quickstart");
    assert!(statuses(&quick).values().all(|st| st == "cached"), "{quick}");
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
