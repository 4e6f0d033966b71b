//! Properties every merge must have (identities, endpoints, the statistics of the random
//! methods), a strategy written outside the crate, chunked streaming, f64 inputs, and bad
//! input: every error names the tensor or model and leaves no output behind.

use std::path::{Path, PathBuf};

use agentmerge_checkpoint::{Checkpoint, CheckpointWriter, DType, TensorSpec, WriteOptions};
use agentmerge_merge::{
    builtin, parse_mergekit_yaml, run_merge, MergeError, MergePlan, MergeReport, ModelEntry, Setting, Strategy, TensorJob, Value, CHUNK_ELEMENTS,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Tensors = Vec<(String, Vec<u64>, Vec<f32>)>;

fn random_tensors(seed: u64, shapes: &[(&str, Vec<u64>)]) -> Tensors {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    shapes
        .iter()
        .map(|(n, s)| {
            let len = s.iter().product::<u64>() as usize;
            (n.to_string(), s.clone(), (0..len).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect())
        })
        .collect()
}

fn perturb(t: &Tensors, seed: u64, scale: f32) -> Tensors {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    t.iter().map(|(n, s, v)| (n.clone(), s.clone(), v.iter().map(|x| x + scale * (rng.random::<f32>() * 2.0 - 1.0)).collect())).collect()
}

fn write(dir: &Path, tensors: &Tensors, dtype: DType, arch: &str) -> PathBuf {
    let specs = tensors.iter().map(|(n, s, _)| TensorSpec { name: n.clone(), dtype, shape: s.clone() }).collect();
    let mut w = CheckpointWriter::plan(dir, specs, WriteOptions::default()).unwrap();
    for (n, _, v) in tensors {
        w.write_f32(n, v).unwrap();
    }
    w.set_config(serde_json::json!({"architectures": [arch], "num_hidden_layers": 2}), Some(dtype));
    w.finish().unwrap()
}

fn shapes() -> Vec<(&'static str, Vec<u64>)> {
    vec![
        ("model.embed_tokens.weight", vec![16, 8]),
        ("model.layers.0.mlp.up_proj.weight", vec![12, 8]),
        ("model.layers.1.mlp.up_proj.weight", vec![12, 8]),
        ("model.norm.weight", vec![8]),
    ]
}

fn entry(path: &Path, params: &[(&str, Value)]) -> ModelEntry {
    ModelEntry { path: path.to_path_buf(), params: params.iter().map(|(k, v)| (k.to_string(), Setting::Value(v.clone()))).collect() }
}

fn num(x: f64) -> Value {
    Value::Num(x)
}

fn merge(plan: &MergePlan, method: &str, out: &Path) -> Result<MergeReport, MergeError> {
    run_merge(plan, builtin(method).unwrap().as_ref(), out, &|_, _| {}, &|| false)
}

fn read_all(dir: &Path) -> Vec<Vec<f32>> {
    let ck = Checkpoint::open(dir).unwrap();
    ck.names().map(|n| ck.view(n).unwrap().to_f32_vec()).collect()
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    base: PathBuf,
    a: PathBuf,
    b: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let base_t = random_tensors(1, &shapes());
    let base = write(&root.join("base"), &base_t, DType::F32, "LlamaForCausalLM");
    let a = write(&root.join("a"), &perturb(&base_t, 2, 0.1), DType::F32, "LlamaForCausalLM");
    let b = write(&root.join("b"), &perturb(&base_t, 3, 0.1), DType::F32, "LlamaForCausalLM");
    Setup { _tmp: tmp, root, base, a, b }
}

#[test]
fn identities_and_endpoints() {
    let s = setup();
    let out = |n: &str| s.root.join(n);
    // linear over one model is that model.
    let plan = MergePlan::new(None, vec![entry(&s.a, &[("weight", num(1.0))])]);
    merge(&plan, "linear", &out("lin")).unwrap();
    assert_eq!(read_all(&out("lin")), read_all(&s.a));
    // (with another weight, up to the rounding of w·x/w)
    let plan = MergePlan::new(None, vec![entry(&s.a, &[("weight", num(0.3))])]);
    merge(&plan, "linear", &out("lin3")).unwrap();
    for (g, w) in read_all(&out("lin3")).iter().zip(read_all(&s.a)) {
        for (x, y) in g.iter().zip(&w) {
            assert!((x - y).abs() <= 1e-6 * y.abs(), "{x} vs {y}");
        }
    }

    // ties at density 1 over one model (weight 1) is task arithmetic.
    let plan = MergePlan::new(Some(s.base.clone()), vec![entry(&s.a, &[("weight", num(1.0))])]);
    merge(&plan, "ties", &out("ties")).unwrap();
    merge(&plan, "task_arithmetic", &out("ta")).unwrap();
    assert_eq!(read_all(&out("ties")), read_all(&out("ta")));

    // slerp at t = 0 and t = 1 gives the endpoints.
    for (t, want) in [(0.0, &s.base), (1.0, &s.a)] {
        let mut plan = MergePlan::new(Some(s.base.clone()), vec![entry(&s.a, &[])]);
        plan.params.insert("t".into(), Setting::num(t));
        let o = out(&format!("slerp{t}"));
        merge(&plan, "slerp", &o).unwrap();
        for (g, w) in read_all(&o).iter().zip(read_all(want)) {
            for (x, y) in g.iter().zip(&w) {
                assert!((x - y).abs() < 1e-5, "t={t}: {x} vs {y}");
            }
        }
    }

    // model_stock of identical models is that model.
    // (identical task vectors: cos θ = 1, so t = 1 and the result is their average)
    let a_t = perturb(&random_tensors(1, &shapes()), 2, 0.1);
    let copies: Vec<PathBuf> = (0..3).map(|i| write(&out(&format!("copy{i}")), &a_t, DType::F32, "LlamaForCausalLM")).collect();
    let plan = MergePlan::new(Some(s.base.clone()), copies.iter().map(|c| entry(c, &[])).collect());
    merge(&plan, "model_stock", &out("stock")).unwrap();
    for (g, w) in read_all(&out("stock")).iter().zip(read_all(&s.a)) {
        for (x, y) in g.iter().zip(&w) {
            assert!((x - y).abs() <= 1e-6, "{x} vs {y}");
        }
    }

    // agentmerge at λ = 0 is the instruct model; at λ = 1 it is instruct + (agent − base).
    for lambda in [0.0, 1.0] {
        let mut plan = MergePlan::new(Some(s.base.clone()), vec![entry(&s.a, &[("add_to", Value::Bool(true))]), entry(&s.b, &[])]);
        plan.params.insert("lambda".into(), Setting::num(lambda));
        let o = out(&format!("am{lambda}"));
        merge(&plan, "agentmerge", &o).unwrap();
        let got = read_all(&o);
        let (ins, agent, base) = (read_all(&s.a), read_all(&s.b), read_all(&s.base));
        for t in 0..got.len() {
            for i in 0..got[t].len() {
                let want = ins[t][i] + lambda as f32 * (agent[t][i] - base[t][i]);
                assert!((got[t][i] - want).abs() < 1e-6);
            }
        }
    }
}

#[test]
fn the_agentmerge_recipe_reads_as_documented() {
    let s = setup();
    let text = format!(
        "merge_method: agentmerge\nbase_model: {}\nmodels:\n  - model: {}\n    parameters: {{add_to: true}}\n  - model: {}\nparameters:\n  lambda: 0.5\n",
        s.base.display(),
        s.a.display(),
        s.b.display()
    );
    let (plan, method) = parse_mergekit_yaml(&text, "agentmerge.yml").unwrap();
    let report = merge(&plan, &method, &s.root.join("out")).unwrap();
    assert_eq!(report.tensors, 4);
    // The only warning: these test models have no tokenizer files.
    assert!(report.warnings.iter().all(|w| w.starts_with("no tokenizer")), "{:?}", report.warnings);
}

/// Deltas kept by a one-model DARE/DELLA merge, per element: Some(ratio out/Δ) or None.
fn kept(base: &[f32], model: &[f32], out: &[f32]) -> Vec<Option<f32>> {
    base.iter().zip(model).zip(out).map(|((b, m), o)| if (o - b).abs() < 1e-7 { None } else { Some((o - b) / (m - b)) }).collect()
}

#[test]
fn dare_and_della_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    let shapes = vec![("model.layers.0.mlp.up_proj.weight", vec![64, 256])];
    let base_t = random_tensors(7, &shapes);
    let model_t = perturb(&base_t, 8, 0.1);
    let base = write(&tmp.path().join("base"), &base_t, DType::F32, "X");
    let model = write(&tmp.path().join("m"), &model_t, DType::F32, "X");
    let (bv, mv) = (&base_t[0].2, &model_t[0].2);
    let n = bv.len() as f64;
    let density = 0.3;
    let run = |method: &str, seed: u64, out: &str| {
        let mut plan = MergePlan::new(Some(base.clone()), vec![entry(&model, &[("weight", num(1.0)), ("density", num(density))])]);
        plan.seed = seed;
        merge(&plan, method, &tmp.path().join(out)).unwrap();
        read_all(&tmp.path().join(out)).remove(0)
    };

    // DARE: about `density` kept; kept deltas all scaled by ‖Δ‖₁ / ‖kept‖₁.
    let out = run("dare_linear", 1, "dare1");
    let k = kept(bv, mv, &out);
    let count = k.iter().flatten().count() as f64;
    let sigma = (n * density * (1.0 - density)).sqrt();
    assert!((count - n * density).abs() < 5.0 * sigma, "kept {count} of {n}");
    let l1_all: f64 = bv.iter().zip(mv).map(|(b, m)| (m - b).abs() as f64).sum();
    let l1_kept: f64 = bv.iter().zip(mv).zip(&k).filter(|(_, k)| k.is_some()).map(|((b, m), _)| (m - b).abs() as f64).sum();
    // Checked on the values, not the ratios: a tiny Δ's ratio is mostly f32 rounding of o.
    let scale = l1_all / l1_kept;
    for (((b, m), o), k) in bv.iter().zip(mv).zip(&out).zip(&k) {
        if k.is_some() {
            let want = *b as f64 + scale * (m - b) as f64;
            assert!((*o as f64 - want).abs() < 1e-6, "{o} is not {b} + {scale}·({m} − {b})");
        }
    }
    // Same seed, same result; another seed, another mask.
    assert_eq!(run("dare_linear", 1, "dare1b"), out);
    assert_ne!(run("dare_linear", 2, "dare2"), out);
    // dare_ties runs too and keeps a similar fraction.
    let ties = kept(bv, mv, &run("dare_ties", 1, "dt"));
    assert!((ties.iter().flatten().count() as f64 - n * density).abs() < 5.0 * sigma);

    // DELLA: about `density` kept, and large deltas are kept more often than small ones.
    let out = run("della_linear", 3, "della");
    let k = kept(bv, mv, &out);
    let count = k.iter().flatten().count() as f64;
    assert!((count - n * density).abs() < 5.0 * sigma, "kept {count} of {n}");
    let (mut big, mut small) = ((0, 0), (0, 0));
    for row in 0..64 {
        let r = row * 256..(row + 1) * 256;
        let mut mags: Vec<f32> = r.clone().map(|i| (mv[i] - bv[i]).abs()).collect();
        mags.sort_by(f32::total_cmp);
        let median = mags[128];
        for i in r {
            let slot = if (mv[i] - bv[i]).abs() >= median { &mut big } else { &mut small };
            slot.0 += k[i].is_some() as usize;
            slot.1 += 1;
        }
    }
    let (pb, ps) = (big.0 as f64 / big.1 as f64, small.0 as f64 / small.1 as f64);
    // Expected: density ± epsilon/2 = 0.375 and 0.225.
    assert!(pb > ps + 0.08, "large kept {pb:.3}, small kept {ps:.3}");
}

/// Element-wise median, written as a user of the crate would.
struct Median;

impl Strategy for Median {
    fn name(&self) -> &str {
        "median"
    }
    fn elementwise(&self) -> bool {
        true
    }
    fn merge(&self, job: &TensorJob<'_>) -> anyhow::Result<Vec<f32>> {
        let mut col = Vec::new();
        Ok((0..job.len())
            .map(|i| {
                col.clear();
                col.extend(job.inputs.iter().map(|m| m.values[i]));
                col.sort_by(f32::total_cmp);
                col[col.len() / 2]
            })
            .collect())
    }
}

#[test]
fn custom_strategy_and_chunked_streaming() {
    let tmp = tempfile::tempdir().unwrap();
    // One tensor bigger than a chunk, so element-wise merges stream it in parts.
    let shapes = vec![("big", vec![(CHUNK_ELEMENTS + 1000) as u64]), ("small", vec![5])];
    let t: Vec<Tensors> = (0..3).map(|i| random_tensors(10 + i, &shapes)).collect();
    let paths: Vec<PathBuf> = t.iter().enumerate().map(|(i, t)| write(&tmp.path().join(format!("m{i}")), t, DType::BF16, "X")).collect();
    let plan = MergePlan::new(None, paths.iter().map(|p| entry(p, &[])).collect());
    let done = std::sync::atomic::AtomicU64::new(0);
    let report = run_merge(
        &plan,
        &Median,
        &tmp.path().join("median"),
        &|d, total| {
            done.fetch_max(d, std::sync::atomic::Ordering::Relaxed);
            assert!(d <= total);
        },
        &|| false,
    )
    .unwrap();
    assert_eq!(done.into_inner(), report.params);
    let got = Checkpoint::open(&tmp.path().join("median")).unwrap();
    let decoded: Vec<Vec<f32>> = paths.iter().map(|p| read_all(p)[0].clone()).collect();
    let big = got.view("big").unwrap().to_f32_vec();
    for i in (0..big.len()).step_by(997) {
        let mut col: Vec<f32> = decoded.iter().map(|d| d[i]).collect();
        col.sort_by(f32::total_cmp);
        assert_eq!(big[i], col[1], "element {i}");
    }
    assert_eq!(big[big.len() - 1], {
        let mut col: Vec<f32> = decoded.iter().map(|d| d[big.len() - 1]).collect();
        col.sort_by(f32::total_cmp);
        col[1]
    });
}

/// The mean of the models, computed with rayon inside `merge`: while it waits for its own
/// jobs, an engine worker may run another unit, so the engine must not hold its per-thread
/// buffers borrowed across the call.
struct ParallelMean;

impl Strategy for ParallelMean {
    fn name(&self) -> &str {
        "parallel_mean"
    }
    fn elementwise(&self) -> bool {
        true
    }
    fn merge(&self, job: &TensorJob<'_>) -> anyhow::Result<Vec<f32>> {
        use rayon::prelude::*;
        // Runs a pending job here, such as another unit of this merge (what waiting on a
        // rayon job can do), which makes the re-entrant case certain rather than likely.
        rayon::yield_now();
        let mut out = vec![0f32; job.len()];
        out.par_chunks_mut(256).enumerate().for_each(|(c, o)| {
            for (k, v) in o.iter_mut().enumerate() {
                *v = job.inputs.iter().map(|m| m.values[c * 256 + k]).sum::<f32>() / job.inputs.len() as f32;
            }
        });
        Ok(out)
    }
}

#[test]
fn a_strategy_may_use_rayon_inside_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let shapes: Vec<(String, Vec<u64>)> = (0..3).map(|i| (format!("t{i}"), vec![(CHUNK_ELEMENTS + 77 * i + 1) as u64])).collect();
    let shapes: Vec<(&str, Vec<u64>)> = shapes.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
    let t: Vec<Tensors> = (0..2).map(|i| random_tensors(30 + i, &shapes)).collect();
    let paths: Vec<PathBuf> = t.iter().enumerate().map(|(i, t)| write(&tmp.path().join(format!("m{i}")), t, DType::F32, "X")).collect();
    let plan = MergePlan::new(None, paths.iter().map(|p| entry(p, &[])).collect());
    run_merge(&plan, &ParallelMean, &tmp.path().join("mean"), &|_, _| {}, &|| false).unwrap();
    let got = Checkpoint::open(&tmp.path().join("mean")).unwrap();
    let (a, b) = (read_all(&paths[0]), read_all(&paths[1]));
    for (k, (name, _)) in shapes.iter().enumerate() {
        let v = got.view(name).unwrap().to_f32_vec();
        for i in (0..v.len()).step_by(1009) {
            assert_eq!(v[i], (a[k][i] + b[k][i]) / 2.0, "{name}[{i}]");
        }
    }
}

#[test]
fn f64_inputs_are_merged_in_f64() {
    let tmp = tempfile::tempdir().unwrap();
    let specs = vec![TensorSpec { name: "w".into(), dtype: DType::F64, shape: vec![3] }];
    let vals = [[1.0f64 + 1e-12, 2.0, 3.0], [1.0, 4.0, 5.0]];
    let paths: Vec<PathBuf> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut w = CheckpointWriter::plan(&tmp.path().join(format!("m{i}")), specs.clone(), WriteOptions::default()).unwrap();
            w.write_f64("w", v).unwrap();
            w.set_config(serde_json::json!({}), None);
            w.finish().unwrap()
        })
        .collect();
    let plan = MergePlan::new(None, paths.iter().map(|p| entry(p, &[("weight", num(1.0))])).collect());
    merge(&plan, "linear", &tmp.path().join("out")).unwrap();
    let got = Checkpoint::open(&tmp.path().join("out")).unwrap();
    let v = got.view("w").unwrap();
    assert_eq!(v.dtype, DType::F64);
    assert_eq!(v.to_f64_vec(), vec![1.0 + 0.5e-12, 3.0, 4.0]);
}

fn expect_err(plan: &MergePlan, method: &str, out: &Path, wants: &[&str]) {
    let e = merge(plan, method, out).err().unwrap_or_else(|| panic!("{method}: merge succeeded")).to_string();
    for w in wants {
        assert!(e.contains(w), "`{e}` should mention `{w}`");
    }
    assert!(!out.exists(), "{method}: output left behind after `{e}`");
    let parent = out.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(parent).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains(".tmp-")).collect();
    assert!(leftovers.is_empty(), "temporary directory left behind");
}

#[test]
fn bad_input_is_an_error_naming_what_is_wrong() {
    let s = setup();
    let out = s.root.join("out");
    let base_t = random_tensors(1, &shapes());
    let w1 = [("weight", num(1.0))];

    // A tensor of another shape.
    let mut other = base_t.clone();
    other[1].1 = vec![8, 12];
    let shaped = write(&s.root.join("shaped"), &other, DType::F32, "LlamaForCausalLM");
    let plan = MergePlan::new(Some(s.base.clone()), vec![entry(&shaped, &w1)]);
    expect_err(&plan, "ties", &out, &["model.layers.0.mlp.up_proj.weight", "shape", "shaped"]);

    // A tensor missing from one model.
    let missing = write(&s.root.join("missing"), &base_t[..3].to_vec(), DType::F32, "LlamaForCausalLM");
    let plan = MergePlan::new(Some(s.base.clone()), vec![entry(&missing, &w1)]);
    expect_err(&plan, "task_arithmetic", &out, &["model.norm.weight", "missing"]);

    // Another architecture.
    let mistral = write(&s.root.join("mistral"), &base_t, DType::F32, "MistralForCausalLM");
    let plan = MergePlan::new(Some(s.base.clone()), vec![entry(&mistral, &w1)]);
    expect_err(&plan, "ties", &out, &["MistralForCausalLM", "LlamaForCausalLM"]);

    // NaN in an input.
    let mut nan = base_t.clone();
    nan[0].2[5] = f32::NAN;
    let nan = write(&s.root.join("nan"), &nan, DType::F32, "LlamaForCausalLM");
    let plan = MergePlan::new(Some(s.base.clone()), vec![entry(&nan, &w1)]);
    expect_err(&plan, "task_arithmetic", &out, &["model.embed_tokens.weight", "NaN", "nan"]);

    // Inf in the base model.
    let mut inf = base_t.clone();
    inf[2].2[0] = f32::NEG_INFINITY;
    let inf = write(&s.root.join("inf"), &inf, DType::F32, "LlamaForCausalLM");
    let plan = MergePlan::new(Some(inf), vec![entry(&s.a, &w1)]);
    expect_err(&plan, "ties", &out, &[shapes()[2].0, "element 0 is -inf"]);

    // Inf in a bf16 model of a soup. bf16 soups are merged by the fused weighted-sum path,
    // which hands a unit with a non-finite output back to the checks that name the element.
    let clean16 = write(&s.root.join("clean16"), &base_t, DType::BF16, "LlamaForCausalLM");
    let mut inf = base_t.clone();
    inf[3].2[7] = f32::INFINITY;
    let inf16 = write(&s.root.join("inf16"), &inf, DType::BF16, "LlamaForCausalLM");
    let plan = MergePlan::new(None, vec![entry(&clean16, &w1), entry(&inf16, &w1)]);
    expect_err(&plan, "linear", &out, &["model.norm.weight", "element 7 is inf", "inf16"]);

    // Parameters out of range, and missing.
    for density in [0.0, 1.5, f64::NAN] {
        let plan = MergePlan::new(Some(s.base.clone()), vec![entry(&s.a, &[("weight", num(1.0)), ("density", num(density))])]);
        expect_err(&plan, "ties", &out, &["density"]);
    }
    let plan = MergePlan::new(Some(s.base.clone()), vec![entry(&s.a, &[("weight", num(1.0)), ("density", num(0.01))])]);
    expect_err(&plan, "ties", &out, &["model.layers.0.mlp.up_proj.weight", "density 0.01", "keeps no element"]);
    let plan = MergePlan::new(Some(s.base.clone()), vec![entry(&s.a, &[])]);
    expect_err(&plan, "ties", &out, &["required parameter `weight`", "a"]);
    let plan = MergePlan::new(None, vec![entry(&s.a, &w1)]);
    expect_err(&plan, "ties", &out, &["needs `base_model`"]);
    let plan = MergePlan::new(None, vec![entry(&s.a, &[("weight", num(1.0))]), entry(&s.b, &[("weight", num(-1.0))])]);
    expect_err(&plan, "linear", &out, &["sum to 0"]);
    let plan = MergePlan::new(Some(s.base.clone()), vec![entry(&s.a, &[]), entry(&s.b, &[])]);
    expect_err(&plan, "agentmerge", &out, &["add_to: true"]);
    let mut plan = MergePlan::new(Some(s.base.clone()), vec![entry(&s.a, &[])]);
    plan.params.insert("t".into(), Setting::num(1.5));
    expect_err(&plan, "slerp", &out, &["`t`"]);

    // A corrupt input file.
    let corrupt = s.root.join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    std::fs::write(corrupt.join("model.safetensors"), [1u8, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    let plan = MergePlan::new(Some(s.base.clone()), vec![entry(&corrupt, &w1)]);
    expect_err(&plan, "ties", &out, &["corrupt", "model.safetensors"]);

    // Cancelled half way.
    let plan = MergePlan::new(Some(s.base.clone()), vec![entry(&s.a, &w1)]);
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let e =
        run_merge(&plan, builtin("ties").unwrap().as_ref(), &out, &|_, _| {}, &|| calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= 2).err().unwrap();
    assert!(matches!(e, MergeError::Cancelled(_)), "{e}");
    assert!(!out.exists());

    // An existing output is not replaced.
    std::fs::create_dir(&out).unwrap();
    expect_err_existing(&plan, &out);
}

fn expect_err_existing(plan: &MergePlan, out: &Path) {
    let e = merge(plan, "ties", out).err().unwrap().to_string();
    assert!(e.contains("already exists"), "{e}");
    assert!(out.exists());
}

#[test]
fn unknown_parameters_are_reported() {
    let s = setup();
    let mut plan = MergePlan::new(Some(s.base.clone()), vec![entry(&s.a, &[("weight", num(1.0)), ("densty", num(0.5))])]);
    plan.params.insert("lamda".into(), Setting::num(0.5));
    let report = merge(&plan, "ties", &s.root.join("out")).unwrap();
    assert!(report.warnings.iter().any(|w| w.contains("`densty`")), "{:?}", report.warnings);
    assert!(report.warnings.iter().any(|w| w.contains("`lamda`")), "{:?}", report.warnings);
    // A global parameter written under one model is not read there.
    let plan = MergePlan::new(Some(s.base.clone()), vec![entry(&s.a, &[("weight", num(1.0)), ("lambda", num(0.5))])]);
    let report = merge(&plan, "task_arithmetic", &s.root.join("out2")).unwrap();
    assert!(report.warnings.iter().any(|w| w.contains("`lambda`") && w.contains("global")), "{:?}", report.warnings);
    // The base's tokenizer without a base model fails before any tensor is merged.
    let mut plan = MergePlan::new(None, vec![entry(&s.a, &[("weight", num(1.0))])]);
    plan.tokenizer_source = Some(agentmerge_merge::TokenizerSource::Base);
    let e = merge(&plan, "linear", &s.root.join("out3")).unwrap_err().to_string();
    assert!(e.contains("tokenizer_source: base"), "{e}");
}

/// TIES reads BF16 and F32 inputs as stored and decodes them as it computes; F16 inputs
/// take the decoded path. On values all three dtypes hold exactly, the three give the same
/// bits, for a tensor sampled whole and one big enough for a counting pass. A NaN found on
/// the stored path is still reported by model and element, even where the mask drops it.
#[test]
fn ties_on_stored_inputs_equals_the_decoded_path() {
    let tmp = tempfile::tempdir().unwrap();
    // Multiples of 2⁻¹⁰ below 1/8 in magnitude: exact in f16, bf16 and f32.
    let exact = |seed: u64| -> Tensors {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        [("big", vec![1100, 640]), ("small", vec![96, 40])]
            .into_iter()
            .map(|(n, s)| {
                let len = s.iter().product::<u64>() as usize;
                (n.to_string(), s, (0..len).map(|_| rng.random_range(-127i32..=127) as f32 / 1024.0).collect())
            })
            .collect()
    };
    // And models within 3·2⁻¹⁰ of the base: task vectors of seven values, as bf16 fine-tunes
    // have few, so the sample's bands are single keys and TIES counts and writes in one pass
    // (then merges again the chunks where its guess kept other copies of a key).
    let few = |base: &Tensors, seed: u64| -> Tensors {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        base.iter().map(|(n, s, v)| (n.clone(), s.clone(), v.iter().map(|x| x + rng.random_range(-3i32..=3) as f32 / 1024.0).collect())).collect()
    };
    let spread: Vec<Tensors> = (0..4).map(|i| exact(40 + i)).collect();
    let close: Vec<Tensors> = std::iter::once(spread[0].clone()).chain((1..4).map(|i| few(&spread[0], 50 + i))).collect();
    for inputs in [&spread, &close] {
        let run = |dtype: DType, method: &str| -> Vec<Vec<f32>> {
            let dir = tmp.path().join(format!("{dtype}"));
            let paths: Vec<PathBuf> = inputs.iter().enumerate().map(|(i, t)| write(&dir.join(format!("m{i}")), t, dtype, "X")).collect();
            let models = paths[1..].iter().enumerate().map(|(i, p)| entry(p, &[("weight", num(0.3 + 0.2 * i as f64)), ("density", num(0.4))])).collect();
            let mut plan = MergePlan::new(Some(paths[0].clone()), models);
            plan.out_dtype = Some(DType::F32);
            let out = dir.join(format!("out-{method}"));
            merge(&plan, method, &out).unwrap();
            read_all(&out)
        };
        for method in ["ties", "breadcrumbs_ties"] {
            let decoded = run(DType::F16, method);
            for dtype in [DType::BF16, DType::F32] {
                let stored = run(dtype, method);
                for (t, (a, b)) in decoded.iter().zip(&stored).enumerate() {
                    let differ = a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
                    assert_eq!(differ, 0, "{method}, {dtype}, tensor {t}: {differ} elements differ");
                }
            }
            let _ = std::fs::remove_dir_all(tmp.path().join("F16"));
            let _ = std::fs::remove_dir_all(tmp.path().join("BF16"));
            let _ = std::fs::remove_dir_all(tmp.path().join("F32"));
        }
    }

    for inputs in [&spread, &close] {
        let mut nan = inputs[2].clone();
        nan[0].2[700_001] = f32::NAN;
        let dir = tmp.path().join("nan");
        let paths: Vec<PathBuf> =
            [&inputs[0], &inputs[1], &nan].iter().enumerate().map(|(i, t)| write(&dir.join(format!("m{i}")), t, DType::BF16, "X")).collect();
        let plan = MergePlan::new(Some(paths[0].clone()), paths[1..].iter().map(|p| entry(p, &[("weight", num(1.0)), ("density", num(0.4))])).collect());
        // TIES keeps the NaN (the largest magnitude); breadcrumbs drops it with the other
        // outliers, so the output alone would not show it.
        for method in ["ties", "breadcrumbs"] {
            expect_err(&plan, method, &dir.join("out"), &["big", "element 700001 is NaN", "m2"]);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn extra_files_are_copied_unchanged_and_may_not_replace_the_merge_s_own() {
    let s = setup();
    let state = s.root.join("trainer_state.json");
    std::fs::write(&state, br#"{"global_step": 200, "max_steps": 400}"#).unwrap();
    let mut plan = MergePlan::new(Some(s.base.clone()), vec![entry(&s.a, &[("weight", num(1.0))])]);
    plan.extra_files.push(state.clone());
    let out = merge(&plan, "task_arithmetic", &s.root.join("out")).unwrap().out_dir;
    assert_eq!(std::fs::read(out.join("trainer_state.json")).unwrap(), std::fs::read(&state).unwrap());
    // The extra file changes nothing else: the same merge without it has the same weights.
    plan.extra_files.clear();
    let plain = merge(&plan, "task_arithmetic", &s.root.join("plain")).unwrap().out_dir;
    assert_eq!(std::fs::read(out.join("model.safetensors")).unwrap(), std::fs::read(plain.join("model.safetensors")).unwrap());

    // A file the merge writes itself, or one that is missing, is refused before anything runs.
    let cfg = s.root.join("cfg");
    std::fs::create_dir(&cfg).unwrap();
    std::fs::write(cfg.join("config.json"), "{}").unwrap();
    for (f, want) in [(cfg.join("config.json"), "written by the merge itself"), (s.root.join("absent.json"), "does not exist")] {
        let mut plan = MergePlan::new(Some(s.base.clone()), vec![entry(&s.a, &[("weight", num(1.0))])]);
        plan.extra_files.push(f);
        expect_err(&plan, "task_arithmetic", &s.root.join("bad"), &[want]);
    }
}
