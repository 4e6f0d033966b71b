//! Cross-entropy over rows of logits: a max-subtracted log-softmax (exponentials in f32, their
//! sum in f64), `loss = lse − logit[target]`, and with a gradient scale the logits overwritten by
//! `s·(softmax − onehot)`. Rows whose target is [`IGNORE`] have loss 0 and a zero gradient.

use crate::math;
use agentmerge_model::backend::IGNORE;
use rayon::prelude::*;

/// The row's target as an index; panics on one outside the vocabulary.
fn target(t: u32, vocab: usize) -> Option<usize> {
    if t == IGNORE {
        return None;
    }
    assert!((t as usize) < vocab, "cross_entropy: target {t} outside a vocabulary of {vocab}");
    Some(t as usize)
}

/// Rows per task, for small vocabularies.
fn rows_per_task(vocab: usize) -> usize {
    (1usize << 14).div_ceil(vocab.max(1))
}

/// Losses only; the logits are left as they are.
pub fn forward(logits: &[f32], losses: &mut [f32], targets: &[u32], vocab: usize) {
    let r = rows_per_task(vocab);
    losses.par_chunks_mut(r).zip(logits.par_chunks(r * vocab)).zip(targets.par_chunks(r)).for_each(|((losses, logits), targets)| {
        for ((loss, row), &t) in losses.iter_mut().zip(logits.chunks_exact(vocab)).zip(targets) {
            *loss = match target(t, vocab) {
                None => 0.0,
                Some(t) => {
                    let m = math::max(row);
                    let sum = math::sum_exp(row, m);
                    ((m as f64 + sum.ln()) - row[t] as f64) as f32
                }
            };
        }
    });
}

/// Losses, and the logits overwritten by `s·(softmax − onehot)`.
pub fn forward_backward(logits: &mut [f32], losses: &mut [f32], targets: &[u32], vocab: usize, s: f32) {
    let r = rows_per_task(vocab);
    losses.par_chunks_mut(r).zip(logits.par_chunks_mut(r * vocab)).zip(targets.par_chunks(r)).for_each(|((losses, logits), targets)| {
        for ((loss, row), &t) in losses.iter_mut().zip(logits.chunks_exact_mut(vocab)).zip(targets) {
            let Some(t) = target(t, vocab) else {
                *loss = 0.0;
                row.fill(0.0);
                continue;
            };
            let m = math::max(row);
            let x_t = row[t];
            // Keep the exponentials in the row: the gradient reuses them.
            let sum = math::exp_sum(row, m);
            *loss = ((m as f64 + sum.ln()) - x_t as f64) as f32;
            let k = (s as f64 / sum) as f32;
            for x in row.iter_mut() {
                *x *= k;
            }
            row[t] -= s;
        }
    });
}
