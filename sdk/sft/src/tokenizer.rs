//! Tokenizers: Hugging Face `tokenizer.json` files, and byte-level BPE trained from scratch
//! for the tiny models AgentMerge trains itself.

use std::path::Path;

use anyhow::{anyhow, Context as _};
use tokenizers::{
    decoders::byte_level::ByteLevel as ByteLevelDecoder,
    models::{
        bpe::{BpeTrainerBuilder, BPE},
        TrainerWrapper,
    },
    pre_tokenizers::byte_level::ByteLevel,
    AddedToken, Tokenizer,
};

/// Loads `dir/tokenizer.json` (or a tokenizer.json path).
pub fn load(path: &Path) -> anyhow::Result<Tokenizer> {
    let file = if path.is_dir() { path.join("tokenizer.json") } else { path.to_path_buf() };
    Tokenizer::from_file(&file).map_err(|e| anyhow!("{}: cannot load tokenizer: {e}", file.display()))
}

/// Trains a byte-level BPE tokenizer (GPT-2 / Llama-3 style) on `corpus`.
/// `special_tokens` get the first ids, in order.
pub fn train_bpe<I, S>(corpus: I, vocab_size: usize, special_tokens: &[String]) -> anyhow::Result<Tokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let specials: Vec<AddedToken> = special_tokens.iter().map(|t| AddedToken::from(t.clone(), true)).collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    let mut tok = Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    tok.train(&mut trainer, corpus).map_err(|e| anyhow!("training the tokenizer failed: {e}"))?;
    tok.add_special_tokens(&specials);
    Ok(tok)
}

/// Writes `tokenizer.json` and `tokenizer_config.json` (with the chat template and the
/// special tokens' roles) into `dir`.
pub fn save(tok: &Tokenizer, dir: &Path, chat_template: &str, bos: &str, eos: &str, pad: Option<&str>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    tok.save(dir.join("tokenizer.json"), false).map_err(|e| anyhow!("writing tokenizer.json: {e}"))?;
    let cfg = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "pad_token": pad.unwrap_or(eos),
        "model_max_length": 1_000_000,
        "clean_up_tokenization_spaces": false,
        "chat_template": chat_template,
    });
    std::fs::write(dir.join("tokenizer_config.json"), serde_json::to_string_pretty(&cfg)?)?;
    Ok(())
}

/// Token ids of `text`, without added special tokens.
pub fn encode(tok: &Tokenizer, text: &str) -> anyhow::Result<Vec<u32>> {
    Ok(tok.encode(text, false).map_err(|e| anyhow!("tokenizing failed: {e}"))?.get_ids().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_save_load_round_trip() {
        let corpus: Vec<String> = (0..200).map(|i| format!("click('a{i}') fill('b{}', 'hello world {i}')", i % 7)).collect();
        let specials = vec!["<|bos|>".to_string(), "<|eos|>".to_string()];
        let tok = train_bpe(corpus.iter(), 300, &specials).unwrap();
        assert_eq!(tok.token_to_id("<|bos|>"), Some(0));
        let dir = tempfile::tempdir().unwrap();
        save(&tok, dir.path(), "{{ messages }}", "<|bos|>", "<|eos|>", None).unwrap();
        let back = load(dir.path()).unwrap();
        let text = "click('a12') <|eos|>";
        let ids = encode(&back, text).unwrap();
        assert_eq!(ids, encode(&tok, text).unwrap());
        assert!(ids.contains(&1), "special token kept whole: {ids:?}");
        assert_eq!(back.decode(&ids, false).unwrap(), text);
        assert!(ids.len() < text.len(), "BPE should merge: {ids:?}");
    }
}
