//! Shared helpers for the end-to-end tests: where the built host and plugins are, and how to
//! run the real `agentmerge` binary.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The build directory holding `agentmerge` and the plugin libraries (target/debug or
/// target/release, whichever this test binary was built into).
pub fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf() // .../target/debug/deps/x → .../target/debug
}

/// The `agentmerge` binary built from this workspace.
pub fn agentmerge_path() -> PathBuf {
    let p = build_dir().join(format!("agentmerge{}", std::env::consts::EXE_SUFFIX));
    assert!(p.exists(), "{} is missing: run `cargo build --workspace` before the tests (the README's test command does)", p.display());
    p
}

pub fn agentmerge(dir: &Path, args: &[&str]) -> Output {
    Command::new(agentmerge_path())
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("AGENTMERGE_PLUGIN_PATH")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and asserts success, returning stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let o = agentmerge(dir, args);
    assert!(o.status.success(), "agentmerge {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}", o.status, stdout(&o), stderr(&o));
    stdout(&o)
}

/// The latest run report of the store in `dir/.agentmerge`.
pub fn latest_report(store: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(store.join("runs/latest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// node id → status from a run report.
pub fn statuses(report: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    report["nodes"].as_array().unwrap().iter().map(|n| (n["id"].as_str().unwrap().to_string(), n["status"].as_str().unwrap().to_string())).collect()
}

/// Writes `text` as `name` in `dir` and returns its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

/// Builds a plugin crate outside the workspace's build, the way a user builds their own plugin:
/// `crate_dir` must hold a Cargo.toml and src/. The build shares `target/external` across
/// tests so dependencies compile once. Returns the built library's path.
pub fn build_external_plugin(crate_dir: &Path, lib_name: &str) -> PathBuf {
    let target = workspace().join("target/external");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--offline", "--quiet", "--manifest-path"])
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        // A test build: debug info and incremental caches would only cost disk (~1 GB).
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .env("CARGO_INCREMENTAL", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "building {} failed:\n{}", crate_dir.display(), String::from_utf8_lossy(&out.stderr));
    let file = format!("{}{lib_name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let built = target.join("debug").join(&file);
    assert!(built.exists(), "{} was not built", built.display());
    built
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// The `model` output of node `id` in a run report.
pub fn model_of(report: &serde_json::Value, id: &str) -> PathBuf {
    let n = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}"));
    PathBuf::from(n["outputs"]["model"].as_str().unwrap())
}

/// Tensor `name` of the checkpoint in `dir`, as f32.
pub fn tensor(dir: &Path, name: &str) -> Vec<f32> {
    agentmerge_checkpoint::Checkpoint::open(dir).unwrap().view(name).unwrap().to_f32_vec()
}

/// Checks a `report/paper` output directory: report.md holds every `needle`, table1.csv has at
/// least six rows whose rates are finite numbers in [0, 1], and both figures are PNGs at least
/// 1,000 pixels wide with something drawn on them.
pub fn check_paper_report(dir: &Path, needles: &[&str]) {
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for needle in needles {
        assert!(md.contains(needle), "`{needle}` missing from report.md:\n{md}");
    }
    let csv = std::fs::read_to_string(dir.join("table1.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rate = header.iter().position(|h| *h == "rate").expect("a rate column");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.len() >= 6, "{csv}");
    for r in &rows {
        let v: f64 = r[rate].parse().unwrap_or_else(|_| panic!("rate `{}` is not a number: {csv}", r[rate]));
        assert!(v.is_finite() && (0.0..=1.0).contains(&v), "{csv}");
    }
    for png in ["figure2.png", "figure3.png"] {
        let bytes = std::fs::read(dir.join(png)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        assert!(width >= 1000 && bytes.len() > 20_000, "{png}: {width} px wide, {} bytes", bytes.len());
    }
}

/// The first nodes of many test pipelines: three perfect-expert episodes of
/// `impersonate_user` → a 400-token tokenizer → SFT data (`data.dataset`) at 1024 tokens with
/// the built-in pipelines' prompt. Indented as a `nodes:` list; add nodes after it.
pub const TRACES_TO_SFT_NODES: &str = r#"  - id: collect
    uses: miniarena/collect
    with:
      templates: [miniarena.menu.impersonate_user]
      seeds: {start: 0, count: 3}
      experts: [{preset: perfect, think: false}]
  - id: tokenizer
    uses: sft/tokenizer
    with: {vocab_size: 400}
    inputs: {traces: collect.traces}
  - id: data
    uses: sft/build
    with: {max_len: 1024, prompt: {system: "", max_history: 2, use_thinking: false}}
    inputs: {traces: collect.traces, tokenizer: tokenizer.tokenizer}
"#;
