//! Batches from a token file (`AMSFT001`, written by `sft/build` or `sft/tokenize`): examples
//! packed into rows of `seq` tokens once, with a seeded order, then the rows shuffled afresh each
//! epoch. Each token knows its document, so attention and position ids restart at every
//! example; a token is a target only when the next token is in the same example and in its
//! loss mask. Step `s` always gets the same rows, so a resumed run sees the same data.

use std::path::Path;

use agentmerge_sft::dataset::SftReader;
use anyhow::bail;
use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{backend::IGNORE, model::Batch, seed};

/// A token file packed into rows.
pub struct Packed {
    reader: SftReader,
    seq: usize,
    /// Example indices per row, in packing order.
    rows: Vec<Vec<usize>>,
    seed: u64,
    /// The rows' order in the epoch last asked for.
    epoch_order: Option<(u64, Vec<usize>)>,
    /// Whether the file's loss mask applies (else every next token is a target).
    use_mask: bool,
    /// Examples left out because no token of theirs is in the loss.
    pub skipped_no_loss: usize,
    pub loss_tokens: usize,
}

impl Packed {
    /// Opens and checks a token file before any step runs: not empty, every id inside the
    /// vocabulary, no example longer than `seq`. With `use_mask` false every next token of an
    /// example is a target, whatever the file's loss mask says (language modelling on prompts
    /// and responses alike).
    pub fn open(path: &Path, vocab_size: usize, seq: usize, seed_value: u64, use_mask: bool) -> anyhow::Result<Packed> {
        let reader = SftReader::open(path)?;
        if reader.is_empty() {
            bail!("{}: the dataset has no examples; check the node that built it", path.display());
        }
        if reader.vocab_size > vocab_size as u64 {
            // The header's vocabulary is the tokenizer's; only the ids actually used must fit.
            tracing::debug!("{}: tokenizer vocabulary {} > model vocabulary {vocab_size}; checking the ids", path.display(), reader.vocab_size);
        }
        let mut keep = Vec::new();
        let (mut skipped, mut loss_tokens) = (0, 0);
        for i in 0..reader.len() {
            let (ids, mask) = reader.example(i);
            if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab_size) {
                bail!(
                    "{}: example {i} has token id {bad}, outside the model's vocabulary of {vocab_size}; was it built with another tokenizer?",
                    path.display()
                );
            }
            if ids.len() > seq {
                bail!(
                    "{}: example {i} has {} tokens, longer than the context of {seq}; raise `seq_len` (at most the model's max_position_embeddings) or build the data with a smaller max_len",
                    path.display(),
                    ids.len()
                );
            }
            let n = if use_mask { mask.iter().skip(1).filter(|&&m| m != 0).count() } else { ids.len().saturating_sub(1) };
            if n == 0 {
                skipped += 1;
            } else {
                loss_tokens += n;
                keep.push(i);
            }
        }
        if keep.is_empty() {
            bail!("{}: no example has a token in the loss", path.display());
        }
        // Pack once, in a seeded order: each row takes examples until the next does not fit.
        keep.shuffle(&mut ChaCha8Rng::seed_from_u64(seed::derive(seed_value, "packing")));
        let mut rows: Vec<Vec<usize>> = Vec::new();
        let mut used = seq;
        for i in keep {
            let len = reader.example(i).0.len();
            if used + len > seq {
                rows.push(Vec::new());
                used = 0;
            }
            rows.last_mut().unwrap().push(i);
            used += len;
        }
        Ok(Packed { reader, seq, rows, seed: seed_value, epoch_order: None, use_mask, skipped_no_loss: skipped, loss_tokens })
    }

    pub fn rows_per_epoch(&self) -> usize {
        self.rows.len()
    }

    pub fn seq(&self) -> usize {
        self.seq
    }

    /// Tokens in the loss per epoch.
    pub fn loss_tokens_per_epoch(&self) -> usize {
        self.loss_tokens
    }

    /// Rows `first .. first + count` of the endless sequence of epochs, as one batch.
    pub fn batch(&mut self, first: u64, count: usize) -> Batch {
        let n = count * self.seq;
        let mut b = Batch { rows: count, seq: self.seq, ids: vec![0; n], targets: vec![IGNORE; n], positions: vec![0; n], docs: vec![0; n] };
        let mut doc = 0u32;
        for r in 0..count {
            let row = self.row(first + r as u64).to_vec();
            let base = r * self.seq;
            let mut at = base;
            for &ex in &row {
                let (ids, mask) = self.reader.example(ex);
                for (j, &id) in ids.iter().enumerate() {
                    b.ids[at + j] = id;
                    b.positions[at + j] = j as u32;
                    b.docs[at + j] = doc;
                    if j + 1 < ids.len() && (!self.use_mask || mask[j + 1] != 0) {
                        b.targets[at + j] = ids[j + 1];
                    }
                }
                at += ids.len();
                doc += 1;
            }
            // Padding: its own document, never a target.
            for (j, t) in (at..base + self.seq).enumerate() {
                b.positions[t] = j as u32;
                b.docs[t] = doc;
            }
            doc += 1;
        }
        b
    }

    fn row(&mut self, global: u64) -> &[usize] {
        let per = self.rows.len() as u64;
        let (epoch, i) = (global / per, (global % per) as usize);
        if self.epoch_order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order: Vec<usize> = (0..self.rows.len()).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed::derive(self.seed, &format!("epoch {epoch}"))));
            self.epoch_order = Some((epoch, order));
        }
        let row = self.epoch_order.as_ref().unwrap().1[i];
        &self.rows[row]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmerge_sft::dataset::{Example, SftWriter};

    fn file(dir: &Path, examples: &[(Vec<u32>, Vec<u8>)]) -> std::path::PathBuf {
        let mut w = SftWriter::new(&dir.join("d.amsft"), 50);
        for (ids, mask) in examples {
            w.push(&Example { ids: ids.clone(), mask: mask.clone() }).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn packs_documents_apart_with_targets_inside_the_mask() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), &[(vec![1, 2, 3, 4], vec![0, 0, 1, 1]), (vec![5, 6, 7], vec![0, 1, 1]), (vec![8, 9], vec![0, 0])]);
        let mut d = Packed::open(&p, 50, 8, 1, true).unwrap();
        assert_eq!(d.skipped_no_loss, 1);
        assert_eq!(d.rows_per_epoch(), 1);
        let b = d.batch(0, 2);
        assert_eq!(b.ids.len(), 16);
        // Whichever order, the row holds both examples and the padding.
        let first = b.ids[0];
        let (a, c) = if first == 1 { (0, 4) } else { (3, 0) };
        assert_eq!(&b.targets[a..a + 4], &[IGNORE, 3, 4, IGNORE]);
        assert_eq!(&b.targets[c..c + 3], &[6, 7, IGNORE]);
        assert_eq!(&b.positions[a..a + 4], &[0, 1, 2, 3]);
        assert_ne!(b.docs[a], b.docs[c]);
        assert_eq!(b.targets[7], IGNORE);
        assert_eq!(b.loss_tokens(), 4 * 2);
        // Same seed, same batches; the next epoch is the same rows.
        let mut again = Packed::open(&p, 50, 8, 1, true).unwrap();
        // Without the mask every next token inside an example is a target.
        let lm = Packed::open(&p, 50, 8, 1, false).unwrap();
        assert_eq!(lm.skipped_no_loss, 0);
        assert_eq!(lm.loss_tokens_per_epoch(), 3 + 2 + 1);
        assert_eq!(again.batch(0, 2), b);
    }

    #[test]
    fn bad_data_is_refused_before_training() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), &[(vec![1, 2, 30], vec![0, 1, 1])]);
        let e = Packed::open(&p, 20, 8, 0, true).err().unwrap().to_string();
        assert!(e.contains("token id 30") && e.contains("vocabulary of 20"), "{e}");
        let e = Packed::open(&p, 50, 2, 0, true).err().unwrap().to_string();
        assert!(e.contains("longer than the context of 2"), "{e}");
        let p = file(dir.path(), &[]);
        assert!(Packed::open(&p, 50, 8, 0, true).err().unwrap().to_string().contains("no examples"));
    }
}
