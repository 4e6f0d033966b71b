//! Running pipelines with the real host and the real `debug` plugin: failures stay in their
//! branch, reruns come from the cache, changes re-run exactly what depends on them, a killed
//! run leaves nothing a later run trusts (except a node's work directory, kept for resuming),
//! sweeps expand with labels, a variable in `uses:` swaps the plugin, and presets and patch
//! files change sizes and nodes without editing the pipeline.

mod common;

use std::{thread::sleep, time::Duration};

use common::*;

const BRANCHES: &str = "
nodes:
  - id: boom
    uses: debug/panic
    with: {message: kaboom}
  - id: after_boom
    uses: debug/sum
    inputs: {values: [boom.value]}
  - id: a
    uses: debug/constant
    with: {value: 2}
  - id: b
    uses: debug/sum
    with: {scale: 3}
    inputs: {values: [a.value]}
  - id: c
    uses: debug/sum
    inputs: {values: [b.sum, a.value]}
  - id: d
    uses: debug/constant
    with: {value: 5}
";

#[test]
fn a_panicking_node_fails_cleanly_while_other_branches_complete() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", BRANCHES);
    let out = agentmerge(dir.path(), &["run", "p.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("node `boom` (debug/panic) failed: node panicked at plugins/debug/src/lib.rs"), "{err}");
    assert!(err.contains("kaboom"), "{err}");
    assert!(err.contains("node `after_boom` was not run: upstream `boom` failed"), "{err}");
    let report = latest_report(&dir.path().join(".agentmerge"));
    let s = statuses(&report);
    assert_eq!(s["boom"], "failed");
    assert_eq!(s["after_boom"], "skipped");
    for n in ["a", "b", "c", "d"] {
        assert_eq!(s[n], "ran", "{n}");
    }
    let c = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "c").unwrap();
    assert_eq!(c["outputs"]["sum"], 8.0); // 3*2 + 2
    assert!(stdout(&out).contains("FAILED"));
}

const CHAIN: &str = "
vars: {start: 1}
nodes:
  - id: a
    uses: debug/constant
    with: {value: \"${start}\"}
  - id: b
    uses: debug/sum
    inputs: {values: [a.value]}
  - id: c
    uses: debug/sum
    with: {scale: 2}
    inputs: {values: [b.sum]}
  - id: other
    uses: debug/constant
    with: {value: 9}
  - id: side
    uses: debug/sum
    inputs: {values: [other.value]}
";

#[test]
fn reruns_are_cached_and_changes_rerun_exactly_what_depends_on_them() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", CHAIN);
    let store = dir.path().join(".agentmerge");
    ok(dir.path(), &["run", "p.yaml"]);
    assert!(statuses(&latest_report(&store)).values().all(|s| s == "ran"));

    // Unchanged: everything cached.
    ok(dir.path(), &["run", "p.yaml"]);
    assert!(statuses(&latest_report(&store)).values().all(|s| s == "cached"), "{:?}", statuses(&latest_report(&store)));

    // A config change in the middle re-runs that node and what is downstream of it.
    ok(dir.path(), &["run", "p.yaml", "--set", "b.scale=4"]);
    let s = statuses(&latest_report(&store));
    assert_eq!((s["a"].as_str(), s["b"].as_str(), s["c"].as_str()), ("cached", "ran", "ran"));
    assert_eq!((s["other"].as_str(), s["side"].as_str()), ("cached", "cached"));

    // An input change (a variable feeding the first node) re-runs the chain, not the side branch.
    ok(dir.path(), &["run", "p.yaml", "--set", "start=3"]);
    let s = statuses(&latest_report(&store));
    assert_eq!((s["a"].as_str(), s["b"].as_str(), s["c"].as_str()), ("ran", "ran", "ran"));
    assert_eq!((s["other"].as_str(), s["side"].as_str()), ("cached", "cached"));

    // --force re-runs one node; its output is identical, so downstream stays cached.
    ok(dir.path(), &["run", "p.yaml", "--force", "other"]);
    let s = statuses(&latest_report(&store));
    assert_eq!((s["other"].as_str(), s["side"].as_str(), s["a"].as_str()), ("ran", "cached", "cached"));

    // --no-cache runs everything.
    ok(dir.path(), &["run", "p.yaml", "--no-cache"]);
    assert!(statuses(&latest_report(&store)).values().all(|s| s == "ran"));
}

/// Waits until a `debug/slow` node is visibly mid-way: its progress file exists in tmp/.
fn wait_until_slow_node_is_running(store: &std::path::Path) {
    for _ in 0..1000 {
        let tmp = std::fs::read_dir(store.join("tmp")).ok().into_iter().flatten().flatten();
        if tmp.into_iter().any(|e| e.path().join("progress.txt").exists()) {
            return;
        }
        sleep(Duration::from_millis(10));
    }
    panic!("the slow node never started");
}

#[test]
fn a_run_killed_mid_node_leaves_nothing_trusted() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", "nodes:\n  - id: slow\n    uses: debug/slow\n    with: {millis: 1500, value: 7}\n  - id: after\n    uses: debug/sum\n    inputs: {values: [slow.value]}\n");
    let store = dir.path().join(".agentmerge");
    let mut child = std::process::Command::new(agentmerge_path())
        .args(["run", "p.yaml"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until_slow_node_is_running(&store);
    let tmp = store.join("tmp");
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let finished: Vec<_> = std::fs::read_dir(store.join("nodes")).unwrap().flatten().collect();
    assert!(finished.is_empty(), "a killed node left a store entry: {:?}", finished.iter().map(|e| e.path()).collect::<Vec<_>>());

    // The next run does the work again (nothing half-written is trusted) and cleans tmp/.
    ok(dir.path(), &["run", "p.yaml"]);
    let s = statuses(&latest_report(&store));
    assert_eq!((s["slow"].as_str(), s["after"].as_str()), ("ran", "ran"));
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "stale temporaries were not removed");
}

#[test]
fn sweeps_expand_to_the_right_nodes_and_labels() {
    let dir = workspace().join("tests/pipelines/valid");
    let store = tempfile::tempdir().unwrap();
    let store_arg = store.path().to_str().unwrap();
    ok(&dir, &["run", "diamond_sweep.yaml", "--store", store_arg]);
    let report = latest_report(store.path());
    let ids: Vec<&str> = report["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["a[value=1]", "a[value=2]", "left[value=1]", "left[value=2]", "right[value=1]", "right[value=2]", "join[value=1]", "join[value=2]", "gather"]
    );
    let out = |id: &str| report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap()["outputs"]["sum"].as_f64().unwrap();
    // join = left + right = v + 10 v, matched by label (not crossed); gather adds both variants.
    assert_eq!(out("join[value=1]"), 11.0);
    assert_eq!(out("join[value=2]"), 22.0);
    assert_eq!(out("gather"), 33.0);

    ok(&dir, &["run", "grid.yaml", "--store", store_arg]);
    let report = latest_report(store.path());
    let ids: Vec<&str> = report["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 9);
    assert!(ids.contains(&"s[value=3,scale=2]"), "{ids:?}");
    let graph = ok(&dir, &["graph", "grid.yaml", "--dot"]);
    assert_eq!(graph.matches("->").count(), 6);
}

#[test]
fn plugin_logs_reach_the_host_with_the_node_id() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", "nodes:\n  - id: seven\n    uses: debug/constant\n    with: {value: 7}\n");
    let out = std::process::Command::new(agentmerge_path()).args(["run", "p.yaml"]).current_dir(dir.path()).env("RUST_LOG", "info").output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let line = err.lines().find(|l| l.contains("emitting constant")).unwrap_or_else(|| panic!("plugin log missing:\n{err}"));
    assert!(line.contains("node=\"seven\"") && line.contains("value=7"), "{line}");
    // -q silences it.
    let quiet = agentmerge(dir.path(), &["run", "p.yaml", "-q", "--no-cache"]);
    assert!(!stderr(&quiet).contains("emitting constant"));
}

#[test]
fn ctrl_c_cancels_running_nodes_and_stores_nothing_for_them() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", "nodes:\n  - id: slow\n    uses: debug/slow\n    with: {millis: 20000}\n");
    let store = dir.path().join(".agentmerge");
    let child = std::process::Command::new(agentmerge_path())
        .args(["run", "p.yaml"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_slow_node_is_running(&store);
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("node `slow` (debug/slow) failed: cancelled"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(store.join("nodes")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0, "the cancelled node's temporary directory was not removed");
}

/// The entries of `STORE/work/`.
fn work_entries(store: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(store.join("work")).unwrap().map(|e| e.unwrap().path()).collect()
}

#[test]
fn a_work_dir_survives_a_failed_run_is_reused_and_goes_after_success() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", "nodes:\n  - id: f\n    uses: debug/flaky\n    with: {failures: 1}\n");
    let store = dir.path().join(".agentmerge");

    // First run: the node finds its work directory (else it fails saying so), counts one
    // attempt there and fails; the directory stays, the output directory does not.
    let out = agentmerge(dir.path(), &["run", "p.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("attempt 1 fails on purpose"), "{}", stderr(&out));
    let report = latest_report(&store);
    let key = report["nodes"][0]["key"].as_str().unwrap().to_string();
    let work = store.join("work").join(&key);
    assert_eq!(work_entries(&store), std::slice::from_ref(&work));
    assert_eq!(std::fs::read_to_string(work.join("attempts")).unwrap(), "1\n");
    assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(store.join("nodes")).unwrap().count(), 0);

    // Second run, same key: it finds the first attempt's state, succeeds, and once its outputs
    // are committed the work directory is gone.
    ok(dir.path(), &["run", "p.yaml"]);
    let report = latest_report(&store);
    assert_eq!(report["nodes"][0]["status"], "ran");
    assert_eq!(report["nodes"][0]["key"], key.as_str());
    assert_eq!(report["nodes"][0]["outputs"]["attempts"], 2.0);
    assert!(!work.exists(), "the work directory outlived the commit");
    assert!(work_entries(&store).is_empty());

    // Cached now: nothing runs, no work directory appears.
    ok(dir.path(), &["run", "p.yaml"]);
    assert_eq!(statuses(&latest_report(&store))["f"], "cached");
    assert!(work_entries(&store).is_empty());

    // The directory is private to the key: another config starts from nothing.
    let out = agentmerge(dir.path(), &["run", "p.yaml", "--set", "f.failures=2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("attempt 1 fails on purpose"), "{}", stderr(&out));
    let other = store.join("work").join(latest_report(&store)["nodes"][0]["key"].as_str().unwrap());
    assert_ne!(other, work);
    assert_eq!(work_entries(&store), [other]);
}

#[test]
fn a_variable_in_uses_swaps_the_plugin_and_shares_the_cache() {
    let dir = workspace().join("tests/pipelines/valid");
    let graph = ok(&dir, &["graph", "uses_variable.yaml", "--dot"]);
    assert!(graph.contains("debug/constant") && graph.contains("debug/sum") && !graph.contains("${"), "{graph}");

    // --set swaps the plugin: an unknown one is reported at `uses:` under its resolved name.
    let out = agentmerge(&dir, &["check", "uses_variable.yaml", "--set", "backend=debgu"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("uses_variable.yaml:7:11: error: unknown plugin `debgu` (in `uses: debgu/constant`)"), "{err}");
    assert!(err.contains("uses_variable.yaml:10:11: error: unknown plugin `debgu` (in `uses: debgu/sum`)"), "{err}");

    // The cache key holds the resolved plugin/kind: the same pipeline written out literally
    // finds every node cached.
    let store = tempfile::tempdir().unwrap();
    let store_arg = store.path().to_str().unwrap();
    ok(&dir, &["run", "uses_variable.yaml", "--store", store_arg]);
    let report = latest_report(store.path());
    let uses: Vec<&str> = report["nodes"].as_array().unwrap().iter().map(|n| n["uses"].as_str().unwrap()).collect();
    assert_eq!(uses, ["debug/constant", "debug/sum"]);
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        "literal.yaml",
        "nodes:\n  - id: c\n    uses: debug/constant\n    with: {value: 2}\n  - id: s\n    uses: debug/sum\n    inputs: {values: [c.value]}\n",
    );
    ok(t.path(), &["run", "literal.yaml", "--store", store_arg]);
    assert!(statuses(&latest_report(store.path())).values().all(|s| s == "cached"), "{:?}", statuses(&latest_report(store.path())));
}

const PATCHABLE: &str = "
vars: {start: 1, scale: default}
presets:
  scale: {smoke: {start: 100}, default: {}}
nodes:
  - id: a
    uses: debug/constant
    with: {value: \"${start}\"}
  - id: b
    uses: debug/constant
    with: {value: 2}
  - id: s
    uses: debug/sum
    inputs: {values: [a.value, b.value]}
";

/// The output `port` of node `id` in a run report.
fn output(report: &serde_json::Value, id: &str, port: &str) -> serde_json::Value {
    report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}"))["outputs"][port].clone()
}

#[test]
fn presets_and_patches_change_sizes_and_nodes_and_the_rest_stays_cached() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", PATCHABLE);
    let store = dir.path().join(".agentmerge");
    ok(dir.path(), &["run", "p.yaml"]);
    assert_eq!(output(&latest_report(&store), "s", "sum"), 3.0);

    // A patch replaces `b` (in place) and adds `t` downstream of a pipeline node; `a` stays cached.
    write(
        dir.path(),
        "patch.yaml",
        "nodes:\n  - id: b\n    uses: debug/constant\n    with: {value: 5}\n  - id: t\n    uses: debug/sum\n    with: {scale: 2}\n    inputs: {values: [s.sum]}\n",
    );
    ok(dir.path(), &["run", "p.yaml", "--patch", "patch.yaml"]);
    let report = latest_report(&store);
    let s = statuses(&report);
    assert_eq!((s["a"].as_str(), s["b"].as_str(), s["s"].as_str(), s["t"].as_str()), ("cached", "ran", "ran", "ran"));
    assert_eq!(output(&report, "s", "sum"), 6.0);
    assert_eq!(output(&report, "t", "sum"), 12.0);

    // A preset sets `start`; --set wins over it, and over a patch's `vars:`.
    ok(dir.path(), &["run", "p.yaml", "--set", "scale=smoke"]);
    assert_eq!(output(&latest_report(&store), "s", "sum"), 102.0);
    write(dir.path(), "vars.yaml", "vars: {start: 40}\n");
    ok(dir.path(), &["run", "p.yaml", "--set", "scale=smoke", "--patch", "vars.yaml"]);
    assert_eq!(output(&latest_report(&store), "s", "sum"), 42.0);
    ok(dir.path(), &["run", "p.yaml", "--patch", "vars.yaml", "--set", "start=7", "--set", "scale=smoke"]);
    assert_eq!(output(&latest_report(&store), "s", "sum"), 9.0);
    let out = agentmerge(dir.path(), &["check", "p.yaml", "--set", "scale=huge"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("p.yaml:4:3: error: scale=huge has no preset; presets: smoke, default"), "{}", stderr(&out));

    // A node left feeding nothing still runs, with a warning; removing a consumed node is an
    // error located in the patch file.
    write(dir.path(), "leaf.yaml", "nodes:\n  - id: s\n    uses: debug/sum\n    inputs: {values: [a.value]}\n");
    let out = agentmerge(dir.path(), &["run", "p.yaml", "--patch", "leaf.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("leaf.yaml: with `s` replaced, node `b` feeds no node; it still runs"), "{}", stderr(&out));
    assert_eq!(statuses(&latest_report(&store))["b"], "cached");
    write(dir.path(), "bad.yaml", "remove: [a]\n");
    let out = agentmerge(dir.path(), &["graph", "p.yaml", "--patch", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("bad.yaml:1:10: error: cannot remove `a`: `s` (input `values`) still consumes it"), "{}", stderr(&out));

    // A pipeline that `extends:` another is a patch over it, named by its own `name:`; its
    // variables lose to --set, and its errors point into it.
    write(dir.path(), "small.yaml", "extends: p.yaml\nname: small\nvars: {scale: smoke}\n");
    ok(dir.path(), &["run", "small.yaml"]);
    let report = latest_report(&store);
    assert_eq!((report["pipeline"].as_str(), output(&report, "s", "sum")), (Some("small"), serde_json::json!(102.0)), "{report}");
    ok(dir.path(), &["run", "small.yaml", "--set", "start=3"]);
    assert_eq!(output(&latest_report(&store), "s", "sum"), 5.0);
    write(dir.path(), "typo.yaml", "extends: p.yaml\nvars: {startt: 3}\n");
    let out = agentmerge(dir.path(), &["check", "typo.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("typo.yaml:2:8: error:"), "{}", stderr(&out));
    let out = agentmerge(dir.path(), &["check", "p.yaml", "--patch", "small.yaml"]);
    assert!(stderr(&out).contains("`extends:` belongs in a pipeline file given to `run`"), "{}", stderr(&out));
}
