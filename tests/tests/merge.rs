//! Merging through the real host: AgentMerge and the soup in the quickstart are checked tensor
//! by tensor against values computed here from the input checkpoints, and `agentmerge merge`
//! runs a mergekit recipe unchanged to the same result as the pipeline node.

mod common;

use common::*;

#[test]
fn agentmerge_and_soup_match_a_hand_computation() {
    let store = tempfile::tempdir().unwrap();
    ok(&workspace(), &["run", "pipelines/quickstart.yaml", "--store", store.path().to_str().unwrap()]);
    let report = latest_report(store.path());
    let (base, agent, instruct) = (model_of(&report, "base"), model_of(&report, "agent"), model_of(&report, "instruct"));
    for name in ["model.layers.1.mlp.down_proj.weight", "model.norm.weight", "lm_head.weight"] {
        let (b, a, i) = (tensor(&base, name), tensor(&agent, name), tensor(&instruct, name));
        for (lambda, id) in [(0.5f32, "agentmerge[lambda=0.5]"), (1.0, "agentmerge[lambda=1]")] {
            let merged = tensor(&model_of(&report, id), name);
            for k in 0..merged.len() {
                let want = i[k] + lambda * (a[k] - b[k]);
                assert!((merged[k] - want).abs() <= 1e-6 * (1.0 + want.abs()), "{id} {name}[{k}]: {} vs {want}", merged[k]);
            }
        }
        let soup = tensor(&model_of(&report, "soup"), name);
        for k in 0..soup.len() {
            let want = 0.5 * (a[k] + i[k]);
            assert!((soup[k] - want).abs() <= 1e-6 * (1.0 + want.abs()), "soup {name}[{k}]");
        }
    }
    // The merged model records its recipe, as mergekit does.
    let merged = model_of(&report, "agentmerge[lambda=0.5]");
    assert!(merged.join("config.json").exists() && merged.join("mergekit_config.yml").exists());

    // The same AgentMerge as a mergekit recipe through `agentmerge merge`.
    let work = tempfile::tempdir().unwrap();
    let recipe = format!(
        "merge_method: agentmerge\nbase_model: {}\nmodels:\n  - model: {}\n    parameters: {{add_to: true}}\n  - model: {}\nparameters:\n  lambda: 0.5\ndtype: float32\n",
        base.display(),
        instruct.display(),
        agent.display()
    );
    write(work.path(), "recipe.yml", &recipe);
    let out = ok(work.path(), &["merge", "recipe.yml", "-o", "out"]);
    assert!(out.contains("merged"), "{out}");
    let name = "model.layers.0.self_attn.q_proj.weight";
    assert_eq!(tensor(&work.path().join("out"), name), tensor(&merged, name));
    // The output is not overwritten without --overwrite.
    let again = agentmerge(work.path(), &["merge", "recipe.yml", "-o", "out"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("already exists; pass --overwrite"), "{}", stderr(&again));
}

#[test]
fn bad_recipes_are_refused_with_the_reason() {
    let work = tempfile::tempdir().unwrap();
    write(work.path(), "slices.yml", "merge_method: passthrough\nslices:\n  - sources:\n      - model: a\n        layer_range: [0, 2]\n");
    let out = agentmerge(work.path(), &["merge", "slices.yml", "-o", "out"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("slices"), "{}", stderr(&out));
    write(work.path(), "unknown.yml", "merge_method: frankenmerge\nmodels:\n  - model: a\n");
    let out = agentmerge(work.path(), &["merge", "unknown.yml", "-o", "out"]);
    assert!(stderr(&out).contains("frankenmerge"), "{}", stderr(&out));
    assert!(!work.path().join("out").exists());
}
