//! Reading a model's answer: AgentLab's fine-tuning format `<think>…</think>` then
//! `<action>…</action>`, the inverse of `agentmerge_sft::build::response_text`.
//!
//! Reading is lenient about what reaches the environment and strict about what is counted: an
//! answer without `<action>` (or with an unclosed tag) still sends its text to the environment,
//! which rejects it with a `last_action_error` as BrowserGym does, and the step is counted as a
//! parse error.

use agentmerge_traces::parse_action;

/// A model's answer, split into its thought and its action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The text inside `<think>…</think>` (`None` without a complete think block).
    pub think: Option<String>,
    /// The action sent to the environment: the text inside `<action>…</action>` (trimmed); the
    /// rest of the answer after an unclosed `<action>`; without `<action>`, the whole answer
    /// except its think block (trimmed).
    pub action: String,
    /// `<action>…</action>` is present and closed, and a `<think>` opened is closed.
    pub well_formed: bool,
}

impl Response {
    /// Whether the answer follows the format and its action is one BrowserGym action.
    pub fn parses(&self) -> bool {
        self.well_formed && parse_action(&self.action).is_ok()
    }
}

/// The text between `open` and the next `close` in `text`, and whether `close` was found (else
/// the text runs to the end). `None` when `open` is absent.
fn tagged<'a>(text: &'a str, open: &str, close: &str) -> Option<(&'a str, bool)> {
    let start = text.find(open)? + open.len();
    let rest = &text[start..];
    Some(match rest.find(close) {
        Some(end) => (&rest[..end], true),
        None => (rest, false),
    })
}

/// Splits an answer into think and action (see [`Response`]).
pub fn parse_response(text: &str) -> Response {
    let think = tagged(text, "<think>", "</think>");
    let think_ok = think.is_none_or(|(_, closed)| closed);
    let (action, action_ok) = match tagged(text, "<action>", "</action>") {
        Some((a, closed)) => (a.trim().to_string(), closed),
        None => {
            // No action tag: whatever follows the thought (or the whole answer) is the action.
            let rest = match text.find("</think>") {
                Some(end) => &text[end + "</think>".len()..],
                None if think.is_some() => "",
                None => text,
            };
            (rest.trim().to_string(), false)
        }
    };
    Response { think: think.filter(|(_, closed)| *closed).map(|(t, _)| t.to_string()), action, well_formed: think_ok && action_ok }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmerge_sft::build::response_text;

    #[test]
    fn inverts_the_training_format() {
        for (think, action) in [(Some("The All menu first.\nThen the module."), "click('a15')"), (None, "fill('n15', 'Wayne Grants')")] {
            let r = parse_response(&response_text(think, action));
            assert_eq!(r, Response { think: think.map(str::to_string), action: action.into(), well_formed: true });
            assert!(r.parses());
        }
    }

    #[test]
    fn malformed_answers_still_give_an_action_text() {
        // Truncated inside the action: the text so far goes to the environment.
        let r = parse_response("<think>look</think>\n<action>click('a1");
        assert_eq!((r.think.as_deref(), r.action.as_str(), r.well_formed), (Some("look"), "click('a1", false));
        assert!(!r.parses());
        // Truncated inside the thought: nothing to act on.
        let r = parse_response("<think>I will click the butt");
        assert_eq!((r.think, r.action.as_str(), r.well_formed), (None, "", false));
        // No tags at all: the whole answer is the action text, counted as malformed.
        let r = parse_response(" click('a1') ");
        assert_eq!((r.action.as_str(), r.well_formed, r.parses()), ("click('a1')", false, false));
        // Well formed but not an action.
        let r = parse_response("<action>open the menu</action>");
        assert!(r.well_formed && !r.parses());
        // Text after the thought without an action tag.
        let r = parse_response("<think>x</think> noop()");
        assert_eq!((r.action.as_str(), r.well_formed), ("noop()", false));
        assert_eq!(parse_response("").action, "");
    }
}
