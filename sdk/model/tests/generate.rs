//! Generation with the KV cache: greedy tokens against transformers' `generate` on the committed
//! fixtures, against recomputing the whole forward pass for every token, batched against one
//! prompt at a time; stop strings, eos, the context limit, seeded sampling and the errors.

use std::path::Path;

use agentmerge_backend_cpu::CpuBackend;
use agentmerge_model::{
    checkpoint,
    generate::{generate, Generated, Sampling, StopReason},
    Backend, Batch, LlamaConfig, Mem, Model, IGNORE,
};
use serde_json::Value as Json;

/// Token ids as text: `<7><12>`.
fn decode(ids: &[u32]) -> anyhow::Result<String> {
    Ok(ids.iter().map(|t| format!("<{t}>")).collect())
}

fn loaded(config: LlamaConfig, params: &[f32]) -> (CpuBackend, Model) {
    let mut be = CpuBackend::new();
    let model = Model::new(config).unwrap();
    model.alloc_params(&mut be, false).unwrap();
    be.upload(model.all(Mem::Params), params).unwrap();
    (be, model)
}

/// A random GQA model with weights large enough that the logits' top two are well apart.
fn random_model(max_pos: usize) -> (CpuBackend, Model) {
    let mut c = LlamaConfig::new(61, 32, 48, 2, 4);
    c.num_key_value_heads = 2;
    c.head_dim = 8;
    c.initializer_range = 0.3;
    c.max_position_embeddings = max_pos;
    let params = checkpoint::init(&c, 11);
    loaded(c, &params)
}

/// Prompts of different lengths (one longer than attention's 64-query block).
fn prompts(vocab: u32) -> Vec<Vec<u32>> {
    [5usize, 17, 1, 70, 9].iter().enumerate().map(|(i, &n)| (0..n).map(|j| ((i * 31 + j * 7 + 3) as u32) % vocab).collect()).collect()
}

fn greedy(max_new_tokens: usize) -> Sampling {
    Sampling { max_new_tokens, ..Sampling::default() }
}

fn run(be: &mut CpuBackend, model: &mut Model, prompts: &[Vec<u32>], s: &Sampling, seed: u64) -> Vec<Generated> {
    generate(be, model, prompts, s, seed, &decode).unwrap()
}

/// Greedy continuation by running the whole sequence through `Model::forward` for every token.
fn greedy_recompute(be: &mut CpuBackend, model: &mut Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let v = model.config.vocab_size;
    let mut seq = prompt.to_vec();
    for _ in 0..n {
        let t = seq.len();
        let b = Batch { rows: 1, seq: t, ids: seq.clone(), targets: vec![IGNORE; t], positions: (0..t as u32).collect(), docs: vec![0; t] };
        model.forward(be, &b, None).unwrap();
        let logits = model.logits(be).unwrap();
        let last = &logits[(t - 1) * v..];
        let best = (0..v).fold(0, |m, j| if last[j] > last[m] { j } else { m });
        seq.push(best as u32);
    }
    seq[prompt.len()..].to_vec()
}

fn fixture_case(case: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(case);
    let j: Json = serde_json::from_str(&std::fs::read_to_string(dir.join("generate.json")).unwrap()).unwrap();
    let ids = |k: &str| -> Vec<u32> { j[k].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
    let (prompt, want) = (ids("prompt"), ids("generated"));
    let (config, _, params) = checkpoint::load(&dir).unwrap();
    let (mut be, mut model) = loaded(config, &params);
    let got = run(&mut be, &mut model, std::slice::from_ref(&prompt), &greedy(want.len()), 0);
    assert_eq!(got[0].tokens, want, "{case}: greedy generation differs from transformers");
    assert_eq!(got[0].reason, StopReason::MaxTokens);
    assert_eq!(got[0].text, decode(&want).unwrap());
    // The same prompt inside a batch, beside longer and shorter ones.
    let batch = vec![vec![3, 4, 5, 6, 7, 8, 9, 10, 11], prompt.clone(), vec![12]];
    let got = run(&mut be, &mut model, &batch, &greedy(want.len()), 0);
    assert_eq!(got[1].tokens, want, "{case}: greedy generation in a batch differs from transformers");
}

#[test]
fn greedy_matches_transformers_generate_gqa_untied() {
    fixture_case("gqa_untied");
}

#[test]
fn greedy_matches_transformers_generate_tied() {
    fixture_case("tied");
}

#[test]
fn cached_decoding_matches_recomputing_and_batching_changes_nothing() {
    let (mut be, mut model) = random_model(128);
    let ps = prompts(61);
    let n = 20;
    let batched = run(&mut be, &mut model, &ps, &greedy(n), 0);
    for (i, p) in ps.iter().enumerate() {
        let want = greedy_recompute(&mut be, &mut model, p, n);
        assert_eq!(batched[i].tokens, want, "prompt {i}: KV-cached tokens differ from recomputing the forward pass");
        assert_eq!(batched[i].reason, StopReason::MaxTokens);
        let alone = run(&mut be, &mut model, std::slice::from_ref(p), &greedy(n), 0);
        assert_eq!(alone[0], batched[i], "prompt {i}: alone and in a batch differ");
    }
    // Tokens vary (the check above is not comparing constants).
    assert!(batched.iter().any(|g| g.tokens.iter().any(|&t| t != g.tokens[0])));
}

#[test]
fn prompts_prefilled_in_several_groups_match_one_at_a_time() {
    // An MLP of 9,000 makes a prefill token take over 108 KB of activations (its gate, up and
    // product), so these 1,300 prompt tokens need more than one group of rows under
    // PREFILL_BYTES (128 MiB).
    let mut c = LlamaConfig::new(500, 8, 9_000, 1, 2);
    c.initializer_range = 1.0;
    c.max_position_embeddings = 400;
    let params = checkpoint::init(&c, 5);
    let (mut be, mut model) = loaded(c, &params);
    let ps: Vec<Vec<u32>> =
        [300usize, 300, 300, 100, 300].iter().enumerate().map(|(i, &n)| (0..n).map(|j| ((i * 7919 + j * 104_729) % 500) as u32).collect()).collect();
    let total = ps.iter().map(Vec::len).sum::<usize>();
    assert!(total * 4 * 3 * 9_000 > agentmerge_model::generate::PREFILL_BYTES);
    assert!(model.prefill_acts_len(ps.len(), 300) * 4 > agentmerge_model::generate::PREFILL_BYTES);
    let batched = run(&mut be, &mut model, &ps, &greedy(3), 0);
    for (i, p) in ps.iter().enumerate() {
        let alone = run(&mut be, &mut model, std::slice::from_ref(p), &greedy(3), 0);
        assert_eq!(alone[0], batched[i], "prompt {i}: alone and in a batch differ");
    }
    assert_eq!(batched[3].tokens, greedy_recompute(&mut be, &mut model, &ps[3], 3));
    assert!(batched.windows(2).any(|w| w[0].tokens != w[1].tokens));
}

#[test]
fn prefill_logits_are_the_forward_pass_logits_at_each_rows_last_token() {
    // Right-padded rows of different lengths (one beyond attention's 64-query block): the lean
    // prefill's logits against the ordinary forward pass's. (Its keys and values are checked by
    // the cached-decoding tests.)
    let (mut be, mut model) = random_model(128);
    let (v, lens) = (model.config.vocab_size, [5usize, 70, 1, 33]);
    let seq = 72;
    let mut b = Batch { rows: lens.len(), seq, ..Batch::default() };
    for (r, &len) in lens.iter().enumerate() {
        b.ids.extend((0..seq).map(|j| if j < len { ((r * 13 + j * 29 + 1) % v) as u32 } else { 0 }));
        b.targets.extend(std::iter::repeat_n(IGNORE, seq));
        b.positions.extend(0..seq as u32);
        b.docs.extend(std::iter::repeat_n(r as u32, seq));
    }
    model.forward(&mut be, &b, None).unwrap();
    let full = model.logits(&mut be).unwrap();
    let last: Vec<usize> = lens.iter().map(|l| l - 1).collect();
    let (logits, kv) = model.prefill(&mut be, &b, &last).unwrap();
    assert_eq!(kv.len(), model.config.num_hidden_layers);
    let mut got = vec![0f32; lens.len() * v];
    be.download(logits, &mut got).unwrap();
    for (r, &t) in last.iter().enumerate() {
        let want = &full[(r * seq + t) * v..(r * seq + t + 1) * v];
        let row = &got[r * v..(r + 1) * v];
        let worst = want.iter().zip(row).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let scale = want.iter().map(|a| a.abs()).fold(0f32, f32::max);
        assert!(scale > 1.0, "row {r}: logits too small to compare ({scale})");
        assert!(worst <= 1e-5 * scale, "row {r}: prefill logits differ from the forward pass's by {worst} (largest {scale})");
    }
}

#[test]
fn eos_ends_one_sequence_and_the_others_go_on() {
    let (mut be, mut model) = random_model(128);
    let ps = prompts(61);
    let free = run(&mut be, &mut model, &ps, &greedy(16), 0);
    // The eos: the token that the most sequences produce, but not all of them. Each of those
    // ends at its first one (at different steps), the others run to the end.
    let holding = |t: &u32| free.iter().filter(|f| f.tokens.contains(t)).count();
    let eos =
        free.iter().flat_map(|f| f.tokens.iter().copied()).filter(|t| holding(t) < free.len()).max_by_key(|t| (holding(t), std::cmp::Reverse(*t))).unwrap();
    assert!(holding(&eos) >= 2, "no suitable eos; change the prompts");
    let s = Sampling { eos: vec![eos], ..greedy(16) };
    let got = run(&mut be, &mut model, &ps, &s, 0);
    for (i, (g, f)) in got.iter().zip(&free).enumerate() {
        match f.tokens.iter().position(|&t| t == eos) {
            Some(k) => {
                assert_eq!(g.tokens, f.tokens[..=k], "prompt {i}");
                assert_eq!(g.reason, StopReason::Eos, "prompt {i}");
                assert_eq!(g.text, decode(&f.tokens[..k]).unwrap(), "prompt {i}: the text leaves the eos out");
            }
            None => assert_eq!(g, f, "prompt {i}"),
        }
    }
    assert!(got.iter().any(|g| g.reason == StopReason::MaxTokens), "no sequence outlived the eos; pick another");
}

#[test]
fn stop_strings_cut_the_text_after_them() {
    let (mut be, mut model) = random_model(128);
    let ps = prompts(61);
    let free = run(&mut be, &mut model, &ps, &greedy(16), 0);
    // A stop string that ends inside prompt 1's sixth token: `5><17` of `<5><17>`.
    let t = &free[1].tokens;
    let stop = format!("{}><{}", t[4], t[5]);
    let s = Sampling { stop: vec!["never".into(), stop.clone()], ..greedy(16) };
    let got = run(&mut be, &mut model, &ps, &s, 0);
    for (i, (g, f)) in got.iter().zip(&free).enumerate() {
        // The first k whose text holds the stop string.
        match (1..=f.tokens.len()).find(|&k| decode(&f.tokens[..k]).unwrap().contains(&stop)) {
            Some(k) => {
                let text = decode(&f.tokens[..k]).unwrap();
                let end = text.find(&stop).unwrap() + stop.len();
                assert_eq!(g.tokens, f.tokens[..k], "prompt {i}");
                assert_eq!(g.reason, StopReason::Stop, "prompt {i}");
                assert_eq!(g.text, text[..end], "prompt {i}");
                assert!(g.text.ends_with(&stop));
            }
            None => assert_eq!(g, f, "prompt {i}"),
        }
    }
    assert!(got[1].tokens.len() <= 6 && got[1].reason == StopReason::Stop);
    assert!(!got[1].text.ends_with('>'), "the stop string ends inside a token: {}", got[1].text);
}

#[test]
fn the_context_limit_ends_generation() {
    let (mut be, mut model) = random_model(40);
    let ps = vec![(0..36).collect::<Vec<u32>>(), (0..40).collect(), vec![5, 6]];
    let got = run(&mut be, &mut model, &ps, &greedy(10), 0);
    assert_eq!(got[0].tokens.len(), 4, "36 + 4 fills a context of 40");
    assert_eq!(got[0].reason, StopReason::ContextFull);
    assert_eq!(got[0].tokens, greedy_recompute(&mut be, &mut model, &ps[0], 4));
    assert_eq!((got[1].tokens.len(), got[1].reason), (0, StopReason::ContextFull));
    assert_eq!((got[2].tokens.len(), got[2].reason), (10, StopReason::MaxTokens));
    // No new tokens asked for.
    let none = run(&mut be, &mut model, &ps, &greedy(0), 0);
    assert!(none.iter().all(|g| g.tokens.is_empty() && g.reason == StopReason::MaxTokens));
}

#[test]
fn seeded_sampling_is_reproducible_and_per_sequence() {
    let (mut be, mut model) = random_model(128);
    let ps = prompts(61);
    let s = Sampling { temperature: 1.0, top_p: 0.9, ..greedy(20) };
    let a = run(&mut be, &mut model, &ps, &s, 7);
    let b = run(&mut be, &mut model, &ps, &s, 7);
    assert_eq!(a, b, "the same seed gives different samples");
    let c = run(&mut be, &mut model, &ps, &s, 8);
    assert_ne!(a, c, "another seed gives the same samples");
    let g = run(&mut be, &mut model, &ps, &greedy(20), 7);
    assert_ne!(a, g, "sampling at temperature 1 gave the greedy tokens");
    // A sequence's draws depend on its index and the seed, not on the rest of the batch.
    let first = run(&mut be, &mut model, &ps[..1], &s, 7);
    assert_eq!(first[0], a[0]);
    let without_last = run(&mut be, &mut model, &ps[..4], &s, 7);
    assert_eq!(without_last[..], a[..4]);
}

#[test]
fn low_temperature_and_a_tiny_nucleus_are_greedy() {
    let (mut be, mut model) = random_model(128);
    let ps = prompts(61);
    let g = run(&mut be, &mut model, &ps, &greedy(20), 0);
    let cold = run(&mut be, &mut model, &ps, &Sampling { temperature: 1e-5, ..greedy(20) }, 3);
    assert_eq!(cold, g, "temperature 1e-5 differs from greedy");
    let narrow = run(&mut be, &mut model, &ps, &Sampling { temperature: 2.0, top_p: 1e-6, ..greedy(20) }, 3);
    assert_eq!(narrow, g, "a nucleus of one token differs from greedy");
}

#[test]
fn bad_inputs_are_errors() {
    let (mut be, mut model) = random_model(32);
    let err = |be: &mut CpuBackend, model: &mut Model, ps: &[Vec<u32>], s: &Sampling| generate(be, model, ps, s, 0, &decode).unwrap_err().to_string();
    let e = err(&mut be, &mut model, &[vec![1, 2], vec![0; 33]], &greedy(4));
    assert!(e.contains("prompt 1") && e.contains("33 tokens") && e.contains("context of 32"), "{e}");
    let e = err(&mut be, &mut model, &[vec![]], &greedy(4));
    assert!(e.contains("prompt 0 is empty"), "{e}");
    let e = err(&mut be, &mut model, &[vec![1], vec![2, 61]], &greedy(4));
    assert!(e.contains("prompt 1") && e.contains("61"), "{e}");
    let e = err(&mut be, &mut model, &[vec![1]], &Sampling { top_p: 0.0, ..greedy(4) });
    assert!(e.contains("top_p"), "{e}");
    let e = err(&mut be, &mut model, &[vec![1]], &Sampling { temperature: -1.0, ..greedy(4) });
    assert!(e.contains("temperature"), "{e}");
    let e = err(&mut be, &mut model, &[vec![1]], &Sampling { stop: vec![String::new()], ..greedy(4) });
    assert!(e.contains("stop string is empty"), "{e}");
    let failing = |_: &[u32]| -> anyhow::Result<String> { anyhow::bail!("no tokenizer") };
    let e = generate(&mut be, &mut model, &[vec![1]], &greedy(3), 0, &failing).unwrap_err();
    assert!(format!("{e:#}").contains("no tokenizer"), "{e:#}");
    let mut bare = CpuBackend::new();
    let e = err(&mut bare, &mut model, &[vec![1]], &greedy(4));
    assert!(e.contains("parameters are not in the backend"), "{e}");
    assert!(run(&mut be, &mut model, &[], &greedy(4), 0).is_empty());
}

#[test]
fn training_forward_passes_still_work_after_generating() {
    let (mut be, mut model) = random_model(128);
    let b = Batch {
        rows: 2,
        seq: 8,
        ids: (0..16).collect(),
        targets: (1..17).collect(),
        positions: (0..16).map(|i| i % 8).collect(),
        docs: (0..16).map(|i| i / 8).collect(),
    };
    let before = model.forward(&mut be, &b, None).unwrap();
    run(&mut be, &mut model, &prompts(61), &greedy(5), 0);
    let after = model.forward(&mut be, &b, None).unwrap();
    assert_eq!(before, after);
    assert!(be.mem_len(Mem::Kv) > 0);
}
