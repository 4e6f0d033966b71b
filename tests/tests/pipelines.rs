//! Golden pipelines: every file in tests/pipelines/valid must pass `agentmerge check`, and every
//! file in tests/pipelines/invalid must fail with exactly the diagnostics in its `.err` file
//! (file:line:column, the source line, and a hint). An invalid pipeline `X.yaml` with a
//! `patches/X.yaml` beside it is checked with `--patch patches/X.yaml`. Set AGENTMERGE_BLESS=1
//! to rewrite the `.err` files after an intended change, and review the diff.

mod common;

use common::*;

#[test]
fn valid_pipelines_check() {
    let dir = workspace().join("tests/pipelines/valid");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            ok(&dir, &["check", p.file_name().unwrap().to_str().unwrap()]);
            n += 1;
        }
    }
    assert!(n >= 3, "expected golden valid pipelines in {}", dir.display());
}

/// The patch files shipped in pipelines/ (for `--patch`), each with the pipeline it patches.
const SHIPPED_PATCHES: &[(&str, &str)] = &[("own-data.yaml", "paper.yaml")];

#[test]
fn shipped_pipelines_check() {
    let dir = workspace().join("pipelines");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let file = p.strip_prefix(workspace()).unwrap().to_str().unwrap().to_string();
            let name = p.file_name().unwrap().to_str().unwrap();
            match SHIPPED_PATCHES.iter().find(|(patch, _)| *patch == name) {
                Some((_, pipeline)) => ok(&workspace(), &["check", &format!("pipelines/{pipeline}"), "--patch", &file]),
                None => ok(&workspace(), &["check", &file]),
            };
        }
    }
    for (patch, _) in SHIPPED_PATCHES {
        assert!(dir.join(patch).exists(), "pipelines/{patch} is listed in SHIPPED_PATCHES but missing");
    }
}

#[test]
fn invalid_pipelines_give_located_errors() {
    let dir = workspace().join("tests/pipelines/invalid");
    let bless = std::env::var_os("AGENTMERGE_BLESS").is_some();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "yaml")).collect();
    files.sort();
    assert!(files.len() >= 8);
    let mut failures = Vec::new();
    for p in files {
        let name = p.file_name().unwrap().to_str().unwrap();
        let patch = format!("patches/{name}");
        let mut args = vec!["check", name];
        if dir.join(&patch).exists() {
            args.extend(["--patch", &patch]);
        }
        let out = agentmerge(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{name} should be rejected:\n{}", stdout(&out));
        let got = stderr(&out);
        let located = got.starts_with(&format!("{name}:")) || got.starts_with(&format!("{patch}:"));
        assert!(located, "{name}: error does not start with file:line:col:\n{got}");
        let golden = p.with_extension("err");
        if bless {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if got != want {
            failures.push(format!("--- {name}: expected\n{want}--- got\n{got}"));
        }
    }
    assert!(failures.is_empty(), "diagnostics differ (AGENTMERGE_BLESS=1 rewrites them):\n{}", failures.join("\n"));
}
