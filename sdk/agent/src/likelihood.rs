//! The likelihood of expert trajectories: the mean log-probability a model gives the response
//! tokens of an SFT token file (`sft/build`'s loss-masked tokens).
//!
//! Definition. An example is tokens `x_0 … x_{n−1}` with loss mask `m`. Its scored tokens are
//! the positions `j ≥ 1` with `m_j = 1` (for `sft/build` data: the response
//! `<think>…</think><action>…</action>` and its end-of-sequence token), each predicted from
//! everything before it in its own example: `log p(x_j | x_0 … x_{j−1})`, natural log. The
//! overall figure is `Σ log p / N` over every scored token of every example (a token-weighted
//! mean, so it equals minus the training loss on the same data); each example also gets its own
//! sum and mean. A `dataset:tokens` file (mask all ones) gives the plain language-model
//! likelihood of its documents.
//!
//! Examples are packed in file order into rows (each its own document: no example sees
//! another), `rows` at a time; the numbers do not depend on the packing.

use agentmerge_model::{Backend, Batch, Model, IGNORE};
use agentmerge_sft::dataset::SftReader;
use anyhow::{bail, ensure};
use serde::{Deserialize, Serialize};

/// One example's likelihood.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExampleLikelihood {
    /// The example's index in the file.
    pub example: usize,
    /// Scored tokens.
    pub tokens: usize,
    /// Σ log p over them.
    pub sum_logprob: f64,
    /// `sum_logprob / tokens` (null without scored tokens).
    pub mean_logprob: Option<f64>,
}

/// A model's likelihood of a token file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Likelihood {
    pub examples: usize,
    /// Examples without a scored token (left out of the means).
    pub examples_without_tokens: usize,
    /// Scored tokens, N.
    pub tokens: usize,
    pub sum_logprob: f64,
    /// `Σ log p / N`: minus the mean cross-entropy.
    pub mean_logprob: f64,
    /// `exp(−mean_logprob)`.
    pub perplexity: f64,
    /// The mean over examples of each example's mean (examples weighted equally).
    pub mean_example_logprob: f64,
    #[serde(skip)]
    pub per_example: Vec<ExampleLikelihood>,
}

/// The likelihood of every example of `data` under `model`, whose parameters are in `be`.
/// `seq` is the row length (at least the longest example, at most the model's context; `None`:
/// the longest example), `rows` the rows per forward pass. `progress(done, total)` follows the
/// examples; its error stops the computation.
pub fn likelihood(
    be: &mut dyn Backend,
    model: &mut Model,
    data: &SftReader,
    seq: Option<usize>,
    rows: usize,
    progress: &mut dyn FnMut(usize, usize) -> anyhow::Result<()>,
) -> anyhow::Result<Likelihood> {
    let n = data.len();
    ensure!(n > 0, "the dataset has no examples");
    ensure!(rows > 0, "rows per pass must be at least 1");
    let longest = (0..n).map(|i| data.example(i).0.len()).max().unwrap_or(0);
    let seq = seq.unwrap_or(longest);
    let ctx = model.config.max_position_embeddings;
    if longest > seq {
        bail!("an example has {longest} tokens, more than the rows of {seq}; raise `seq_len`");
    }
    if seq > ctx {
        bail!("rows of {seq} tokens are longer than the model's context of {ctx} (max_position_embeddings)");
    }
    let vocab = model.config.vocab_size as u32;
    // Rows of whole examples, in file order.
    let mut packed: Vec<Vec<usize>> = Vec::new();
    let mut used = seq;
    for i in 0..n {
        let len = data.example(i).0.len();
        if let Some(bad) = data.example(i).0.iter().find(|&&t| t >= vocab) {
            bail!("example {i} has token id {bad}, outside the model's vocabulary of {vocab}; was it built with another tokenizer?");
        }
        if used + len > seq {
            packed.push(Vec::new());
            used = 0;
        }
        packed.last_mut().expect("a row").push(i);
        used += len;
    }
    let mut per_example: Vec<ExampleLikelihood> = Vec::with_capacity(n);
    for group in packed.chunks(rows) {
        let r = group.len();
        let mut b = Batch { rows: r, seq, ids: vec![0; r * seq], targets: vec![IGNORE; r * seq], positions: vec![0; r * seq], docs: vec![0; r * seq] };
        // Where each example's tokens sit: (example, first position, length).
        let mut spans = Vec::new();
        let mut doc = 0u32;
        for (row, examples) in group.iter().enumerate() {
            let mut at = row * seq;
            for &ex in examples {
                let (ids, mask) = data.example(ex);
                for (j, &id) in ids.iter().enumerate() {
                    b.ids[at + j] = id;
                    b.positions[at + j] = j as u32;
                    b.docs[at + j] = doc;
                    if j + 1 < ids.len() && mask[j + 1] != 0 {
                        b.targets[at + j] = ids[j + 1];
                    }
                }
                spans.push((ex, at, ids.len()));
                at += ids.len();
                doc += 1;
            }
            for (j, t) in (at..(row + 1) * seq).enumerate() {
                b.positions[t] = j as u32;
                b.docs[t] = doc;
            }
            doc += 1;
        }
        model.forward(be, &b, None)?;
        let losses = model.token_losses(be)?;
        for (ex, at, len) in spans {
            let (mut tokens, mut sum) = (0usize, 0f64);
            for (&target, &loss) in b.targets[at..at + len].iter().zip(&losses[at..at + len]) {
                if target != IGNORE {
                    tokens += 1;
                    sum -= loss as f64;
                }
            }
            if !sum.is_finite() {
                bail!("example {ex}: the log-likelihood is {sum} (the model's logits are not finite)");
            }
            per_example.push(ExampleLikelihood { example: ex, tokens, sum_logprob: sum, mean_logprob: (tokens > 0).then(|| sum / tokens as f64) });
        }
        progress(per_example.len(), n)?;
    }
    let tokens: usize = per_example.iter().map(|e| e.tokens).sum();
    ensure!(tokens > 0, "no example has a token in the loss mask: nothing to score");
    let sum_logprob: f64 = per_example.iter().map(|e| e.sum_logprob).sum();
    let means: Vec<f64> = per_example.iter().filter_map(|e| e.mean_logprob).collect();
    let mean_logprob = sum_logprob / tokens as f64;
    Ok(Likelihood {
        examples: n,
        examples_without_tokens: n - means.len(),
        tokens,
        sum_logprob,
        mean_logprob,
        perplexity: (-mean_logprob).exp(),
        mean_example_logprob: means.iter().sum::<f64>() / means.len() as f64,
        per_example,
    })
}
