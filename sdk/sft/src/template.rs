//! Chat templates: the Jinja `chat_template` of `tokenizer_config.json`, rendered the way
//! `transformers.apply_chat_template` does (minijinja with Python-compatible methods).

use std::path::Path;

use anyhow::{anyhow, Context as _};
use serde::{Deserialize, Serialize};

/// A chat message.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Message {
        Message { role: role.into(), content: content.into() }
    }
}

/// The template used when a model has none: Llama-3-like headers, one turn per message.
pub const DEFAULT_TEMPLATE: &str = "{{ bos_token }}{% for m in messages %}<|start|>{{ m.role }}\n{{ m.content }}<|end|>\n{% endfor %}{% if add_generation_prompt %}<|start|>assistant\n{% endif %}";

/// A model's chat template with its special tokens.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
}

fn token_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}

impl ChatTemplate {
    /// Reads `tokenizer_config.json` in `dir`; falls back to [`DEFAULT_TEMPLATE`] when the
    /// model has no chat template (or no tokenizer_config.json).
    pub fn from_dir(dir: &Path) -> anyhow::Result<ChatTemplate> {
        let path = dir.join("tokenizer_config.json");
        if !path.exists() {
            return Ok(ChatTemplate::default());
        }
        let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?).with_context(|| format!("{}: not valid JSON", path.display()))?;
        let source = match &cfg["chat_template"] {
            serde_json::Value::String(s) => s.clone(),
            // Several named templates: take "default".
            serde_json::Value::Array(list) => list
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .ok_or_else(|| anyhow!("{}: chat_template is a list without a `default` entry", path.display()))?
                .to_string(),
            _ => DEFAULT_TEMPLATE.to_string(),
        };
        Ok(ChatTemplate { source, bos_token: token_text(&cfg["bos_token"]).unwrap_or_default(), eos_token: token_text(&cfg["eos_token"]).unwrap_or_default() })
    }

    /// Renders messages; `add_generation_prompt` appends the assistant turn's header.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> anyhow::Result<String> {
        let mut env = minijinja::Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template("chat", &self.source).map_err(|e| anyhow!("chat template does not parse: {e}"))?;
        let tmpl = env.get_template("chat")?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|e| anyhow!("rendering the chat template failed: {e}"))
    }
}

impl Default for ChatTemplate {
    fn default() -> ChatTemplate {
        ChatTemplate { source: DEFAULT_TEMPLATE.into(), bos_token: "<|bos|>".into(), eos_token: "<|eos|>".into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Llama-3 chat template (as published in Meta's tokenizer_config.json, abridged to
    /// the part without tools) must render as transformers renders it.
    #[test]
    fn renders_a_llama3_style_template() {
        let t = ChatTemplate {
            source: "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}".into(),
            bos_token: "<|begin_of_text|>".into(),
            eos_token: "<|eot_id|>".into(),
        };
        let out = t.render(&[Message::new("system", "Be brief. "), Message::new("user", "hi")], true).unwrap();
        assert_eq!(out, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    }

    #[test]
    fn python_methods_and_default_template() {
        let t = ChatTemplate { source: "{{ messages[0].content.strip().upper() }}".into(), ..Default::default() };
        assert_eq!(t.render(&[Message::new("user", "  go ")], false).unwrap(), "GO");
        let d = ChatTemplate::default().render(&[Message::new("user", "x")], true).unwrap();
        assert_eq!(d, "<|bos|><|start|>user\nx<|end|>\n<|start|>assistant\n");
        let bad = ChatTemplate { source: "{% if %}".into(), ..Default::default() };
        assert!(bad.render(&[], false).unwrap_err().to_string().contains("does not parse"));
    }
}
