//! Supervised fine-tuning data: what turns agent traces into token ids a trainer reads.
//!
//! - [`tokenizer`]: load a model's `tokenizer.json`, or train a byte-level BPE from a corpus;
//! - [`template`]: chat templates from `tokenizer_config.json`, rendered with minijinja;
//! - [`prompt`]: an agent step's prompt (goal, AXTree, history, last error) fitted to a token
//!   budget by cutting AXTree lines, dropping samples whose target element was cut;
//! - [`dataset`]: the memory-mappable token file with per-token loss masks, and its encoder;
//! - [`build`]: episodes to that file: one example per action step, with drops counted by reason;
//! - [`chat`]: instruction data (JSON Lines `messages`) to that file, the last answer in the loss;
//! - [`reading`]: page-reading exercises (which element is the button 'Save'? → its bid) from
//!   AXTree text, to teach small models grounding;
//! - [`scramble`]: the same pages with their names, values and bids replaced by random ones, so
//!   an answer must be read off the page, not remembered;
//! - [`text`]: plain text (`.txt`, JSON Lines) to that file for next-token pretraining: one
//!   example per document (or window of a long one), every token in the loss.

pub mod build;
pub mod chat;
pub mod dataset;
pub mod prompt;
pub mod reading;
pub mod scramble;
pub mod template;
pub mod text;
pub mod tokenizer;

pub use build::{build_sft, BuildConfig, BuildReport};
pub use dataset::{encode_example, Example, SftReader, SftWriter};
pub use prompt::{fit_prompt, Fitted, PromptOptions, StepPrompt};
pub use template::{ChatTemplate, Message};
pub use text::{tokenize_text, Split, TextConfig, TextReport};
