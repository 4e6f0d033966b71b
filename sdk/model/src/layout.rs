//! Where every parameter lives in the flat buffers, and its Hugging Face name and shape: the one
//! table of what a Llama is (llm.c's `fill_in_parameter_sizes`). Gradients and the AdamW moments
//! use the same layout, so the optimizer and a checkpoint are single passes over four buffers.

use crate::{
    backend::{Mem, Span},
    config::LlamaConfig,
};

/// Offsets are multiples of this many elements (256 bytes), the storage-buffer offset alignment
/// GPU APIs ask for, so a backend can bind any tensor on its own.
pub const ALIGN: usize = 64;

/// One tensor in the flat parameter buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// The Hugging Face name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// Hugging Face's shape (`[out, in]` for a linear layer).
    pub shape: Vec<usize>,
    pub off: usize,
    pub len: usize,
    /// Whether AdamW's weight decay applies (matrices yes, RMSNorm weights no).
    pub decay: bool,
}

impl Tensor {
    /// This tensor's span in `mem` (any of the parameter-shaped buffers).
    pub fn span(&self, mem: Mem) -> Span {
        Span::new(mem, self.off, self.len)
    }
}

/// Indices into [`Layout::tensors`] of one transformer block's weights.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    pub ln1: usize,
    pub q: usize,
    pub k: usize,
    pub v: usize,
    pub o: usize,
    pub ln2: usize,
    pub gate: usize,
    pub up: usize,
    pub down: usize,
}

/// The parameter layout of one config.
#[derive(Clone, Debug)]
pub struct Layout {
    pub tensors: Vec<Tensor>,
    pub embed: usize,
    pub blocks: Vec<Block>,
    pub norm: usize,
    /// `lm_head.weight`, or the embedding table when tied.
    pub lm_head: usize,
    /// Elements in each flat buffer (with alignment padding).
    pub total: usize,
}

impl Layout {
    pub fn new(c: &LlamaConfig) -> Layout {
        let (d, i) = (c.hidden_size, c.intermediate_size);
        let mut tensors = Vec::new();
        let mut total = 0usize;
        let mut push = |name: String, shape: Vec<usize>, decay: bool| {
            let len = shape.iter().product();
            tensors.push(Tensor { name, shape, off: total, len, decay });
            total += len.div_ceil(ALIGN) * ALIGN;
            tensors.len() - 1
        };
        let embed = push("model.embed_tokens.weight".into(), vec![c.vocab_size, d], true);
        let blocks = (0..c.num_hidden_layers)
            .map(|l| {
                let p = format!("model.layers.{l}");
                Block {
                    ln1: push(format!("{p}.input_layernorm.weight"), vec![d], false),
                    q: push(format!("{p}.self_attn.q_proj.weight"), vec![c.q_dim(), d], true),
                    k: push(format!("{p}.self_attn.k_proj.weight"), vec![c.kv_dim(), d], true),
                    v: push(format!("{p}.self_attn.v_proj.weight"), vec![c.kv_dim(), d], true),
                    o: push(format!("{p}.self_attn.o_proj.weight"), vec![d, c.q_dim()], true),
                    ln2: push(format!("{p}.post_attention_layernorm.weight"), vec![d], false),
                    gate: push(format!("{p}.mlp.gate_proj.weight"), vec![i, d], true),
                    up: push(format!("{p}.mlp.up_proj.weight"), vec![i, d], true),
                    down: push(format!("{p}.mlp.down_proj.weight"), vec![d, i], true),
                }
            })
            .collect();
        let norm = push("model.norm.weight".into(), vec![d], false);
        let lm_head = if c.tie_word_embeddings { embed } else { push("lm_head.weight".into(), vec![c.vocab_size, d], true) };
        Layout { tensors, embed, blocks, norm, lm_head, total }
    }

    /// The tensor at `index`'s span in `mem`.
    pub fn span(&self, index: usize, mem: Mem) -> Span {
        self.tensors[index].span(mem)
    }

    pub fn find(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Parameters, without the alignment padding.
    pub fn num_params(&self) -> usize {
        self.tensors.iter().map(|t| t.len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_are_aligned_disjoint_and_named_like_transformers() {
        let mut c = LlamaConfig::new(97, 32, 64, 2, 4);
        c.num_key_value_heads = 2;
        let l = Layout::new(&c);
        assert_eq!(l.tensors.len(), 1 + 2 * 9 + 2);
        for w in l.tensors.windows(2) {
            assert!(w[0].off + w[0].len <= w[1].off);
            assert_eq!(w[1].off % ALIGN, 0);
        }
        assert_eq!(l.tensors[l.blocks[1].k].shape, vec![16, 32]);
        assert_eq!(l.num_params(), 97 * 32 * 2 + 32 + 2 * (2 * 32 + 32 * 32 * 2 + 2 * 16 * 32 + 3 * 32 * 64));
        c.tie_word_embeddings = true;
        let t = Layout::new(&c);
        assert_eq!(t.lm_head, t.embed);
        assert!(t.find("lm_head.weight").is_none());
    }
}
