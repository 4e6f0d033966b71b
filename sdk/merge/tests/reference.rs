//! Every method against values computed independently with numpy
//! (tools/merge_reference/make_fixtures.py), from f32 and bf16 checkpoints, through the
//! mergekit YAML parser and the full engine; and recipes with gradients and filters against
//! mergekit 0.1.5's own output (tools/merge_reference/mergekit_fixtures.py).

use std::path::{Path, PathBuf};

use agentmerge_checkpoint::{Checkpoint, DType};
use agentmerge_merge::{builtin, parse_mergekit_yaml, run_merge};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn run_case(case: &str, dtype: &str) {
    let recipe_path = fixtures().join(format!("cases/{case}.yml"));
    let text = std::fs::read_to_string(&recipe_path).unwrap();
    let (mut plan, method) = parse_mergekit_yaml(&text, &recipe_path.display().to_string()).unwrap();
    plan.resolve_relative_to(&fixtures().join("models").join(dtype));
    let strategy = builtin(&method).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let report = run_merge(&plan, strategy.as_ref(), &out, &|_, _| {}, &|| false).unwrap_or_else(|e| panic!("{case}/{dtype}: {e}"));
    let unexpected: Vec<_> = report.warnings.iter().filter(|w| !w.starts_with("no tokenizer")).collect();
    assert!(unexpected.is_empty(), "{case}: {unexpected:?}");
    let got = Checkpoint::open(&out).unwrap();
    let want = Checkpoint::open(&fixtures().join(format!("expected/{dtype}/{case}.safetensors"))).unwrap();
    assert_eq!(got.names().collect::<Vec<_>>(), want.names().collect::<Vec<_>>());
    for name in want.names() {
        let g = got.view(name).unwrap();
        let out_dtype = plan.out_dtype.or(plan.dtype).unwrap_or(if dtype == "bf16" { DType::BF16 } else { DType::F32 });
        assert_eq!(g.dtype, out_dtype, "{case}/{dtype}: {name}");
        let (g, w) = (g.to_f32_vec(), want.view(name).unwrap().to_f32_vec());
        // f32: rounding differences only; bf16: one unit in the last place at most.
        let rel = if out_dtype == DType::BF16 { 1.0 / 128.0 } else { 2e-5 };
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            assert!((a - b).abs() <= rel * b.abs().max(1e-2), "{case}/{dtype}: {name}[{i}]: got {a}, numpy says {b}");
        }
    }
    // The recipe, config and tokenizer travel with the output.
    assert_eq!(std::fs::read_to_string(out.join("mergekit_config.yml")).unwrap(), text);
    assert_eq!(got.metadata().get("merge_method").map(String::as_str), Some(method.as_str()));
    let torch = got.config().unwrap()["torch_dtype"].as_str().unwrap().to_string();
    if plan.out_dtype == Some(DType::BF16) {
        assert_eq!(torch, "bfloat16");
    }
    // Tokenizer files come from the base model (only base has them in the fixtures).
    let tokenizer_from_base = plan.base.is_some();
    assert_eq!(out.join("tokenizer.json").exists(), tokenizer_from_base, "{case}");
}

macro_rules! cases {
    ($($case:ident),*) => {$(
        #[test]
        fn $case() {
            run_case(stringify!($case), "f32");
            run_case(stringify!($case), "bf16");
        }
    )*};
}

cases!(
    linear,
    linear_unnormalized_bf16_out,
    task_arithmetic,
    ties,
    ties_count_rescaled,
    breadcrumbs,
    breadcrumbs_ties,
    dare_linear_density_one,
    slerp,
    slerp_colinear,
    nuslerp,
    nuslerp_base_row_wise,
    nuslerp_rows,
    model_stock,
    model_stock_filter_wise,
    passthrough,
    agentmerge
);

/// A recipe merged by mergekit 0.1.5 (`fixtures/mergekit-0.1.5/`), merged again by our engine:
/// the same tensors, those before, inside and after the layers alike.
fn against_mergekit(case: &str) {
    let dir = fixtures().join("mergekit-0.1.5");
    let recipe_path = dir.join(format!("{case}.yml"));
    let text = std::fs::read_to_string(&recipe_path).unwrap();
    let (mut plan, method) = parse_mergekit_yaml(&text, &recipe_path.display().to_string()).unwrap();
    plan.resolve_relative_to(&dir.join("models"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    run_merge(&plan, builtin(&method).unwrap().as_ref(), &out, &|_, _| {}, &|| false).unwrap_or_else(|e| panic!("{case}: {e}"));
    let got = Checkpoint::open(&out).unwrap();
    let want = Checkpoint::open(&dir.join(format!("{case}.safetensors"))).unwrap();
    let mut names: Vec<_> = want.names().collect();
    names.sort();
    let mut ours: Vec<_> = got.names().collect();
    ours.sort();
    assert_eq!(ours, names, "{case}: tensor names");
    for name in names {
        let (g, w) = (got.view(name).unwrap().to_f32_vec(), want.view(name).unwrap().to_f32_vec());
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{case}: {name}[{i}]: got {a}, mergekit 0.1.5 says {b}");
        }
    }
}

#[test]
fn gradients_resolve_as_mergekit_0_1_5_resolves_them() {
    against_mergekit("linear_gradients");
    against_mergekit("task_arithmetic_gradients");
}
