//! The SFT token file: examples as token ids with a per-token loss mask, in one flat,
//! memory-mappable file a trainer reads without parsing.
//!
//! ```text
//! offset 0   magic  b"AMSFT001"
//!        8   u64    number of examples N
//!       16   u64    number of tokens T
//!       24   u64    vocabulary size (ids are < this)
//!       32   u64    N+1 example start offsets, in tokens
//!  32+8(N+1) u32    T token ids
//!            u8     T loss-mask bytes (1 = the token is predicted and counts in the loss)
//! ```
//! All integers little-endian.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context as _};
use memmap2::Mmap;
use tokenizers::Tokenizer;

use crate::template::{ChatTemplate, Message};

const MAGIC: &[u8; 8] = b"AMSFT001";

/// One training example.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub ids: Vec<u32>,
    /// 1 on the response tokens (the loss), 0 on the prompt.
    pub mask: Vec<u8>,
}

/// Encodes a prompt and its response: the prompt rendered with the chat template (with the
/// generation prompt), then the response and the end-of-sequence token. Only the response and
/// the EOS are in the loss. Returns `None` when the example is longer than `max_len`.
pub fn encode_example(tok: &Tokenizer, template: &ChatTemplate, prompt: &[Message], response: &str, max_len: usize) -> anyhow::Result<Option<Example>> {
    encode_example_with(&|text| crate::tokenizer::encode(tok, text), template, prompt, response, max_len)
}

/// [`encode_example`] with the encoder given as a function (e.g. one that remembers texts it
/// has just encoded).
pub fn encode_example_with(
    encode: &dyn Fn(&str) -> anyhow::Result<Vec<u32>>,
    template: &ChatTemplate,
    prompt: &[Message],
    response: &str,
    max_len: usize,
) -> anyhow::Result<Option<Example>> {
    let prompt_text = template.render(prompt, true)?;
    let p = encode(&prompt_text)?;
    let r = encode(&format!("{response}{}", template.eos_token))?;
    if p.len() + r.len() > max_len {
        return Ok(None);
    }
    let mut ids = p;
    let prompt_len = ids.len();
    ids.extend(r);
    let mut mask = vec![0u8; ids.len()];
    mask[prompt_len..].fill(1);
    Ok(Some(Example { ids, mask }))
}

/// Writes an SFT token file atomically (temporary file, then rename).
pub struct SftWriter {
    path: PathBuf,
    offsets: Vec<u64>,
    ids: Vec<u32>,
    mask: Vec<u8>,
    vocab_size: u64,
}

impl SftWriter {
    pub fn new(path: &Path, vocab_size: u64) -> SftWriter {
        SftWriter { path: path.to_path_buf(), offsets: vec![0], ids: Vec::new(), mask: Vec::new(), vocab_size }
    }

    pub fn push(&mut self, ex: &Example) -> anyhow::Result<()> {
        if ex.ids.len() != ex.mask.len() {
            bail!("example has {} ids but {} mask bytes", ex.ids.len(), ex.mask.len());
        }
        if let Some(bad) = ex.ids.iter().find(|&&i| i as u64 >= self.vocab_size) {
            bail!("token id {bad} is outside the vocabulary of {}", self.vocab_size);
        }
        self.ids.extend_from_slice(&ex.ids);
        self.mask.extend_from_slice(&ex.mask);
        self.offsets.push(self.ids.len() as u64);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(self) -> anyhow::Result<PathBuf> {
        let tmp = self.path.with_extension("tmp");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?);
        f.write_all(MAGIC)?;
        for v in [self.len() as u64, self.ids.len() as u64, self.vocab_size] {
            f.write_all(&v.to_le_bytes())?;
        }
        f.write_all(bytemuck::cast_slice(&self.offsets.iter().map(|o| o.to_le()).collect::<Vec<u64>>()))?;
        f.write_all(bytemuck::cast_slice(&self.ids.iter().map(|i| i.to_le()).collect::<Vec<u32>>()))?;
        f.write_all(&self.mask)?;
        f.into_inner().map_err(|e| anyhow!("writing {}: {e}", tmp.display()))?.sync_all()?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("renaming into {}", self.path.display()))?;
        Ok(self.path)
    }
}

/// A memory-mapped SFT token file.
pub struct SftReader {
    map: Mmap,
    n: usize,
    t: usize,
    pub vocab_size: u64,
}

impl SftReader {
    pub fn open(path: &Path) -> anyhow::Result<SftReader> {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: dataset files are immutable once written.
        let map = unsafe { Mmap::map(&f) }.with_context(|| format!("mapping {}", path.display()))?;
        let bad = |m: String| anyhow!("{}: not a valid SFT token file: {m}", path.display());
        if map.len() < 32 || &map[..8] != MAGIC {
            return Err(bad("missing the AMSFT001 header".into()));
        }
        let u = |o: usize| u64::from_le_bytes(map[o..o + 8].try_into().unwrap());
        let (n, t, vocab_size) = (u(8) as usize, u(16) as usize, u(24));
        // Checked throughout: the counts are the file's word, and a hostile one must not wrap.
        let want = n
            .checked_add(1)
            .and_then(|x| x.checked_mul(8))
            .and_then(|x| x.checked_add(32))
            .and_then(|x| x.checked_add(t.checked_mul(5)?))
            .ok_or_else(|| bad(format!("counts of {n} examples and {t} tokens overflow")))?;
        if map.len() != want {
            return Err(bad(format!("{} bytes, expected {want} for {n} examples and {t} tokens (truncated?)", map.len())));
        }
        let r = SftReader { map, n, t, vocab_size };
        let offs = r.offsets();
        if offs[0] != 0 || offs[n] as usize != t || offs.windows(2).any(|w| w[0] > w[1]) {
            return Err(bad("example offsets are not increasing from 0 to the token count".into()));
        }
        Ok(r)
    }

    fn offsets(&self) -> &[u64] {
        bytemuck::cast_slice(&self.map[32..32 + 8 * (self.n + 1)])
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn num_tokens(&self) -> usize {
        self.t
    }

    /// Example `i`: (token ids, loss mask), borrowed from the map.
    pub fn example(&self, i: usize) -> (&[u32], &[u8]) {
        let offs = self.offsets();
        let (a, b) = (offs[i] as usize, offs[i + 1] as usize);
        let ids_start = 32 + 8 * (self.n + 1);
        let ids: &[u32] = bytemuck::cast_slice(&self.map[ids_start..ids_start + 4 * self.t]);
        let mask = &self.map[ids_start + 4 * self.t..];
        (&ids[a..b], &mask[a..b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::train_bpe;

    #[test]
    fn loss_mask_covers_exactly_the_response() {
        let corpus: Vec<String> =
            (0..100).map(|i| format!("<think>the list is sorted {i}</think><action>click('a{i}')</action> Goal: sort the list")).collect();
        let tok = train_bpe(corpus.iter(), 400, &["<|bos|>".into(), "<|eos|>".into(), "<|start|>".into(), "<|end|>".into()]).unwrap();
        let t = ChatTemplate::default();
        let prompt = [Message::new("system", "be an agent"), Message::new("user", "Goal: sort the list")];
        let response = "<think>the list is sorted 3</think><action>click('a3')</action>";
        let ex = encode_example(&tok, &t, &prompt, response, 10_000).unwrap().unwrap();
        let masked: Vec<u32> = ex.ids.iter().zip(&ex.mask).filter(|(_, m)| **m == 1).map(|(i, _)| *i).collect();
        assert_eq!(tok.decode(&masked, false).unwrap(), format!("{response}<|eos|>"));
        let unmasked: Vec<u32> = ex.ids.iter().zip(&ex.mask).filter(|(_, m)| **m == 0).map(|(i, _)| *i).collect();
        assert_eq!(tok.decode(&unmasked, false).unwrap(), t.render(&prompt, true).unwrap());
        assert!(ex.mask.windows(2).all(|w| w[0] <= w[1]), "mask is one contiguous tail");
        assert!(encode_example(&tok, &t, &prompt, response, 5).unwrap().is_none());

        // Round trip through the file.
        let dir = tempfile::tempdir().unwrap();
        let mut w = SftWriter::new(&dir.path().join("d.amsft"), tok.get_vocab_size(true) as u64);
        w.push(&ex).unwrap();
        w.push(&Example { ids: vec![1, 2, 3], mask: vec![0, 1, 1] }).unwrap();
        let path = w.finish().unwrap();
        let r = SftReader::open(&path).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.example(0), (&ex.ids[..], &ex.mask[..]));
        assert_eq!(r.example(1), (&[1u32, 2, 3][..], &[0u8, 1, 1][..]));
        // A truncated file is refused.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(SftReader::open(&path).err().unwrap().to_string().contains("truncated"));
    }
}
