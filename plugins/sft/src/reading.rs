//! `sft/reading`: traces → page-reading exercises as pretraining text (`agentmerge_sft::reading`):
//! one document per distinct page of the episodes, the page as the agent prompt shows it, then
//! questions and answers that teach grounding (which element a phrase names, an action that
//! copies a value into a field, a field's value; optionally which text mentions a word, and a
//! table cell or chart value by its label); optionally on scrambled pages (`scramble`).

use std::{collections::BTreeSet, io::Write as _};

use agentmerge_sdk::prelude::*;
use agentmerge_sft::reading::{
    document, exercises_with, goal_document, goals, instructions, lookups, page_text, parse_axtree, qa_lines, Kind, PlainStyle, Rng,
};
use agentmerge_sft::scramble::Scrambler;
use agentmerge_traces::{read_episodes, OnBadLine};
use serde_json::json;

use crate::{metrics, traces_type};

/// The text file's name in the node's output directory.
pub const READING_FILE: &str = "reading.jsonl";

/// Makes page-reading exercises from the pages of traces.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reading {
    /// Questions per page (fewer when a page has fewer unambiguous elements).
    #[serde(default = "d_questions")]
    pub questions_per_page: usize,
    /// The kinds of question drawn (each question draws a kind uniformly among those the page
    /// offers): `find`, `describe`, `click`, `fill`, `select`, `value` (the default six), and
    /// `text` (which static text mentions a word → the text) and `cell` (a table cell by row
    /// and column header, or a `label: value` list item by label → the value).
    #[serde(default = "d_kinds", skip_serializing_if = "is_default_kinds")]
    pub kinds: Vec<Kind>,
    /// `format: text`: after the first `questions_per_page`, keep drawing questions while the
    /// document stays within this many characters (0, the default: off), so that every
    /// document about fills a pretraining row whatever the size of its page (the built-in
    /// tokenizer makes about one token of three characters: 3,000 for rows of 1,024 tokens).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fill_chars: usize,
    /// Documents made from each distinct page, each with its own draw of questions.
    #[serde(default = "d_rounds")]
    pub rounds: usize,
    /// Goal documents per page and round (`format: text` only): numbered `select`/`fill`
    /// instructions before the page and the actions after it, so a value is copied from an
    /// instruction hundreds of tokens back, as an agent copies from its goal. 0 for none.
    #[serde(default)]
    pub goal_documents: usize,
    /// Instructions in each goal document.
    #[serde(default = "d_goals")]
    pub goals_per_document: usize,
    /// How goal documents word their instructions: `quoted` (the default: `Fill the textbox
    /// 'Search' with 'Oslo'.`, select and fill only) or `plain`, as a user words a goal (`Type
    /// Oslo into Search.`, `What does the page say about Sydney?`), drawing click, fill, select
    /// and the page questions among `kinds`, answered with `send_msg_to_user`.
    #[serde(default, skip_serializing_if = "is_quoted")]
    pub goal_wording: Wording,
    /// `goal_wording: plain` only: how a question about the page is answered — `value` (the
    /// default: the value alone, `33`) or `sentence` (`The Count of Network is 33.`: the key
    /// asked about, copied from the instruction, then the value looked up beside it, as the
    /// tasks' final messages are).
    #[serde(default, skip_serializing_if = "is_value")]
    pub goal_answers: Answers,
    /// `goal_wording: plain` only: put the names and values of half of the instructions in
    /// double quotes (`Type "Oslo" into Search.`), as task goals quote them; the actions copy
    /// them without the quotes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub goal_quotes: bool,
    /// Rewrite each page before asking about it, every bid and every word and number of its
    /// names and values replaced by a random one (the same everywhere on the page; words drawn
    /// from the input's pages, so the tokenizer knows them): answers can then only be read off
    /// the page, never remembered (`agentmerge_sft::scramble`). Each round draws a new page.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scramble: bool,
    /// The most pages read (in episode order); 0 for all.
    #[serde(default)]
    pub max_pages: usize,
    /// `text`: one pretraining document per page and round (`{"text": page + Q/A lines}`).
    /// `chat`: instruction data for `sft/chat`, one conversation per question
    /// (`{"messages": [user: page + question, assistant: answer]}`).
    #[serde(default)]
    pub format: Format,
}

/// What `sft/reading` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Text,
    Chat,
}

/// How goal documents word their instructions (see `goal_wording`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Wording {
    #[default]
    Quoted,
    Plain,
}

/// How goal documents answer questions about the page (see `goal_answers`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Answers {
    #[default]
    Value,
    Sentence,
}

fn is_value(a: &Answers) -> bool {
    *a == Answers::Value
}
fn is_quoted(w: &Wording) -> bool {
    *w == Wording::Quoted
}
fn d_questions() -> usize {
    16
}
fn d_kinds() -> Vec<Kind> {
    Kind::DEFAULT.to_vec()
}
fn is_default_kinds(k: &[Kind]) -> bool {
    k == Kind::DEFAULT
}
fn is_zero(n: &usize) -> bool {
    *n == 0
}
fn d_rounds() -> usize {
    1
}
fn d_goals() -> usize {
    4
}

#[derive(Serialize, Default)]
struct ReadingReport {
    episodes: usize,
    pages: usize,
    duplicate_pages: usize,
    documents: usize,
    exercises: std::collections::BTreeMap<String, usize>,
    characters: usize,
}

impl NodeKind for Reading {
    const NAME: &'static str = "reading";
    const DOC: &'static str = "Page-reading exercises from the pages of traces, as pretraining text (JSON Lines `text`) or instruction data (`format: chat`, JSON Lines `messages`): each distinct page as the agent prompt shows it, then Q/A lines — which element is the button 'Save' (its bid), what is element b12, click/fill/select actions that copy a value, a field's value; with `kinds`, also which text mentions a word and a table cell or chart value by its label; optionally goal documents (`goal_documents`): numbered instructions before the page, their actions after it, worded with quotes or plainly as a user words a goal (`goal_wording`), answered with the value or a sentence (`goal_answers`); with `scramble`, each page's bids, words and numbers replaced by random ones first, so answers must be read, not remembered.";

    fn ports() -> Ports {
        Ports::new()
            .input("traces", traces_type(), "episodes whose pages (every step's AXTree) are read")
            .output(
                "text",
                PortType::Dataset(Some("text".into())),
                "JSON Lines, one `{\"text\": ...}` document per page and round; feed it to sft/tokenize (and sft/tokenizer's `text`)",
            )
            .output("report", PortType::Metrics, "episodes, pages, duplicate_pages, documents, exercises (by kind), characters")
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.questions_per_page == 0 {
            return Err(ConfigError::new("questions_per_page", "must be at least 1"));
        }
        if self.goals_per_document == 0 {
            return Err(ConfigError::new("goals_per_document", "must be at least 1"));
        }
        if self.fill_chars > 0 && self.format == Format::Chat {
            return Err(ConfigError::new("fill_chars", "fills pretraining documents: set `format: text` or `fill_chars: 0`"));
        }
        if self.kinds.is_empty() {
            return Err(ConfigError::new("kinds", "is empty; list at least one kind of question (e.g. [find, click, text, cell])"));
        }
        if self.goal_documents > 0 && self.format == Format::Chat {
            return Err(ConfigError::new("goal_documents", "goal documents are pretraining text: set `format: text` or `goal_documents: 0`"));
        }
        if self.goal_wording == Wording::Quoted && (self.goal_answers != Answers::Value || self.goal_quotes) {
            let field = if self.goal_quotes { "goal_quotes" } else { "goal_answers" };
            return Err(ConfigError::new(field, "styles the plain wording only: set `goal_wording: plain`, or remove it"));
        }
        if self.rounds == 0 {
            return Err(ConfigError::new("rounds", "must be at least 1"));
        }
        Ok(())
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let (_, traces) = inputs.dataset("traces")?;
        let (episodes, _) = read_episodes(&traces, OnBadLine::Fail)?;
        let out = ctx.out_path(READING_FILE)?;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?);
        let mut rng = Rng::new(ctx.seed());
        let mut seen = BTreeSet::new();
        let mut r = ReadingReport { episodes: episodes.len(), ..Default::default() };
        let style = PlainStyle { sentences: self.goal_answers == Answers::Sentence, quotes: self.goal_quotes };
        let scrambler = if self.scramble {
            let pages = episodes.iter().flat_map(|e| e.steps.iter().map(|s| s.obs.axtree_txt.as_str()));
            Some(Scrambler::new(pages).with_context(|| format!("{}: `scramble` needs pages with words in their names; these have none", traces.display()))?)
        } else {
            None
        };
        'pages: for e in &episodes {
            ctx.check()?;
            for s in &e.steps {
                if self.max_pages > 0 && r.pages >= self.max_pages {
                    break 'pages;
                }
                if !seen.insert(*blake3::hash(s.obs.axtree_txt.as_bytes()).as_bytes()) {
                    r.duplicate_pages += 1;
                    continue;
                }
                r.pages += 1;
                let read = |axtree: &str| {
                    let els = parse_axtree(axtree);
                    // Text and cell questions, only when asked for.
                    let looked_up = if self.kinds.iter().any(|k| matches!(k, Kind::Text | Kind::Cell)) { lookups(axtree, &els) } else { Vec::new() };
                    (els, looked_up)
                };
                // The page as it is, read once for every round; a scrambled page, read each round.
                let original = scrambler.is_none().then(|| read(&s.obs.axtree_txt));
                for _ in 0..self.rounds {
                    let scrambled = scrambler.as_ref().map(|sc| sc.scramble(&s.obs.axtree_txt, &mut rng));
                    let axtree = scrambled.as_deref().unwrap_or(&s.obs.axtree_txt);
                    let fresh = scrambled.as_deref().map(read);
                    let Some((els, looked_up)) = fresh.as_ref().or(original.as_ref()) else { unreachable!("either the page or its scramble is read") };
                    let mut ex = exercises_with(els, looked_up, self.questions_per_page, &mut rng, &self.kinds);
                    if ex.is_empty() {
                        continue;
                    }
                    if self.fill_chars > 0 && self.format == Format::Text {
                        let mut len = document(&s.obs.url, axtree, &ex).len();
                        while let Some(x) = exercises_with(els, looked_up, 1, &mut rng, &self.kinds).pop() {
                            len += qa_lines(&x).len();
                            if len > self.fill_chars {
                                break;
                            }
                            ex.push(x);
                        }
                    }
                    for x in &ex {
                        *r.exercises.entry(kind_name(x.kind)).or_default() += 1;
                    }
                    match self.format {
                        Format::Text => {
                            let text = document(&s.obs.url, axtree, &ex);
                            r.characters += text.len();
                            r.documents += 1;
                            writeln!(file, "{}", json!({ "text": text }))?;
                            for _ in 0..self.goal_documents {
                                let gs = match self.goal_wording {
                                    Wording::Quoted => goals(els, self.goals_per_document, &mut rng),
                                    Wording::Plain => instructions(els, looked_up, self.goals_per_document, &mut rng, &self.kinds, style),
                                };
                                if gs.is_empty() {
                                    break;
                                }
                                let text = goal_document(&s.obs.url, axtree, &gs);
                                *r.exercises.entry("goal".into()).or_default() += gs.len();
                                r.characters += text.len();
                                r.documents += 1;
                                writeln!(file, "{}", json!({ "text": text }))?;
                            }
                        }
                        Format::Chat => {
                            let page = page_text(&s.obs.url, axtree);
                            for x in &ex {
                                let user = format!("{page}\n\n# Question\n{}", x.question);
                                r.characters += user.len() + x.answer.len();
                                r.documents += 1;
                                let messages = json!([{"role": "user", "content": user}, {"role": "assistant", "content": x.answer}]);
                                writeln!(file, "{}", json!({ "messages": messages }))?;
                            }
                        }
                    }
                }
            }
        }
        file.flush()?;
        anyhow::ensure!(r.documents > 0, "{}: no page with an element to ask about ({} pages read)", traces.display(), r.pages);
        tracing::info!("{} documents from {} distinct pages ({} duplicates skipped); exercises {:?}", r.documents, r.pages, r.duplicate_pages, r.exercises);
        Ok(Outputs::new().with("text", Value::Dataset { schema: "text".into(), path: out }).with("report", metrics(&r)?))
    }
}

fn kind_name(k: Kind) -> String {
    serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}
