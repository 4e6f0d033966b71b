//! Your own models and traces: pipelines/paper.yaml patched with pipelines/own-data.yaml takes
//! a Hugging Face base and instruct checkpoint (a tiny transformers-made Llama pair) and
//! AgentLab traces converted with tools/agentlab_to_jsonl.py, all committed under
//! tests/fixtures/own/ (made by tools/make_own_model_fixture.py), in place of the pretrained
//! base, the tuned instruct model and MiniArena's expert traces; the rest of the graph runs
//! unchanged and reports.

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use agentmerge_checkpoint::Checkpoint;
use agentmerge_traces::{read_episodes, OnBadLine};
use common::*;
use serde_json::Value;

fn node<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id} in the run"))
}

/// The largest |a − b| over every tensor of two checkpoints of the same shape.
fn max_abs_diff(a: &Path, b: &Path) -> f32 {
    let ck = Checkpoint::open(a).unwrap();
    let mut names: Vec<&str> = ck.names().collect();
    names.sort();
    assert!(!names.is_empty());
    let mut worst = 0f32;
    for name in names {
        let (x, y) = (tensor(a, name), tensor(b, name));
        assert_eq!(x.len(), y.len(), "{name}: {} vs {}", a.display(), b.display());
        worst = x.iter().zip(&y).fold(worst, |m, (p, q)| m.max((p - q).abs()));
    }
    worst
}

#[test]
fn the_paper_pipeline_runs_on_your_own_models_and_traces() {
    let fixture = workspace().join("tests/fixtures/own");
    let store = tempfile::tempdir().unwrap();
    let s = store.path().to_str().unwrap();
    // From the workspace root: the patch's paths are relative to the current directory.
    ok(&workspace(), &["run", "pipelines/paper.yaml", "--patch", "pipelines/own-data.yaml", "--store", s]);
    let report = latest_report(store.path());
    let st = statuses(&report);
    assert!(st.values().all(|s| s == "ran"), "{st:?}");
    for gone in ["init", "corpus", "corpus_pages", "reading", "instruct_chat", "instruct_data"] {
        assert!(!st.contains_key(gone), "`{gone}` should be removed by the patch: {st:?}");
    }
    for (id, uses) in [("collect", "traces/read"), ("base", "models/load"), ("instruct", "models/load"), ("tokenizer", "sft/tokenizer")] {
        assert_eq!(node(&report, id)["uses"], uses, "{id}");
    }

    // The models: the fixture's files, byte for byte, and the tokenizer is the base model's.
    for (id, dir) in [("base", "base"), ("instruct", "instruct")] {
        let model = model_of(&report, id);
        for f in ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"] {
            assert_eq!(std::fs::read(model.join(f)).unwrap(), std::fs::read(fixture.join(dir).join(f)).unwrap(), "{id}: {f} differs from the fixture");
        }
    }
    let tok = &node(&report, "tokenizer")["outputs"]["report"];
    assert_eq!((tok["source"].as_str(), tok["vocab_size"].as_u64()), (Some("model"), Some(400)), "{tok}");
    let tok_dir = PathBuf::from(node(&report, "tokenizer")["outputs"]["tokenizer"].as_str().unwrap());
    assert_eq!(std::fs::read(tok_dir.join("tokenizer.json")).unwrap(), std::fs::read(fixture.join("base/tokenizer.json")).unwrap());

    // The agent and instruct-FT runs started from the fixture's weights: after a few small
    // steps each checkpoint is much closer to its own starting model than to the other one.
    let params = Checkpoint::open(&fixture.join("base")).unwrap().num_params();
    let (base, instruct) = (fixture.join("base"), fixture.join("instruct"));
    let apart = max_abs_diff(&base, &instruct);
    for (run, from, other) in [("agent[lr=0.001]", &base, &instruct), ("ift[lr=0.001]", &instruct, &base)] {
        let n = node(&report, run);
        assert_eq!(n["outputs"]["metrics"]["params"].as_u64(), Some(params), "{run}");
        let cks = n["outputs"]["checkpoints"].as_array().unwrap();
        assert_eq!(cks.len(), 2, "{run}: {cks:?}");
        for ck in cks {
            let ck = Path::new(ck.as_str().unwrap());
            let (near, far) = (max_abs_diff(ck, from), max_abs_diff(ck, other));
            assert!(
                near > 0.0 && near < apart / 10.0 && far > apart / 2.0,
                "{run} {}: {near} from its start, {far} from the other ({apart} apart)",
                ck.display()
            );
        }
    }
    // Each curve's step-0 row is the model its run started from: instruct-FT's is the fixture
    // instruct model, played exactly as `ev_instruct` plays it (greedy decoding).
    let alone = &node(&report, "ev_instruct")["outputs"]["metrics"];
    for id in ["ev_ift[lr=0.001]", "ev_am[lr=0.001,lambda=0.5]"] {
        let rows = node(&report, id)["outputs"]["metrics"]["rows"].as_array().unwrap().clone();
        let steps: Vec<Option<u64>> = rows.iter().map(|r| r["step"].as_u64()).collect();
        assert_eq!(steps, [None, Some(2), Some(4)], "{id}");
        assert_eq!(rows[0]["checkpoint"], "model", "{id}");
        for k in ["overall", "per_task", "prompt_tokens", "new_tokens", "actions", "parse_errors", "step_accuracy"] {
            assert_eq!(rows[0][k], alone[k], "{id}: step 0's `{k}` is not the instruct model's");
        }
    }
    let ev_agent = &node(&report, "ev_agent[lr=0.001]")["outputs"]["metrics"]["rows"];
    assert_eq!(ev_agent[0]["checkpoint"], "model", "{ev_agent}");

    // The SFT data came from the fixture traces: their successful episodes of the templates
    // not held out, every action step kept (each action's bid is on its page).
    let (episodes, _) = read_episodes(&fixture.join("traces.jsonl.gz"), OnBadLine::Fail).unwrap();
    let held_out = "miniarena.menu.navigate_to_module";
    let kept: Vec<_> = episodes.iter().filter(|e| e.success && e.task_name != held_out).collect();
    let steps = kept.iter().flat_map(|e| &e.steps).filter(|s| s.action.is_some()).count();
    assert!(kept.len() >= 2 && steps >= 8 && episodes.iter().any(|e| !e.success) && episodes.iter().any(|e| e.task_name == held_out));
    assert_eq!(node(&report, "collect")["outputs"]["report"]["episodes"].as_u64(), Some(episodes.len() as u64));
    let success = &node(&report, "success")["outputs"]["report"];
    assert_eq!(success["dropped_not_success"].as_u64(), Some(episodes.iter().filter(|e| !e.success).count() as u64), "{success}");
    let cross = &node(&report, "cross")["outputs"]["report"];
    assert_eq!(cross["test_tasks"], serde_json::json!([held_out]), "{cross}");
    let data = &node(&report, "agent_data")["outputs"]["report"];
    assert_eq!(data["episodes"].as_u64(), Some(kept.len() as u64), "{data}");
    assert_eq!(data["action_steps"].as_u64(), Some(steps as u64), "{data}");
    assert_eq!(data["examples"].as_u64(), Some(steps as u64), "every step kept: {data}");
    let tasks: BTreeSet<&str> = data["per_task"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(tasks, BTreeSet::from(["miniarena.menu.impersonate_user"]), "{data}");
    let agents: BTreeSet<String> = data["per_agent"].as_object().unwrap().keys().cloned().collect();
    let want: BTreeSet<String> = kept.iter().map(|e| format!("{}/{}", e.agent.model_name, e.agent.agent_name)).collect();
    assert_eq!(agents, want, "{data}");

    // The report: Table 1 with finite rates, the held-out template as the cross-task split.
    let dir = PathBuf::from(node(&report, "report")["outputs"]["report"].as_str().unwrap());
    check_paper_report(&dir, &["## Table 1", "### Inter-task", "### Cross-task", "| 0.001 |", "## Likelihood", "## Forgetting"]);
    let json = &node(&report, "report")["outputs"]["metrics"];
    assert_eq!(json["cross_task"], serde_json::json!([held_out]));
    // Likelihood of held-out expert steps: finite for every row; step 0 of instruct-FT and of
    // AgentMerge is the same model (the fixture instruct), the agent's is another (the base).
    let ll_rows = |id: &str| node(&report, id)["outputs"]["metrics"]["rows"].as_array().unwrap().clone();
    for id in ["ll_agent_inter[lr=0.001]", "ll_agent_cross[lr=0.001]", "ll_ift_inter[lr=0.001]", "ll_ift_cross[lr=0.001]", "ll_am_inter[lr=0.001,lambda=0.5]"] {
        for r in ll_rows(id) {
            assert!(r["examples"].as_u64().unwrap() > 0 && r["mean_logprob"].as_f64().unwrap().is_finite(), "{id}: {r}");
        }
    }
    let step0 = |id: &str| ll_rows(id)[0]["sum_logprob"].as_f64().unwrap();
    assert_eq!(step0("ll_ift_inter[lr=0.001]"), step0("ll_am_inter[lr=0.001,lambda=0.5]"));
    assert_ne!(step0("ll_ift_inter[lr=0.001]"), step0("ll_agent_inter[lr=0.001]"));
    let forget = &node(&report, "forget_am[lr=0.001,lambda=0.5]")["outputs"]["metrics"];
    assert!(forget["forgetting"].as_f64().unwrap().is_finite(), "{forget}");
}
