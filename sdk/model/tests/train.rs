//! The training loop on the CPU backend: a resumed run ends with the same bytes as one never
//! interrupted, the result does not depend on the number of threads, the loss goes down, and a
//! diverging run stops with an error naming the step.

use std::{
    cell::Cell,
    path::{Path, PathBuf},
};

use agentmerge_backend_cpu::CpuBackend;
use agentmerge_checkpoint::DType;
use agentmerge_model::{
    checkpoint::{self, SaveOptions},
    data::Packed,
    optim::{AdamW, Decay, Schedule},
    train::{self, Hooks, Outcome, TrainSpec},
    Backend, LlamaConfig, Mem, Model,
};
use agentmerge_sft::dataset::{Example, SftWriter};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A small SFT file: examples that copy a prefix (so there is something to learn).
fn data(dir: &Path) -> PathBuf {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut w = SftWriter::new(&dir.join("d.amsft"), 40);
    for _ in 0..48 {
        let n = rng.random_range(3..8);
        let prompt: Vec<u32> = (0..n).map(|_| rng.random_range(2..40)).collect();
        let mut ids = vec![1];
        ids.extend(&prompt);
        ids.push(0);
        ids.extend(&prompt);
        let mut mask = vec![0u8; n + 2];
        mask.extend(vec![1u8; n]);
        w.push(&Example { ids, mask }).unwrap();
    }
    w.finish().unwrap()
}

fn config() -> LlamaConfig {
    let mut c = LlamaConfig::new(40, 16, 32, 2, 4);
    c.num_key_value_heads = 2;
    c
}

fn spec(total: u64, lr: f64) -> TrainSpec {
    TrainSpec {
        schedule: Schedule { lr, warmup: 2, total, decay: Decay::Cosine, min_lr_ratio: 0.1 },
        adamw: AdamW { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, grad_clip: Some(1.0) },
        micro_batch: 2,
        grad_accum: 2,
        checkpoint_every: Some(3),
        save_dtype: DType::F32,
    }
}

/// Stops the run once `stop_after` steps are done.
struct StopAfter {
    stop_after: u64,
    done: Cell<u64>,
}

impl Hooks for StopAfter {
    fn progress(&self, step: u64, _: u64, _: &str) {
        self.done.set(step);
    }
    fn cancelled(&self) -> bool {
        self.done.get() >= self.stop_after
    }
}

fn run(data_path: &Path, work: &Path, spec: &TrainSpec, stop_after: u64) -> anyhow::Result<Outcome> {
    let c = config();
    let mut be = CpuBackend::new();
    let mut model = Model::new(c.clone()).unwrap();
    model.alloc_params(&mut be, true).unwrap();
    be.upload(model.all(Mem::Params), &checkpoint::init(&c, 9)).unwrap();
    let mut packed = Packed::open(data_path, c.vocab_size, 32, 11, true).unwrap();
    train::train(&mut be, &mut model, &mut packed, spec, work, &SaveOptions::default(), &StopAfter { stop_after, done: Cell::new(0) })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn an_interrupted_run_resumes_to_the_same_weights() {
    let t = tempfile::tempdir().unwrap();
    let d = data(t.path());
    let s = spec(8, 3e-3);
    let straight = run(&d, &t.path().join("a"), &s, u64::MAX).unwrap();
    assert_eq!(straight.resumed_from, 0);
    assert_eq!(straight.checkpoints.iter().map(|c| c.0).collect::<Vec<_>>(), vec![3, 6]);

    // Stopped after step 4: the state saved then is where the next run picks up.
    let e = run(&d, &t.path().join("b"), &s, 4).unwrap_err().to_string();
    assert!(e.contains("cancelled at step 4"), "{e}");
    let resumed = run(&d, &t.path().join("b"), &s, u64::MAX).unwrap();
    assert_eq!(resumed.resumed_from, 4);
    assert_eq!(bits(&resumed.params), bits(&straight.params), "resumed weights differ");
    for ((sa, a), (sb, b)) in straight.checkpoints.iter().zip(&resumed.checkpoints) {
        assert_eq!(sa, sb);
        let (fa, fb) = (std::fs::read(a.join("model.safetensors")).unwrap(), std::fs::read(b.join("model.safetensors")).unwrap());
        assert!(fa == fb, "checkpoint of step {sa} differs");
    }
    // One metrics line per step, also across the interruption.
    let lines = std::fs::read_to_string(&resumed.metrics_file).unwrap();
    let steps: Vec<u64> = lines.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=8).collect::<Vec<_>>());
}

#[test]
fn weights_do_not_depend_on_the_thread_count_and_the_loss_falls() {
    let t = tempfile::tempdir().unwrap();
    let d = data(t.path());
    let s = TrainSpec { checkpoint_every: None, ..spec(12, 1e-2) };
    let in_pool = |threads: usize, name: &str| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| run(&d, &t.path().join(name), &s, u64::MAX).unwrap())
    };
    let one = in_pool(1, "one");
    let three = in_pool(3, "three");
    assert_eq!(bits(&one.params), bits(&three.params));
    let losses: Vec<f64> = std::fs::read_to_string(&one.metrics_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect();
    assert!(losses[11] < losses[0] - 0.15, "the loss did not fall: {losses:?}");
}

#[test]
fn a_diverging_run_stops_naming_the_step() {
    let t = tempfile::tempdir().unwrap();
    let d = data(t.path());
    let s = TrainSpec { grad_accum: 1, adamw: AdamW { grad_clip: None, ..spec(1, 1.0).adamw }, ..spec(30, 1e9) };
    let e = run(&d, &t.path().join("w"), &s, u64::MAX).unwrap_err().to_string();
    assert!(e.contains("step ") && (e.contains("NaN") || e.contains("inf")), "{e}");
}
