//! Merging through the real host: AgentMerge and the soup of perturbed random checkpoints are
//! checked tensor by tensor against values computed here from the input checkpoints, and `agentmerge merge`
//! runs a mergekit recipe unchanged to the same result as the pipeline node.

mod common;

use common::*;

/// Stand-ins for fine-tuned models (seeded perturbations of a random base), merged: the soup
/// and AgentMerge at two λ.
const MERGES: &str = "
seed: 7
nodes:
  - id: base
    uses: models/random_llama
    with: {hidden_size: 64, num_hidden_layers: 2, intermediate_size: 172, vocab_size: 256}
  - id: agent
    uses: models/perturb
    with: {scale: 0.05}
    inputs: {model: base.model}
  - id: instruct
    uses: models/perturb
    with: {scale: 0.05}
    inputs: {model: base.model}
  - id: soup
    uses: merge/linear
    with: {models: [{weight: 0.5}, {weight: 0.5}]}
    inputs: {models: [agent.model, instruct.model]}
  - id: agentmerge
    uses: merge/agentmerge
    sweep: {lambda: [0.5, 1.0]}
    inputs: {instruct: instruct.model, agent: agent.model, base: base.model}
";

#[test]
fn agentmerge_and_soup_match_a_hand_computation() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "merges.yaml", MERGES);
    ok(dir.path(), &["run", "merges.yaml"]);
    let report = latest_report(&dir.path().join(".agentmerge"));
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

/// The vectorized loops (AVX2/AVX-512, chosen at run time) give the same bytes as the
/// baseline build of the same loops, for the element-wise and the streamed methods, on
/// tensors big enough to be cut into units and sampled for rank selection.
#[test]
fn every_instruction_set_gives_the_same_bytes() {
    use agentmerge_checkpoint::{CheckpointWriter, DType, TensorSpec, WriteOptions};
    let work = tempfile::tempdir().unwrap();
    let shapes: [(&str, Vec<u64>); 3] =
        [("model.embed_tokens.weight", vec![1200, 1024]), ("model.layers.0.mlp.up_proj.weight", vec![96, 64]), ("model.norm.weight", vec![1024])];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    let base: Vec<Vec<f32>> = shapes.iter().map(|(_, s)| (0..s.iter().product::<u64>()).map(|_| uniform() * 0.05).collect()).collect();
    for m in 0..4 {
        let specs = shapes.iter().map(|(n, s)| TensorSpec { name: n.to_string(), dtype: DType::BF16, shape: s.clone() }).collect();
        let mut w = CheckpointWriter::plan(&work.path().join(format!("m{m}")), specs, WriteOptions::default()).unwrap();
        for ((name, _), b) in shapes.iter().zip(&base) {
            let values: Vec<f32> = b.iter().map(|x| if m == 0 { *x } else { x + uniform() * 0.002 }).collect();
            w.write_f32(name, &values).unwrap();
        }
        w.set_config(serde_json::json!({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 1}), Some(DType::BF16));
        w.finish().unwrap();
    }
    let models = "models:\n  - model: m1\n    parameters: {weight: 0.5, density: 0.4}\n  - model: m2\n    parameters: {weight: 0.3, density: 0.6}\n  - model: m3\n    parameters: {weight: 0.2, density: 0.5}\n";
    for method in ["linear", "task_arithmetic", "ties", "breadcrumbs_ties", "dare_ties"] {
        let base_line = if method == "linear" { "" } else { "base_model: m0\n" };
        let extra = if method == "breadcrumbs_ties" { "parameters: {gamma: 0.01}\n" } else { "" };
        write(work.path(), &format!("{method}.yml"), &format!("merge_method: {method}\n{base_line}{models}{extra}"));
        let mut outputs = Vec::new();
        for level in ["baseline", "avx512"] {
            let out = format!("{method}-{level}");
            let o = std::process::Command::new(agentmerge_path())
                .args(["merge", &format!("{method}.yml"), "-o", &out])
                .current_dir(work.path())
                .env("AGENTMERGE_SIMD", level)
                .output()
                .unwrap();
            assert!(o.status.success(), "{method} at {level}: {}", stderr(&o));
            outputs.push(std::fs::read(work.path().join(&out).join("model.safetensors")).unwrap());
        }
        assert!(outputs[0] == outputs[1], "{method}: the baseline and the vectorized builds differ");
    }
}
