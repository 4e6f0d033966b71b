//! The model against transformers' `LlamaForCausalLM` (eager attention, f32) and
//! `torch.optim.AdamW`, on the committed fixtures of tools/llama_reference/make_fixtures.py: a
//! packed, loss-masked batch through a GQA model with untied embeddings and an MHA model with
//! tied ones. Logits (≤ 1e-4 abs), loss, every parameter's gradient (≤ 1e-3 relative) and the
//! weights after three clipped AdamW steps with warm-up (≤ 1e-5 relative where the gradient is
//! not vanishingly small; see the comment in `check_case` for why those few are held to the
//! size of their step instead).

use std::path::{Path, PathBuf};

use agentmerge_backend_cpu::CpuBackend;
use agentmerge_model::{
    checkpoint,
    optim::{AdamW, Decay, Schedule},
    Backend, Batch, Mem, Model, IGNORE,
};
use serde_json::Value as Json;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(case)
}

struct Expected {
    bytes: Vec<u8>,
}

impl Expected {
    fn get(&self, name: &str) -> Vec<f32> {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(name).unwrap_or_else(|_| panic!("fixture has no `{name}`"));
        t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    }
}

fn batch(dir: &Path) -> Batch {
    let j: Json = serde_json::from_str(&std::fs::read_to_string(dir.join("batch.json")).unwrap()).unwrap();
    let v = |k: &str| -> Vec<i64> { j[k].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect() };
    let u = |k: &str| -> Vec<u32> { v(k).into_iter().map(|x| if x < 0 { IGNORE } else { x as u32 }).collect() };
    Batch {
        rows: j["rows"].as_u64().unwrap() as usize,
        seq: j["seq"].as_u64().unwrap() as usize,
        ids: u("ids"),
        targets: u("targets"),
        positions: u("positions"),
        docs: u("docs"),
    }
}

/// Largest |a − b| / max(|b|, floor) over the elements.
fn rel_err(a: &[f32], b: &[f32], floor: f32) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / y.abs().max(floor)).fold(0.0, f32::max)
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn check_case(case: &str) {
    let dir = fixture(case);
    let expected = Expected { bytes: std::fs::read(dir.join("expected.safetensors")).unwrap() };
    let meta: Json = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let (config, _, params) = checkpoint::load(&dir).unwrap();
    let b = batch(&dir);
    let mut be = CpuBackend::new();
    let mut model = Model::new(config.clone()).unwrap();
    model.alloc_params(&mut be, true).unwrap();
    be.upload(model.all(Mem::Params), &params).unwrap();

    // Logits and loss.
    let (sum, count) = model.forward(&mut be, &b, None).unwrap();
    let logits = model.logits(&mut be).unwrap();
    let err = max_abs(&logits, &expected.get("logits"));
    assert!(err <= 1e-4, "{case}: logits differ by {err}");
    let loss = sum / count as f64;
    let want = expected.get("loss")[0] as f64;
    assert!((loss - want).abs() <= 1e-5 * want.abs(), "{case}: loss {loss} vs {want}");

    // Gradients of the mean loss.
    be.zero(model.all(Mem::Grads));
    model.forward(&mut be, &b, Some(1.0 / count as f32)).unwrap();
    model.backward(&mut be).unwrap();
    let mut grads = vec![0f32; model.layout.total];
    be.download(model.all(Mem::Grads), &mut grads).unwrap();
    for t in &model.layout.tensors {
        let want = expected.get(&format!("grad.{}", t.name));
        let got = &grads[t.off..t.off + t.len];
        // Relative to the tensor's scale, so near-zero entries do not dominate.
        let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        let err = rel_err(got, &want, scale * 1e-2);
        assert!(err <= 1e-3, "{case}: gradient of {} differs by {err} (relative)", t.name);
    }

    // Three AdamW steps with clipping and the warm-up schedule, on the same batch.
    let h = &meta["hyper"];
    let f = |k: &str| h[k].as_f64().unwrap();
    let schedule = Schedule {
        lr: f("lr_max"),
        warmup: h["warmup"].as_u64().unwrap(),
        total: h["total"].as_u64().unwrap(),
        decay: Decay::Cosine,
        min_lr_ratio: f("min_lr_ratio"),
    };
    let adamw = AdamW {
        beta1: h["betas"][0].as_f64().unwrap(),
        beta2: h["betas"][1].as_f64().unwrap(),
        eps: f("eps"),
        weight_decay: f("weight_decay"),
        grad_clip: Some(f("max_norm")),
    };
    for (s, step) in meta["steps"].as_array().unwrap().iter().enumerate() {
        be.zero(model.all(Mem::Grads));
        let (sum, count) = model.forward(&mut be, &b, Some(1.0 / b.loss_tokens() as f32)).unwrap();
        let want_loss = step["loss"].as_f64().unwrap();
        assert!((sum / count as f64 - want_loss).abs() <= 1e-4 * want_loss, "{case}: loss before step {s}: {} vs {want_loss}", sum / count as f64);
        model.backward(&mut be).unwrap();
        let lr = schedule.lr_at(s as u64);
        assert!((lr - step["lr"].as_f64().unwrap()).abs() < 1e-12, "{case}: lr at step {s}");
        let info = adamw.step(&mut be, &model.layout, s as u64 + 1, lr);
        let want_norm = step["grad_norm_pre_clip"].as_f64().unwrap();
        assert!((info.grad_norm - want_norm).abs() <= 1e-4 * want_norm, "{case}: grad norm at step {s}: {} vs {want_norm}", info.grad_norm);
    }
    let mut after = vec![0f32; model.layout.total];
    be.download(model.all(Mem::Params), &mut after).unwrap();
    for t in &model.layout.tensors {
        let want = expected.get(&format!("after3.{}", t.name));
        let got = &after[t.off..t.off + t.len];
        let init = &params[t.off..t.off + t.len];
        // AdamW divides each gradient by its own running rms, so an element whose gradient is
        // 10⁵ times smaller than its tensor's largest (and so known in f32 to a few percent, in
        // any implementation) takes a step whose size is that uncertain. Elements with a
        // gradient above 1e-3 of the largest, or none at all (rows of tokens not in the batch:
        // weight decay alone), are compared at 1e-5 (relative, floored at a tenth of the
        // tensor's largest weight); every step (after − before) to 2e-3 of the largest.
        let g0 = expected.get(&format!("grad.{}", t.name));
        let gmax = g0.iter().fold(0f32, |m, x| m.max(x.abs()));
        let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        let mut compared = 0;
        for i in 0..t.len {
            if g0[i] == 0.0 || g0[i].abs() >= 1e-3 * gmax {
                compared += 1;
                let err = (got[i] - want[i]).abs() / want[i].abs().max(0.1 * scale);
                assert!(err <= 1e-5, "{case}: {}[{i}] after three AdamW steps is {} instead of {} ({err} relative)", t.name, got[i], want[i]);
            }
        }
        assert!(compared * 10 >= t.len * 9, "{case}: {}: only {compared} of {} elements compared", t.name, t.len);
        let step_got: Vec<f32> = got.iter().zip(init).map(|(a, b)| a - b).collect();
        let step_want: Vec<f32> = want.iter().zip(init).map(|(a, b)| a - b).collect();
        let step_scale = step_want.iter().fold(0f32, |m, x| m.max(x.abs()));
        let err = max_abs(&step_got, &step_want) / step_scale;
        assert!(err <= 2e-3, "{case}: the three AdamW steps of {} differ by {err} of the largest step", t.name);
    }
}

#[test]
fn gqa_model_with_untied_embeddings_matches_transformers() {
    check_case("gqa_untied");
}

#[test]
fn tied_embeddings_model_matches_transformers() {
    check_case("tied");
}
