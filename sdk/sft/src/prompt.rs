//! An agent step's prompt, as AgentLab builds it for fine-tuning, and its fitting to a token
//! budget: AXTree lines are cut from the bottom (with a marker saying how many), and the
//! sample is dropped when the element the expert acted on was cut ("missing bid").

use serde::{Deserialize, Serialize};

use crate::template::{ChatTemplate, Message};

/// What one step's prompt is made of.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepPrompt {
    pub goal: String,
    pub url: String,
    pub axtree: String,
    pub focused_element_bid: Option<String>,
    pub last_action_error: Option<String>,
    /// Earlier steps of the episode: (think, action, error).
    pub history: Vec<(Option<String>, String, Option<String>)>,
}

/// Which parts go into the prompt (AgentLab's prompt flags of the same names).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PromptOptions {
    /// The system message.
    pub system: String,
    pub use_axtree: bool,
    pub use_focused_element: bool,
    /// List the past actions.
    pub use_history: bool,
    /// Include past chains of thought in the history.
    pub use_think_history: bool,
    /// Include the error of the last action.
    pub use_error_logs: bool,
    /// Include the errors of all past actions in the history.
    pub use_past_error_logs: bool,
    /// Ask for `<think>` before `<action>` (chain of thought).
    pub use_thinking: bool,
    /// Keep at most this many past steps (the most recent); none = all.
    pub max_history: Option<usize>,
    /// Say the goal again at the end, right before the request for an action (not an AgentLab
    /// flag): the goal's values (a city, a name) then sit a few dozen tokens from the answer
    /// that copies them instead of a whole page away.
    pub repeat_goal: bool,
}

impl Default for PromptOptions {
    fn default() -> PromptOptions {
        PromptOptions {
            system: "You are an agent trying to solve a web task based on the content of the page and user instructions. You can interact with the page and explore, and send messages to the user. Each time you submit an action it will be sent to the browser and you will receive a new page.".into(),
            use_axtree: true,
            use_focused_element: true,
            use_history: true,
            use_think_history: false,
            use_error_logs: true,
            use_past_error_logs: false,
            use_thinking: true,
            max_history: None,
            repeat_goal: false,
        }
    }
}

const ACTION_SPACE: &str = "# Action space\nclick(bid), dblclick(bid), fill(bid, value), select_option(bid, options), check(bid), uncheck(bid), hover(bid), press(bid, key), focus(bid), clear(bid), scroll(dx, dy), goto(url), go_back(), send_msg_to_user(text), report_infeasible(reason), noop()\n";

/// Why a sample was dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The element the expert acted on was cut from the AXTree.
    MissingBid,
    /// Even with the whole AXTree cut, the prompt exceeds the budget.
    TooLong,
}

/// A prompt fitted to the budget.
#[derive(Clone, Debug)]
pub struct Fitted {
    pub messages: Vec<Message>,
    /// Prompt tokens (as counted by the caller's tokenizer).
    pub tokens: usize,
    /// AXTree lines removed.
    pub deleted_lines: usize,
    pub dropped: Option<DropReason>,
}

fn user_text(p: &StepPrompt, o: &PromptOptions, axtree_lines: &[&str], deleted: usize) -> String {
    let mut s = format!("# Goal\n{}\n\n# Current page\nURL: {}\n", p.goal, p.url);
    if o.use_focused_element {
        if let Some(b) = &p.focused_element_bid {
            s.push_str(&format!("Focused element: [{b}]\n"));
        }
    }
    if o.use_axtree {
        s.push_str("\n## AXTree\n");
        for l in axtree_lines {
            s.push_str(l);
            s.push('\n');
        }
        if deleted > 0 {
            s.push_str(&format!("... ({deleted} lines deleted to fit the context)\n"));
        }
    }
    if o.use_history && !p.history.is_empty() {
        s.push_str("\n# History of past actions\n");
        let skip = o.max_history.map_or(0, |m| p.history.len().saturating_sub(m));
        for (i, (think, action, err)) in p.history.iter().enumerate().skip(skip) {
            s.push_str(&format!("## step {i}\n"));
            if o.use_think_history {
                if let Some(t) = think {
                    s.push_str(&format!("<think>{t}</think>\n"));
                }
            }
            s.push_str(&format!("<action>{action}</action>\n"));
            if o.use_past_error_logs {
                if let Some(e) = err.as_ref().filter(|e| !e.is_empty()) {
                    s.push_str(&format!("Error: {e}\n"));
                }
            }
        }
    }
    if o.use_error_logs {
        if let Some(e) = p.last_action_error.as_ref().filter(|e| !e.is_empty()) {
            s.push_str(&format!("\n# Error from the last action\n{e}\n"));
        }
    }
    s.push('\n');
    s.push_str(ACTION_SPACE);
    if o.repeat_goal {
        s.push_str(&format!("\n# Goal, again\n{}\n", p.goal));
    }
    s.push_str(if o.use_thinking {
        "\nThink step by step inside <think></think>, then give exactly one action inside <action></action>.\n"
    } else {
        "\nGive exactly one action inside <action></action>.\n"
    });
    s
}

/// Builds the step's prompt and fits it to `budget` tokens of `template`'s rendering (with the
/// generation prompt), as counted by `count`. `target_bid` is the element the expert's action
/// targets, if any.
pub fn fit_prompt(
    p: &StepPrompt,
    o: &PromptOptions,
    template: &ChatTemplate,
    budget: usize,
    target_bid: Option<&str>,
    count: &dyn Fn(&str) -> anyhow::Result<usize>,
) -> anyhow::Result<Fitted> {
    let lines: Vec<&str> = p.axtree.lines().collect();
    let build = |keep: usize| -> anyhow::Result<(Vec<Message>, usize)> {
        let msgs = vec![Message::new("system", o.system.clone()), Message::new("user", user_text(p, o, &lines[..keep], lines.len() - keep))];
        let n = count(&template.render(&msgs, true)?)?;
        Ok((msgs, n))
    };
    let (full, n) = build(lines.len())?;
    if n <= budget {
        return Ok(Fitted { messages: full, tokens: n, deleted_lines: 0, dropped: None });
    }
    if !o.use_axtree {
        return Ok(Fitted { messages: full, tokens: n, deleted_lines: 0, dropped: Some(DropReason::TooLong) });
    }
    // The largest number of kept lines that fits (the count grows with lines). Guess it from
    // the characters, assuming tokens spread over the AXTree like its characters, then gallop
    // from the guess to a bracket and bisect it: a few counts instead of a bisection of the
    // whole tree, and the same answer.
    let (msgs0, n0) = build(0)?;
    if n0 > budget {
        return Ok(Fitted { messages: msgs0, tokens: n0, deleted_lines: lines.len(), dropped: Some(DropReason::TooLong) });
    }
    let total_chars: usize = lines.iter().map(|l| l.len() + 1).sum();
    let room = (budget - n0) as f64 / (n - n0).max(1) as f64 * total_chars as f64;
    let mut chars = 0usize;
    let guess = lines.iter().take_while(|l| {
        chars += l.len() + 1;
        chars as f64 <= room
    });
    let guess = guess.count().min(lines.len() - 1);
    let fits = |k: usize| -> anyhow::Result<bool> { Ok(build(k)?.1 <= budget) };
    // Invariant once bracketed: `lo` fits, `hi` does not.
    let (mut lo, mut hi);
    if fits(guess)? {
        lo = guess;
        let mut step = 1;
        loop {
            let next = (lo + step).min(lines.len());
            if next == lines.len() || !fits(next)? {
                hi = next;
                break;
            }
            lo = next;
            step *= 2;
        }
    } else {
        hi = guess;
        let mut step = 1;
        loop {
            let next = hi.saturating_sub(step);
            if next == 0 || fits(next)? {
                lo = next;
                break;
            }
            hi = next;
            step *= 2;
        }
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (msgs, n) = build(lo)?;
    let missing = target_bid.is_some_and(|b| {
        let tag = format!("[{b}]");
        !lines[..lo].iter().any(|l| l.contains(&tag))
    });
    Ok(Fitted { messages: msgs, tokens: n, deleted_lines: lines.len() - lo, dropped: missing.then_some(DropReason::MissingBid) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> anyhow::Result<usize> {
        Ok(s.split_whitespace().count())
    }

    fn step() -> StepPrompt {
        let axtree = (0..40).map(|i| format!("  [a{i}] link 'Item number {i}'")).collect::<Vec<_>>().join("\n");
        StepPrompt {
            goal: "Open item 30".into(),
            url: "http://mini/list".into(),
            axtree: format!("RootWebArea 'List'\n{axtree}"),
            focused_element_bid: None,
            last_action_error: Some("bid a99 not found".into()),
            history: vec![(Some("look".into()), "scroll(0, 200)".into(), None)],
        }
    }

    /// The guess-and-gallop search finds the same cut as trying every length.
    #[test]
    fn keeps_the_most_lines_that_fit() {
        let t = ChatTemplate::default();
        let o = PromptOptions::default();
        // Lines of very different lengths, so the character-based guess is often off.
        let mut p = step();
        p.axtree = (0..60).map(|i| format!("[b{i}] {}", "word ".repeat(1 + (i * 7) % 13))).collect::<Vec<_>>().join("\n");
        let full = fit_prompt(&p, &o, &t, 100_000, None, &words).unwrap().tokens;
        let lines: Vec<&str> = p.axtree.lines().collect();
        for budget in (full.saturating_sub(700)..full).step_by(7) {
            let f = fit_prompt(&p, &o, &t, budget, None, &words).unwrap();
            if f.dropped.is_some() {
                continue;
            }
            let kept = lines.len() - f.deleted_lines;
            let count = |k: usize| {
                let msgs = vec![Message::new("system", o.system.clone()), Message::new("user", user_text(&p, &o, &lines[..k], lines.len() - k))];
                words(&t.render(&msgs, true).unwrap()).unwrap()
            };
            let best = (0..=lines.len()).filter(|k| count(*k) <= budget).max().unwrap();
            assert_eq!(kept, best, "budget {budget}");
            assert!(f.tokens <= budget);
        }
    }

    #[test]
    fn fits_by_cutting_axtree_lines_from_the_bottom() {
        let t = ChatTemplate::default();
        let o = PromptOptions::default();
        let full = fit_prompt(&step(), &o, &t, 100_000, Some("a30"), &words).unwrap();
        assert_eq!((full.deleted_lines, full.dropped.clone()), (0, None));
        // Each AXTree line is 5 words and the marker adds 7: to save 60 words, cut the fewest
        // lines k with 5k − 7 ≥ 60, i.e. 14.
        let budget = full.tokens - 60;
        let f = fit_prompt(&step(), &o, &t, budget, Some("a10"), &words).unwrap();
        assert!(f.tokens <= budget);
        assert_eq!(f.deleted_lines, 14);
        let text = &f.messages[1].content;
        assert!(text.contains(&format!("... ({} lines deleted to fit the context)", f.deleted_lines)), "{text}");
        assert!(text.contains("[a10]") && !text.contains("[a39]"));
        assert_eq!(f.dropped, None);
        // The expert acted on a line that was cut: dropped.
        let g = fit_prompt(&step(), &o, &t, budget, Some("a39"), &words).unwrap();
        assert_eq!(g.dropped, Some(DropReason::MissingBid));
        // Nothing can fit.
        let h = fit_prompt(&step(), &o, &t, 10, None, &words).unwrap();
        assert_eq!(h.dropped, Some(DropReason::TooLong));
    }

    #[test]
    fn flags_shape_the_prompt() {
        let t = ChatTemplate::default();
        let mut o = PromptOptions::default();
        let with = fit_prompt(&step(), &o, &t, 100_000, None, &words).unwrap().messages[1].content.clone();
        assert!(with.contains("bid a99 not found") && with.contains("<action>scroll(0, 200)</action>") && with.contains("<think>"));
        o.use_error_logs = false;
        o.use_history = false;
        o.use_thinking = false;
        let without = fit_prompt(&step(), &o, &t, 100_000, None, &words).unwrap().messages[1].content.clone();
        assert!(!without.contains("bid a99") && !without.contains("step 0") && !without.contains("<think>"));
        assert_eq!(without.matches("Open item 30").count(), 1);
    }

    #[test]
    fn the_goal_can_be_repeated_after_the_page_and_still_fits() {
        let t = ChatTemplate::default();
        let o = PromptOptions { repeat_goal: true, use_thinking: false, ..Default::default() };
        let text = fit_prompt(&step(), &o, &t, 100_000, None, &words).unwrap().messages[1].content.clone();
        // Once at the top, once after the page and the action space, right before the request.
        let again = text.find("# Goal, again\nOpen item 30\n").expect("the goal is said again");
        assert!(text.starts_with("# Goal\nOpen item 30\n"));
        assert!(again > text.find("[a39]").unwrap() && again > text.find("# Action space").unwrap());
        assert!(text[again..].contains("Give exactly one action"));
        // The budget counts the repeated goal: the cut still keeps the prompt within it.
        let full = fit_prompt(&step(), &o, &t, 100_000, None, &words).unwrap().tokens;
        let f = fit_prompt(&step(), &o, &t, full - 30, None, &words).unwrap();
        assert!(f.tokens <= full - 30 && f.deleted_lines > 0 && f.messages[1].content.contains("# Goal, again"));
    }
}
