#![allow(dead_code)]
//! The fuzz targets: one function per reader of users' files, each taking arbitrary bytes and
//! required never to panic, hang or allocate without bound — errors are fine. Shared by the
//! cargo-fuzz harness (`fuzz_targets/*.rs`, nightly) and the stable regression test
//! (`tests/tests/fuzz_regressions.rs`, in CI), which replays the seed corpora and every input
//! a fuzzer ever found.

use std::path::Path;

/// Every target, by name (the corpus directories under `tests/fuzz/corpus/` and
/// `tests/fuzz/regressions/` have these names).
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("pipeline_yaml", pipeline_yaml),
    ("mergekit_recipe", mergekit_recipe),
    ("safetensors", safetensors),
    ("safetensors_index", safetensors_index),
    ("config_json", config_json),
    ("trace_jsonl", trace_jsonl),
    ("sft_tokens", sft_tokens),
];

/// A pipeline YAML file: parsing, presets, patches' shapes, variables, sweeps' shapes.
pub fn pipeline_yaml(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let _ = agentmerge::pipeline::parse(Path::new("fuzz.yaml"), text, Vec::new(), &[]);
}

/// A mergekit recipe (merge_method, models, parameters, slices, dtype, ...).
pub fn mergekit_recipe(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = agentmerge_merge::parse_mergekit_yaml(&text, "fuzz.yml");
}

fn in_dir(files: &[(&str, &[u8])], f: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).expect("writing a fuzz input");
    }
    f(dir.path());
}

/// Reads every tensor of a checkpoint directory that opened.
fn read_all(dir: &Path) {
    if let Ok(ck) = agentmerge_checkpoint::Checkpoint::open(dir) {
        let names: Vec<String> = ck.names().map(str::to_string).collect();
        for n in names {
            if let Ok(v) = ck.view(&n) {
                // Bounded: a view's size was checked against the file when it opened.
                let _ = v.to_f32_vec();
            }
        }
    }
}

/// A `model.safetensors` file: the 8-byte header length, the JSON header, the data offsets.
pub fn safetensors(data: &[u8]) {
    let config: &[u8] = br#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}"#;
    in_dir(&[("model.safetensors", data), ("config.json", config)], read_all);
}

/// A `model.safetensors.index.json` naming shards (two small valid shards exist beside it).
pub fn safetensors_index(data: &[u8]) {
    let shard = |name: &str| -> Vec<u8> {
        let header = format!(r#"{{"{name}":{{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}}}"#);
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(&[0u8; 8]);
        b
    };
    let (a, b) = (shard("a"), shard("b"));
    in_dir(&[("model.safetensors.index.json", data), ("model-00001-of-00002.safetensors", &a), ("model-00002-of-00002.safetensors", &b)], read_all);
}

/// A `config.json` as the model reads it (Llama fields, defaults, checks).
pub fn config_json(data: &[u8]) {
    if let Ok(j) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = agentmerge_model::LlamaConfig::from_json(&j);
    }
}

/// A trace file in JSON Lines (BrowserGym/AgentLab episodes), read strictly and leniently.
pub fn trace_jsonl(data: &[u8]) {
    in_dir(&[("traces.jsonl", data)], |d| {
        let p = d.join("traces.jsonl");
        let _ = agentmerge_traces::read_episodes(&p, agentmerge_traces::OnBadLine::Fail);
        let _ = agentmerge_traces::read_episodes(&p, agentmerge_traces::OnBadLine::Skip);
    });
}

/// An SFT token file (`AMSFT001`: counts, offsets, ids, loss mask); every example read.
pub fn sft_tokens(data: &[u8]) {
    in_dir(&[("data.amsft", data)], |d| {
        if let Ok(r) = agentmerge_sft::dataset::SftReader::open(&d.join("data.amsft")) {
            for i in 0..r.len() {
                let _ = r.example(i);
            }
        }
    });
}
