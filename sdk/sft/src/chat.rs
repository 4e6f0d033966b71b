//! Chat conversations (instruction data) to SFT examples: JSON Lines with a `messages` list of
//! `{role, content}` objects, the format of Hugging Face chat datasets and OpenAI fine-tuning
//! files. The last message must be the assistant's: it is the response (in the loss, with the
//! end-of-sequence token); everything before it is the prompt, rendered with the chat template
//! — as `sft/build` does for an agent step, so one model is trained and prompted alike.

use std::{io::BufRead, path::Path};

use anyhow::{anyhow, bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::{
    dataset::{encode_example_with, Example},
    template::{ChatTemplate, Message},
    text::open_jsonl,
};

/// One conversation as read from a file, with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    /// `file:line`, for messages.
    pub at: String,
    pub messages: Vec<Message>,
}

/// What `chat_examples` kept and dropped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatReport {
    pub conversations: usize,
    pub examples: usize,
    /// Longer than `max_len` tokens (prompt + response + eos).
    pub dropped_too_long: usize,
    pub total_tokens: usize,
    pub loss_tokens: usize,
}

/// Reads the conversations of a JSON Lines file (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`): each line
/// an object whose `field` is a list of `{"role": …, "content": …}` ending with the assistant's
/// answer. A bad line is an error naming `file:line` and what is wrong.
pub fn read_conversations(path: &Path, field: &str) -> anyhow::Result<Vec<Conversation>> {
    let name = path.display().to_string();
    if !matches!(path.extension().and_then(|e| e.to_str()), Some("jsonl" | "gz" | "zst")) {
        bail!("{name}: not a JSON Lines file (the name must end in .jsonl, .jsonl.gz or .jsonl.zst)");
    }
    let mut out = Vec::new();
    for (i, line) in open_jsonl(path)?.lines().enumerate() {
        let at = format!("{name}:{}", i + 1);
        let line = line.with_context(|| format!("{at}: cannot read the line"))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| anyhow!("{at}: not valid JSON: {e}"))?;
        let list = v
            .get(field)
            .and_then(|m| m.as_array())
            .ok_or_else(|| anyhow!("{at}: expected an object with a list `{field}` of {{\"role\", \"content\"}} messages"))?;
        let mut messages = Vec::with_capacity(list.len());
        for (k, m) in list.iter().enumerate() {
            let get = |key: &str| m.get(key).and_then(|x| x.as_str()).ok_or_else(|| anyhow!("{at}: {field}[{k}] has no string `{key}`"));
            messages.push(Message::new(get("role")?, get("content")?));
        }
        match messages.last() {
            None => bail!("{at}: `{field}` is empty"),
            Some(m) if m.role != "assistant" => {
                bail!("{at}: the last message is the {}'s; it must be the assistant's answer (the response to train on)", m.role)
            }
            _ => {}
        }
        out.push(Conversation { at, messages });
    }
    Ok(out)
}

/// Encodes conversations as SFT examples (prompt: all messages but the last, with the generation
/// prompt; response: the last message + eos). Conversations longer than `max_len` tokens are
/// dropped and counted.
pub fn chat_examples(
    conversations: &[Conversation],
    encode: &dyn Fn(&str) -> anyhow::Result<Vec<u32>>,
    template: &ChatTemplate,
    max_len: usize,
) -> anyhow::Result<(Vec<Example>, ChatReport)> {
    let mut report = ChatReport { conversations: conversations.len(), ..Default::default() };
    let mut out = Vec::new();
    for c in conversations {
        let (answer, prompt) = c.messages.split_last().expect("read_conversations keeps non-empty conversations");
        match encode_example_with(encode, template, prompt, &answer.content, max_len).with_context(|| c.at.clone())? {
            Some(ex) => {
                report.total_tokens += ex.ids.len();
                report.loss_tokens += ex.mask.iter().filter(|m| **m == 1).count();
                out.push(ex);
            }
            None => report.dropped_too_long += 1,
        }
    }
    report.examples = out.len();
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_conversations_and_names_bad_lines() {
        let d = tempfile::tempdir().unwrap();
        let ok = write(
            d.path(),
            "ok.jsonl",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"a1\"}]}\n\n{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a2\"}]}\n",
        );
        let cs = read_conversations(&ok, "messages").unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[1].messages[0], Message::new("system", "s"));
        assert!(cs[1].at.ends_with("ok.jsonl:3"));
        let err = |text: &str| read_conversations(&write(d.path(), "bad.jsonl", text), "messages").unwrap_err().to_string();
        assert!(err("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}\n").contains("bad.jsonl:1: the last message is the user's"));
        assert!(err("\n{\"messages\": [{\"role\": \"user\"}]}").contains("bad.jsonl:2: messages[0] has no string `content`"));
        assert!(err("{\"text\": \"x\"}").contains("bad.jsonl:1: expected an object with a list `messages`"));
        assert!(err("{oops").contains("bad.jsonl:1: not valid JSON"));
        assert!(read_conversations(&write(d.path(), "x.txt", ""), "messages").unwrap_err().to_string().contains("not a JSON Lines file"));
    }

    #[test]
    fn the_last_answer_is_the_loss_and_long_ones_are_dropped() {
        // A character-level "tokenizer": one id per byte.
        let encode = |s: &str| -> anyhow::Result<Vec<u32>> { Ok(s.bytes().map(u32::from).collect()) };
        let template = ChatTemplate::default();
        let c = Conversation { at: "f:1".into(), messages: vec![Message::new("user", "q"), Message::new("assistant", "ans")] };
        let long = Conversation { at: "f:2".into(), messages: vec![Message::new("user", "q".repeat(500)), Message::new("assistant", "a")] };
        let (ex, report) = chat_examples(&[c.clone(), long], &encode, &template, 200).unwrap();
        assert_eq!((report.conversations, report.examples, report.dropped_too_long), (2, 1, 1));
        let loss: Vec<u8> = ex[0].ids.iter().zip(&ex[0].mask).filter(|(_, m)| **m == 1).map(|(i, _)| *i as u8).collect();
        assert_eq!(String::from_utf8(loss).unwrap(), format!("ans{}", template.eos_token));
        let prompt: Vec<u8> = ex[0].ids.iter().zip(&ex[0].mask).filter(|(_, m)| **m == 0).map(|(i, _)| *i as u8).collect();
        assert_eq!(String::from_utf8(prompt).unwrap(), template.render(&c.messages[..1], true).unwrap());
        assert_eq!(report.loss_tokens, 3 + template.eos_token.len());
    }
}
