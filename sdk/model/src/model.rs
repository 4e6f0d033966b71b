//! The Llama decoder as transformers' `LlamaForCausalLM` computes it, forward and backward,
//! written once against [`Backend`]. The forward pass saves what the backward pass needs
//! (every block's input, the norms' inverse rms, rotated q and k, attention's log-sum-exp, the
//! MLP's inputs); the backward pass is the forward's calls in reverse. Activations are planned
//! once per batch shape and reused across steps.

use anyhow::{bail, ensure};

use crate::{
    backend::{AttnShape, Backend, Mem, Span, Trans, IGNORE},
    config::LlamaConfig,
    layout::{self, Layout, ALIGN},
};

/// One batch of packed rows, `rows × seq` tokens, as the host prepares it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub rows: usize,
    pub seq: usize,
    pub ids: Vec<u32>,
    /// The id each position predicts, or [`IGNORE`].
    pub targets: Vec<u32>,
    /// Position ids, restarting at 0 at each document.
    pub positions: Vec<u32>,
    /// A document id per token; attention never crosses documents.
    pub docs: Vec<u32>,
}

impl Batch {
    pub fn tokens(&self) -> usize {
        self.rows * self.seq
    }

    /// Tokens in the loss.
    pub fn loss_tokens(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE).count()
    }
}

/// Spans of one block's saved activations (in [`Mem::Acts`]).
#[derive(Clone, Copy, Debug)]
struct BlockActs {
    /// The block's input (the residual stream before it).
    x: Span,
    ln1: Span,
    rstd1: Span,
    q: Span,
    k: Span,
    v: Span,
    att: Span,
    lse: Span,
    mlp: MlpActs,
}

/// The activations of a block's MLP half, for `n` tokens.
#[derive(Clone, Copy, Debug)]
struct MlpActs {
    /// The residual stream after attention.
    mid: Span,
    ln2: Span,
    rstd2: Span,
    gate: Span,
    up: Span,
    act: Span,
}

impl MlpActs {
    fn take(a: &mut Arena, n: usize, c: &LlamaConfig) -> MlpActs {
        let (d, i) = (c.hidden_size, c.intermediate_size);
        MlpActs { mid: a.take(n * d), ln2: a.take(n * d), rstd2: a.take(n), gate: a.take(n * i), up: a.take(n * i), act: a.take(n * i) }
    }
}

/// The spans the part of a block after attention reads and writes (`n` tokens):
/// `mid = x + o(att)`, `out = mid + down(silu(gate(ln2(mid))) ⊙ up(ln2(mid)))`.
#[derive(Clone, Copy, Debug)]
struct TailActs {
    x: Span,
    att: Span,
    mlp: MlpActs,
    /// A projection before it joins the residual stream.
    tmp: Span,
    out: Span,
}

/// A prefill's own spans, one token per row (see [`Model::prefill`]): the last block's tail
/// and the output layer run on each row's last position only.
#[derive(Clone, Copy, Debug)]
struct LastActs {
    tail: TailActs,
    lnf: Span,
    rstdf: Span,
    logits: Span,
}

impl BlockActs {
    /// The spans of this block's part after attention, writing `out`.
    fn tail(&self, tmp: Span, out: Span) -> TailActs {
        TailActs { x: self.x, att: self.att, mlp: self.mlp, tmp, out }
    }
}

/// Every activation span for one (rows, seq) shape.
#[derive(Clone, Debug)]
struct Plan {
    rows: usize,
    seq: usize,
    /// A prefill's plan ([`Model::prefill`]): no logits or losses for every token.
    prefill: bool,
    blocks: Vec<BlockActs>,
    /// The residual stream after the last block.
    x_out: Span,
    lnf: Span,
    rstdf: Span,
    logits: Span,
    losses: Span,
    /// A block's output projection before it joins the residual stream.
    tmp: Span,
    ids: Span,
    targets: Span,
    positions: Span,
    docs: Span,
    last: LastActs,
    // Backward, in Mem::DActs.
    dx: Span,
    dln: Span,
    dq: Span,
    dk: Span,
    dv: Span,
    datt: Span,
    dgate: Span,
    dup: Span,
    dact: Span,
}

/// Hands out aligned spans of one buffer.
struct Arena {
    mem: Mem,
    next: usize,
}

impl Arena {
    fn take(&mut self, len: usize) -> Span {
        let s = Span::new(self.mem, self.next, len);
        self.next += len.div_ceil(ALIGN) * ALIGN;
        s
    }
}

impl Plan {
    fn new(c: &LlamaConfig, rows: usize, seq: usize, prefill: bool) -> Plan {
        let n = rows * seq;
        let every = if prefill { 0 } else { n };
        let (d, i, qd, kvd) = (c.hidden_size, c.intermediate_size, c.q_dim(), c.kv_dim());
        let mut a = Arena { mem: Mem::Acts, next: 0 };
        let blocks = (0..c.num_hidden_layers)
            .map(|_| BlockActs {
                x: a.take(n * d),
                ln1: a.take(n * d),
                rstd1: a.take(n),
                q: a.take(n * qd),
                k: a.take(n * kvd),
                v: a.take(n * kvd),
                att: a.take(n * qd),
                lse: a.take(n * c.num_attention_heads),
                mlp: MlpActs::take(&mut a, n, c),
            })
            .collect();
        let (x_out, lnf, rstdf, logits, losses, tmp) = (a.take(n * d), a.take(n * d), a.take(n), a.take(every * c.vocab_size), a.take(every), a.take(n * d));
        let last = LastActs {
            tail: TailActs { x: a.take(rows * d), att: a.take(rows * qd), mlp: MlpActs::take(&mut a, rows, c), tmp: a.take(rows * d), out: a.take(rows * d) },
            lnf: a.take(rows * d),
            rstdf: a.take(rows),
            logits: a.take(rows * c.vocab_size),
        };
        let mut ids = Arena { mem: Mem::Ids, next: 0 };
        let (idsp, targets, positions, docs) = (ids.take(n), ids.take(n), ids.take(n), ids.take(n));
        let mut g = Arena { mem: Mem::DActs, next: 0 };
        Plan {
            rows,
            seq,
            prefill,
            blocks,
            x_out,
            lnf,
            rstdf,
            logits,
            losses,
            tmp,
            ids: idsp,
            targets,
            positions,
            docs,
            last,
            dx: g.take(n * d),
            dln: g.take(n * d),
            dq: g.take(n * qd),
            dk: g.take(n * kvd),
            dv: g.take(n * kvd),
            datt: g.take(n * qd),
            dgate: g.take(n * i),
            dup: g.take(n * i),
            dact: g.take(n * i),
        }
    }

    fn acts_len(&self) -> usize {
        self.last.logits.end()
    }
    fn ids_len(&self) -> usize {
        self.docs.end()
    }
    fn dacts_len(&self) -> usize {
        self.dact.end()
    }
}

/// The model: its config, parameter layout and the current activation plan. Parameters live in
/// the backend ([`Mem::Params`]); this struct only knows where.
pub struct Model {
    pub config: LlamaConfig,
    pub layout: Layout,
    plan: Option<Plan>,
}

impl Model {
    pub fn new(config: LlamaConfig) -> anyhow::Result<Model> {
        config.validate()?;
        let layout = Layout::new(&config);
        Ok(Model { config, layout, plan: None })
    }

    /// Allocates the parameter-shaped buffers: parameters, and for training their gradients and
    /// AdamW moments.
    pub fn alloc_params(&self, be: &mut dyn Backend, training: bool) -> anyhow::Result<()> {
        be.alloc(Mem::Params, self.layout.total)?;
        if training {
            for m in [Mem::Grads, Mem::AdamM, Mem::AdamV] {
                be.alloc(m, self.layout.total)?;
            }
        }
        Ok(())
    }

    /// The whole parameter buffer.
    pub fn all(&self, mem: Mem) -> Span {
        Span::new(mem, 0, self.layout.total)
    }

    fn w(&self, index: usize) -> Span {
        self.layout.span(index, Mem::Params)
    }

    fn g(&self, index: usize) -> Span {
        self.layout.span(index, Mem::Grads)
    }

    /// Plans activations for `rows × seq` tokens, growing the buffers when they are too small.
    /// Buffers never shrink: prompts of every length come one group after another, and a
    /// fresh buffer for each would be zeroed (and faulted in) every time.
    fn plan(&mut self, be: &mut dyn Backend, rows: usize, seq: usize, training: bool, prefill: bool) -> anyhow::Result<Plan> {
        if let Some(p) = &self.plan {
            if p.rows == rows && p.seq == seq && p.prefill == prefill && (!training || be.mem_len(Mem::DActs) >= p.dacts_len()) {
                return Ok(p.clone());
            }
        }
        let p = Plan::new(&self.config, rows, seq, prefill);
        be.grow(Mem::Acts, p.acts_len())?;
        be.grow(Mem::Ids, p.ids_len())?;
        if training {
            be.grow(Mem::DActs, p.dacts_len())?;
        }
        self.plan = Some(p.clone());
        Ok(p)
    }

    /// How many activation elements [`Model::prefill`] takes for `rows × seq` tokens.
    pub fn prefill_acts_len(&self, rows: usize, seq: usize) -> usize {
        Plan::new(&self.config, rows, seq, true).acts_len()
    }

    fn attn_shape(&self, p: &Plan) -> AttnShape {
        let c = &self.config;
        AttnShape { batch: p.rows, seq: p.seq, heads: c.num_attention_heads, kv_heads: c.num_key_value_heads, head_dim: c.head_dim }
    }

    /// Checks a batch against the config before it reaches a kernel.
    fn check_batch(&self, b: &Batch) -> anyhow::Result<()> {
        let n = b.tokens();
        ensure!(n > 0, "empty batch");
        for (name, v) in [("ids", &b.ids), ("targets", &b.targets), ("positions", &b.positions), ("docs", &b.docs)] {
            ensure!(v.len() == n, "batch `{name}` has {} values for {} × {} tokens", v.len(), b.rows, b.seq);
        }
        let vocab = self.config.vocab_size as u32;
        if let Some(bad) = b.ids.iter().find(|&&t| t >= vocab) {
            bail!("token id {bad} is outside the model's vocabulary of {vocab}");
        }
        if let Some(bad) = b.targets.iter().find(|&&t| t >= vocab && t != IGNORE) {
            bail!("target id {bad} is outside the model's vocabulary of {vocab}");
        }
        Ok(())
    }

    /// Runs the forward pass, leaving logits in the backend. Returns the sum of the per-token
    /// losses and the number of tokens in the loss. With `grad_scale = Some(s)` the logits are
    /// replaced by `s ×` their gradient, ready for [`Model::backward`].
    pub fn forward(&mut self, be: &mut dyn Backend, b: &Batch, grad_scale: Option<f32>) -> anyhow::Result<(f64, usize)> {
        self.check_batch(b)?;
        let p = self.plan(be, b.rows, b.seq, grad_scale.is_some(), false)?;
        be.upload_ids(p.ids, &b.ids)?;
        be.upload_ids(p.targets, &b.targets)?;
        be.upload_ids(p.positions, &b.positions)?;
        be.upload_ids(p.docs, &b.docs)?;
        self.forward_blocks(be, &p, None);
        self.head(be, p.x_out, p.lnf, p.rstdf, p.logits, p.rows * p.seq);
        let (n, c) = (b.tokens(), &self.config);
        be.cross_entropy(p.logits, p.losses, p.targets, n, c.vocab_size, grad_scale);
        let mut losses = vec![0f32; n];
        be.download(p.losses, &mut losses)?;
        let sum = losses.iter().map(|&l| l as f64).sum();
        Ok((sum, b.loss_tokens()))
    }

    /// The logits of the last forward pass (`rows × seq × vocab`), before any loss gradient
    /// replaced them (call after `forward(.., None)`; a prefill leaves none).
    pub fn logits(&self, be: &mut dyn Backend) -> anyhow::Result<Vec<f32>> {
        let p = self.plan.as_ref().ok_or_else(|| anyhow::anyhow!("no forward pass has run"))?;
        let mut out = vec![0f32; p.logits.len];
        be.download(p.logits, &mut out)?;
        Ok(out)
    }

    /// The per-token losses of the last forward pass (`rows × seq`): the cross-entropy
    /// `−log p(target)` of each position, 0 where the target is [`IGNORE`].
    pub fn token_losses(&self, be: &mut dyn Backend) -> anyhow::Result<Vec<f32>> {
        let p = self.plan.as_ref().ok_or_else(|| anyhow::anyhow!("no forward pass has run"))?;
        let mut out = vec![0f32; p.losses.len];
        be.download(p.losses, &mut out)?;
        Ok(out)
    }

    /// The forward pass of generation's prefill: every layer's keys and values for all
    /// positions, logits only at `last[r]`, the last position of row `r` (the batch's
    /// `targets` are not read). The last block's part after attention, the final norm and the
    /// output layer run on those positions alone, which saves the output layer (hidden ×
    /// vocabulary per token) and most of the last block. Returns the logits (`rows × vocab`)
    /// and each layer's rotated keys and values (each `rows × seq × kv_dim`, token-major).
    pub fn prefill(&mut self, be: &mut dyn Backend, b: &Batch, last: &[usize]) -> anyhow::Result<(Span, Vec<(Span, Span)>)> {
        self.check_batch(b)?;
        ensure!(last.len() == b.rows, "prefill: {} last positions for {} rows", last.len(), b.rows);
        ensure!(last.iter().all(|&t| t < b.seq), "prefill: a last position is outside the row of {} tokens", b.seq);
        let p = self.plan(be, b.rows, b.seq, false, true)?;
        be.upload_ids(p.ids, &b.ids)?;
        be.upload_ids(p.positions, &b.positions)?;
        be.upload_ids(p.docs, &b.docs)?;
        self.forward_blocks(be, &p, Some(last));
        let l = &p.last;
        self.head(be, l.tail.out, l.lnf, l.rstdf, l.logits, p.rows);
        Ok((l.logits, p.blocks.iter().map(|a| (a.k, a.v)).collect()))
    }

    /// Forgets the activation plan, so that the next forward pass allocates its buffers again
    /// (generation reuses [`Mem::Acts`] and [`Mem::Ids`] for its decoding steps).
    pub(crate) fn forget_plan(&mut self) {
        self.plan = None;
    }

    /// Runs every block, leaving the last block's output in `p.x_out`. With `last` (a prefill),
    /// the last block's part after attention runs only on position `last[r]` of each row `r`,
    /// and its output is `p.last.tail.out` (`rows × hidden`) instead.
    fn forward_blocks(&self, be: &mut dyn Backend, p: &Plan, last: Option<&[usize]>) {
        let c = &self.config;
        let (n, d, qd, kvd) = (p.rows * p.seq, c.hidden_size, c.q_dim(), c.kv_dim());
        let eps = c.rms_norm_eps as f32;
        let theta = c.rope_theta as f32;
        let l = &self.layout;
        be.embedding_fwd(p.blocks.first().map_or(p.x_out, |a| a.x), self.w(l.embed), p.ids, n, d);
        for (li, (a, w)) in p.blocks.iter().zip(&l.blocks).enumerate() {
            be.rmsnorm_fwd(a.ln1, a.rstd1, a.x, self.w(w.ln1), n, d, eps);
            be.matmul(a.q, a.ln1, Trans::N, self.w(w.q), Trans::T, n, d, qd, false);
            be.matmul(a.k, a.ln1, Trans::N, self.w(w.k), Trans::T, n, d, kvd, false);
            be.matmul(a.v, a.ln1, Trans::N, self.w(w.v), Trans::T, n, d, kvd, false);
            be.rope_fwd(a.q, p.positions, n, c.num_attention_heads, c.head_dim, theta);
            be.rope_fwd(a.k, p.positions, n, c.num_key_value_heads, c.head_dim, theta);
            be.attention_fwd(a.att, a.lse, a.q, a.k, a.v, p.docs, self.attn_shape(p));
            match (last, p.blocks.get(li + 1)) {
                (_, Some(next)) => self.block_tail(be, w, &a.tail(p.tmp, next.x), n),
                (None, None) => self.block_tail(be, w, &a.tail(p.tmp, p.x_out), n),
                (Some(last), None) => {
                    // Gather each row's last position, then finish the block on those alone.
                    let t = &p.last.tail;
                    for (r, &pos) in last.iter().enumerate() {
                        let at = r * p.seq + pos;
                        be.copy(t.x.slice(r * d, d), a.x.slice(at * d, d));
                        be.copy(t.att.slice(r * qd, qd), a.att.slice(at * qd, qd));
                    }
                    self.block_tail(be, w, t, p.rows);
                }
            }
        }
    }

    /// The part of block `w` after attention, on `n` tokens (see [`TailActs`]).
    fn block_tail(&self, be: &mut dyn Backend, w: &layout::Block, t: &TailActs, n: usize) {
        let c = &self.config;
        let (d, i, qd) = (c.hidden_size, c.intermediate_size, c.q_dim());
        let m = &t.mlp;
        be.matmul(t.tmp, t.att, Trans::N, self.w(w.o), Trans::T, n, qd, d, false);
        be.add(m.mid, t.x, t.tmp);
        be.rmsnorm_fwd(m.ln2, m.rstd2, m.mid, self.w(w.ln2), n, d, c.rms_norm_eps as f32);
        be.matmul(m.gate, m.ln2, Trans::N, self.w(w.gate), Trans::T, n, d, i, false);
        be.matmul(m.up, m.ln2, Trans::N, self.w(w.up), Trans::T, n, d, i, false);
        be.swiglu_fwd(m.act, m.gate, m.up);
        be.matmul(t.tmp, m.act, Trans::N, self.w(w.down), Trans::T, n, i, d, false);
        be.add(t.out, m.mid, t.tmp);
    }

    /// The final norm and the output layer on `n` tokens of `x`.
    fn head(&self, be: &mut dyn Backend, x: Span, lnf: Span, rstdf: Span, logits: Span, n: usize) {
        let (c, l) = (&self.config, &self.layout);
        be.rmsnorm_fwd(lnf, rstdf, x, self.w(l.norm), n, c.hidden_size, c.rms_norm_eps as f32);
        be.matmul(logits, lnf, Trans::N, self.w(l.lm_head), Trans::T, n, c.hidden_size, c.vocab_size, false);
    }

    /// Adds this batch's parameter gradients into [`Mem::Grads`]; needs the forward pass that
    /// just ran with a `grad_scale`.
    pub fn backward(&mut self, be: &mut dyn Backend) -> anyhow::Result<()> {
        let p = self.plan.clone().ok_or_else(|| anyhow::anyhow!("backward needs a forward pass first"))?;
        let c = &self.config;
        let l = &self.layout;
        let (n, d, i, qd, kvd, v) = (p.rows * p.seq, c.hidden_size, c.intermediate_size, c.q_dim(), c.kv_dim(), c.vocab_size);
        let theta = c.rope_theta as f32;
        // Output layer: logits = lnf · Wᵀ (the logits now hold their gradient).
        be.matmul(self.g(l.lm_head), p.logits, Trans::T, p.lnf, Trans::N, v, n, d, true);
        be.matmul(p.dln, p.logits, Trans::N, self.w(l.lm_head), Trans::N, n, v, d, false);
        be.zero(p.dx);
        be.rmsnorm_bwd(p.dx, self.g(l.norm), p.dln, p.x_out, self.w(l.norm), p.rstdf, n, d);
        for (a, w) in p.blocks.iter().zip(&l.blocks).rev() {
            // MLP: out = mid + down(silu(gate(ln2)) ⊙ up(ln2)); dx is d(out).
            be.matmul(p.dact, p.dx, Trans::N, self.w(w.down), Trans::N, n, d, i, false);
            be.matmul(self.g(w.down), p.dx, Trans::T, a.mlp.act, Trans::N, d, n, i, true);
            be.swiglu_bwd(p.dgate, p.dup, p.dact, a.mlp.gate, a.mlp.up);
            be.matmul(p.dln, p.dgate, Trans::N, self.w(w.gate), Trans::N, n, i, d, false);
            be.matmul(p.dln, p.dup, Trans::N, self.w(w.up), Trans::N, n, i, d, true);
            be.matmul(self.g(w.gate), p.dgate, Trans::T, a.mlp.ln2, Trans::N, i, n, d, true);
            be.matmul(self.g(w.up), p.dup, Trans::T, a.mlp.ln2, Trans::N, i, n, d, true);
            be.rmsnorm_bwd(p.dx, self.g(w.ln2), p.dln, a.mlp.mid, self.w(w.ln2), a.mlp.rstd2, n, d);
            // Attention: mid = x + o(attention(rope(q(ln1)), rope(k(ln1)), v(ln1))); dx is d(mid).
            be.matmul(p.datt, p.dx, Trans::N, self.w(w.o), Trans::N, n, d, qd, false);
            be.matmul(self.g(w.o), p.dx, Trans::T, a.att, Trans::N, d, n, qd, true);
            be.attention_bwd(p.dq, p.dk, p.dv, p.datt, a.att, a.lse, a.q, a.k, a.v, p.docs, self.attn_shape(&p));
            be.rope_bwd(p.dq, p.positions, n, c.num_attention_heads, c.head_dim, theta);
            be.rope_bwd(p.dk, p.positions, n, c.num_key_value_heads, c.head_dim, theta);
            be.matmul(p.dln, p.dq, Trans::N, self.w(w.q), Trans::N, n, qd, d, false);
            be.matmul(p.dln, p.dk, Trans::N, self.w(w.k), Trans::N, n, kvd, d, true);
            be.matmul(p.dln, p.dv, Trans::N, self.w(w.v), Trans::N, n, kvd, d, true);
            be.matmul(self.g(w.q), p.dq, Trans::T, a.ln1, Trans::N, qd, n, d, true);
            be.matmul(self.g(w.k), p.dk, Trans::T, a.ln1, Trans::N, kvd, n, d, true);
            be.matmul(self.g(w.v), p.dv, Trans::T, a.ln1, Trans::N, kvd, n, d, true);
            be.rmsnorm_bwd(p.dx, self.g(w.ln1), p.dln, a.x, self.w(w.ln1), a.rstd1, n, d);
        }
        be.embedding_bwd(self.g(l.embed), p.dx, p.ids, n, d);
        Ok(())
    }
}
