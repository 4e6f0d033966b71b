//! Writing and reading checkpoints on real files: single and sharded, dtype casts, the
//! Python-written fixture, corrupt files and interrupted writes.

use std::path::Path;

use agentmerge_checkpoint::{Checkpoint, CheckpointError, CheckpointWriter, DType, TensorSpec, WriteOptions};

fn specs() -> Vec<TensorSpec> {
    vec![
        TensorSpec { name: "model.embed_tokens.weight".into(), dtype: DType::F32, shape: vec![16, 8] },
        TensorSpec { name: "model.layers.0.mlp.up_proj.weight".into(), dtype: DType::BF16, shape: vec![12, 8] },
        TensorSpec { name: "model.layers.1.mlp.up_proj.weight".into(), dtype: DType::F16, shape: vec![12, 8] },
        TensorSpec { name: "model.norm.weight".into(), dtype: DType::F64, shape: vec![8] },
    ]
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    // A small LCG: fresh, non-zero, reproducible values.
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn write(dir: &Path, max_shard_bytes: u64) -> Vec<Vec<f32>> {
    let mut opts = WriteOptions { max_shard_bytes, ..Default::default() };
    opts.metadata.insert("format".into(), "pt".into());
    let mut w = CheckpointWriter::plan(dir, specs(), opts).unwrap();
    let mut all = Vec::new();
    // Write in reverse order from threads: the layout must not care.
    let data: Vec<(TensorSpec, Vec<f32>)> = specs()
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let n = s.shape.iter().product::<u64>() as usize;
            (s, values(n, i as u32))
        })
        .collect();
    std::thread::scope(|sc| {
        for (s, v) in data.iter().rev() {
            let w = &w;
            sc.spawn(move || w.write_f32(&s.name, v).unwrap());
        }
    });
    w.set_config(serde_json::json!({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2}), Some(DType::BF16));
    for (_, v) in data {
        all.push(v);
    }
    w.finish().unwrap();
    all
}

#[test]
fn single_and_sharded_round_trip() {
    for max in [u64::MAX, 400] {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("ck");
        let written = write(&dir, max);
        let ck = Checkpoint::open(&dir).unwrap();
        assert_eq!(ck.len(), 4);
        assert_eq!(ck.num_layers(), 2);
        assert_eq!(ck.config().unwrap()["torch_dtype"], "bfloat16");
        assert_eq!(ck.metadata().get("format").map(String::as_str), Some("pt"));
        for (spec, want) in specs().iter().zip(&written) {
            let v = ck.view(&spec.name).unwrap();
            assert_eq!(v.dtype, spec.dtype);
            let got = v.to_f32_vec();
            let tol = match spec.dtype {
                DType::BF16 => 8e-3,
                DType::F16 => 1e-3,
                _ => 1e-7,
            };
            for (a, b) in want.iter().zip(&got) {
                assert!((a - b).abs() <= tol, "{}: {a} vs {b}", spec.name);
            }
            // chunked reads agree
            let mut part = vec![0f32; 3];
            v.read_f32_into(2..5, &mut part).unwrap();
            assert!(v.read_f32_into(2..500, &mut part).is_err());
            assert_eq!(&part[..], &got[2..5]);
            // ranges mapped on their own hold the same bytes
            assert_eq!(&*v.map(2..5).unwrap(), v.bytes_of(2..5).unwrap());
            assert!(v.map(2..500).is_err());
        }
        if max == 400 {
            assert!(dir.join("model.safetensors.index.json").exists());
            assert!(dir.join("model-00001-of-00003.safetensors").exists() || dir.join("model-00001-of-00004.safetensors").exists());
        } else {
            assert!(dir.join("model.safetensors").exists());
        }
    }
}

#[test]
fn reads_the_python_written_fixture() {
    // tools/checkpoint_fixture.py wrote this with the `safetensors` Python package.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/python_tiny");
    let ck = Checkpoint::open(&dir).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    for (name, vals) in expected.as_object().unwrap() {
        let got = ck.view(name).unwrap().to_f64_vec();
        let want: Vec<f64> = vals.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn corrupt_files_are_errors_not_panics() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("ck");
    write(&dir, u64::MAX);
    let file = dir.join("model.safetensors");
    let good = std::fs::read(&file).unwrap();

    // Truncated data: offsets out of range.
    std::fs::write(&file, &good[..good.len() - 10]).unwrap();
    let e = Checkpoint::open(&dir).err().unwrap();
    assert!(matches!(e, CheckpointError::Tensor { .. }) && e.to_string().contains("out of range"), "{e}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");

    // Header length bigger than the file.
    let mut bad = good.clone();
    bad[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&file, &bad).unwrap();
    let e = Checkpoint::open(&dir).err().unwrap();
    assert!(e.to_string().contains("100 MB limit"), "{e}");
    bad[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
    std::fs::write(&file, &bad).unwrap();
    assert!(Checkpoint::open(&dir).err().unwrap().to_string().contains("runs past the end"));

    // Too short, and garbage JSON.
    std::fs::write(&file, b"abc").unwrap();
    assert!(Checkpoint::open(&dir).err().unwrap().to_string().contains("shorter than"));
    let mut junk = 5u64.to_le_bytes().to_vec();
    junk.extend_from_slice(b"{{{{{");
    std::fs::write(&file, &junk).unwrap();
    assert!(Checkpoint::open(&dir).err().unwrap().to_string().contains("not a JSON object"));

    // Not a checkpoint at all.
    let e = Checkpoint::open(t.path()).err().unwrap();
    assert!(matches!(e, CheckpointError::NotACheckpoint { .. }), "{e}");
}

#[test]
fn unfinished_writes_leave_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("ck");
    {
        let w = CheckpointWriter::plan(&dir, specs(), WriteOptions::default()).unwrap();
        w.write_f32("model.norm.weight", &values(8, 1)).unwrap();
        // dropped without finish
    }
    assert!(!dir.exists());
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0, "temporary directory left behind");

    // finish() refuses when a tensor is missing, and leaves nothing.
    let w = CheckpointWriter::plan(&dir, specs(), WriteOptions::default()).unwrap();
    w.write_f32("model.norm.weight", &values(8, 1)).unwrap();
    let e = w.finish().err().unwrap();
    assert!(e.to_string().contains("never written"), "{e}");
    assert!(!dir.exists());
    // A wrong size is refused.
    let w = CheckpointWriter::plan(&dir, specs(), WriteOptions::default()).unwrap();
    assert!(w.write_f32("model.norm.weight", &values(7, 1)).is_err());
}

#[test]
fn index_and_overlap_errors_name_the_tensor() {
    use agentmerge_checkpoint::DTypeExt;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("ck");
    write(&dir, 400);
    // A tensor listed in the index but absent from its shard.
    let index_path = dir.join("model.safetensors.index.json");
    let mut index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    let first_shard = index["weight_map"]["model.norm.weight"].clone();
    index["weight_map"]["model.ghost.weight"] = first_shard;
    std::fs::write(&index_path, serde_json::to_string(&index).unwrap()).unwrap();
    let e = Checkpoint::open(&dir).err().unwrap().to_string();
    assert!(e.contains("model.ghost.weight") && e.contains("missing"), "{e}");

    // Overlapping data offsets in a single file.
    let t2 = tempfile::tempdir().unwrap();
    let file = t2.path().join("model.safetensors");
    let header = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 12]);
    std::fs::write(&file, &bytes).unwrap();
    let e = Checkpoint::open(t2.path()).err().unwrap().to_string();
    assert!(e.contains("overlaps"), "{e}");

    assert_eq!(DType::BF16.torch_name(), "bfloat16");
    assert_eq!(DType::BF16.as_safetensors_str(), "BF16");
    assert_eq!(DType::from_torch_name("torch.float16"), Some(DType::F16));
    assert_eq!(agentmerge_checkpoint::parse_dtype("bf16"), Some(DType::BF16));
}

#[test]
fn release_keeps_data_readable() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("ck");
    write(&dir, u64::MAX);
    let ck = Checkpoint::open(&dir).unwrap();
    let name = "model.embed_tokens.weight";
    let before = ck.view(name).unwrap().to_f32_vec();
    ck.release(name, 0..before.len());
    assert_eq!(ck.view(name).unwrap().to_f32_vec(), before);
    assert_eq!(agentmerge_checkpoint::num_layers(&ck), 2);
    assert_eq!(agentmerge_checkpoint::layer_index("model.layers.12.mlp.up_proj.weight"), Some(12));
}

/// A range mapped on its own holds the bytes of the whole-file map, and a file cut short
/// after it was opened is an error naming it (not a SIGBUS on first touch).
#[test]
fn mapped_ranges_match_the_file_and_refuse_a_truncated_file() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("ck");
    let spec = TensorSpec { name: "w".into(), dtype: DType::F32, shape: vec![256, 256] };
    let w = CheckpointWriter::plan(&dir, vec![spec], WriteOptions::default()).unwrap();
    let v = values(256 * 256, 7);
    w.write_f32("w", &v).unwrap();
    w.finish().unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    let view = ck.view("w").unwrap();
    assert_eq!(&*view.map(1000..60_000).unwrap(), view.bytes_of(1000..60_000).unwrap());

    let file = dir.join("model.safetensors");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len / 4).unwrap();
    let e = view.map(30_000..60_000).err().expect("a truncated file is an error");
    assert!(matches!(e, CheckpointError::Corrupt { .. }) && e.to_string().contains("past the end of the file"), "{e}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
}
