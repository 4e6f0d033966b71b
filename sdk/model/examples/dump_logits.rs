//! Writes the logits of a checkpoint on a random batch, for tools/llama_reference/check_checkpoint.py
//! to compare with what transformers computes from the same directory:
//!
//! ```text
//! cargo run --release -p agentmerge-model --example dump_logits -- MODEL_DIR OUT.safetensors [ROWS SEQ]
//! python tools/llama_reference/check_checkpoint.py MODEL_DIR --logits OUT.safetensors
//! ```

use agentmerge_backend_cpu::CpuBackend;
use agentmerge_model::{checkpoint, Backend, Batch, Mem, Model, IGNORE};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 2, "usage: dump_logits MODEL_DIR OUT.safetensors [ROWS SEQ]");
    let rows: usize = args.get(2).map_or(Ok(2), |s| s.parse())?;
    let seq: usize = args.get(3).map_or(Ok(32), |s| s.parse())?;
    let (config, _, params) = checkpoint::load(std::path::Path::new(&args[0]))?;
    let mut be = CpuBackend::new();
    let mut model = Model::new(config.clone())?;
    model.alloc_params(&mut be, false)?;
    be.upload(model.all(Mem::Params), &params)?;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = rows * seq;
    let ids: Vec<u32> = (0..n).map(|_| rng.random_range(0..config.vocab_size as u32)).collect();
    let batch = Batch {
        rows,
        seq,
        ids: ids.clone(),
        targets: vec![IGNORE; n],
        positions: (0..n).map(|i| (i % seq) as u32).collect(),
        docs: (0..n).map(|i| (i / seq) as u32).collect(),
    };
    model.forward(&mut be, &batch, None)?;
    let logits = model.logits(&mut be)?;
    let ids64: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
    let tensors = vec![
        ("ids", safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![rows, seq], bytemuck::cast_slice(&ids64))?),
        ("logits", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![rows, seq, config.vocab_size], bytemuck::cast_slice(&logits))?),
    ];
    safetensors::serialize_to_file(tensors, None, std::path::Path::new(&args[1]))?;
    println!("wrote {} ({rows} × {seq} tokens, vocabulary {})", args[1], config.vocab_size);
    Ok(())
}
