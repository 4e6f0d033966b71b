//! Plain text for next-token pretraining: documents read from `.txt` and JSON Lines files,
//! tokenized, framed by the tokenizer's bos/eos tokens, cut into windows of at most `max_len`
//! tokens and written as an SFT token file (`AMSFT001`, see [`crate::dataset`]) with every token
//! in the loss.
//!
//! One example is one document, or one window of a long document: a trainer that packs
//! examples into rows without letting them attend to each other never mixes two documents.
//!
//! - A `.txt` file is split into documents by [`Split`]: at blank lines (the default), one per
//!   line, or the whole file as one document.
//! - A `.jsonl` file (plain, `.gz` or `.zst`) has one document per line: an object whose `field`
//!   (default `text`) is a string. Blank lines are ignored; any other bad line is an error
//!   naming its `file:line`.
//! - A directory stands for its `.txt`, `.jsonl`, `.jsonl.gz` and `.jsonl.zst` files (not its
//!   subdirectories), in sorted order.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context as _};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::{
    dataset::{Example, SftWriter},
    template::ChatTemplate,
    tokenizer::encode,
};

/// How a `.txt` file is cut into documents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// At blank lines (one or more lines that are empty or hold only whitespace): each
    /// paragraph is a document, its lines joined by `\n`.
    #[default]
    Paragraph,
    /// The whole file is one document (trailing line breaks removed).
    File,
    /// Every non-blank line is a document.
    Line,
}

/// How text becomes token windows.
#[derive(Clone, Debug)]
pub struct TextConfig {
    /// The most tokens in one example; a longer document (bos/eos included) is cut into
    /// consecutive windows of at most this many tokens.
    pub max_len: usize,
    /// Start every document with the bos token. `None`: when the tokenizer config names one.
    pub add_bos: Option<bool>,
    /// End every document with the eos token. `None`: when the tokenizer config names one.
    pub add_eos: Option<bool>,
    /// Documents with fewer text tokens than this (bos/eos not counted) are dropped.
    pub min_tokens: usize,
    /// How `.txt` files are cut into documents.
    pub split: Split,
    /// The key holding the document in each JSON Lines object.
    pub field: String,
}

impl Default for TextConfig {
    fn default() -> TextConfig {
        TextConfig { max_len: 2048, add_bos: None, add_eos: None, min_tokens: 2, split: Split::Paragraph, field: "text".into() }
    }
}

/// What [`tokenize_text`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TextReport {
    /// Files read.
    pub files: usize,
    /// Documents found (kept or dropped).
    pub documents: usize,
    /// Documents dropped for having fewer than `min_tokens` tokens.
    pub dropped_short: usize,
    /// Kept documents longer than `max_len`, cut into several windows.
    pub cut_documents: usize,
    /// Examples written: one per window (a kept document that fits is one window).
    pub examples: usize,
    /// Tokens written, bos/eos included (all of them in the loss).
    pub tokens: usize,
    pub max_len: usize,
    pub vocab_size: usize,
    /// The token each document starts with, if any.
    pub bos_token: Option<String>,
    /// The token each document ends with, if any.
    pub eos_token: Option<String>,
}

/// What a file holds, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Jsonl,
}

/// The file name endings read, and what they hold.
const FORMATS: &[(&str, Format)] = &[(".txt", Format::Text), (".jsonl", Format::Jsonl), (".jsonl.gz", Format::Jsonl), (".jsonl.zst", Format::Jsonl)];

/// The name endings a text source may have, for messages.
pub const TEXT_EXTENSIONS: &str = ".txt, .jsonl, .jsonl.gz or .jsonl.zst";

fn format_of(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_str()?;
    FORMATS.iter().find(|(ext, _)| name.ends_with(ext) && name.len() > ext.len()).map(|&(_, f)| f)
}

/// Whether `path`'s name says it is a text source (`.txt`, `.jsonl`, `.jsonl.gz`, `.jsonl.zst`).
pub fn is_text_file(path: &Path) -> bool {
    format_of(path).is_some()
}

/// The files `sources` stand for, in order: a file as it is (its name must end in one of
/// [`TEXT_EXTENSIONS`]), a directory as its text files in sorted order (subdirectories and
/// other files are left out; a directory without any is an error).
pub fn list_files(sources: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for src in sources {
        let meta = std::fs::metadata(src).with_context(|| format!("cannot read {}", src.display()))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(src).with_context(|| format!("cannot list {}", src.display()))? {
                let entry = entry.with_context(|| format!("cannot list {}", src.display()))?;
                let path = entry.path();
                if is_text_file(&path) && path.is_file() {
                    found.push(path);
                }
            }
            if found.is_empty() {
                bail!("{} holds no {TEXT_EXTENSIONS} file", src.display());
            }
            found.sort();
            files.extend(found);
        } else if is_text_file(src) {
            files.push(src.clone());
        } else {
            bail!("{}: not a text source (the name must end in {TEXT_EXTENSIONS})", src.display());
        }
    }
    Ok(files)
}

/// Cuts the text of a `.txt` file into documents. Blank documents are left out.
pub fn split_documents(text: &str, split: Split) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let blank = |l: &str| l.trim().is_empty();
    match split {
        Split::File => {
            let doc = text.trim_end_matches(['\n', '\r']);
            if blank(doc) {
                Vec::new()
            } else {
                vec![doc.to_string()]
            }
        }
        Split::Line => text.lines().filter(|l| !blank(l)).map(str::to_string).collect(),
        Split::Paragraph => {
            let mut docs = Vec::new();
            let mut cur: Vec<&str> = Vec::new();
            for line in text.lines() {
                if blank(line) {
                    if !cur.is_empty() {
                        docs.push(cur.join("\n"));
                        cur.clear();
                    }
                } else {
                    cur.push(line);
                }
            }
            if !cur.is_empty() {
                docs.push(cur.join("\n"));
            }
            docs
        }
    }
}

/// The documents of a JSON Lines stream: the string `field` of each line's object. `name` is
/// the file's name for messages. Blank lines are skipped; a bad line is an error naming
/// `name:line`.
pub fn jsonl_documents(reader: impl BufRead, name: &str, field: &str) -> anyhow::Result<Vec<String>> {
    let mut docs = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let at = format!("{name}:{}", i + 1);
        let line = line.with_context(|| format!("{at}: cannot read the line"))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line).map_err(|e| anyhow!("{at}: not valid JSON: {e}"))?;
        let serde_json::Value::Object(mut obj) = value else {
            bail!("{at}: expected a JSON object with a string field `{field}`, got {}", kind_of(&value));
        };
        match obj.remove(field) {
            Some(serde_json::Value::String(s)) => docs.push(s),
            Some(other) => bail!("{at}: field `{field}` is {}, not a string", kind_of(&other)),
            None => {
                let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                keys.sort_unstable();
                bail!(
                    "{at}: no field `{field}` (the object has: {}); set `field` to the key holding the text",
                    if keys.is_empty() { "nothing".into() } else { keys.join(", ") }
                );
            }
        }
    }
    Ok(docs)
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A buffered reader of a JSON Lines file (`.jsonl`, or `.jsonl.gz` / `.jsonl.zst`
/// decompressed on the fly).
pub fn open_jsonl(path: &Path) -> anyhow::Result<BufReader<Box<dyn Read>>> {
    let name = path.display();
    let f = File::open(path).with_context(|| format!("cannot open {name}"))?;
    let r: Box<dyn Read> = match path.extension().and_then(|e| e.to_str()) {
        Some("gz") => Box::new(flate2::read::MultiGzDecoder::new(f)),
        Some("zst") => Box::new(zstd::Decoder::new(f).with_context(|| format!("{name}: not a zstd stream"))?),
        _ => Box::new(f),
    };
    Ok(BufReader::with_capacity(1 << 20, r))
}

/// The documents of one file, by its name ending: `.txt` split by `split`, JSON Lines by `field`.
pub fn read_documents(path: &Path, split: Split, field: &str) -> anyhow::Result<Vec<String>> {
    let name = path.display().to_string();
    match format_of(path) {
        Some(Format::Text) => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {name}"))?;
            let text = String::from_utf8(bytes).map_err(|e| anyhow!("{name}: not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()))?;
            Ok(split_documents(&text, split))
        }
        Some(Format::Jsonl) => jsonl_documents(open_jsonl(path)?, &name, field),
        None => bail!("{name}: not a text source (the name must end in {TEXT_EXTENSIONS})"),
    }
}

/// The tokens a document is framed with, each as (text, id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub bos: Option<(String, u32)>,
    pub eos: Option<(String, u32)>,
}

/// The bos and eos tokens to frame documents with, from the tokenizer config's tokens and the
/// `add_bos` / `add_eos` choices. A token asked for explicitly must be named by the tokenizer
/// config; any token used must be a single token of the tokenizer.
pub fn frame_tokens(tok: &Tokenizer, template: &ChatTemplate, cfg: &TextConfig) -> anyhow::Result<Frame> {
    let pick = |what: &str, flag: Option<bool>, token: &str| -> anyhow::Result<Option<(String, u32)>> {
        let wanted = flag.unwrap_or(!token.is_empty());
        if !wanted {
            return Ok(None);
        }
        if token.is_empty() {
            bail!("add_{what} is true but tokenizer_config.json names no {what}_token; set add_{what}: false");
        }
        let id = tok.token_to_id(token).ok_or_else(|| anyhow!("{what}_token `{token}` is not a single token of the tokenizer; set add_{what}: false"))?;
        Ok(Some((token.to_string(), id)))
    };
    Ok(Frame { bos: pick("bos", cfg.add_bos, &template.bos_token)?, eos: pick("eos", cfg.add_eos, &template.eos_token)? })
}

/// A document's examples: `bos? ids eos?` cut into consecutive windows of at most `max_len`
/// tokens (the last may be shorter), every token in the loss.
pub fn document_examples(ids: &[u32], bos: Option<u32>, eos: Option<u32>, max_len: usize) -> Vec<Example> {
    assert!(max_len > 0, "max_len must be at least 1");
    let seq: Vec<u32> = bos.into_iter().chain(ids.iter().copied()).chain(eos).collect();
    seq.chunks(max_len).map(|w| Example { ids: w.to_vec(), mask: vec![1; w.len()] }).collect()
}

/// Reads `files` (see [`list_files`]) in order, tokenizes their documents and writes the
/// examples to the SFT token file `out`. `on_file(done)` is called after each file (for
/// progress; an error from it, say a cancellation, stops the work). No document, or none
/// long enough, is an error.
pub fn tokenize_text(
    files: &[PathBuf],
    tok: &Tokenizer,
    template: &ChatTemplate,
    cfg: &TextConfig,
    out: &Path,
    on_file: &dyn Fn(usize) -> anyhow::Result<()>,
) -> anyhow::Result<TextReport> {
    if cfg.max_len == 0 {
        bail!("text tokenization: max_len must be at least 1");
    }
    let Frame { bos, eos } = frame_tokens(tok, template, cfg)?;
    let vocab_size = tok.get_vocab_size(true);
    let mut report = TextReport {
        max_len: cfg.max_len,
        vocab_size,
        bos_token: bos.as_ref().map(|b| b.0.clone()),
        eos_token: eos.as_ref().map(|e| e.0.clone()),
        ..TextReport::default()
    };
    let (bos, eos) = (bos.map(|b| b.1), eos.map(|e| e.1));
    let mut writer = SftWriter::new(out, vocab_size as u64);
    for (i, file) in files.iter().enumerate() {
        let docs = read_documents(file, cfg.split, &cfg.field)?;
        let encoded: Vec<Vec<u32>> =
            docs.par_iter().map(|d| encode(tok, d)).collect::<anyhow::Result<_>>().with_context(|| format!("tokenizing {}", file.display()))?;
        drop(docs);
        report.files += 1;
        report.documents += encoded.len();
        for ids in &encoded {
            if ids.len() < cfg.min_tokens {
                report.dropped_short += 1;
                continue;
            }
            let examples = document_examples(ids, bos, eos, cfg.max_len);
            if examples.len() > 1 {
                report.cut_documents += 1;
            }
            for ex in &examples {
                report.tokens += ex.ids.len();
                writer.push(ex)?;
            }
            report.examples += examples.len();
        }
        on_file(i + 1)?;
    }
    if report.documents == 0 {
        bail!("no documents in {} file(s){}", files.len(), if files.is_empty() { String::new() } else { format!(" ({}…)", files[0].display()) });
    }
    if writer.is_empty() {
        bail!("all {} documents have fewer than min_tokens = {} tokens; nothing to write", report.documents, cfg.min_tokens);
    }
    writer.finish()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dataset::SftReader, tokenizer::train_bpe};

    fn tokenizer() -> Tokenizer {
        let corpus: Vec<String> = (0..200).map(|i| format!("the quick brown fox {i} jumps over the lazy dog number {}", i % 13)).collect();
        train_bpe(corpus.iter(), 400, &["<|bos|>".into(), "<|eos|>".into()]).unwrap()
    }

    #[test]
    fn splits_paragraphs_lines_and_files() {
        let text = "\u{feff}first line\nstill first\n\n\n  \nsecond\r\n\r\nthird\n";
        assert_eq!(split_documents(text, Split::Paragraph), ["first line\nstill first", "second", "third"]);
        assert_eq!(split_documents(text, Split::Line), ["first line", "still first", "second", "third"]);
        assert_eq!(split_documents(text, Split::File), ["first line\nstill first\n\n\n  \nsecond\r\n\r\nthird"]);
        for split in [Split::Paragraph, Split::Line, Split::File] {
            assert!(split_documents("\n \n\t\n", split).is_empty(), "{split:?}");
            assert!(split_documents("", split).is_empty(), "{split:?}");
        }
        // Indentation inside a paragraph is kept.
        assert_eq!(split_documents("fn f() {\n    1\n}\n\nnext", Split::Paragraph), ["fn f() {\n    1\n}", "next"]);
    }

    #[test]
    fn jsonl_lines_and_their_errors() {
        let ok = "{\"text\": \"a\", \"id\": 1}\n\n{\"body\": \"x\", \"text\": \"b\\nc\"}\n";
        assert_eq!(jsonl_documents(ok.as_bytes(), "f.jsonl", "text").unwrap(), ["a", "b\nc"]);
        assert_eq!(
            jsonl_documents(ok.as_bytes(), "f.jsonl", "body").unwrap_err().to_string(),
            "f.jsonl:1: no field `body` (the object has: id, text); set `field` to the key holding the text"
        );
        let bad = |s: &str| jsonl_documents(s.as_bytes(), "f.jsonl", "text").unwrap_err().to_string();
        assert!(bad("{\"text\": \"a\"}\n{\"text\": ").starts_with("f.jsonl:2: not valid JSON"), "{}", bad("{\"text\": \"a\"}\n{\"text\": "));
        assert_eq!(bad("{\"text\": \"a\"}\n\n[1]"), "f.jsonl:3: expected a JSON object with a string field `text`, got an array");
        assert_eq!(bad("{\"text\": 3}"), "f.jsonl:1: field `text` is a number, not a string");
    }

    #[test]
    fn windows_frame_and_mask_every_token() {
        let ids: Vec<u32> = (10..17).collect(); // 7 tokens
        let ex = document_examples(&ids, Some(0), Some(1), 4);
        let seqs: Vec<Vec<u32>> = ex.iter().map(|e| e.ids.clone()).collect();
        assert_eq!(seqs, [vec![0, 10, 11, 12], vec![13, 14, 15, 16], vec![1]]);
        assert!(ex.iter().all(|e| e.mask.len() == e.ids.len() && e.mask.iter().all(|&m| m == 1)));
        assert_eq!(document_examples(&ids, None, None, 7).len(), 1);
        assert_eq!(document_examples(&ids, None, Some(1), 7).len(), 2);
        assert_eq!(document_examples(&ids, None, None, 100)[0].ids, ids);
    }

    #[test]
    fn bos_and_eos_follow_the_config_and_the_tokenizer() {
        let tok = tokenizer();
        let t = ChatTemplate::default(); // <|bos|>, <|eos|>
        let cfg = TextConfig::default();
        assert_eq!(frame_tokens(&tok, &t, &cfg).unwrap(), Frame { bos: Some(("<|bos|>".into(), 0)), eos: Some(("<|eos|>".into(), 1)) });
        let off = TextConfig { add_bos: Some(false), add_eos: Some(false), ..TextConfig::default() };
        assert_eq!(frame_tokens(&tok, &t, &off).unwrap(), Frame::default());
        // No bos token in the config: none by default, an error when asked for.
        let no_bos = ChatTemplate { bos_token: String::new(), ..ChatTemplate::default() };
        assert_eq!(frame_tokens(&tok, &no_bos, &cfg).unwrap().bos, None);
        let want = TextConfig { add_bos: Some(true), ..TextConfig::default() };
        assert!(frame_tokens(&tok, &no_bos, &want).unwrap_err().to_string().contains("names no bos_token"));
        // A token that is not in the vocabulary.
        let odd = ChatTemplate { eos_token: "<|endoftext|>".into(), ..ChatTemplate::default() };
        assert!(frame_tokens(&tok, &odd, &cfg).unwrap_err().to_string().contains("`<|endoftext|>` is not a single token"));
    }

    #[test]
    fn files_become_framed_windows_with_the_loss_on_every_token() {
        let tok = tokenizer();
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        std::fs::create_dir(&corpus).unwrap();
        let long = (0..60).map(|i| format!("the lazy dog {i}")).collect::<Vec<_>>().join(" ");
        std::fs::write(corpus.join("b.txt"), format!("the quick brown fox\n\n\nx\n\n{long}\n")).unwrap();
        std::fs::write(corpus.join("a.jsonl"), "{\"text\": \"jumps over the lazy dog\"}\n").unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, b"{\"text\": \"number 7\"}\n").unwrap();
        std::fs::write(corpus.join("c.jsonl.gz"), gz.finish().unwrap()).unwrap();
        std::fs::write(corpus.join("notes.md"), "ignored").unwrap();
        let files = list_files(std::slice::from_ref(&corpus)).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["a.jsonl", "b.txt", "c.jsonl.gz"]);

        let cfg = TextConfig { max_len: 32, ..TextConfig::default() };
        let out = dir.path().join("t.amsft");
        let calls = std::cell::Cell::new(0);
        let report = tokenize_text(&files, &tok, &ChatTemplate::default(), &cfg, &out, &|done| {
            calls.set(done);
            Ok(())
        })
        .unwrap();
        assert_eq!(calls.get(), 3);
        let docs = ["jumps over the lazy dog", "the quick brown fox", "x", &long, "number 7"];
        let lens: Vec<usize> = docs.iter().map(|d| encode(&tok, d).unwrap().len()).collect();
        assert_eq!(lens[2], 1, "`x` is one token: dropped as short");
        let kept = [0usize, 1, 3, 4];
        let windows: usize = kept.iter().map(|&k| (lens[k] + 2).div_ceil(32)).sum();
        assert!(lens[3] + 2 > 64, "the long document needs 3+ windows: {}", lens[3]);
        assert_eq!((report.files, report.documents, report.dropped_short, report.cut_documents), (3, 5, 1, 1));
        assert_eq!((report.examples, report.tokens), (windows, kept.iter().map(|&k| lens[k] + 2).sum()));
        assert_eq!((report.bos_token.as_deref(), report.eos_token.as_deref(), report.vocab_size), (Some("<|bos|>"), Some("<|eos|>"), tok.get_vocab_size(true)));

        let r = SftReader::open(&out).unwrap();
        assert_eq!((r.len(), r.num_tokens()), (report.examples, report.tokens));
        assert!((0..r.len()).all(|i| r.example(i).1.iter().all(|&m| m == 1)), "every token in the loss");
        assert!((0..r.len()).all(|i| r.example(i).0.len() <= 32));
        // Documents in file order, each framed; the long one's windows rebuild it.
        let (first, _) = r.example(0);
        assert_eq!(tok.decode(first, false).unwrap(), "<|bos|>jumps over the lazy dog<|eos|>");
        let cut: Vec<u32> = (2..2 + (lens[3] + 2).div_ceil(32)).flat_map(|i| r.example(i).0.to_vec()).collect();
        assert_eq!(tok.decode(&cut, false).unwrap(), format!("<|bos|>{long}<|eos|>"));
        assert_eq!(tok.decode(r.example(r.len() - 1).0, false).unwrap(), "<|bos|>number 7<|eos|>");

        // Errors: nothing long enough, nothing at all, a bad line, a bad source.
        let short = dir.path().join("short.txt");
        std::fs::write(&short, "x\n\ny\n").unwrap();
        let err = tokenize_text(&[short], &tok, &ChatTemplate::default(), &cfg, &out, &|_| Ok(())).unwrap_err().to_string();
        assert!(err.contains("all 2 documents have fewer than min_tokens = 2 tokens"), "{err}");
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "\n\n").unwrap();
        let err = tokenize_text(&[empty], &tok, &ChatTemplate::default(), &cfg, &out, &|_| Ok(())).unwrap_err().to_string();
        assert!(err.starts_with("no documents in 1 file(s)"), "{err}");
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"text\": \"a b\"}\n{\"txt\": \"c\"}\n").unwrap();
        let err = tokenize_text(std::slice::from_ref(&bad), &tok, &ChatTemplate::default(), &cfg, &out, &|_| Ok(())).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:2: no field `text`", bad.display())), "{err}");
        assert!(list_files(&[dir.path().join("corpus/notes.md")]).unwrap_err().to_string().contains("not a text source"));
        assert!(list_files(&[dir.path().join("missing.txt")]).unwrap_err().to_string().contains("cannot read"));
        let none = dir.path().join("none");
        std::fs::create_dir(&none).unwrap();
        assert!(list_files(&[none]).unwrap_err().to_string().contains("holds no .txt"));
    }
}
