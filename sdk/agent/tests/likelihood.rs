//! The likelihood of an SFT file against the training fixtures of `sdk/model/tests/fixtures`
//! (transformers' loss on a packed, loss-masked batch): the documents of that batch, written as
//! SFT examples with its mask, must score exactly minus that loss, whatever the packing.

use std::path::{Path, PathBuf};

use agentmerge_agent::likelihood;
use agentmerge_backend_cpu::CpuBackend;
use agentmerge_model::{checkpoint, Model};
use agentmerge_sft::dataset::{Example, SftReader, SftWriter};
use serde_json::Value as Json;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures").join(case)
}

/// The fixture batch's documents as SFT examples (ids and mask per document).
fn examples(dir: &Path) -> Vec<Example> {
    let j: Json = serde_json::from_str(&std::fs::read_to_string(dir.join("batch.json")).unwrap()).unwrap();
    let v = |k: &str| -> Vec<i64> { j[k].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect() };
    let (ids, docs, mask) = (v("ids"), v("docs"), v("mask"));
    let mut out: Vec<Example> = Vec::new();
    for i in 0..ids.len() {
        if i == 0 || docs[i] != docs[i - 1] {
            out.push(Example { ids: Vec::new(), mask: Vec::new() });
        }
        let e = out.last_mut().unwrap();
        e.ids.push(ids[i] as u32);
        e.mask.push(mask[i] as u8);
    }
    out
}

fn check(case: &str) {
    let dir = fixture(case);
    let meta: Json = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let loss = meta["loss"].as_f64().unwrap();
    let n_targets = meta["batch"]["n_targets"].as_u64().unwrap() as usize;
    let exs = examples(&dir);
    assert_eq!(exs.len(), 5);
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SftWriter::new(&tmp.path().join("d.amsft"), 97);
    for e in &exs {
        w.push(e).unwrap();
    }
    let data = SftReader::open(&w.finish().unwrap()).unwrap();
    let (config, _, params) = checkpoint::load(&dir).unwrap();
    let mut be = CpuBackend::new();
    let mut model = Model::new(config).unwrap();
    model.alloc_params(&mut be, false).unwrap();
    agentmerge_model::Backend::upload(&mut be, model.all(agentmerge_model::Mem::Params), &params).unwrap();
    let mut first: Option<Vec<f64>> = None;
    // One example per pass, the fixture's own packing (16-token rows), and everything at once.
    for (seq, rows) in [(None, 1), (Some(16), 2), (Some(40), 8)] {
        let mut calls = 0;
        let l = likelihood(&mut be, &mut model, &data, seq, rows, &mut |_, _| {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((l.examples, l.tokens, l.examples_without_tokens), (5, n_targets, 0));
        assert!((l.mean_logprob + loss).abs() < 1e-4, "{case} seq {seq:?}: mean log p {} vs loss {loss}", l.mean_logprob);
        assert!((l.perplexity - loss.exp()).abs() < 1e-3 * loss.exp());
        // Each example's tokens: the mask's ones after its first token.
        for (e, x) in l.per_example.iter().zip(&exs) {
            assert_eq!(e.tokens, x.mask.iter().skip(1).filter(|&&m| m == 1).count());
            assert!((e.mean_logprob.unwrap() - e.sum_logprob / e.tokens as f64).abs() < 1e-12);
        }
        let sums: Vec<f64> = l.per_example.iter().map(|e| e.sum_logprob).collect();
        match &first {
            None => first = Some(sums),
            Some(f) => assert!(f.iter().zip(&sums).all(|(a, b)| (a - b).abs() < 1e-4), "the packing changed the numbers: {f:?} vs {sums:?}"),
        }
        assert!(calls >= 1);
    }
    // Rows shorter than an example, or longer than the context, are refused.
    let err = likelihood(&mut be, &mut model, &data, Some(8), 1, &mut |_, _| Ok(())).unwrap_err().to_string();
    assert!(err.contains("raise `seq_len`"), "{err}");
    let err = likelihood(&mut be, &mut model, &data, Some(1000), 1, &mut |_, _| Ok(())).unwrap_err().to_string();
    assert!(err.contains("context"), "{err}");
}

#[test]
fn likelihood_is_minus_the_reference_loss_gqa_untied() {
    check("gqa_untied");
}

#[test]
fn likelihood_is_minus_the_reference_loss_tied() {
    check("tied");
}
