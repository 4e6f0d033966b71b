//! `merge/agentmerge` over every checkpoint of an agent's training run (the paper's Figure 3),
//! through the real host: a user's own sharded checkpoint comes in through `models/load` as the
//! base, `cpu/pretrain` fine-tunes it with a checkpoint every 2 steps, and each checkpoint is
//! merged into an "instruct" model. Each merged checkpoint must be instruct + λ·(checkpoint −
//! base), in step order, carrying its checkpoint's trainer_state.json.

mod common;

use std::path::{Path, PathBuf};

use agentmerge_checkpoint::{CheckpointWriter, DType, TensorSpec, WriteOptions};
use common::*;
use serde_json::{json, Value as Json};

const LAMBDA: f32 = 0.5;

/// A random Llama (hidden 16, one layer, 2 heads, 1 key/value head, vocabulary 512) written the
/// way another tool would: f32, sharded with an index, no tokenizer.
fn write_user_model(dir: &Path) {
    let (v, d, i, kv) = (512u64, 16u64, 32u64, 8u64);
    let shapes: Vec<(&str, Vec<u64>)> = vec![
        ("model.embed_tokens.weight", vec![v, d]),
        ("model.layers.0.input_layernorm.weight", vec![d]),
        ("model.layers.0.self_attn.q_proj.weight", vec![d, d]),
        ("model.layers.0.self_attn.k_proj.weight", vec![kv, d]),
        ("model.layers.0.self_attn.v_proj.weight", vec![kv, d]),
        ("model.layers.0.self_attn.o_proj.weight", vec![d, d]),
        ("model.layers.0.post_attention_layernorm.weight", vec![d]),
        ("model.layers.0.mlp.gate_proj.weight", vec![i, d]),
        ("model.layers.0.mlp.up_proj.weight", vec![i, d]),
        ("model.layers.0.mlp.down_proj.weight", vec![d, i]),
        ("model.norm.weight", vec![d]),
        ("lm_head.weight", vec![v, d]),
    ];
    let specs = shapes.iter().map(|(n, s)| TensorSpec { name: n.to_string(), dtype: DType::F32, shape: s.clone() }).collect();
    let mut w = CheckpointWriter::plan(dir, specs, WriteOptions { max_shard_bytes: 20_000, ..Default::default() }).unwrap();
    let mut state = 12345u64;
    for (name, shape) in &shapes {
        let n = shape.iter().product::<u64>() as usize;
        let values: Vec<f32> = if shape.len() == 1 {
            vec![1.0; n]
        } else {
            (0..n)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
                })
                .collect()
        };
        w.write_f32(name, &values).unwrap();
    }
    w.set_config(
        json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            "vocab_size": v, "hidden_size": d, "intermediate_size": i, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 128,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": false
        }),
        Some(DType::F32),
    );
    w.finish().unwrap();
}

fn pipeline(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for i in 0..60 {
        text.push_str(&format!("Incident INC{i:04} has priority {} and goes to the {} team.\n\n", i % 5 + 1, ["network", "database"][i % 2]));
    }
    write(dir, "corpus.txt", &text);
    write(
        dir,
        "merge.yaml",
        &format!(
            r#"seed: 3
nodes:
  - id: collect
    uses: miniarena/collect
    with:
      templates: [miniarena.form.create_problem]
      seeds: {{start: 0, count: 2}}
      experts: [{{preset: perfect, think: false}}]
  - id: tokenizer
    uses: sft/tokenizer
    with: {{vocab_size: 400}}
    inputs: {{traces: collect.traces}}
  - id: tokens
    uses: sft/tokenize
    with: {{paths: [corpus.txt], max_len: 32}}
    inputs: {{tokenizer: tokenizer.tokenizer}}
  - id: base
    uses: models/load
    with: {{path: user/base}}
  - id: instruct
    uses: models/perturb
    with: {{scale: 0.2, seed: 11}}
    inputs: {{model: base.model}}
  - id: agent
    uses: cpu/pretrain
    with: {{seq_len: 32, batch_size: 2, max_steps: 6, warmup_steps: 1, lr: 0.02, checkpoint_every: 2}}
    inputs: {{model: base.model, data: tokens.dataset, tokenizer: tokenizer.tokenizer}}
  - id: curve
    uses: merge/agentmerge
    with: {{lambda: {LAMBDA}}}
    inputs: {{instruct: instruct.model, base: base.model, agent_checkpoints: agent.checkpoints}}
  - id: both
    uses: merge/agentmerge
    with: {{lambda: {LAMBDA}}}
    inputs: {{instruct: instruct.model, base: base.model, agent: agent.model, agent_checkpoints: agent.checkpoints}}
"#
        ),
    )
}

fn outputs<'a>(report: &'a Json, id: &str) -> &'a Json {
    &report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}"))["outputs"]
}

fn paths(list: &Json) -> Vec<PathBuf> {
    list.as_array().unwrap().iter().map(|p| PathBuf::from(p.as_str().unwrap())).collect()
}

/// Asserts that every tensor of `merged` is instruct + λ·(agent − base).
fn assert_agentmerge(merged: &Path, instruct: &Path, agent: &Path, base: &Path) {
    let ck = agentmerge_checkpoint::Checkpoint::open(merged).unwrap();
    let names: Vec<String> = ck.names().map(String::from).collect();
    assert_eq!(names.len(), 12);
    for name in &names {
        let (m, i, a, b) = (tensor(merged, name), tensor(instruct, name), tensor(agent, name), tensor(base, name));
        for k in 0..m.len() {
            let want = i[k] + LAMBDA * (a[k] - b[k]);
            assert!((m[k] - want).abs() <= 1e-6 * (1.0 + want.abs()), "{}: {name}[{k}] = {}, want {want}", merged.display(), m[k]);
        }
    }
}

fn step_of(dir: &Path) -> u64 {
    let state: Json = serde_json::from_str(&std::fs::read_to_string(dir.join("trainer_state.json")).unwrap()).unwrap();
    state["global_step"].as_u64().unwrap()
}

#[test]
fn every_agent_checkpoint_is_merged_in_step_order() {
    let t = tempfile::tempdir().unwrap();
    write_user_model(&t.path().join("user/base"));
    assert!(t.path().join("user/base/model.safetensors.index.json").exists(), "the user model should be sharded");
    let p = pipeline(t.path());
    ok(t.path(), &["run", p.to_str().unwrap()]);
    let report = latest_report(&t.path().join(".agentmerge"));
    let (base, instruct, agent) = (model_of(&report, "base"), model_of(&report, "instruct"), model_of(&report, "agent"));
    // The loaded model is the user's, shards and index included.
    assert!(base.join("model.safetensors.index.json").exists());
    assert_eq!(tensor(&base, "lm_head.weight"), tensor(&t.path().join("user/base"), "lm_head.weight"));

    let agent_cks = paths(&outputs(&report, "agent")["checkpoints"]);
    assert_eq!(agent_cks.iter().map(|c| step_of(c)).collect::<Vec<_>>(), [2, 4, 6]);
    let curve = paths(&outputs(&report, "curve")["checkpoints"]);
    assert_eq!(curve.len(), 3);
    for (merged, ck) in curve.iter().zip(&agent_cks) {
        // Named as the checkpoint, carrying its trainer_state.json, holding the merge.
        assert_eq!(merged.file_name(), ck.file_name());
        assert_eq!(std::fs::read(merged.join("trainer_state.json")).unwrap(), std::fs::read(ck.join("trainer_state.json")).unwrap());
        assert_agentmerge(merged, &instruct, ck, &base);
        // Training moved the weights, so the merge is not just the instruct model.
        let up = "model.layers.0.mlp.up_proj.weight";
        assert!(tensor(merged, up).iter().zip(tensor(&instruct, up)).any(|(m, i)| (m - i).abs() > 1e-4), "{}", merged.display());
    }
    let steps: Vec<Json> = outputs(&report, "curve")["report"]["checkpoints"].as_array().unwrap().iter().map(|r| r["step"].clone()).collect();
    assert_eq!(steps, [json!(2), json!(4), json!(6)]);

    // Without `agent`, `model` is the last checkpoint's merge, without a training step.
    let model = PathBuf::from(outputs(&report, "curve")["model"].as_str().unwrap());
    assert!(!model.join("trainer_state.json").exists());
    assert_eq!(std::fs::read(model.join("model.safetensors")).unwrap(), std::fs::read(curve[2].join("model.safetensors")).unwrap());
    // With `agent`, `model` is the agent's merge, and the checkpoints are merged all the same.
    assert_agentmerge(&model_of(&report, "both"), &instruct, &agent, &base);
    let both = paths(&outputs(&report, "both")["checkpoints"]);
    assert_eq!(both.len(), 3);
    assert_agentmerge(&both[1], &instruct, &agent_cks[1], &base);

    // A second run comes from the cache.
    ok(t.path(), &["run", p.to_str().unwrap()]);
    let again = latest_report(&t.path().join(".agentmerge"));
    assert!(statuses(&again).values().all(|s| s == "cached"), "{:?}", statuses(&again));
}

#[test]
fn agentmerge_without_an_agent_says_what_to_connect() {
    let t = tempfile::tempdir().unwrap();
    let p = write(
        t.path(),
        "none.yaml",
        "nodes:
  - id: base
    uses: models/random_llama
    with: {hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 32}
  - id: merged
    uses: merge/agentmerge
    inputs: {instruct: base.model, base: base.model}
",
    );
    let o = agentmerge(t.path(), &["run", p.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("nothing to merge") && err.contains("`agent`") && err.contains("`agent_checkpoints`"), "{err}");
}
