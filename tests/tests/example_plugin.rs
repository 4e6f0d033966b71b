//! The example strategy plugin (plugins/example-median) is built on its own, as a user builds
//! theirs, and loaded by the unchanged host: its pipeline runs, and the merged tensors are the
//! element-wise median of the inputs, computed here by hand.

mod common;

use common::*;

#[test]
fn median_plugin_builds_outside_and_merges() {
    let root = workspace();
    let lib = build_external_plugin(&root.join("plugins/example-median"), "agentmerge_example_median");
    let t = tempfile::tempdir().unwrap();
    let plugins = t.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(&lib, plugins.join(lib.file_name().unwrap())).unwrap();
    let plugin_dir = plugins.to_str().unwrap();

    let listing = ok(&root, &["plugins", "--plugin-path", plugin_dir]);
    assert!(listing.contains("median/median"), "{listing}");

    let store = t.path().join("store");
    ok(&root, &["run", "plugins/example-median/median.yaml", "--plugin-path", plugin_dir, "--store", store.to_str().unwrap()]);
    let report = latest_report(&store);
    let inputs = ["tuned[scale=0.02]", "tuned[scale=0.03]", "astray"].map(|id| model_of(&report, id));
    for name in ["model.layers.0.self_attn.q_proj.weight", "model.norm.weight"] {
        let xs: Vec<Vec<f32>> = inputs.iter().map(|d| tensor(d, name)).collect();
        let merged = tensor(&model_of(&report, "median"), name);
        for (k, m) in merged.iter().enumerate() {
            let mut col = [xs[0][k], xs[1][k], xs[2][k]];
            col.sort_by(f32::total_cmp);
            assert_eq!(*m, col[1], "{name}[{k}]");
        }
    }
    // The stray model pulls the soup away from the base far more than the median.
    let distance = |id: &str| {
        let n = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap();
        n["outputs"]["metrics"]["distance"].as_f64().unwrap()
    };
    assert!(distance("median_summary") < 0.5 * distance("soup_summary"));

    // A bad parameter is caught at validation, naming the field and what the strategy reads.
    let bad = write(
        t.path(),
        "bad.yaml",
        &std::fs::read_to_string(root.join("plugins/example-median/median.yaml"))
            .unwrap()
            .replace("uses: median/median\n", "uses: median/median\n    with: {parameters: {weight: 1}}\n"),
    );
    let out = agentmerge(&root, &["check", bad.to_str().unwrap(), "--plugin-path", plugin_dir]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("parameters.weight") && stderr(&out).contains("`median` has no parameter `weight`"), "{}", stderr(&out));
}
