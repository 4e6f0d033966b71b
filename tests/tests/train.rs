//! Training through the real host and the real `cpu` plugin: a pipeline pretrains a fresh
//! model on text and fine-tunes it on MiniArena traces; its outputs are real Hugging Face
//! checkpoints; a second run comes from the cache; a run killed with SIGKILL mid-training
//! resumes from its last state and ends with the same bytes as a run never interrupted.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;

/// A pipeline: traces → tokenizer; text → tokens → cpu/pretrain → cpu/sft on the traces.
fn pipeline(dir: &Path, pretrain_steps: u64) -> PathBuf {
    let mut text = String::new();
    for i in 0..120 {
        text.push_str(&format!(
            "The incident INC{:04} has priority {} and is assigned to the {} team.\n\n",
            i,
            i % 5 + 1,
            ["network", "database", "service desk"][i % 3]
        ));
    }
    write(dir, "corpus/pages.txt", &text);
    write(
        dir,
        "train.yaml",
        &format!(
            r#"name: train-e2e
seed: 5
vars:
  backend: cpu
nodes:
  - id: collect
    uses: miniarena/collect
    with:
      templates: [miniarena.form.create_problem]
      seeds: {{start: 0, count: 3}}
      experts: [{{preset: perfect, think: false}}]
  - id: tokenizer
    uses: sft/tokenizer
    with: {{vocab_size: 400}}
    inputs: {{traces: collect.traces}}
  - id: tokens
    uses: sft/tokenize
    with: {{paths: [corpus/pages.txt], max_len: 64}}
    inputs: {{tokenizer: tokenizer.tokenizer}}
  - id: base
    uses: "${{backend}}/pretrain"
    with:
      init: {{hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1}}
      seq_len: 64
      batch_size: 4
      max_steps: {pretrain_steps}
      warmup_steps: 2
      lr: 0.01
      checkpoint_every: 5
    inputs: {{data: tokens.dataset, tokenizer: tokenizer.tokenizer}}
  - id: init
    uses: models/random_llama
    with: {{hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 400}}
  - id: from_init
    uses: "${{backend}}/pretrain"
    with: {{seq_len: 64, batch_size: 2, max_steps: 2, warmup_steps: 1}}
    inputs: {{model: init.model, data: tokens.dataset, tokenizer: tokenizer.tokenizer}}
  - id: sft_data
    uses: sft/build
    with: {{max_len: 1024, prompt: {{use_history: false, use_thinking: false}}}}
    inputs: {{traces: collect.traces, tokenizer: tokenizer.tokenizer}}
  - id: agent
    uses: "${{backend}}/sft"
    with: {{seq_len: 1024, batch_size: 1, max_steps: 3, lr: 0.003, checkpoint_every: 1, save_dtype: bfloat16}}
    inputs: {{model: base.model, data: sft_data.dataset}}
"#
        ),
    )
}

#[test]
fn pretrain_then_sft_through_the_host() {
    let t = tempfile::tempdir().unwrap();
    let p = pipeline(t.path(), 10);
    let out = ok(t.path(), &["run", p.to_str().unwrap()]);
    assert!(out.contains("agent"), "{out}");
    let report = latest_report(&t.path().join(".agentmerge"));
    let base = model_of(&report, "base");
    let agent = model_of(&report, "agent");
    // Real checkpoints: config, weights, tokenizer files.
    for f in ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"] {
        assert!(base.join(f).exists(), "base has no {f}");
    }
    // The special tokens are the tokenizer's, also for a `models/random_llama` start (whose
    // config says 1 and 2 whatever the tokenizer).
    let json = |p: &Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let tok = json(&base.join("tokenizer.json"));
    let id_of = |name: &str| tok["added_tokens"].as_array().unwrap().iter().find(|t| t["content"] == name).unwrap()["id"].clone();
    let special = json(&base.join("tokenizer_config.json"));
    let (bos, eos) = (id_of(special["bos_token"].as_str().unwrap()), id_of(special["eos_token"].as_str().unwrap()));
    assert_ne!((&bos, &eos), (&serde_json::json!(1), &serde_json::json!(2)), "the test needs a tokenizer whose ids differ from the init's");
    for m in [&base, &model_of(&report, "from_init")] {
        for f in ["config.json", "generation_config.json"] {
            let c = json(&m.join(f));
            assert_eq!((&c["bos_token_id"], &c["eos_token_id"]), (&bos, &eos), "{}/{f}", m.display());
        }
    }
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(agent.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["torch_dtype"], "bfloat16");
    assert_eq!(cfg["architectures"][0], "LlamaForCausalLM");
    // Fine-tuning moved the weights.
    let (a, b) = (tensor(&agent, "model.layers.0.mlp.up_proj.weight"), tensor(&base, "model.layers.0.mlp.up_proj.weight"));
    assert!(a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-3));
    // Checkpoints every 5 steps, with their step; one metrics line per step.
    let node = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "base").unwrap();
    let cks = node["outputs"]["checkpoints"].as_array().unwrap();
    assert_eq!(cks.len(), 2);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(cks[0].as_str().unwrap()).join("trainer_state.json")).unwrap()).unwrap();
    assert_eq!(state["global_step"], 5);
    let log = std::fs::read_to_string(Path::new(node["outputs"]["log"].as_str().unwrap())).unwrap();
    assert_eq!(log.lines().count(), 10);
    // Nothing is left in the store's work area once the nodes are done.
    let work = t.path().join(".agentmerge/work");
    assert!(!work.exists() || std::fs::read_dir(&work).unwrap().next().is_none(), "work/ not cleaned");
    // A second run comes from the cache.
    ok(t.path(), &["run", p.to_str().unwrap()]);
    let again = latest_report(&t.path().join(".agentmerge"));
    assert!(again["nodes"].as_array().unwrap().iter().all(|n| n["cached"] == true), "{again}");
}

#[test]
fn bad_training_configs_are_refused_before_anything_runs() {
    let t = tempfile::tempdir().unwrap();
    let p = pipeline(t.path(), 10);
    let text = std::fs::read_to_string(&p).unwrap().replace("lr: 0.01", "lr: -1").replace("save_dtype: bfloat16", "save_dtype: int8");
    std::fs::write(&p, text).unwrap();
    let o = agentmerge(t.path(), &["check", p.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("`lr`") && err.contains("positive"), "{err}");
    assert!(err.contains("`save_dtype`"), "{err}");
}

#[test]
fn a_killed_run_resumes_to_the_same_weights() {
    let t = tempfile::tempdir().unwrap();
    let steps = 200;
    // Uninterrupted.
    let a = t.path().join("a");
    let pa = pipeline(&a, steps);
    ok(&a, &["run", pa.to_str().unwrap()]);
    let straight = model_of(&latest_report(&a.join(".agentmerge")), "base");

    // Killed with SIGKILL once a training state is on disk, then run again.
    let b = t.path().join("b");
    let pb = pipeline(&b, steps);
    let mut child =
        Command::new(agentmerge_path()).args(["run", pb.to_str().unwrap()]).current_dir(&b).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let work = b.join(".agentmerge/work");
    let started = Instant::now();
    let killed = loop {
        let has_state = std::fs::read_dir(&work).map(|d| d.flatten().any(|e| e.path().join("latest").exists())).unwrap_or(false);
        if has_state {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            break true;
        }
        if child.try_wait().unwrap().is_some() {
            break false; // finished before we saw a state: too fast to test, fail below
        }
        assert!(started.elapsed() < Duration::from_secs(300), "no training state appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(killed, "the run finished before a state was seen; raise `steps`");
    ok(&b, &["run", pb.to_str().unwrap()]);
    let report = latest_report(&b.join(".agentmerge"));
    let node = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "base").unwrap();
    let resumed_from = node["outputs"]["metrics"]["resumed_from"].as_u64().unwrap_or_else(|| panic!("no resumed_from in {node}"));
    assert!(resumed_from > 0 && resumed_from < steps, "resumed from step {resumed_from}");
    let resumed = model_of(&report, "base");
    let (x, y) = (std::fs::read(straight.join("model.safetensors")).unwrap(), std::fs::read(resumed.join("model.safetensors")).unwrap());
    assert!(x == y, "the resumed run's weights differ from the uninterrupted run's");
}
