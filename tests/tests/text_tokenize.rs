//! `sft/tokenize` end to end: a tokenizer trained on traces by `sft/tokenizer`, then plain text
//! files written here (a directory of `.txt` and `.jsonl` files, a long `.txt` file named in
//! `paths`, and `sft/build`'s preview on the `text` input) tokenized for next-token
//! pretraining in the real host. The token file is checked with `SftReader` against what the
//! test computes with the same tokenizer: one example per document, long documents cut into
//! `max_len` windows, bos/eos around each document, every token in the loss. Caching, file
//! changes and the errors are checked too; so is `sft/chat` reading conversation files from
//! `paths`.

mod common;

use std::path::{Path, PathBuf};

use agentmerge_sft::{tokenizer as tk, SftReader};
use agentmerge_traces::{write_episodes, Episode, Observation, Step};
use common::*;
use serde_json::Value as Json;

const MAX_LEN: usize = 64;

/// A few short successful episodes: enough text to train a small BPE on.
fn episodes() -> Vec<Episode> {
    (0..12u64)
        .map(|seed| {
            let goal = format!("Create an incident number {seed} with the caller set to Abel Tuter and priority {}.", 1 + seed % 4);
            let tree = (0..8).map(|i| format!("[b{i}] textbox 'Field {i} of the incident form'")).collect::<Vec<_>>().join("\n");
            let obs = Observation { goal: goal.clone(), url: format!("http://mini/form/{seed}"), axtree_txt: tree, ..Default::default() };
            let steps = vec![
                Step { step: 0, obs: obs.clone(), action: Some(format!("fill('b{}', 'Abel Tuter')", seed % 8)), ..Default::default() },
                Step { step: 1, obs: obs.clone(), action: Some("click('b7')".into()), ..Default::default() },
                Step { step: 2, obs, reward: 1.0, terminated: true, ..Default::default() },
            ];
            Episode {
                task_name: "miniarena.form.create_incident".into(),
                category: "form".into(),
                seed,
                goal,
                success: true,
                cum_reward: 1.0,
                n_steps: 2,
                steps,
                ..Default::default()
            }
        })
        .collect()
}

fn node<'a>(report: &'a Json, id: &str) -> &'a Json {
    report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node `{id}` in {report}"))
}

fn output(report: &Json, id: &str, port: &str) -> Json {
    node(report, id)["outputs"][port].clone()
}

fn path_of(report: &Json, id: &str, port: &str) -> PathBuf {
    PathBuf::from(output(report, id, port).as_str().unwrap_or_else(|| panic!("{id}.{port} is not a path")))
}

fn n(j: &Json) -> usize {
    j.as_u64().unwrap_or_else(|| panic!("not a count: {j}")) as usize
}

const PIPELINE: &str = "nodes:
  - id: read
    uses: traces/read
    with: {path: t.jsonl}
  - id: tok
    uses: sft/tokenizer
    with: {vocab_size: 600}
    inputs: {traces: read.traces}
  - id: sft
    uses: sft/build
    with: {max_len: 4096, preview_examples: 1}
    inputs: {traces: read.traces, tokenizer: tok.tokenizer}
  - id: text
    uses: sft/tokenize
    with: {paths: [corpus, long.txt], max_len: 64}
    inputs: {tokenizer: tok.tokenizer}
  - id: preview
    uses: sft/tokenize
    with: {split: file, add_bos: false}
    inputs: {text: sft.preview, tokenizer: tok.tokenizer}
";

/// The long document: several windows of `MAX_LEN` tokens.
fn long_doc(words: usize) -> String {
    (0..words).map(|i| format!("incident {i} for Abel Tuter")).collect::<Vec<_>>().join(" ")
}

fn write_corpus(dir: &Path) {
    // Paragraphs at blank lines (several, and whitespace-only ones); `x` is one token: dropped.
    write(dir, "corpus/a.txt", "Create an incident\nwith two lines\n\n\n   \nSet the priority to 3.\n\nx\n");
    write(dir, "corpus/b.jsonl", "{\"text\": \"The caller is Abel Tuter.\", \"id\": 1}\n\n{\"text\": \"Click the button b7 to save the form.\"}\n");
    write(dir, "corpus/notes.md", "not a text source: left out");
    write(dir, "long.txt", &format!("{}\n", long_doc(60)));
}

/// The documents of the `text` node, in order: a.txt's paragraphs, b.jsonl's lines, long.txt.
fn documents() -> Vec<String> {
    ["Create an incident\nwith two lines", "Set the priority to 3.", "x", "The caller is Abel Tuter.", "Click the button b7 to save the form."]
        .into_iter()
        .map(str::to_string)
        .chain([long_doc(60)])
        .collect()
}

/// Checks `path` holds `docs` (token ids, bos/eos-framed by the caller) as consecutive windows
/// of at most `max_len` tokens, all in the loss. Returns the number of examples.
fn check_windows(path: &Path, docs: &[Vec<u32>], max_len: usize) -> usize {
    let r = SftReader::open(path).unwrap();
    let mut i = 0;
    for doc in docs {
        let windows = doc.len().div_ceil(max_len);
        let got: Vec<u32> = (i..i + windows).flat_map(|k| r.example(k).0.to_vec()).collect();
        assert_eq!(&got, doc, "document at example {i}");
        for k in i..i + windows {
            let (ids, mask) = r.example(k);
            assert!(ids.len() <= max_len && (k + 1 == i + windows || ids.len() == max_len), "window {k}: {} tokens", ids.len());
            assert!(mask.len() == ids.len() && mask.iter().all(|&m| m == 1), "window {k}: every token is in the loss");
        }
        i += windows;
    }
    assert_eq!(r.len(), i, "no examples beyond the documents");
    i
}

#[test]
fn text_files_become_document_windows_with_every_token_in_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    write_episodes(&dir.path().join("t.jsonl"), &episodes()).unwrap();
    write_corpus(dir.path());
    write(dir.path(), "p.yaml", PIPELINE);
    let store = dir.path().join("store");
    let store_arg = store.to_str().unwrap();
    ok(dir.path(), &["check", "p.yaml"]);
    ok(dir.path(), &["run", "p.yaml", "--store", store_arg]);
    let report = latest_report(&store);
    let tok = tk::load(&path_of(&report, "tok", "tokenizer")).unwrap();
    let vocab = tok.get_vocab_size(true);
    let framed = |text: &str, bos: bool| -> Vec<u32> {
        let (b, e) = (tok.token_to_id("<|bos|>").unwrap(), tok.token_to_id("<|eos|>").unwrap());
        bos.then_some(b).into_iter().chain(tk::encode(&tok, text).unwrap()).chain([e]).collect()
    };

    // The directory's text files in sorted order, then long.txt; `x` dropped, the rest framed.
    let docs = documents();
    let lens: Vec<usize> = docs.iter().map(|d| tk::encode(&tok, d).unwrap().len()).collect();
    assert_eq!(lens[2], 1, "`x` is a single token");
    assert!(lens[5] + 2 > 2 * MAX_LEN, "the long document spans 3+ windows: {} tokens", lens[5]);
    let kept: Vec<Vec<u32>> = docs.iter().zip(&lens).filter(|(_, &l)| l >= 2).map(|(d, _)| framed(d, true)).collect();
    let path = path_of(&report, "text", "dataset");
    assert_eq!(path.file_name().unwrap(), "tokens.amsft");
    let examples = check_windows(&path, &kept, MAX_LEN);
    let tr = output(&report, "text", "report");
    assert_eq!((n(&tr["files"]), n(&tr["documents"]), n(&tr["dropped_short"]), n(&tr["cut_documents"])), (3, 6, 1, 1), "{tr}");
    assert_eq!((n(&tr["examples"]), n(&tr["tokens"])), (examples, kept.iter().map(Vec::len).sum()), "{tr}");
    assert_eq!((n(&tr["max_len"]), n(&tr["vocab_size"])), (MAX_LEN, vocab), "{tr}");
    assert_eq!((tr["bos_token"].as_str(), tr["eos_token"].as_str()), (Some("<|bos|>"), Some("<|eos|>")), "{tr}");
    assert_eq!(SftReader::open(&path).unwrap().vocab_size, vocab as u64);
    assert_eq!(tok.decode(SftReader::open(&path).unwrap().example(0).0, false).unwrap(), "<|bos|>Create an incident\nwith two lines<|eos|>");

    // The `text` input: sft/build's preview as one document (split: file), no bos.
    let preview = std::fs::read_to_string(path_of(&report, "sft", "preview")).unwrap();
    let doc = framed(preview.trim_end_matches(['\n', '\r']), false);
    let pr = output(&report, "preview", "report");
    assert_eq!((n(&pr["files"]), n(&pr["documents"]), n(&pr["dropped_short"])), (1, 1, 0), "{pr}");
    assert_eq!(n(&pr["examples"]), doc.len().div_ceil(2048), "{pr}");
    assert_eq!(pr["bos_token"], Json::Null, "{pr}");
    check_windows(&path_of(&report, "preview", "dataset"), &[doc], 2048);

    // A rerun is fully cached; a changed file in `paths` re-runs only `text`.
    ok(dir.path(), &["run", "p.yaml", "--store", store_arg]);
    assert!(statuses(&latest_report(&store)).values().all(|s| s == "cached"), "{:?}", statuses(&latest_report(&store)));
    write(dir.path(), "corpus/b.jsonl", "{\"text\": \"The caller is Abel Tuter.\"}\n");
    ok(dir.path(), &["run", "p.yaml", "--store", store_arg]);
    let again = latest_report(&store);
    let st = statuses(&again);
    assert_eq!(st["text"], "ran", "{st:?}");
    assert!(st.iter().filter(|(k, _)| *k != "text").all(|(_, s)| s == "cached"), "{st:?}");
    assert_eq!(n(&output(&again, "text", "report")["documents"]), 5);
}

#[test]
fn bad_sources_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    write_episodes(&dir.path().join("t.jsonl"), &episodes()).unwrap();
    write(dir.path(), "bad.jsonl", "{\"text\": \"Create an incident\"}\n{\"body\": \"no text here\"}\n");
    write(dir.path(), "blank.txt", "\n  \n\n");
    write(dir.path(), "body.jsonl", "{\"body\": \"Create an incident\"}\n");
    let store = dir.path().join("store");
    let store_arg = store.to_str().unwrap();
    let pipeline = |with: &str| {
        format!(
            "nodes:\n  - id: read\n    uses: traces/read\n    with: {{path: t.jsonl}}\n  - id: tok\n    uses: sft/tokenizer\n    with: {{vocab_size: 600}}\n    inputs: {{traces: read.traces}}\n  - id: text\n    uses: sft/tokenize\n    with: {with}\n    inputs: {{tokenizer: tok.tokenizer}}\n"
        )
    };
    let fails = |name: &str, with: &str, want: &str| {
        write(dir.path(), name, &pipeline(with));
        let out = agentmerge(dir.path(), &["run", name, "--store", store_arg]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        let report = latest_report(&store);
        let err = node(&report, "text")["error"].as_str().unwrap_or_default().to_string();
        assert!(err.contains(want), "{name}: missing {want:?} in {err:?}");
    };
    fails("bad.yaml", "{paths: [bad.jsonl]}", "bad.jsonl:2: no field `text` (the object has: body); set `field` to the key holding the text");
    fails("blank.yaml", "{paths: [blank.txt]}", "no documents in 1 file(s)");
    fails("short.yaml", "{paths: [body.jsonl], field: body, min_tokens: 1000}", "all 1 documents have fewer than min_tokens = 1000 tokens");
    fails("none.yaml", "{}", "no text to read: connect the `text` input or list files in `paths`");

    // Config mistakes fail `check`, naming the field.
    write(dir.path(), "notes.md", "hello");
    for (with, want) in [
        ("{paths: [missing.txt]}", "field `paths[0]`: missing.txt does not exist"),
        ("{paths: [bad.jsonl, notes.md]}", "field `paths[1]`: notes.md is not a text source"),
        ("{paths: [bad.jsonl], max_len: 1}", "field `max_len`: must be at least 2"),
        ("{paths: [bad.jsonl], split: sentence}", "unknown variant `sentence`"),
    ] {
        write(dir.path(), "c.yaml", &pipeline(with));
        let out = agentmerge(dir.path(), &["check", "c.yaml"]);
        assert!(!out.status.success(), "{with}");
        assert!(stderr(&out).contains(want), "{with}: missing {want:?} in:\n{}", stderr(&out));
    }
    let listing = ok(dir.path(), &["plugins", "sft/tokenize"]);
    for field in ["paths", "split", "field", "max_len", "add_bos", "add_eos", "min_tokens", "dataset:tokens"] {
        assert!(listing.contains(field), "{field} missing from:\n{listing}");
    }
}

#[test]
fn chat_files_named_in_paths_become_sft_data() {
    // `sft/chat` reads a user's own instruction data from `paths` (no `chat` input): every
    // conversation an example whose loss is exactly the last answer and the eos token; the
    // files are fingerprinted, so an edit re-runs the node; mistakes name the field or line.
    let dir = tempfile::tempdir().unwrap();
    write_episodes(&dir.path().join("t.jsonl"), &episodes()).unwrap();
    let conv =
        |q: &str, a: &str| format!("{{\"messages\": [{{\"role\": \"user\", \"content\": \"{q}\"}}, {{\"role\": \"assistant\", \"content\": \"{a}\"}}]}}\n");
    write(dir.path(), "own/a.jsonl", &(conv("Which field holds the caller?", "Field 3.") + &conv("Set the priority.", "fill('b2', '3')")));
    write(dir.path(), "own/notes.txt", "a .txt file in the directory is not a conversation file");
    write(dir.path(), "more.jsonl", &conv("What is the caller's name?", "Abel Tuter."));
    let pipeline = |with: &str| {
        format!(
            "nodes:\n  - id: read\n    uses: traces/read\n    with: {{path: t.jsonl}}\n  - id: tok\n    uses: sft/tokenizer\n    with: {{vocab_size: 600}}\n    inputs: {{traces: read.traces}}\n  - id: chat\n    uses: sft/chat\n    with: {with}\n    inputs: {{tokenizer: tok.tokenizer}}\n"
        )
    };
    let store = dir.path().join("store");
    let store_arg = store.to_str().unwrap();
    write(dir.path(), "p.yaml", &pipeline("{paths: [more.jsonl, own/a.jsonl], max_len: 512}"));
    ok(dir.path(), &["run", "p.yaml", "--store", store_arg]);
    let report = latest_report(&store);
    let tok = tk::load(&path_of(&report, "tok", "tokenizer")).unwrap();
    let r = SftReader::open(&path_of(&report, "chat", "dataset")).unwrap();
    let answers: Vec<String> = (0..r.len())
        .map(|i| {
            let (ids, mask) = r.example(i);
            let loss: Vec<u32> = ids.iter().zip(mask).filter(|(_, &m)| m == 1).map(|(&t, _)| t).collect();
            tok.decode(&loss, false).unwrap()
        })
        .collect();
    assert_eq!(answers, ["Abel Tuter.<|eos|>", "Field 3.<|eos|>", "fill('b2', '3')<|eos|>"], "paths in order, the answer + eos in the loss");
    let cr = output(&report, "chat", "report");
    assert_eq!((n(&cr["conversations"]), n(&cr["examples"])), (3, 3), "{cr}");

    // Cached on a rerun; an edited file re-runs the node.
    ok(dir.path(), &["run", "p.yaml", "--store", store_arg]);
    assert_eq!(statuses(&latest_report(&store))["chat"], "cached");
    write(dir.path(), "more.jsonl", &(conv("What is the caller's name?", "Abel Tuter.") + &conv("Save.", "click('b7')")));
    ok(dir.path(), &["run", "p.yaml", "--store", store_arg]);
    let again = latest_report(&store);
    assert_eq!(statuses(&again)["chat"], "ran");
    assert_eq!(n(&output(&again, "chat", "report")["examples"]), 4);

    // A directory is read whole: its .txt file is refused by name at run time.
    write(dir.path(), "d.yaml", &pipeline("{paths: [own]}"));
    let out = agentmerge(dir.path(), &["run", "d.yaml", "--store", store_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = node(&latest_report(&store), "chat")["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("notes.txt: not a JSON Lines file"), "{err}");
    write(dir.path(), "n.yaml", &pipeline("{}"));
    let out = agentmerge(dir.path(), &["run", "n.yaml", "--store", store_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = node(&latest_report(&store), "chat")["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("no conversations to read: connect the `chat` input or list files in `paths`"), "{err}");
    for (with, want) in [
        ("{paths: [missing.jsonl]}", "field `paths[0]`: missing.jsonl does not exist"),
        (
            "{paths: [more.jsonl, own/notes.txt]}",
            "field `paths[1]`: own/notes.txt is not a JSON Lines file (the name must end in .jsonl, .jsonl.gz or .jsonl.zst)",
        ),
    ] {
        write(dir.path(), "c.yaml", &pipeline(with));
        let out = agentmerge(dir.path(), &["check", "c.yaml"]);
        assert!(!out.status.success(), "{with}");
        assert!(stderr(&out).contains(want), "{with}: missing {want:?} in:\n{}", stderr(&out));
    }
}
