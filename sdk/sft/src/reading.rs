//! Page-reading exercises: questions about a web page's AXTree and their answers, made from any
//! BrowserGym-style AXTree text (MiniArena's or a real AgentLab trace's), for pretraining text and
//! instruction data that teach a small model to *ground*: find the element a phrase describes and
//! copy its bid, copy a value from an instruction into an action, read a field's value.
//!
//! A tiny model trained only on agent traces learns the answer format and the verbs fast and the
//! elements slowly (BRIEF §7): each trace step holds one grounding example in hundreds of prompt
//! tokens. These exercises hold dozens per page, in the same page format the agent prompt uses
//! (`# Current page`, `## AXTree`) and the same action syntax, so the skill carries over.

use std::collections::BTreeMap;

use agentmerge_traces::action::{Action, Selection};
use serde::Serialize;

/// One element line of an AXTree: `\t[bid] role 'name', attr=..., value='...'`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub bid: String,
    pub role: String,
    pub name: String,
    /// `value='...'`, when the line has one.
    pub value: Option<String>,
    /// Indentation depth (tabs).
    pub depth: usize,
    /// The index of the nearest element above with a smaller depth (the parent).
    pub parent: Option<usize>,
}

/// The elements of an AXTree text that have a bid and a quoted name, in page order. Lines
/// without a bid (`StaticText`, the root) or in another shape are skipped.
pub fn parse_axtree(axtree: &str) -> Vec<Element> {
    let mut out: Vec<Element> = Vec::new();
    // (depth, index in `out`) of the open ancestors.
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for line in axtree.lines() {
        let depth = line.len() - line.trim_start_matches('\t').len();
        let Some(e) = parse_line(&line[depth..], depth) else { continue };
        while stack.last().is_some_and(|&(d, _)| d >= depth) {
            stack.pop();
        }
        let parent = stack.last().map(|&(_, i)| i);
        out.push(Element { parent, ..e });
        stack.push((depth, out.len() - 1));
    }
    out
}

fn parse_line(s: &str, depth: usize) -> Option<Element> {
    let rest = s.strip_prefix('[')?;
    let close = rest.find(']')?;
    let bid = &rest[..close];
    if bid.is_empty() || bid.contains(char::is_whitespace) {
        return None;
    }
    let rest = rest[close + 1..].strip_prefix(' ')?;
    let (role, rest) = rest.split_once(' ')?;
    let (name, attrs) = quoted(rest)?;
    let value = attrs.find(" value=").and_then(|i| quoted(&attrs[i + " value=".len()..])).map(|(v, _)| v);
    Some(Element { bid: bid.into(), role: role.into(), name, value, depth, parent: None })
}

/// A quoted string at the start of `s`, as Python's `repr` writes it (BrowserGym's AXTree text):
/// `'text'`, or `"text"` when the text holds a `'`. The closing quote is the first one followed
/// by the line's end, `, ` (attributes) or ` value=`, so a name may itself hold quotes. Returns
/// the text and what follows it.
pub(crate) fn quoted(s: &str) -> Option<(String, &str)> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &s[1..];
    let end = body.match_indices(q).map(|(i, _)| i).find(|&i| {
        let after = &body[i + 1..];
        after.is_empty() || after.starts_with(", ") || after.starts_with(" value=")
    })?;
    Some((body[..end].to_string(), &body[end + 1..]))
}

/// What an exercise trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// "Which element is the button 'Save'?" → its bid.
    Find,
    /// "What is element b12?" → its role and name.
    Describe,
    /// "Click the link 'Home'." → `click('a3')`.
    Click,
    /// "Fill the textbox 'Title' with 'Printer jam'." → `fill('b7', 'Printer jam')`.
    Fill,
    /// "Select 'High' in the combobox 'Priority'." → `select_option('b9', 'High')`.
    Select,
    /// "What is the value of the combobox 'Priority'?" → its value.
    Value,
    /// "Which text on the page mentions 'Sydney'?" → the one `StaticText` that does, whole:
    /// finding a sentence by a word and copying it (a knowledge-base answer).
    Text,
    /// "What is the Count of 'Network'?" → the cell of that row under that column header; and
    /// "What does the list say for 'Berlin'?" → `45` from a list item 'Berlin: 45': reading a
    /// table or a chart.
    Cell,
}

impl Kind {
    /// The kinds [`exercises`] draws from unless told otherwise.
    pub const DEFAULT: &'static [Kind] = &[Kind::Find, Kind::Describe, Kind::Click, Kind::Fill, Kind::Select, Kind::Value];
}

/// One question and its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exercise {
    pub kind: Kind,
    pub question: String,
    pub answer: String,
    /// What the question is made of, for [`instructions`] to say it another way: `[role, name,
    /// bid]` (find, describe, click), `[role, name, bid, value]` (fill, select, value: the value
    /// typed, the option chosen, the field's value), `[word, text]` (text), `[key, column,
    /// value]` (cell; the column is empty for a `label: value` list item).
    pub parts: Vec<String>,
}

/// Roles a user fills with text.
const FILLABLE: &[&str] = &["textbox", "searchbox", "spinbutton"];
/// Roles a `click` acts on.
const CLICKABLE: &[&str] = &["button", "link", "menuitem", "tab", "checkbox", "radio", "switch", "treeitem", "gridcell", "columnheader"];

/// A small deterministic generator (SplitMix64), so exercises depend only on the page and seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// `n` exercises about `elements` (none when no element qualifies). Each draws a kind
/// uniformly among those the page offers, then an element of that kind, so rare kinds (one
/// combobox on a page of links) are asked as often as common ones; `fill` and `select` draw a
/// fresh value each time. Only elements whose (role, name) is unique on the page are asked
/// about, so every answer is the only right one. Questions may repeat on a small page.
pub fn exercises(elements: &[Element], n: usize, rng: &mut Rng) -> Vec<Exercise> {
    exercises_with(elements, &[], n, rng, Kind::DEFAULT)
}

/// Every `Text` and `Cell` question the page `axtree` (with its parsed `elements`) answers
/// unambiguously:
/// - `Text`: for each `StaticText` line, each word of four or more characters that no other
///   `StaticText` line of the page holds;
/// - `Cell`: for each table row under a header row of `columnheader`s, each column after the
///   first, keyed by the row's first cell (a (key, column) pair asked only when unique on the
///   page); and each list item named `label: value` whose label is unique on the page.
pub fn lookups(axtree: &str, elements: &[Element]) -> Vec<Exercise> {
    let mut out = Vec::new();
    // Text: the page's static texts, and which of them hold each word.
    let texts: Vec<String> = axtree
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("StaticText "))
        .filter_map(|rest| quoted(rest).map(|(t, _)| t))
        .filter(|t| !t.is_empty())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let words: Vec<std::collections::BTreeSet<&str>> =
        texts.iter().map(|t| t.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() >= 4).collect()).collect();
    let mut holders: BTreeMap<&str, usize> = BTreeMap::new();
    for w in words.iter().flatten() {
        *holders.entry(w).or_default() += 1;
    }
    for (t, ws) in texts.iter().zip(&words) {
        for w in ws.iter().filter(|w| holders[*w] == 1) {
            out.push(Exercise {
                kind: Kind::Text,
                question: format!("Which text on the page mentions '{w}'?"),
                answer: t.clone(),
                parts: vec![w.to_string(), t.clone()],
            });
        }
    }
    // Cell: (key, column, answer) of every table row and `label: value` list item.
    let children = |i: usize| -> Vec<&Element> { elements.iter().filter(|c| c.parent == Some(i)).collect() };
    let mut cells: Vec<(String, String, String)> = Vec::new();
    for (i, e) in elements.iter().enumerate() {
        if e.role == "table" || e.role == "grid" {
            let rows: Vec<usize> = (0..elements.len()).filter(|&r| elements[r].parent == Some(i) && elements[r].role == "row").collect();
            let Some(header) = rows.iter().map(|&r| children(r)).find(|c| !c.is_empty() && c.iter().all(|h| h.role == "columnheader")) else {
                continue;
            };
            for &r in &rows {
                let row = children(r);
                if row.len() < 2 || row.iter().any(|c| c.role == "columnheader") || row[0].name.is_empty() {
                    continue;
                }
                for (c, h) in row.iter().zip(&header).skip(1) {
                    if !c.name.is_empty() && !h.name.is_empty() {
                        cells.push((row[0].name.clone(), h.name.clone(), c.name.clone()));
                    }
                }
            }
        } else if e.role == "listitem" {
            if let Some((label, value)) = e.name.split_once(": ").filter(|(l, v)| !l.is_empty() && !v.is_empty()) {
                cells.push((label.to_string(), String::new(), value.to_string()));
            }
        }
    }
    let mut count: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (k, h, _) in &cells {
        *count.entry((k, h)).or_default() += 1;
    }
    for (k, h, v) in &cells {
        if count[&(k.as_str(), h.as_str())] == 1 {
            let question = if h.is_empty() { format!("What does the list say for '{k}'?") } else { format!("What is the {h} of '{k}'?") };
            out.push(Exercise { kind: Kind::Cell, question, answer: v.clone(), parts: vec![k.clone(), h.clone(), v.clone()] });
        }
    }
    out
}

/// `n` instructions to carry out on the page, for a goal document ([`goal_document`]): the
/// kinds that copy a value from the instruction into the action (`select`, `fill`) when the
/// page has a field for them, else `click`. None when the page has no element for either.
pub fn goals(elements: &[Element], n: usize, rng: &mut Rng) -> Vec<Exercise> {
    let copying = exercises_with(elements, &[], n, rng, &[Kind::Fill, Kind::Select]);
    if !copying.is_empty() {
        return copying;
    }
    exercises_with(elements, &[], n, rng, &[Kind::Click])
}

/// [`exercises`] drawing from the kinds in `allowed`: `Text` and `Cell` questions come from
/// `lookups` (see [`lookups`]), the others from `elements`.
pub fn exercises_with(elements: &[Element], lookups: &[Exercise], n: usize, rng: &mut Rng, allowed: &[Kind]) -> Vec<Exercise> {
    let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for e in elements {
        *seen.entry((&e.role, &e.name)).or_default() += 1;
    }
    let unique = |e: &Element| !e.name.is_empty() && seen[&(e.role.as_str(), e.name.as_str())] == 1;
    // Values to type: names and values shown on the page (so copying is what is learnt, not a
    // fixed vocabulary), never empty.
    let texts: Vec<&str> =
        elements.iter().flat_map(|e| [Some(e.name.as_str()), e.value.as_deref()]).flatten().filter(|t| !t.is_empty() && t.len() <= 40).collect();
    let options = |i: usize| -> Vec<&str> {
        elements.iter().filter(|o| o.parent == Some(i) && o.role == "option" && !o.name.is_empty()).map(|o| o.name.as_str()).collect()
    };
    // The elements each kind can ask about.
    let mut by_kind: BTreeMap<Kind, Vec<usize>> = BTreeMap::new();
    for (i, e) in elements.iter().enumerate() {
        if !unique(e) {
            continue;
        }
        let mut kinds = vec![Kind::Find, Kind::Describe];
        if CLICKABLE.contains(&e.role.as_str()) {
            kinds.push(Kind::Click);
        }
        if FILLABLE.contains(&e.role.as_str()) && !texts.is_empty() {
            kinds.push(Kind::Fill);
        }
        if !options(i).is_empty() {
            kinds.push(Kind::Select);
        }
        if e.value.as_ref().is_some_and(|v| !v.is_empty()) {
            kinds.push(Kind::Value);
        }
        for k in kinds.into_iter().filter(|k| allowed.contains(k)) {
            by_kind.entry(k).or_default().push(i);
        }
    }
    // Lookup questions: indices into `lookups`, by kind.
    let mut by_lookup: BTreeMap<Kind, Vec<usize>> = BTreeMap::new();
    for (i, x) in lookups.iter().enumerate().filter(|(_, x)| allowed.contains(&x.kind)) {
        by_lookup.entry(x.kind).or_default().push(i);
    }
    let kinds: Vec<(Kind, Vec<usize>, bool)> =
        by_kind.into_iter().map(|(k, v)| (k, v, false)).chain(by_lookup.into_iter().map(|(k, v)| (k, v, true))).collect();
    if kinds.is_empty() {
        return Vec::new();
    }
    (0..n)
        .map(|_| {
            let (kind, els, lookup) = &kinds[rng.below(kinds.len())];
            let i = els[rng.below(els.len())];
            if *lookup {
                return lookups[i].clone();
            }
            let e = &elements[i];
            let (role, name, bid) = (&e.role, &e.name, &e.bid);
            let mut parts = vec![role.clone(), name.clone(), bid.clone()];
            let (question, answer) = match kind {
                Kind::Find => (format!("Which element is the {role} '{name}'?"), bid.clone()),
                Kind::Describe => (format!("What is element {bid}?"), format!("{role} '{name}'")),
                Kind::Click => (format!("Click the {role} '{name}'."), tagged(Action::Click { bid: bid.clone() })),
                Kind::Fill => {
                    let v = texts[rng.below(texts.len())];
                    parts.push(v.to_string());
                    (format!("Fill the {role} '{name}' with '{v}'."), tagged(Action::Fill { bid: bid.clone(), value: v.to_string() }))
                }
                Kind::Select => {
                    let opts = options(i);
                    let o = opts[rng.below(opts.len())];
                    parts.push(o.to_string());
                    (format!("Select '{o}' in the {role} '{name}'."), tagged(Action::SelectOption { bid: bid.clone(), options: Selection::One(o.to_string()) }))
                }
                Kind::Value => {
                    let v = e.value.clone().unwrap_or_default();
                    parts.push(v.clone());
                    (format!("What is the value of the {role} '{name}'?"), v)
                }
                Kind::Text | Kind::Cell => unreachable!("lookup kinds are drawn from `lookups`"),
            };
            Exercise { kind: *kind, question, answer, parts }
        })
        .collect()
}

/// The kinds an agent can be told to do: [`instructions`] draws from these.
pub const INSTRUCTION_KINDS: &[Kind] = &[Kind::Click, Kind::Fill, Kind::Select, Kind::Value, Kind::Text, Kind::Cell];

/// `n` instructions as a user words a goal, with the action that carries each out: no quotes
/// around names and values, one of several wordings (`Type Oslo into Search.`, `Choose High
/// for Priority.`, `What does the page say about Sydney?`), so the agent has to find the span
/// to copy in a plain sentence, as in `What is the hotel limit for trips to Oslo?` → `fill(...,
/// 'travel guidelines Oslo')`. Click, fill and select copy a name or value from the sentence into
/// the action; questions about the page (a field's value, a text by a word, a table cell or
/// chart value) are answered with `send_msg_to_user`: the value alone, in no task's wording, or
/// with `style.sentences` a sentence naming the key first.
/// Draws from the kinds of `allowed` that [`INSTRUCTION_KINDS`] holds; empty when the page
/// offers none of them. `style` can make the answers sentences and quote the names, as tasks do.
pub fn instructions(elements: &[Element], lookups: &[Exercise], n: usize, rng: &mut Rng, allowed: &[Kind], style: PlainStyle) -> Vec<Exercise> {
    let kinds: Vec<Kind> = allowed.iter().copied().filter(|k| INSTRUCTION_KINDS.contains(k)).collect();
    let mut out = exercises_with(elements, lookups, n, rng, &kinds);
    for x in &mut out {
        let (question, answer) = say_plainly(x, rng, style);
        x.question = question;
        x.answer = answer;
    }
    out
}

/// How [`instructions`] words an instruction and its answer, beyond plain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlainStyle {
    /// Answer a question about the page with a sentence that first names what was asked, then
    /// gives the value (`The Count of Network is 33.`), as the tasks' final messages do (`The
    /// value of Network is 33.`), instead of the value alone: the key is copied from the
    /// instruction into the answer, then looked up on the page. Text questions are answered
    /// with the text either way.
    pub sentences: bool,
    /// Put the names and values of half of the instructions in double quotes (`Type "Oslo"
    /// into Search.`), as task goals quote them (`Impersonate the user "Ahmed Ferreira".`);
    /// the action copies them without the quotes.
    pub quotes: bool,
}

/// One exercise of [`INSTRUCTION_KINDS`] as a plain instruction and its action.
fn say_plainly(x: &Exercise, rng: &mut Rng, style: PlainStyle) -> (String, String) {
    let pick = |rng: &mut Rng, options: &[String]| options[rng.below(options.len())].clone();
    let quoted = style.quotes && rng.below(2) == 0;
    let q = |s: &String| if quoted { format!("\"{s}\"") } else { s.clone() };
    let p = &x.parts;
    let sentences = style.sentences;
    let msg = |text: &str| tagged(Action::SendMsgToUser { text: text.to_string() });
    match x.kind {
        Kind::Click => {
            let (role, name, bid) = (&p[0], &q(&p[1]), &p[2]);
            let says = pick(rng, &[format!("Click {name}."), format!("Open {name}."), format!("Go to {name}."), format!("Press the {name} {role}.")]);
            (says, tagged(Action::Click { bid: bid.clone() }))
        }
        Kind::Fill => {
            let (role, name, bid, v) = (&p[0], &q(&p[1]), &p[2], &q(&p[3]));
            let mut says = vec![format!("Type {v} into {name}."), format!("Enter {v} in the {name} {role}."), format!("Set {name} to {v}.")];
            if role == "searchbox" {
                says.push(format!("Search for {v}."));
            }
            (pick(rng, &says), tagged(Action::Fill { bid: bid.clone(), value: p[3].clone() }))
        }
        Kind::Select => {
            let (role, name, bid, o) = (&p[0], &q(&p[1]), &p[2], &q(&p[3]));
            let says = pick(rng, &[format!("Choose {o} for {name}."), format!("Set {name} to {o}."), format!("Select {o} in the {name} {role}.")]);
            (says, tagged(Action::SelectOption { bid: bid.clone(), options: Selection::One(p[3].clone()) }))
        }
        Kind::Value => {
            let (name, v) = (&p[1], &p[3]);
            let says = pick(rng, &[format!("What is the {}?", q(name)), format!("Tell me the value of {}.", q(name))]);
            let answer = if sentences { pick(rng, &[format!("The {name} is {v}."), format!("{name} is set to {v}.")]) } else { v.clone() };
            (says, msg(&answer))
        }
        Kind::Text => {
            let (word, text) = (&q(&p[0]), &p[1]);
            (pick(rng, &[format!("What does the page say about {word}?"), format!("Find the text that mentions {word} and tell me.")]), msg(text))
        }
        Kind::Cell => {
            let (key, column, v) = (&p[0], &p[1], &p[2]);
            let k = q(key);
            let (says, answers) = if column.is_empty() {
                (
                    vec![format!("How much is {k}?"), format!("What value does the page give for {k}?")],
                    vec![format!("The value of {key} is {v}."), format!("For {key}, the page gives {v}.")],
                )
            } else {
                (
                    vec![format!("What is the {column} of {k}?"), format!("Tell me the {column} for {k}.")],
                    vec![format!("The {column} of {key} is {v}."), format!("For {key}, the {column} is {v}.")],
                )
            };
            let says = pick(rng, &says);
            let answer = if sentences { pick(rng, &answers) } else { v.clone() };
            (says, msg(&answer))
        }
        Kind::Find | Kind::Describe => unreachable!("not an instruction kind"),
    }
}

/// An action as the agent writes it, `<action>click('a3')</action>`: the call written by
/// [`Action`]'s `Display`, so a value holding a quote is still one valid string literal.
fn tagged(a: Action) -> String {
    format!("<action>{a}</action>")
}

/// The page as the agent prompt shows it (`sft/build`'s `# Current page` section).
pub fn page_text(url: &str, axtree: &str) -> String {
    format!("# Current page\nURL: {url}\n\n## AXTree\n{}", axtree.trim_end())
}

/// A pretraining document: the page, then its exercises as `Q:`/`A:` lines.
pub fn document(url: &str, axtree: &str, exercises: &[Exercise]) -> String {
    let mut s = page_text(url, axtree);
    s.push_str("\n\n# Questions\n");
    for e in exercises {
        s.push_str(&qa_lines(e));
    }
    s
}

/// An exercise as a [`document`] writes it: `Q: question`, `A: answer`.
pub fn qa_lines(e: &Exercise) -> String {
    format!("Q: {}\nA: {}\n", e.question, e.answer)
}

/// A goal document: numbered instructions before the page, as the agent prompt puts its goal,
/// and the actions that carry them out, in the same order, after it. The action copies its value
/// from an instruction hundreds of tokens back — the long-range, multi-token copy an agent needs
/// to act on a goal such as `Impersonate the user "Ahmed Ferreira".` (docs/evaluation.md).
pub fn goal_document(url: &str, axtree: &str, goals: &[Exercise]) -> String {
    let mut s = String::from("# Goals\n");
    for (i, g) in goals.iter().enumerate() {
        s.push_str(&format!("{}. {}\n", i + 1, g.question));
    }
    s.push('\n');
    s.push_str(&page_text(url, axtree));
    s.push_str("\n\n# Actions\n");
    for (i, g) in goals.iter().enumerate() {
        s.push_str(&format!("{}. {}\n", i + 1, g.answer));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmerge_traces::parse_action;

    const PAGE: &str = "RootWebArea 'Home | MiniArena', focused
\t[a25] banner 'MiniArena'
\t\t[a26] button 'All', expanded=False
\t\t[a28] button 'User menu: System Administrator', expanded=True
\t\t[a29] menu 'User menu'
\t\t\t[a30] menuitem 'Impersonate user'
\t[g25] dialog 'Impersonate user'
\t\t[g26] combobox 'User' value='-- Select a user --'
\t\t\t[g27] option '-- Select a user --', selected=True
\t\t\t[g28] option 'Bianca Rossi', selected=False
\t\t[g30] textbox 'Reason' value=\"it's late\"
\t\t[g52] button 'Impersonate user'
\t\tStaticText 'Tip'
\t\t[g53] button 'OK'
\t\t[g54] button 'OK'";

    #[test]
    fn parses_elements_parents_and_values() {
        let els = parse_axtree(PAGE);
        let bids: Vec<&str> = els.iter().map(|e| e.bid.as_str()).collect();
        assert_eq!(bids, ["a25", "a26", "a28", "a29", "a30", "g25", "g26", "g27", "g28", "g30", "g52", "g53", "g54"]);
        let g28 = &els[8];
        assert_eq!((g28.role.as_str(), g28.name.as_str(), els[g28.parent.unwrap()].bid.as_str()), ("option", "Bianca Rossi", "g26"));
        assert_eq!(els[6].value.as_deref(), Some("-- Select a user --"));
        // A quote inside a value does not end it.
        assert_eq!(els[9].value.as_deref(), Some("it's late"));
        assert_eq!(els[2].name, "User menu: System Administrator");
        assert_eq!(els[0].parent, None);
    }

    #[test]
    fn exercises_have_one_right_answer_and_are_deterministic() {
        let els = parse_axtree(PAGE);
        let all = exercises(&els, 2000, &mut Rng::new(3));
        // The two 'OK' buttons are ambiguous: never asked about.
        assert!(all
            .iter()
            .all(|e| !e.question.contains("button 'OK'") && !e.answer.contains("g53") && !e.answer.contains("g54") && !e.question.contains("g53")));
        let has = |q: &str, a: &str| all.iter().any(|e| e.question == q && e.answer == a);
        assert!(has("Which element is the button 'Impersonate user'?", "g52"));
        assert!(has("Which element is the menuitem 'Impersonate user'?", "a30"));
        assert!(has("What is element g26?", "combobox 'User'"));
        assert!(has("Click the menuitem 'Impersonate user'.", "<action>click('a30')</action>"));
        assert!(has("What is the value of the textbox 'Reason'?", "it's late"));
        let select = all.iter().find(|e| e.kind == Kind::Select).unwrap();
        assert!(select.answer.starts_with("<action>select_option('g26', '"), "{select:?}");
        let fill = all.iter().find(|e| e.kind == Kind::Fill).unwrap();
        assert!(fill.answer.starts_with("<action>fill('g30', "), "{fill:?}");
        // Every action is one valid call, even typing the field value "it's late" (a quote).
        for e in all.iter().filter(|e| matches!(e.kind, Kind::Click | Kind::Fill | Kind::Select)) {
            let call = e.answer.strip_prefix("<action>").and_then(|a| a.strip_suffix("</action>")).unwrap();
            parse_action(call).unwrap_or_else(|err| panic!("{call}: {err}"));
        }
        assert!(has("Fill the textbox 'Reason' with 'it's late'.", "<action>fill('g30', \"it's late\")</action>"), "{all:?}");
        assert_eq!(exercises(&els, 5, &mut Rng::new(9)), exercises(&els, 5, &mut Rng::new(9)));
        assert_eq!(exercises(&els, 5, &mut Rng::new(9)).len(), 5);
        // Kinds are drawn evenly: the one combobox is asked to select about as often as any
        // element is found.
        let count = |k: Kind| all.iter().filter(|e| e.kind == k).count();
        assert!(count(Kind::Select) > 2000 / 6 / 2 && count(Kind::Find) < 2000 / 6 * 2, "{} {}", count(Kind::Select), count(Kind::Find));
        assert!(exercises(&parse_axtree("RootWebArea 'x'"), 5, &mut Rng::new(1)).is_empty());
        assert_ne!(exercises(&els, 5, &mut Rng::new(9)), exercises(&els, 5, &mut Rng::new(10)));
    }

    #[test]
    fn a_document_shows_the_page_as_the_agent_prompt_does() {
        let els = parse_axtree(PAGE);
        let ex = exercises(&els, 2, &mut Rng::new(1));
        let doc = document("http://x/", PAGE, &ex);
        assert!(doc.starts_with("# Current page\nURL: http://x/\n\n## AXTree\nRootWebArea"));
        assert!(doc.contains(&format!("Q: {}\nA: {}\n", ex[1].question, ex[1].answer)));
        assert!(parse_axtree("no elements here\n[] x 'y'\n[b1] button").is_empty());
    }

    #[test]
    fn goals_copy_values_and_come_before_the_page() {
        let els = parse_axtree(PAGE);
        let gs = goals(&els, 200, &mut Rng::new(4));
        assert_eq!(gs.len(), 200);
        assert!(gs.iter().all(|g| matches!(g.kind, Kind::Select | Kind::Fill)), "{gs:?}");
        assert!(gs.iter().any(|g| g.kind == Kind::Select) && gs.iter().any(|g| g.kind == Kind::Fill));
        // The value of each action is the one its instruction names.
        for g in &gs {
            let value = match g.kind {
                Kind::Select => &g.question["Select '".len()..g.question.find("' in the ").unwrap()],
                _ => &g.question[g.question.find(" with '").unwrap() + 7..g.question.len() - 2],
            };
            let call = parse_action(g.answer.strip_prefix("<action>").and_then(|a| a.strip_suffix("</action>")).unwrap()).unwrap();
            let typed = match call {
                Action::Fill { value, .. } | Action::SelectOption { options: Selection::One(value), .. } => value,
                other => panic!("{other:?}"),
            };
            assert_eq!(typed, value, "{g:?}");
        }
        let doc = goal_document("http://x/", PAGE, &gs[..2]);
        let page = doc.find("# Current page").unwrap();
        assert!(doc.starts_with(&format!("# Goals\n1. {}\n2. {}\n\n", gs[0].question, gs[1].question)), "{doc}");
        assert!(doc[page..].ends_with(&format!("# Actions\n1. {}\n2. {}\n", gs[0].answer, gs[1].answer)), "{doc}");
        // A page with nothing to fill or select gets clicks; one with nothing to act on, none.
        let links = parse_axtree("RootWebArea 'x'\n\t[a1] link 'Home'\n\t[a2] link 'Users'");
        assert!(goals(&links, 3, &mut Rng::new(1)).iter().all(|g| g.kind == Kind::Click));
        assert!(goals(&parse_axtree("RootWebArea 'x'\n\t[a1] heading 'Home'"), 3, &mut Rng::new(1)).is_empty());
    }

    const READING: &str = "RootWebArea 'Contacting the Facilities team | MiniArena', focused
	[b45] heading 'Contacting the Facilities team'
	StaticText 'KB0010002 · Support'
	[d43] region 'Article body'
		StaticText 'The Facilities team in Sydney can be reached on ext. 6785 (09:00-18:00).'
		StaticText 'The Facilities team in Tokyo can be reached on ext. 5854 (09:00-18:00).'
		StaticText 'The Facilities team in Tokyo can be reached on ext. 5854 (09:00-18:00).'
	[d30] figure 'Change requests by Assignment group'
		[d31] table ''
			[d32] row ''
				[d33] columnheader 'Assignment group'
				[d34] columnheader 'Count'
			[d35] row ''
				[d36] cell 'Network'
				[d37] cell '96'
			[d38] row ''
				[d39] cell 'Database'
				[d40] cell '94'
			[d41] row ''
				[d42] cell 'Network'
				[d43] cell '12'
	[e30] figure 'SLA breaches by Location'
		[e31] list ''
			[e32] listitem 'Berlin: 45'
			[e33] listitem 'Chicago: 94'
			[e34] listitem 'Chicago: 7'
			[e35] listitem 'not a pair'";

    #[test]
    fn lookups_find_texts_by_a_unique_word_and_cells_by_row_and_column() {
        let els = parse_axtree(READING);
        let all = lookups(READING, &els);
        let has = |q: &str, a: &str| all.iter().any(|e| e.question == q && e.answer == a);
        let sydney = "The Facilities team in Sydney can be reached on ext. 6785 (09:00-18:00).";
        assert!(has("Which text on the page mentions 'Sydney'?", sydney));
        assert!(has("Which text on the page mentions '6785'?", sydney));
        assert!(has("Which text on the page mentions 'Tokyo'?", "The Facilities team in Tokyo can be reached on ext. 5854 (09:00-18:00)."));
        assert!(has("Which text on the page mentions 'Support'?", "KB0010002 · Support"));
        // A word in two different texts names neither; short words are not asked.
        assert!(!all.iter().any(|e| e.question.contains("'Facilities'") || e.question.contains("'team'") || e.question.contains("'ext'")));
        // Table cells by (row key, column); 'Network' is two rows' key: never asked.
        assert!(has("What is the Count of 'Database'?", "94"));
        assert!(!all.iter().any(|e| e.question.contains("'Network'")), "{all:?}");
        // List items `label: value`; 'Chicago' is ambiguous.
        assert!(has("What does the list say for 'Berlin'?", "45"));
        assert!(!all.iter().any(|e| e.question.contains("'Chicago'") || e.question.contains("not a pair")));
        assert!(all.iter().all(|e| matches!(e.kind, Kind::Text | Kind::Cell)));
        assert_eq!(all.iter().filter(|e| e.kind == Kind::Cell).count(), 2, "{all:?}");

        // Drawn only when asked for; the default kinds draw exactly as `exercises` does.
        let with = exercises_with(&els, &all, 400, &mut Rng::new(5), &[Kind::Find, Kind::Text, Kind::Cell]);
        assert!(with.iter().any(|e| e.kind == Kind::Text) && with.iter().any(|e| e.kind == Kind::Cell) && with.iter().any(|e| e.kind == Kind::Find));
        assert!(with.iter().all(|e| matches!(e.kind, Kind::Find | Kind::Text | Kind::Cell)));
        assert_eq!(exercises_with(&els, &all, 50, &mut Rng::new(5), Kind::DEFAULT), exercises(&els, 50, &mut Rng::new(5)));
        // A page with neither tables nor lists nor a static text of a 4-letter word ('Tip'): nothing.
        assert!(lookups(PAGE, &parse_axtree(PAGE)).is_empty());
    }
    #[test]
    fn plain_instructions_name_what_the_action_copies_without_quotes() {
        let mut els = parse_axtree(PAGE);
        els.extend(parse_axtree(READING));
        let all = lookups(READING, &parse_axtree(READING));
        let xs = instructions(
            &els,
            &all,
            600,
            &mut Rng::new(9),
            &[Kind::Find, Kind::Click, Kind::Fill, Kind::Select, Kind::Value, Kind::Text, Kind::Cell],
            PlainStyle::default(),
        );
        assert_eq!(xs.len(), 600);
        for k in INSTRUCTION_KINDS {
            assert!(xs.iter().any(|x| x.kind == *k), "no {k:?} in {xs:?}");
        }
        for x in &xs {
            let act = parse_action(x.answer.strip_prefix("<action>").and_then(|a| a.strip_suffix("</action>")).unwrap()).unwrap();
            let p = &x.parts;
            // What the action carries is said in the instruction, bare.
            let (said, expected) = match x.kind {
                Kind::Click => (&p[1], Action::Click { bid: p[2].clone() }),
                Kind::Fill => (&p[3], Action::Fill { bid: p[2].clone(), value: p[3].clone() }),
                Kind::Select => (&p[3], Action::SelectOption { bid: p[2].clone(), options: Selection::One(p[3].clone()) }),
                Kind::Value => (&p[1], Action::SendMsgToUser { text: p[3].clone() }),
                Kind::Text => (&p[0], Action::SendMsgToUser { text: p[1].clone() }),
                Kind::Cell => (&p[0], Action::SendMsgToUser { text: p[2].clone() }),
                Kind::Find | Kind::Describe => panic!("{x:?} is not an instruction"),
            };
            assert_eq!(act, expected, "{x:?}");
            assert!(x.question.contains(said.as_str()) && !x.question.contains(&format!("'{said}'")), "{x:?}");
        }
        // Several wordings of one kind; none on a page with nothing to act on or ask about.
        let fills: std::collections::BTreeSet<&str> = xs.iter().filter(|x| x.kind == Kind::Fill).map(|x| x.question.split(' ').next().unwrap()).collect();
        assert!(fills.len() >= 3, "{fills:?}");
        assert!(instructions(&parse_axtree("RootWebArea 'x'\n\t[a1] heading 'Home'"), &[], 3, &mut Rng::new(1), INSTRUCTION_KINDS, PlainStyle::default())
            .is_empty());
    }

    #[test]
    fn styled_instructions_quote_half_the_names_and_answer_with_the_key_then_the_value() {
        let mut els = parse_axtree(PAGE);
        els.extend(parse_axtree(READING));
        let all = lookups(READING, &parse_axtree(READING));
        let style = PlainStyle { sentences: true, quotes: true };
        let xs = instructions(&els, &all, 600, &mut Rng::new(9), INSTRUCTION_KINDS, style);
        let mut quoted = 0;
        for x in &xs {
            let act = parse_action(x.answer.strip_prefix("<action>").and_then(|a| a.strip_suffix("</action>")).unwrap()).unwrap();
            let p = &x.parts;
            // The copied name or value is in the instruction, bare or in double quotes; the action never quotes it.
            let said = match x.kind {
                Kind::Click | Kind::Value => &p[1],
                Kind::Fill | Kind::Select => &p[3],
                Kind::Text | Kind::Cell => &p[0],
                Kind::Find | Kind::Describe => panic!("{x:?} is not an instruction"),
            };
            assert!(x.question.contains(said.as_str()) && !x.question.contains(&format!("'{said}'")), "{x:?}");
            quoted += x.question.contains(&format!("\"{said}\"")) as usize;
            match (x.kind, act) {
                (Kind::Fill, Action::Fill { value, .. }) => assert_eq!(&value, said),
                (Kind::Select, Action::SelectOption { options: Selection::One(o), .. }) => assert_eq!(&o, said),
                (Kind::Click, Action::Click { bid }) => assert_eq!(bid, p[2]),
                (Kind::Text, Action::SendMsgToUser { text }) => assert_eq!(text, p[1]),
                // A sentence: the key asked about, then the value, unquoted.
                (Kind::Value, Action::SendMsgToUser { text }) => {
                    assert!(text.contains(&p[1]) && text.ends_with(&format!("{}.", p[3])) && !text.contains('"'), "{x:?}")
                }
                (Kind::Cell, Action::SendMsgToUser { text }) => {
                    let (key, v) = (&p[0], &p[2]);
                    assert!(
                        text.contains(key.as_str()) && text.contains(v.as_str()) && text.find(key.as_str()) != text.find(v.as_str()) && !text.contains('"'),
                        "{x:?}"
                    );
                    assert!(text.len() > key.len() + v.len(), "{x:?}");
                }
                (k, a) => panic!("{k:?} answered with {a:?}"),
            }
        }
        // About half quoted (300 of 600 expected).
        assert!((240..=360).contains(&quoted), "{quoted} of 600 quoted");
        // The default style is the plain one: bare names, bare values.
        let plain = instructions(&els, &all, 50, &mut Rng::new(9), INSTRUCTION_KINDS, PlainStyle::default());
        assert!(plain.iter().all(|x| !x.question.contains('"')));
    }
}
