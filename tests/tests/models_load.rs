//! `models/load` through the real host: a transformers-made checkpoint (the model crate's
//! `tied` fixture) comes into the store with its model files only; a second run is cached;
//! touching a file re-runs the node but not, when the bytes are the same, its descendants;
//! a new tokenizer file re-runs both; a directory the model cannot read is refused before
//! anything runs, naming the file and the field.

mod common;

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use common::*;

const PIPELINE: &str = "nodes:
  - id: load
    uses: models/load
    with: {path: mine}
  - id: summary
    uses: models/summarize
    inputs: {model: load.model}
";

fn node_status(dir: &Path) -> std::collections::BTreeMap<String, String> {
    statuses(&latest_report(&dir.join(".agentmerge")))
}

/// Moves a file's modification time forward, as an edit would.
fn touch(p: &Path) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(60)).unwrap();
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn a_hugging_face_directory_is_loaded_and_cached_by_its_files() {
    let t = tempfile::tempdir().unwrap();
    let mine = t.path().join("mine");
    copy_dir(&workspace().join("sdk/model/tests/fixtures/tied"), &mine);
    let p = write(t.path(), "load.yaml", PIPELINE);
    let p = p.to_str().unwrap();
    ok(t.path(), &["run", p]);
    let report = latest_report(&t.path().join(".agentmerge"));
    let model = model_of(&report, "load");
    // The model's files only: not the fixture's test data (batch.json, expected.safetensors, ...).
    assert_eq!(file_names(&model), ["config.json", "generation_config.json", "model.safetensors"]);
    for f in ["config.json", "model.safetensors"] {
        assert_eq!(std::fs::read(model.join(f)).unwrap(), std::fs::read(mine.join(f)).unwrap(), "{f} differs");
    }
    let summary = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "summary").unwrap();
    assert_eq!(summary["outputs"]["metrics"]["num_params"], 24 * 89 + 2 * (4 * 24 * 24 + 3 * 24 * 40 + 2 * 24) + 24, "{summary}");

    // Nothing changed: cached.
    ok(t.path(), &["run", p]);
    assert!(node_status(t.path()).values().all(|s| s == "cached"), "{:?}", node_status(t.path()));

    // A file touched (same bytes): the load runs again, its output is the same, so the
    // summary stays cached.
    touch(&mine.join("model.safetensors"));
    ok(t.path(), &["run", p]);
    let s = node_status(t.path());
    assert_eq!((s["load"].as_str(), s["summary"].as_str()), ("ran", "cached"), "{s:?}");

    // A new tokenizer file: copied, and everything downstream runs again.
    std::fs::write(mine.join("tokenizer_config.json"), r#"{"bos_token": "<s>"}"#).unwrap();
    ok(t.path(), &["run", p]);
    let s = node_status(t.path());
    assert_eq!((s["load"].as_str(), s["summary"].as_str()), ("ran", "ran"), "{s:?}");
    let model = model_of(&latest_report(&t.path().join(".agentmerge")), "load");
    assert!(model.join("tokenizer_config.json").exists());
}

#[test]
fn a_directory_the_model_cannot_read_is_refused_at_check_time() {
    let t = tempfile::tempdir().unwrap();
    let fixture = workspace().join("sdk/model/tests/fixtures/tied");
    copy_dir(&fixture, &t.path().join("gelu"));
    let cfg = t.path().join("gelu/config.json");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("\"silu\"", "\"gelu\"")).unwrap();
    copy_dir(&fixture, &t.path().join("bin"));
    std::fs::rename(t.path().join("bin/model.safetensors"), t.path().join("bin/pytorch_model.bin")).unwrap();
    let p = write(
        t.path(),
        "bad.yaml",
        "nodes:
  - id: gelu
    uses: models/load
    with: {path: gelu}
  - id: bin
    uses: models/load
    with: {path: bin}
  - id: nowhere
    uses: models/load
    with: {path: nowhere}
",
    );
    let o = agentmerge(t.path(), &["check", p.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("gelu/config.json") && err.contains("`hidden_act`") && err.contains("silu"), "{err}");
    assert!(err.contains("no model.safetensors") && err.contains("converted to safetensors"), "{err}");
    assert!(err.contains("nowhere does not exist") && err.contains("relative to the current directory"), "{err}");
    assert!(err.contains("bad.yaml:4:"), "{err}");
}
