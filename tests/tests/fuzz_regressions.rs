//! Replays every committed fuzz input — the seed corpora and whatever a fuzzer ever found
//! (`tests/fuzz/corpus/<target>/`, `tests/fuzz/regressions/<target>/`) — through the readers of
//! users' files, on stable, in CI: none may panic. The fuzzing itself (millions of inputs, on
//! nightly) is `tools/fuzz.sh`; its counts are in docs/robustness.md.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::Path;

#[test]
fn every_committed_fuzz_input_is_read_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for (name, target) in targets::TARGETS {
        let mut seeds = 0;
        for sub in ["corpus", "regressions"] {
            let Ok(dir) = std::fs::read_dir(root.join(sub).join(name)) else { continue };
            for e in dir.flatten() {
                let bytes = std::fs::read(e.path()).unwrap();
                let r = std::panic::catch_unwind(|| target(&bytes));
                assert!(r.is_ok(), "{name}: {} panicked", e.path().display());
                seeds += (sub == "corpus") as usize;
                replayed += 1;
            }
        }
        assert!(seeds > 0, "{name} has no seed corpus in tests/fuzz/corpus/{name}");
    }
    eprintln!("{replayed} fuzz inputs replayed");
}
