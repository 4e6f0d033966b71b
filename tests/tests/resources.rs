//! What nodes need, honoured by a local run: GPU nodes never share a device nor outnumber the
//! GPUs seen, each node runs in a rayon pool of the threads it was given, light nodes run
//! beside everything, and a bad `resources:` block is an error at its line.

mod common;

use common::*;
use serde_json::Value as Json;

fn probes(report: &Json) -> Vec<(String, Json)> {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["uses"] == "debug/probe")
        .map(|n| (n["id"].as_str().unwrap().to_string(), n["outputs"]["report"].clone()))
        .collect()
}

#[test]
fn gpu_nodes_get_their_own_device_and_threads_are_shared_out() {
    let t = tempfile::tempdir().unwrap();
    let mut yaml = String::from("name: gpus\nnodes:\n");
    for i in 0..6 {
        yaml.push_str(&format!("  - id: g{i}\n    uses: debug/probe\n    with: {{millis: 300, label: g{i}}}\n    resources: {{gpus: 1, cpus: 1}}\n"));
    }
    yaml.push_str("  - id: wide\n    uses: debug/probe\n    with: {millis: 100, label: wide}\n    resources: {cpus: 0}\n");
    write(t.path(), "p.yaml", &yaml);
    // Two GPUs seen, many cores allowed to run at once: still at most two GPU nodes at a time.
    let o = std::process::Command::new(agentmerge_path())
        .args(["run", "p.yaml", "--jobs", "8"])
        .current_dir(t.path())
        .env("AGENTMERGE_GPUS", "2")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let report = latest_report(&t.path().join(".agentmerge"));
    let all = probes(&report);
    let gpu: Vec<&(String, Json)> = all.iter().filter(|(id, _)| id.starts_with('g')).collect();
    assert_eq!(gpu.len(), 6);
    let span = |r: &Json| (r["start_ms"].as_u64().unwrap(), r["end_ms"].as_u64().unwrap());
    for (id, r) in &gpu {
        let devices = r["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 1, "{id}: {r}");
        assert!(devices[0].as_u64().unwrap() < 2, "{id}: {r}");
        assert_eq!((r["threads"].as_u64(), r["rayon_threads"].as_u64()), (Some(1), Some(1)), "{id}: {r}");
        // Whoever ran at the same time as it had the other device.
        let (s, e) = span(r);
        for (o, q) in gpu.iter().filter(|(o, q)| o != id && span(q).0 < e && s < span(q).1) {
            assert_ne!(q["devices"], r["devices"], "{id} and {o} shared a device");
        }
        // And when it started, at most one other GPU node was running.
        let running = gpu.iter().filter(|(o, q)| o != id && span(q).0 <= s && s < span(q).1).count();
        let spans: Vec<String> = gpu.iter().map(|(o, q)| format!("{o} {:?} {}", span(q), q["devices"])).collect();
        assert!(running <= 1, "{id} started while {running} GPU nodes ran: {spans:?}");
    }
    // A node that uses every thread it is given gets the machine's cores, as a pool of that size.
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    let wide = &all.iter().find(|(id, _)| id == "wide").unwrap().1;
    assert_eq!((wide["threads"].as_u64(), wide["rayon_threads"].as_u64()), (Some(cores), Some(cores)), "{wide}");
}

#[test]
fn a_bad_resources_block_is_an_error_at_its_line() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "p.yaml", "name: bad\nnodes:\n  - id: a\n    uses: debug/probe\n    resources: {gpu: 1, mem: lots}\n");
    let o = agentmerge(t.path(), &["check", "p.yaml"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("p.yaml:5") && err.contains("unknown resource `gpu`") && err.contains("did you mean `gpus`"), "{err}");
    assert!(err.contains("`resources.mem`"), "{err}");
    // And `plugins` shows what each kind declares.
    let out = ok(t.path(), &["plugins", "debug"]);
    assert!(out.contains("debug/sum") && out.contains("resources: light"), "{out}");
    let out = ok(t.path(), &["plugins", "cpu/sft"]);
    assert!(out.contains("resources: all cpus"), "{out}");
}
