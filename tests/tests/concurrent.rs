//! Several real `agentmerge run` processes started at once on one store: all succeed, every
//! node is computed by exactly one of them and reused by the others (they wait for it rather
//! than race on it), and nothing half-written is ever read. Repeated, with the same pipeline
//! and with overlapping ones (shared upstream nodes, different downstream ones).

mod common;

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Stdio},
};

use common::*;

fn pipeline(dir: &Path) -> std::path::PathBuf {
    write(
        dir,
        "race.yaml",
        &format!(
            r#"name: race
seed: 4
vars:
  lr: 0.003
nodes:
{TRACES_TO_SFT_NODES}  - id: base
    uses: cpu/pretrain
    with:
      init: {{hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2}}
      seq_len: 1024
      batch_size: 2
      max_steps: 30
      lr: 0.01
      checkpoint_every: 10
    inputs: {{data: data.dataset, tokenizer: tokenizer.tokenizer}}
  - id: agent
    uses: cpu/sft
    with: {{seq_len: 1024, batch_size: 2, max_steps: 20, lr: "${{lr}}", checkpoint_every: 10}}
    inputs: {{model: base.model, data: data.dataset}}
  - id: merged
    uses: merge/agentmerge
    with: {{lambda: 0.5}}
    inputs: {{instruct: base.model, base: base.model, agent: agent.model}}
"#
        ),
    )
}

/// Starts one run per `--set` list at once on `store`, waits for all, and returns each run's
/// node statuses.
fn race(dir: &Path, store: &Path, sets: &[&[&str]]) -> Vec<BTreeMap<String, String>> {
    let p = pipeline(dir);
    let children: Vec<_> = sets
        .iter()
        .map(|set| {
            let mut args = vec!["run", p.to_str().unwrap(), "--store", store.to_str().unwrap(), "-q"];
            for s in *set {
                args.extend(["--set", s]);
            }
            Command::new(agentmerge_path()).args(&args).current_dir(dir).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "a concurrent run failed:\n{}", String::from_utf8_lossy(&o.stderr));
    }
    let mut reports = Vec::new();
    for e in std::fs::read_dir(store.join("runs")).unwrap() {
        let path = e.unwrap().path();
        // Reports are files; each run's folder (its state, its jobs' logs) is not one.
        if path.is_file() && path.file_name().unwrap() != "latest.json" {
            let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            reports.push(statuses(&r));
        }
    }
    assert_eq!(reports.len(), sets.len());
    reports
}

/// How many of the runs computed each node.
fn computed(reports: &[BTreeMap<String, String>]) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for r in reports {
        for (id, st) in r {
            *n.entry(id.clone()).or_insert(0) += (st == "ran") as usize;
        }
    }
    n
}

#[test]
fn runs_started_together_share_one_store() {
    let t = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let store = t.path().join(format!("store{round}"));
        let reports = race(t.path(), &store, &[&[], &[], &[], &[]]);
        let n = computed(&reports);
        assert!(n.values().all(|&c| c == 1), "round {round}: every node computed exactly once: {n:?}");
        // Nothing half-written: every stored node's outputs are complete.
        for e in std::fs::read_dir(store.join("nodes")).unwrap() {
            assert!(e.unwrap().path().join("outputs.json").exists());
        }
    }
}

#[test]
fn overlapping_pipelines_share_their_common_nodes() {
    let t = tempfile::tempdir().unwrap();
    for round in 0..2 {
        let store = t.path().join(format!("store{round}"));
        let reports = race(t.path(), &store, &[&["lr=0.003"], &["lr=0.001"], &["lr=0.003"], &["lr=0.001"]]);
        let n = computed(&reports);
        // Upstream of the learning rate: one computation for all four runs; downstream: one per
        // learning rate.
        for id in ["collect", "tokenizer", "data", "base"] {
            assert_eq!(n[id], 1, "round {round}: {id}: {n:?}");
        }
        for id in ["agent", "merged"] {
            assert_eq!(n[id], 2, "round {round}: {id}: {n:?}");
        }
    }
}
