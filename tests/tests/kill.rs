//! SIGKILL at any point: a real run is killed at many moments (while plugins train, while
//! outputs are renamed into place, while the report is written — wherever the random delays
//! land), then run again. Every stored entry always verifies against its recorded digests
//! (`agentmerge verify`), the final run succeeds, and what a killed run had finished is reused,
//! not recomputed.

mod common;

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use common::*;

fn pipeline(dir: &Path) -> std::path::PathBuf {
    write(
        dir,
        "kill.yaml",
        &format!(
            r#"name: kill
seed: 9
nodes:
{TRACES_TO_SFT_NODES}  - id: base
    uses: cpu/pretrain
    with:
      init: {{hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2}}
      seq_len: 1024
      batch_size: 2
      max_steps: 120
      lr: 0.01
      checkpoint_every: 20
    inputs: {{data: data.dataset, tokenizer: tokenizer.tokenizer}}
  - id: agent
    uses: cpu/sft
    with: {{seq_len: 1024, batch_size: 2, max_steps: 80, lr: 0.003, checkpoint_every: 20}}
    inputs: {{model: base.model, data: data.dataset}}
  - id: merged
    uses: merge/agentmerge
    with: {{lambda: 0.5}}
    inputs: {{instruct: base.model, base: base.model, agent: agent.model}}
  - id: merged_again
    uses: merge/agentmerge
    with: {{lambda: 1.0}}
    inputs: {{instruct: base.model, base: base.model, agent: agent.model}}
"#
        ),
    )
}

fn verify(store: &Path) {
    let o = agentmerge(store.parent().unwrap(), &["verify", store.to_str().unwrap()]);
    assert!(o.status.success(), "a stored entry does not verify:\n{}{}", stdout(&o), stderr(&o));
}

fn committed(store: &Path) -> BTreeSet<String> {
    std::fs::read_dir(store.join("nodes")).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default()
}

#[test]
fn runs_killed_at_random_moments_leave_a_store_that_verifies_and_resumes() {
    let t = tempfile::tempdir().unwrap();
    let p = pipeline(t.path());
    let store = t.path().join("store");
    // Delays from a fixed pseudo-random sequence, growing so that the kills land over the
    // whole run (a few seconds in a debug build): early on in the data nodes, later in the
    // training (which resumes from its last state each time), the merges and the report.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..10 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_millis(50 + x % 400 + i * 300);
        let mut child = Command::new(agentmerge_path())
            .args(["run", p.to_str().unwrap(), "--store", store.to_str().unwrap(), "-q"])
            .current_dir(t.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if store.join("nodes").exists() {
            verify(&store);
        }
    }
    // Run to the end: it succeeds, and every node a killed run had committed is reused.
    let before = committed(&store);
    eprintln!("{} nodes finished by the killed runs", before.len());
    ok(t.path(), &["run", p.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    let report = latest_report(&store);
    for n in report["nodes"].as_array().unwrap() {
        let key = n["key"].as_str().unwrap();
        if before.contains(key) {
            assert_eq!(n["status"], "cached", "{} was finished by a killed run but computed again", n["id"]);
        }
    }
    verify(&store);
    // And once more: everything from the store.
    ok(t.path(), &["run", p.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert!(statuses(&latest_report(&store)).values().all(|s| s == "cached"));
}
