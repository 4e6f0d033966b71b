//! Text generation with a key/value cache, on any [`Backend`].
//!
//! [`generate`] runs in two phases:
//!
//! 1. **Prefill.** The prompts go through the forward pass as padded rows (right padding, one
//!    document per row, so a prompt never sees the padding; groups of rows sized to keep the
//!    activations near [`PREFILL_BYTES`]), except that the last block after attention and the
//!    output layer run only on each prompt's last token (`Model::prefill`). Each prompt's
//!    rotated keys and values, which the forward pass saves for its backward, are copied into
//!    its cache slot ([`Mem::Kv`], `[slots, max_len, kv_heads, head_dim]` per layer and for
//!    keys and values), and the logits of its last token give its first new token.
//! 2. **Decode.** Every unfinished sequence advances by one token per step, together: its last
//!    token goes through each block as [`Model::forward`] computes it, except that
//!    [`Backend::kv_store`] appends the token's key and value to the cache and
//!    [`Backend::attention_decode`] attends to the cached positions. A sequence that finishes
//!    **leaves the batch**: later steps hold only the unfinished ones (each still reads its own
//!    cache slot), so finished sequences cost nothing.
//!
//! Tokens are chosen on the host from the downloaded logits: the argmax (lowest id on ties)
//! at temperature 0, otherwise a draw from `softmax(logits / temperature)` restricted to the
//! top-p nucleus, with a random stream per sequence derived from the seed and the sequence's
//! index ([`seed::derive`]), so a sequence's draws do not depend on the other prompts.
//!
//! A sequence stops at the first of: an eos token ([`StopReason::Eos`]), a stop string in its
//! decoded new text ([`StopReason::Stop`]), `max_new_tokens` new tokens
//! ([`StopReason::MaxTokens`]), or prompt + new tokens reaching `max_position_embeddings`
//! ([`StopReason::ContextFull`]: every token of a sequence has a position the model knows).

use anyhow::{bail, ensure, Context as _};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{
    backend::{Backend, DecodeShape, Mem, Span, Trans, IGNORE},
    layout::ALIGN,
    model::{Batch, Model},
    seed,
};

/// About how many bytes of activations one prefill forward pass may use: prompts are prefilled
/// in groups of rows that stay near this (at least one row per group).
pub const PREFILL_BYTES: usize = 128 << 20;

/// How to choose tokens and when to stop.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; 0 is greedy (the argmax, the lowest id on ties).
    pub temperature: f32,
    /// Nucleus sampling: draw from the most likely tokens whose probabilities sum to at least
    /// `top_p` (in `(0, 1]`; 1 keeps the whole vocabulary). Ignored when greedy.
    pub top_p: f32,
    /// The most new tokens per sequence.
    pub max_new_tokens: usize,
    /// Stop strings: a sequence ends once its decoded new text contains one (e.g. `</action>`).
    pub stop: Vec<String>,
    /// End-of-sequence ids (typically the config's `eos_token_id`).
    pub eos: Vec<u32>,
}

impl Default for Sampling {
    /// Greedy, at most 256 new tokens, no stop strings, no eos.
    fn default() -> Sampling {
        Sampling { temperature: 0.0, top_p: 1.0, max_new_tokens: 256, stop: Vec::new(), eos: Vec::new() }
    }
}

/// Why a sequence ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// It produced one of [`Sampling::eos`].
    Eos,
    /// Its new text contains one of [`Sampling::stop`].
    Stop,
    /// It produced [`Sampling::max_new_tokens`] tokens.
    MaxTokens,
    /// Prompt and new tokens fill the model's `max_position_embeddings`.
    ContextFull,
}

/// One prompt's continuation.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    /// The new tokens, up to and including the eos or the token that completed a stop string.
    pub tokens: Vec<u32>,
    /// The decoded new tokens: without the eos token ([`StopReason::Eos`]), cut right after the
    /// stop string ([`StopReason::Stop`]; the one that ends first when several appear).
    pub text: String,
    pub reason: StopReason,
}

/// Continues every prompt (token ids) with the model whose parameters are already in `be` (as
/// for training: `model.alloc_params(be, false)`, then an upload). `decode` turns new token ids
/// into text (for stop strings and [`Generated::text`]). Sampled sequences are reproducible from
/// `seed`. The KV cache holds every prompt at once (`2 · layers · prompts · max_len · kv_dim`
/// floats, `max_len` the longest prompt plus `max_new_tokens`, at most the context): pass
/// prompts in groups when there are many.
///
/// Generation uses [`Mem::Acts`], [`Mem::Ids`] and [`Mem::Kv`], growing them when they are too
/// small (never shrinking them); the model's next forward pass plans its activations again.
pub fn generate(
    be: &mut dyn Backend,
    model: &mut Model,
    prompts: &[Vec<u32>],
    s: &Sampling,
    seed_value: u64,
    decode: &dyn Fn(&[u32]) -> anyhow::Result<String>,
) -> anyhow::Result<Vec<Generated>> {
    let c = model.config.clone();
    let ctx = c.max_position_embeddings;
    ensure!(s.temperature.is_finite() && s.temperature >= 0.0, "sampling temperature must be 0 (greedy) or positive, got {}", s.temperature);
    ensure!(s.top_p > 0.0 && s.top_p <= 1.0, "sampling top_p must be in (0, 1], got {}", s.top_p);
    ensure!(s.stop.iter().all(|x| !x.is_empty()), "a stop string is empty (it would end every sequence at once)");
    ensure!(
        be.mem_len(Mem::Params) >= model.layout.total,
        "the model's parameters are not in the backend: call `model.alloc_params(be, false)` and upload them first"
    );
    for (i, p) in prompts.iter().enumerate() {
        ensure!(!p.is_empty(), "prompt {i} is empty; generation needs at least one token to continue");
        ensure!(p.len() <= ctx, "prompt {i} has {} tokens, more than the model's context of {ctx} (max_position_embeddings)", p.len());
        if let Some(bad) = p.iter().find(|&&t| t as usize >= c.vocab_size) {
            bail!("prompt {i}: token id {bad} is outside the model's vocabulary of {}", c.vocab_size);
        }
    }
    let mut seqs: Vec<Seq> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| Seq {
            prompt_len: p.len(),
            tokens: Vec::new(),
            reason: None,
            text: None,
            rng: ChaCha8Rng::seed_from_u64(seed::derive(seed_value, &format!("generate {i}"))),
        })
        .collect();
    if prompts.is_empty() || s.max_new_tokens == 0 {
        return Ok(seqs.into_iter().map(|_| Generated { tokens: Vec::new(), text: String::new(), reason: StopReason::MaxTokens }).collect());
    }

    // The cache: slot i holds sequence i's positions 0..max_len.
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let shape = |batch| DecodeShape {
        batch,
        heads: c.num_attention_heads,
        kv_heads: c.num_key_value_heads,
        head_dim: c.head_dim,
        max_len: ctx.min(longest + s.max_new_tokens),
    };
    let ds = shape(prompts.len());
    let (kvd, slot_len) = (c.kv_dim(), ds.slot_len());
    let cache_len = (prompts.len() * slot_len).div_ceil(ALIGN) * ALIGN;
    // Slots are written before they are read, so a cache left by an earlier call is reused.
    be.grow(Mem::Kv, 2 * c.num_hidden_layers * cache_len).context("allocating the KV cache")?;
    let cache =
        |l: usize| (Span::new(Mem::Kv, 2 * l * cache_len, prompts.len() * slot_len), Span::new(Mem::Kv, (2 * l + 1) * cache_len, prompts.len() * slot_len));

    // Prefill, in groups of rows.
    let mut logits = vec![0f32; c.vocab_size];
    let mut start = 0;
    while start < prompts.len() {
        let mut end = start + 1;
        let mut seq = prompts[start].len();
        while end < prompts.len() && model.prefill_acts_len(end + 1 - start, seq.max(prompts[end].len())) * 4 <= PREFILL_BYTES {
            seq = seq.max(prompts[end].len());
            end += 1;
        }
        let rows = end - start;
        let mut b = Batch {
            rows,
            seq,
            ids: vec![0; rows * seq],
            targets: vec![IGNORE; rows * seq],
            positions: Vec::with_capacity(rows * seq),
            docs: Vec::with_capacity(rows * seq),
        };
        for (r, p) in prompts[start..end].iter().enumerate() {
            b.ids[r * seq..r * seq + p.len()].copy_from_slice(p);
            b.positions.extend(0..seq as u32);
            b.docs.extend(std::iter::repeat_n(r as u32, seq));
        }
        let last: Vec<usize> = prompts[start..end].iter().map(|p| p.len() - 1).collect();
        let (last_logits, kv) = model.prefill(be, &b, &last)?;
        for (r, i) in (start..end).enumerate() {
            let len = prompts[i].len();
            for (l, &(k, v)) in kv.iter().enumerate() {
                let (kc, vc) = cache(l);
                be.copy(kc.slice(i * slot_len, len * kvd), k.slice(r * seq * kvd, len * kvd));
                be.copy(vc.slice(i * slot_len, len * kvd), v.slice(r * seq * kvd, len * kvd));
            }
            be.download(last_logits.slice(r * c.vocab_size, c.vocab_size), &mut logits)?;
            seqs[i].advance(&logits, s, ctx, decode).with_context(|| format!("prompt {i}, after the prompt"))?;
        }
        start = end;
    }

    // Decode: one token per unfinished sequence per step.
    model.forget_plan();
    let plan = DecodePlan::new(model, prompts.len());
    // The prefill's buffers are usually larger already; they are reused as they are.
    be.grow(Mem::Acts, plan.acts_len).context("allocating the decoding activations")?;
    be.grow(Mem::Ids, plan.ids_len).context("allocating the decoding ids")?;
    let mut logits = Vec::new();
    for step in 1.. {
        let active: Vec<usize> = (0..seqs.len()).filter(|&i| seqs[i].reason.is_none()).collect();
        if active.is_empty() {
            break;
        }
        let nb = active.len();
        let pos: Vec<u32> = active.iter().map(|&i| (seqs[i].prompt_len + seqs[i].tokens.len() - 1) as u32).collect();
        let ids: Vec<u32> = active.iter().map(|&i| *seqs[i].tokens.last().expect("an active sequence has a token")).collect();
        be.upload_ids(plan.ids.slice(0, nb), &ids)?;
        be.upload_ids(plan.pos.slice(0, nb), &pos)?;
        be.upload_ids(plan.slots.slice(0, nb), &active.iter().map(|&i| i as u32).collect::<Vec<_>>())?;
        be.upload_ids(plan.lens.slice(0, nb), &pos.iter().map(|p| p + 1).collect::<Vec<_>>())?;
        let out = plan.step(be, model, nb, shape(nb), &cache);
        logits.resize(nb * c.vocab_size, 0.0);
        be.download(out, &mut logits)?;
        for (&i, row) in active.iter().zip(logits.chunks_exact(c.vocab_size)) {
            seqs[i].advance(row, s, ctx, decode).with_context(|| format!("prompt {i}, decoding step {step}"))?;
        }
    }
    seqs.into_iter()
        .enumerate()
        .map(|(i, q)| {
            let reason = q.reason.expect("every sequence finished");
            let text = match q.text {
                Some(t) => t,
                None => {
                    decode(&q.tokens[..q.tokens.len() - usize::from(reason == StopReason::Eos)]).with_context(|| format!("decoding the text of prompt {i}"))?
                }
            };
            Ok(Generated { tokens: q.tokens, text, reason })
        })
        .collect()
}

/// One sequence's state.
struct Seq {
    prompt_len: usize,
    tokens: Vec<u32>,
    reason: Option<StopReason>,
    /// The final text, once a stop string cut it.
    text: Option<String>,
    rng: ChaCha8Rng,
}

impl Seq {
    /// Chooses the next token from `logits` (unless the context is full) and decides whether the
    /// sequence ends: eos, then stop strings, then `max_new_tokens`, then the context.
    fn advance(&mut self, logits: &[f32], s: &Sampling, ctx: usize, decode: &dyn Fn(&[u32]) -> anyhow::Result<String>) -> anyhow::Result<()> {
        if self.reason.is_some() {
            return Ok(());
        }
        if self.prompt_len + self.tokens.len() >= ctx {
            self.reason = Some(StopReason::ContextFull);
            return Ok(());
        }
        let t = choose(logits, s, &mut self.rng)?;
        self.tokens.push(t);
        if s.eos.contains(&t) {
            self.reason = Some(StopReason::Eos);
            return Ok(());
        }
        if !s.stop.is_empty() {
            let text = decode(&self.tokens).context("decoding the new tokens")?;
            // Earlier steps saw no stop string, so any one here ends in the new token's text.
            if let Some(end) = s.stop.iter().filter_map(|st| text.find(st.as_str()).map(|at| at + st.len())).min() {
                self.text = Some(text[..end].to_string());
                self.reason = Some(StopReason::Stop);
                return Ok(());
            }
        }
        if self.tokens.len() >= s.max_new_tokens {
            self.reason = Some(StopReason::MaxTokens);
        } else if self.prompt_len + self.tokens.len() >= ctx {
            self.reason = Some(StopReason::ContextFull);
        }
        Ok(())
    }
}

/// The argmax, the lowest id on ties.
fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (j, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = j;
        }
    }
    best as u32
}

/// The next token: the argmax at temperature 0, otherwise a draw from `softmax(logits / T)`
/// over the top-p nucleus (tokens by decreasing probability, lower id first on ties, until their
/// sum reaches `top_p`), computed in f64 in a fixed order.
fn choose(logits: &[f32], s: &Sampling, rng: &mut ChaCha8Rng) -> anyhow::Result<u32> {
    if let Some(bad) = logits.iter().position(|x| !x.is_finite()) {
        bail!("the logit of token {bad} is {}", logits[bad]);
    }
    if s.temperature == 0.0 {
        return Ok(argmax(logits));
    }
    let m = logits[argmax(logits) as usize] as f64;
    let t = s.temperature as f64;
    let w: Vec<f64> = logits.iter().map(|&x| ((x as f64 - m) / t).exp()).collect();
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let kept = if s.top_p < 1.0 {
        order.sort_by(|&a, &b| w[b as usize].total_cmp(&w[a as usize]).then(a.cmp(&b)));
        let goal = s.top_p as f64 * w.iter().sum::<f64>();
        let mut cum = 0.0;
        let mut k = 0;
        while k < order.len() && (k == 0 || cum < goal) {
            cum += w[order[k] as usize];
            k += 1;
        }
        &order[..k]
    } else {
        &order[..]
    };
    let total: f64 = kept.iter().map(|&j| w[j as usize]).sum();
    let mut u = rng.random::<f64>() * total;
    let mut last = kept[0];
    for &j in kept {
        let wj = w[j as usize];
        if wj > 0.0 {
            if u < wj {
                return Ok(j);
            }
            u -= wj;
            last = j;
        }
    }
    Ok(last) // rounding left `u` just above the total
}

/// The spans of one decoding step, for up to `rows` sequences: activations in [`Mem::Acts`],
/// ids in [`Mem::Ids`]. A step of `nb` sequences uses the first `nb` rows of each.
struct DecodePlan {
    x: Span,
    ln: Span,
    rstd: Span,
    q: Span,
    k: Span,
    v: Span,
    att: Span,
    tmp: Span,
    gate: Span,
    up: Span,
    act: Span,
    logits: Span,
    ids: Span,
    pos: Span,
    slots: Span,
    lens: Span,
    acts_len: usize,
    ids_len: usize,
}

impl DecodePlan {
    fn new(model: &Model, rows: usize) -> DecodePlan {
        let c = &model.config;
        let mut next = 0;
        let mut take = |mem: Mem, len: usize| {
            let s = Span::new(mem, next, rows * len);
            next += (rows * len).div_ceil(ALIGN) * ALIGN;
            s
        };
        let (d, i, qd, kvd) = (c.hidden_size, c.intermediate_size, c.q_dim(), c.kv_dim());
        let a = Mem::Acts;
        let (x, ln, rstd, q, k, v, att, tmp) = (take(a, d), take(a, d), take(a, 1), take(a, qd), take(a, kvd), take(a, kvd), take(a, qd), take(a, d));
        let (gate, up, act, logits) = (take(a, i), take(a, i), take(a, i), take(a, c.vocab_size));
        let acts_len = next;
        next = 0;
        let mut take = |len: usize| {
            let s = Span::new(Mem::Ids, next, len);
            next += len;
            s
        };
        let (ids, pos, slots, lens) = (take(rows), take(rows), take(rows), take(rows));
        DecodePlan { x, ln, rstd, q, k, v, att, tmp, gate, up, act, logits, ids, pos, slots, lens, acts_len, ids_len: next }
    }

    /// One step of `nb` sequences whose ids, positions, slots and lengths are uploaded: the
    /// blocks of [`Model::forward`] on one token each, with the cache for attention. Returns the
    /// logits' span (`nb × vocab`).
    fn step(&self, be: &mut dyn Backend, model: &Model, nb: usize, ds: DecodeShape, cache: &dyn Fn(usize) -> (Span, Span)) -> Span {
        let c = &model.config;
        let l = &model.layout;
        let w = |index: usize| l.span(index, Mem::Params);
        let (d, i, qd, kvd, vocab) = (c.hidden_size, c.intermediate_size, c.q_dim(), c.kv_dim(), c.vocab_size);
        let rows = |s: Span, width: usize| s.slice(0, nb * width);
        let (x, ln, rstd, q, k, v) = (rows(self.x, d), rows(self.ln, d), rows(self.rstd, 1), rows(self.q, qd), rows(self.k, kvd), rows(self.v, kvd));
        let (att, tmp, gate, up, act, logits) =
            (rows(self.att, qd), rows(self.tmp, d), rows(self.gate, i), rows(self.up, i), rows(self.act, i), rows(self.logits, vocab));
        let (ids, pos, slots, lens) = (rows(self.ids, 1), rows(self.pos, 1), rows(self.slots, 1), rows(self.lens, 1));
        let (eps, theta) = (c.rms_norm_eps as f32, c.rope_theta as f32);
        be.embedding_fwd(x, w(l.embed), ids, nb, d);
        for (li, b) in l.blocks.iter().enumerate() {
            let (kc, vc) = cache(li);
            be.rmsnorm_fwd(ln, rstd, x, w(b.ln1), nb, d, eps);
            be.matmul(q, ln, Trans::N, w(b.q), Trans::T, nb, d, qd, false);
            be.matmul(k, ln, Trans::N, w(b.k), Trans::T, nb, d, kvd, false);
            be.matmul(v, ln, Trans::N, w(b.v), Trans::T, nb, d, kvd, false);
            be.rope_fwd(q, pos, nb, c.num_attention_heads, c.head_dim, theta);
            be.rope_fwd(k, pos, nb, c.num_key_value_heads, c.head_dim, theta);
            be.kv_store(kc, vc, k, v, slots, pos, ds);
            be.attention_decode(att, q, kc, vc, slots, lens, ds);
            be.matmul(tmp, att, Trans::N, w(b.o), Trans::T, nb, qd, d, false);
            be.add(x, x, tmp);
            be.rmsnorm_fwd(ln, rstd, x, w(b.ln2), nb, d, eps);
            be.matmul(gate, ln, Trans::N, w(b.gate), Trans::T, nb, d, i, false);
            be.matmul(up, ln, Trans::N, w(b.up), Trans::T, nb, d, i, false);
            be.swiglu_fwd(act, gate, up);
            be.matmul(tmp, act, Trans::N, w(b.down), Trans::T, nb, i, d, false);
            be.add(x, x, tmp);
        }
        be.rmsnorm_fwd(ln, rstd, x, w(l.norm), nb, d, eps);
        be.matmul(logits, ln, Trans::N, w(l.lm_head), Trans::T, nb, d, vocab, false);
        logits
    }
}
