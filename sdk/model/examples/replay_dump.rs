//! Dumps one `cpu/pretrain` run for replay in another trainer: every step's batch, the gradient
//! of the first batch, the per-step metrics and the final weights (tools/torch_replay.py reads
//! them and trains PyTorch on exactly the same rows from the same weights).
//!
//!     cargo run --release -p agentmerge-model --example replay_dump -- \
//!         INIT_MODEL TOKENS.amsft SEQ ROWS_PER_STEP STEPS LR WARMUP OUT_DIR
//!
//! OUT_DIR gets `batches.u16` (per step, per row: ids, targets (65535 = none), positions, each
//! `SEQ` little-endian u16), `grads0.safetensors`, `work/metrics.jsonl` and `model/`.

use std::path::{Path, PathBuf};

use agentmerge_backend_cpu::CpuBackend;
use agentmerge_model::{
    checkpoint::{self, SaveOptions},
    data::Packed,
    node::TrainConfig,
    train::{self, Hooks},
    Backend, Mem, Model, IGNORE,
};
use anyhow::Context as _;

struct Quiet;
impl Hooks for Quiet {
    fn progress(&self, step: u64, total: u64, line: &str) {
        if step.is_multiple_of(100) || step == total {
            eprintln!("step {step}/{total}: {line}");
        }
    }
    fn cancelled(&self) -> bool {
        false
    }
}

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(a.len() == 8, "usage: replay_dump INIT_MODEL TOKENS.amsft SEQ ROWS_PER_STEP STEPS LR WARMUP OUT_DIR");
    let (init, data_path) = (Path::new(&a[0]), Path::new(&a[1]));
    let (seq, rows, steps): (usize, usize, u64) = (a[2].parse()?, a[3].parse()?, a[4].parse()?);
    let (lr, warmup): (f64, u64) = (a[5].parse()?, a[6].parse()?);
    let out = PathBuf::from(&a[7]);
    std::fs::create_dir_all(&out)?;
    let (config, raw, params) = checkpoint::load(init)?;
    let seed = 0;

    // Every step's rows, as the training loop will draw them.
    let mut data = Packed::open(data_path, config.vocab_size, seq, seed, false)?;
    let u16s = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|&x| (if x == IGNORE { 65535 } else { x as u16 }).to_le_bytes()).collect() };
    let mut bytes = Vec::new();
    for s in 0..steps {
        let b = data.batch(s * rows as u64, rows);
        for r in 0..rows {
            let span = r * seq..(r + 1) * seq;
            bytes.extend(u16s(&b.ids[span.clone()]));
            bytes.extend(u16s(&b.targets[span.clone()]));
            bytes.extend(u16s(&b.positions[span]));
        }
    }
    std::fs::write(out.join("batches.u16"), bytes).context("writing batches.u16")?;

    let mut be = CpuBackend::new();
    let mut model = Model::new(config.clone())?;
    model.alloc_params(&mut be, true)?;
    be.upload(model.all(Mem::Params), &params)?;

    // The gradient of the first batch's mean loss, unclipped.
    let b0 = data.batch(0, rows);
    be.zero(model.all(Mem::Grads));
    let (sum, count) = model.forward(&mut be, &b0, Some(1.0 / b0.loss_tokens() as f32))?;
    model.backward(&mut be)?;
    eprintln!("first batch: loss {}", sum / count as f64);
    let mut grads = vec![0f32; model.layout.total];
    be.download(model.all(Mem::Grads), &mut grads)?;
    checkpoint::save(&config, &grads, agentmerge_checkpoint::DType::F32, &out.join("grads0"), &SaveOptions::default())?;

    // A trainer node's defaults (what `cpu/pretrain` runs with) but for the rate, warm-up and rows.
    let cfg: TrainConfig = serde_json::from_value(serde_json::json!({"lr": lr, "warmup_steps": warmup, "batch_size": rows, "seq_len": seq}))?;
    cfg.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    let spec = cfg.spec(steps);
    let done = train::train(&mut be, &mut model, &mut data, &spec, &out.join("work"), &SaveOptions::default(), &Quiet)?;
    let save = SaveOptions { base_config: Some(raw), tokenizer_from: vec![init.to_path_buf()], ..SaveOptions::default() };
    checkpoint::save(&config, &done.params, agentmerge_checkpoint::DType::F32, &out.join("model"), &save)?;
    eprintln!("done: final loss {} in {:.0} s", done.final_loss, done.seconds);
    Ok(())
}
