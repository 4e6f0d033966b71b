//! pipelines/traces.yaml end to end through the real host and plugins (with few seeds):
//! collection is deterministic, the pools differ in skill, the filters and the cross-task
//! split do what the report says, the SFT files open, and a rerun is fully cached.

mod common;

use std::path::{Path, PathBuf};

use agentmerge_sft::SftReader;
use agentmerge_traces::{read_episodes, OnBadLine};
use common::*;

fn node<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}"))
}

fn output(report: &serde_json::Value, id: &str, port: &str) -> PathBuf {
    PathBuf::from(node(report, id)["outputs"][port].as_str().unwrap_or_else(|| panic!("{id}.{port}")))
}

fn run(store: &Path) -> serde_json::Value {
    ok(&workspace(), &["run", "pipelines/traces.yaml", "--set", "seeds=3", "--store", store.to_str().unwrap()]);
    latest_report(store)
}

#[test]
fn traces_pipeline_collects_filters_and_builds_sft_data() {
    let t = tempfile::tempdir().unwrap();
    let report = run(&t.path().join("a"));

    // Collection: 23 templates × 3 seeds × 3 experts, deterministic, pools of different skill.
    let (collected, _) = read_episodes(&output(&report, "collect", "traces"), OnBadLine::Fail).unwrap();
    let templates = agentmerge_miniarena::templates().len();
    assert_eq!(collected.len(), templates * 3 * 3);
    let again = run(&t.path().join("b"));
    assert_eq!(
        std::fs::read(output(&report, "collect", "traces")).unwrap(),
        std::fs::read(output(&again, "collect", "traces")).unwrap(),
        "the same seeds must give identical traces"
    );
    let rate = |model: &str| {
        let mine: Vec<_> = collected.iter().filter(|e| e.agent.model_name == model).collect();
        mine.iter().filter(|e| e.success).count() as f64 / mine.len() as f64
    };
    assert!(rate("expert-strong") > rate("expert-weak"), "{} vs {}", rate("expert-strong"), rate("expert-weak"));
    assert!(collected.iter().any(|e| !e.success), "not every trace succeeds");
    assert!(collected.iter().filter(|e| e.agent.model_name == "expert-weak").all(|e| e.action_steps().all(|s| s.think.is_none())));

    // Filter and split, as reported.
    let (kept, _) = read_episodes(&output(&report, "success", "traces"), OnBadLine::Fail).unwrap();
    assert_eq!(kept.len(), collected.iter().filter(|e| e.success).count());
    assert_eq!(node(&report, "success")["outputs"]["report"]["kept"], kept.len());
    let (test, _) = read_episodes(&output(&report, "split", "test"), OnBadLine::Fail).unwrap();
    let (train, _) = read_episodes(&output(&report, "split", "train"), OnBadLine::Fail).unwrap();
    assert!(!test.is_empty() && test.iter().all(|e| e.category == "dashboard"));
    assert!(train.iter().all(|e| e.category != "dashboard"));

    // SFT data for both chain-of-thought variants and the held-out set.
    for id in ["sft_train[mode=with_think]", "sft_train[mode=without_think]", "sft_test"] {
        let r = &node(&report, id)["outputs"]["report"];
        let ds = SftReader::open(&output(&report, id, "dataset")).unwrap();
        assert!(!ds.is_empty(), "{id}");
        assert_eq!(ds.len() as u64, r["examples"].as_u64().unwrap(), "{id}");
        assert!(output(&report, id, "preview").exists());
        // Token statistics per task and per expert pool add up.
        for group in ["per_task", "per_agent"] {
            let sum: u64 = r[group].as_object().unwrap().values().map(|g| g["tokens"].as_u64().unwrap()).sum();
            assert_eq!(sum, r["total_tokens"].as_u64().unwrap(), "{id} {group}");
        }
    }
    let stats = &node(&report, "collected_stats")["outputs"]["stats"];
    assert_eq!(stats["episodes"], collected.len());

    // The evaluator reports success rates with standard errors.
    let strong = &node(&report, r#"expert_eval[agent={"preset":"strong"}]"#)["outputs"]["metrics"]["overall"];
    let p = strong["success_rate"].as_f64().unwrap();
    let n = strong["n"].as_f64().unwrap();
    assert!((strong["std_err"].as_f64().unwrap() - (p * (1.0 - p) / n).sqrt()).abs() < 1e-12);

    // A second run in the same store is fully cached.
    let cached = run(&t.path().join("a"));
    assert!(statuses(&cached).values().all(|s| s == "cached"), "{:?}", statuses(&cached));
}
