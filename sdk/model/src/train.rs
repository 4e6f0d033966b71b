//! The training loop: micro-batches with gradient accumulation, clipping and AdamW on a
//! schedule, full Hugging Face checkpoints every N steps, a metrics line per step, and a
//! resumable state (parameters, AdamW moments, step) in a work directory, so a run killed at any
//! moment resumes from its last state and ends with the same weights as one never interrupted.
//! The data order is a pure function of the seed and the step, so it needs no saved RNG.
//!
//! Work directory:
//! ```text
//! WORK/state-<step>/state.safetensors   params, adam_m, adam_v (f32, flat) at that step
//! WORK/state-<step>/state.json          step and the run's fingerprint
//! WORK/latest                           the name of the newest complete state directory
//! WORK/checkpoints/step-<step>/         Hugging Face checkpoints, as saved
//! WORK/metrics.jsonl                    one line per finished step
//! ```

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use agentmerge_checkpoint::DType;
use anyhow::{bail, Context as _};
use serde_json::json;

use crate::{
    backend::{Backend, Mem},
    checkpoint::{self, SaveOptions},
    data::Packed,
    model::Model,
    optim::{AdamW, Schedule},
};

/// Everything that shapes a run's numbers. Two runs with equal specs, parameters and data produce
/// byte-identical checkpoints.
#[derive(Clone, Debug)]
pub struct TrainSpec {
    pub schedule: Schedule,
    pub adamw: AdamW,
    /// Rows per micro-batch.
    pub micro_batch: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Save a Hugging Face checkpoint (and a resumable state) every this many steps.
    pub checkpoint_every: Option<u64>,
    /// The dtype checkpoints and the final model are written in.
    pub save_dtype: DType,
}

impl TrainSpec {
    pub fn rows_per_step(&self) -> usize {
        self.micro_batch * self.grad_accum
    }

    fn fingerprint(&self, model: &Model, data: &Packed) -> String {
        format!("{:?}|{:?}|rows {} seq {}", self, model.config, data.rows_per_epoch(), data.seq())
    }
}

/// What the loop reports to its caller (a node: progress bar, cancellation).
pub trait Hooks {
    /// After each step: `step` of `total` done, with a one-line summary.
    fn progress(&self, step: u64, total: u64, line: &str);
    /// True when the run should stop at the next step boundary (its state is saved first).
    fn cancelled(&self) -> bool;
}

/// The result of a finished run.
#[derive(Debug)]
pub struct Outcome {
    /// Final parameters (flat, f32).
    pub params: Vec<f32>,
    /// Checkpoints in the work directory, by step.
    pub checkpoints: Vec<(u64, PathBuf)>,
    /// The per-step metrics file in the work directory.
    pub metrics_file: PathBuf,
    /// The step the run resumed from (0 for a fresh start).
    pub resumed_from: u64,
    pub final_loss: f64,
    /// Mean tokens/s over the steps this process ran.
    pub tokens_per_s: f64,
    pub tokens: u64,
    pub seconds: f64,
}

/// Saves a resumable state at least this often, besides at checkpoints.
const STATE_INTERVAL: Duration = Duration::from_secs(300);

/// Trains `model` (whose parameters are already in the backend) for `spec.schedule.total`
/// steps, resuming from `work` if an interrupted run of the same spec left a state there.
pub fn train(
    be: &mut dyn Backend,
    model: &mut Model,
    data: &mut Packed,
    spec: &TrainSpec,
    work: &Path,
    save: &SaveOptions,
    hooks: &dyn Hooks,
) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let fingerprint = spec.fingerprint(model, data);
    let total = spec.schedule.total;
    let mut step = resume(be, model, work, &fingerprint)?;
    let resumed_from = step;
    if step > 0 {
        tracing::info!("resuming from step {step} of {total} ({})", work.display());
    }
    let metrics_file = work.join("metrics.jsonl");
    truncate_metrics(&metrics_file, step)?;
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&metrics_file).with_context(|| format!("opening {}", metrics_file.display()))?;
    let started = Instant::now();
    let mut last_state = Instant::now();
    let (mut tokens, mut final_loss) = (0u64, f64::NAN);
    let n_tensors = model.layout.total;
    while step < total {
        if hooks.cancelled() {
            save_state(be, model, work, step, &fingerprint)?;
            bail!("cancelled at step {step} of {total}; the state is saved and the next run resumes from it");
        }
        let t0 = Instant::now();
        be.zero(crate::backend::Span::new(Mem::Grads, 0, n_tensors));
        let first_row = step * spec.rows_per_step() as u64;
        let batches: Vec<_> = (0..spec.grad_accum).map(|m| data.batch(first_row + (m * spec.micro_batch) as u64, spec.micro_batch)).collect();
        let count: usize = batches.iter().map(|b| b.loss_tokens()).sum();
        let scale = 1.0 / count.max(1) as f32;
        let mut loss_sum = 0.0;
        for (m, b) in batches.iter().enumerate() {
            let (sum, _) = model.forward(be, b, Some(scale))?;
            if !sum.is_finite() {
                bail!("step {}: the loss is {sum} (micro-batch {m}); {}; lower `lr` or check the data", step + 1, last_good(work));
            }
            loss_sum += sum;
            model.backward(be)?;
        }
        let lr = spec.schedule.lr_at(step);
        let info = spec.adamw.step(be, &model.layout, step + 1, lr);
        if !info.grad_norm.is_finite() {
            bail!("step {}: the gradient norm is {}; {}; lower `lr` or check the data", step + 1, info.grad_norm, last_good(work));
        }
        step += 1;
        let loss = loss_sum / count.max(1) as f64;
        final_loss = loss;
        let step_tokens = batches.iter().map(|b| b.tokens()).sum::<usize>() as u64;
        tokens += step_tokens;
        let dt = t0.elapsed().as_secs_f64();
        let tps = step_tokens as f64 / dt.max(1e-9);
        let line = json!({"step": step, "loss": loss, "lr": lr, "grad_norm": info.grad_norm, "tokens": step_tokens, "loss_tokens": count, "tokens_per_s": tps, "seconds": dt});
        writeln!(log, "{line}").and_then(|_| log.flush()).with_context(|| format!("writing {}", metrics_file.display()))?;
        let elapsed = started.elapsed().as_secs_f64();
        let eta = elapsed / (step - resumed_from) as f64 * (total - step) as f64;
        hooks.progress(step, total, &format!("loss {loss:.4} · {} tok/s · ETA {}", human(tps), duration(eta)));
        let at_checkpoint = spec.checkpoint_every.is_some_and(|k| step % k == 0);
        if at_checkpoint {
            save_checkpoint(be, model, spec, work, step, save)?;
        }
        if at_checkpoint || last_state.elapsed() > STATE_INTERVAL {
            save_state(be, model, work, step, &fingerprint)?;
            last_state = Instant::now();
        }
    }
    let mut params = vec![0f32; n_tensors];
    be.download(model.all(Mem::Params), &mut params)?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Outcome {
        params,
        checkpoints: list_checkpoints(work)?,
        metrics_file,
        resumed_from,
        final_loss,
        tokens_per_s: tokens as f64 / seconds.max(1e-9),
        tokens,
        seconds,
    })
}

fn last_good(work: &Path) -> String {
    match std::fs::read_to_string(work.join("latest")) {
        Ok(name) => format!("the last good state is {} in {}", name.trim(), work.display()),
        Err(_) => "no state was saved yet".to_string(),
    }
}

/// The checkpoint directory for `step` inside a work directory.
pub fn checkpoint_dir(work: &Path, step: u64) -> PathBuf {
    work.join("checkpoints").join(format!("step-{step:07}"))
}

fn save_checkpoint(be: &mut dyn Backend, model: &Model, spec: &TrainSpec, work: &Path, step: u64, save: &SaveOptions) -> anyhow::Result<()> {
    let mut params = vec![0f32; model.layout.total];
    be.download(model.all(Mem::Params), &mut params)?;
    let dir = checkpoint_dir(work, step);
    if dir.exists() {
        // Written before a kill that came ahead of the state save; the same step gives the same bytes.
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let mut opts = save.clone();
    opts.extra_files.push(("trainer_state.json".into(), serde_json::to_vec_pretty(&json!({"global_step": step, "max_steps": spec.schedule.total}))?));
    checkpoint::save(&model.config, &params, spec.save_dtype, &dir, &opts)?;
    Ok(())
}

/// Checkpoints saved so far, in step order.
pub fn list_checkpoints(work: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let dir = work.join("checkpoints");
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse::<u64>().ok()) {
                out.push((step, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `state-<step>/` and then points `latest` at it; removes older states.
fn save_state(be: &mut dyn Backend, model: &Model, work: &Path, step: u64, fingerprint: &str) -> anyhow::Result<()> {
    let name = format!("state-{step:07}");
    let tmp = work.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let total = model.layout.total;
    let mut bufs = Vec::new();
    for mem in [Mem::Params, Mem::AdamM, Mem::AdamV] {
        let mut v = vec![0f32; total];
        be.download(model.all(mem), &mut v)?;
        bufs.push(v);
    }
    let names = ["params", "adam_m", "adam_v"];
    let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> = names
        .iter()
        .zip(&bufs)
        .map(|(n, v)| Ok((*n, safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![total], bytemuck::cast_slice(v))?)))
        .collect::<anyhow::Result<_>>()?;
    safetensors::serialize_to_file(views, None, &tmp.join("state.safetensors"))?;
    std::fs::write(tmp.join("state.json"), serde_json::to_vec_pretty(&json!({"step": step, "fingerprint": fingerprint}))?)?;
    sync_dir_files(&tmp)?;
    let final_dir = work.join(&name);
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir)?;
    let latest_tmp = work.join(".latest.tmp");
    std::fs::write(&latest_tmp, &name)?;
    std::fs::File::open(&latest_tmp)?.sync_all()?;
    std::fs::rename(&latest_tmp, work.join("latest"))?;
    // Older states are no longer needed.
    for e in std::fs::read_dir(work)?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("state-") && n != name {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(())
}

fn sync_dir_files(dir: &Path) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        std::fs::File::open(e.path())?.sync_all()?;
    }
    Ok(())
}

/// Loads the newest state in `work` into the backend; returns its step (0 when there is none).
fn resume(be: &mut dyn Backend, model: &Model, work: &Path, fingerprint: &str) -> anyhow::Result<u64> {
    let Ok(name) = std::fs::read_to_string(work.join("latest")) else { return Ok(0) };
    let dir = work.join(name.trim());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).with_context(|| format!("reading {}/state.json", dir.display()))?)?;
    if meta["fingerprint"].as_str() != Some(fingerprint) {
        bail!("{}: a training state from a different configuration is here; remove the directory to start afresh", dir.display());
    }
    let step = meta["step"].as_u64().ok_or_else(|| anyhow::anyhow!("{}/state.json has no step", dir.display()))?;
    let path = dir.join("state.safetensors");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).with_context(|| format!("{}: corrupt training state", path.display()))?;
    for (name, mem) in [("params", Mem::Params), ("adam_m", Mem::AdamM), ("adam_v", Mem::AdamV)] {
        let t = st.tensor(name).with_context(|| format!("{}: no `{name}`", path.display()))?;
        if t.shape() != [model.layout.total] || t.dtype() != safetensors::Dtype::F32 {
            bail!("{}: `{name}` does not match this model", path.display());
        }
        let v: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        be.upload(model.all(mem), &v)?;
    }
    Ok(step)
}

/// Keeps the metrics lines of steps up to `step` (a resumed run rewrites the rest).
fn truncate_metrics(path: &Path, step: u64) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).with_context(|| format!("rewriting {}", path.display()))?;
    Ok(())
}

fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
