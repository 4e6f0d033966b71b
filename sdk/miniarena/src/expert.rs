//! Experts: scripted agents with privileged access to the task instance that can solve every
//! template, with a configurable skill level (plausible mistakes, acting on wrong elements,
//! giving up) and optional chain-of-thought text, to emulate pools of "expert model × agent
//! config" traces.
//!
//! Each step the task's target plans the correct next action from the current state (so an
//! expert recovers from its own slips when it notices them); the expert then may distort it.

use agentmerge_traces::{Action, AgentInfo, Selection};
use rand::seq::IndexedRandom;
use rand::Rng as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::app::{url, Ctl, Route, Session, World};
use crate::env::Env;
use crate::page::{Page, Role};
use crate::pick::{self, Rng};
use crate::policy::AgentOutput;

/// How an expert behaves. Rates are per-step probabilities in `[0, 1]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpertConfig {
    /// The agent configuration's name, recorded as the episode's `agent.agent_name`
    /// (AgentLab's `agent_name`), e.g. `expert-cot`.
    pub name: String,
    /// The emulated model's name, recorded as `agent.model_name` (AgentLab's
    /// `chat_model_args.model_name`), e.g. `expert-strong`.
    pub model_name: String,
    /// Probability that a step carries a plausible mistake: a typo in a typed value, a wrong
    /// option, a wrong answer, or a malformed action. Half of the typos and wrong options go
    /// unnoticed (and usually fail the task); the others are fixed on a later step.
    #[serde(default)]
    pub mistake_rate: f64,
    /// Probability that a step acts on a wrong element (another bid of the same kind).
    #[serde(default)]
    pub wrong_element_rate: f64,
    /// Probability that the expert gives up at a step (a give-up message or
    /// `report_infeasible`), which ends the episode unsolved.
    #[serde(default)]
    pub give_up_rate: f64,
    /// Write a chain of thought (`think`) for every step.
    #[serde(default = "yes")]
    pub think: bool,
}

fn yes() -> bool {
    true
}

impl Default for ExpertConfig {
    fn default() -> ExpertConfig {
        ExpertConfig::perfect()
    }
}

/// The names of the built-in presets.
pub const PRESETS: [&str; 4] = ["perfect", "strong", "medium", "weak"];

impl ExpertConfig {
    fn with_rates(name: &str, mistake: f64, wrong: f64, give_up: f64) -> ExpertConfig {
        ExpertConfig {
            name: "expert-cot".to_string(),
            model_name: format!("expert-{name}"),
            mistake_rate: mistake,
            wrong_element_rate: wrong,
            give_up_rate: give_up,
            think: true,
        }
    }

    /// Never errs: solves every instance.
    pub fn perfect() -> ExpertConfig {
        ExpertConfig::with_rates("perfect", 0.0, 0.0, 0.0)
    }

    /// A preset by name: `perfect`, `strong`, `medium` or `weak`.
    pub fn preset(name: &str) -> anyhow::Result<ExpertConfig> {
        Ok(match name {
            "perfect" => ExpertConfig::perfect(),
            "strong" => ExpertConfig::with_rates("strong", 0.04, 0.02, 0.004),
            "medium" => ExpertConfig::with_rates("medium", 0.10, 0.06, 0.015),
            "weak" => ExpertConfig::with_rates("weak", 0.22, 0.12, 0.04),
            _ => anyhow::bail!("unknown expert preset `{name}`; presets are {}", PRESETS.join(", ")),
        })
    }

    /// Without chain of thought, and named accordingly (`expert-cot` → `expert`).
    pub fn without_think(mut self) -> ExpertConfig {
        self.think = false;
        if let Some(base) = self.name.strip_suffix("-cot") {
            self.name = base.to_string();
        }
        self
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        for (field, v) in [("mistake_rate", self.mistake_rate), ("wrong_element_rate", self.wrong_element_rate), ("give_up_rate", self.give_up_rate)] {
            if !(0.0..=1.0).contains(&v) {
                anyhow::bail!("expert config `{}`: {field} must be in [0, 1], got {v}", self.name);
            }
        }
        if self.mistake_rate + self.wrong_element_rate > 1.0 {
            anyhow::bail!("expert config `{}`: mistake_rate + wrong_element_rate must not exceed 1", self.name);
        }
        Ok(())
    }

    /// A hash of the whole configuration, mixed into the expert's random seed.
    fn key(&self) -> u64 {
        let text = format!(
            "{}|{}|{}|{}|{}|{}",
            self.name,
            self.model_name,
            self.mistake_rate.to_bits(),
            self.wrong_element_rate.to_bits(),
            self.give_up_rate.to_bits(),
            self.think
        );
        pick::hash_bytes(text.as_bytes())
    }
}

/// What the expert remembers within an episode.
#[derive(Clone, Debug, Default)]
pub(crate) struct Memory {
    /// Elements whose wrong value the expert did not notice (it will not fix them).
    pub overlooked: Vec<Ctl>,
    /// The expert believes it finished the task.
    pub done: bool,
    /// Random bits fixed per episode, for choosing between equivalent ways of doing things.
    pub strategy: u32,
}

/// What kind of step a plan is (it decides how the chain of thought reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PlanKind {
    /// Acting on a page element.
    Element,
    /// Sending the final answer.
    Answer,
    /// Leaving a page where the next element cannot be found.
    Recover,
}

/// The next action, with what grounds it (for the chain of thought).
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub kind: PlanKind,
    pub action: Action,
    /// The element acted on with its state ("the combobox 'Urgency' [c4], currently '3 - Low'"),
    /// or for answers the fact found.
    pub see: String,
    /// The element alone ("the combobox 'Urgency' [c4]").
    pub element: String,
    /// Why (tied to the goal), as a clause: "the goal asks for 'Urgency' to be \"2 - Medium\"".
    pub why: String,
    /// What is done to the element: "click", "type \"x\" into", "select the option 'y' in".
    pub verb: String,
    /// Doing this completes the task (if everything before was right).
    pub finishing: bool,
    /// For answers: plausible wrong answers (used for mistakes).
    pub decoys: Vec<String>,
    /// The answer inside the message (replaced by a decoy when the expert errs).
    pub answer: Option<String>,
    /// The element acted on.
    pub ctl: Ctl,
}

/// What a target's planner sees.
pub(crate) struct PlanCx<'a> {
    pub world: &'a World,
    pub session: &'a Session,
    pub page: &'a Page,
    pub memory: &'a Memory,
    pub start: &'a Route,
}

impl PlanCx<'_> {
    pub fn node(&self, ctl: Ctl) -> Option<usize> {
        self.page.find_ctl(ctl)
    }

    pub fn overlooks(&self, ctl: Ctl) -> bool {
        self.memory.overlooked.contains(&ctl)
    }

    /// "the combobox 'Urgency' [c4]".
    pub fn element(&self, i: usize) -> String {
        let p = self.page;
        format!("the {} '{}' [{}]", p.node(i).role.as_str(), p.name(i), p.bid(i))
    }

    /// "the combobox 'Urgency' [c4], currently '3 - Low'".
    pub fn describe(&self, i: usize) -> String {
        let p = self.page;
        let n = p.node(i);
        let mut s = self.element(i);
        match (n.role, p.value(i)) {
            (Role::Textbox | Role::Searchbox, Some("")) => s.push_str(", which is empty"),
            (_, Some(v)) => s.push_str(&format!(", currently '{v}'")),
            _ => {}
        }
        if let Some(c) = n.checked() {
            s.push_str(if c { ", which is checked" } else { ", which is unchecked" });
        }
        s
    }

    fn plan(&self, ctl: Ctl, i: usize, action: Action, why: String, verb: String) -> Plan {
        Plan {
            kind: PlanKind::Element,
            action,
            see: self.describe(i),
            element: self.element(i),
            why,
            verb,
            finishing: false,
            decoys: Vec::new(),
            answer: None,
            ctl,
        }
    }

    pub fn click(&mut self, ctl: Ctl, why: impl Into<String>) -> Plan {
        let Some(i) = self.node(ctl) else {
            return self.recover(ctl);
        };
        let bid = self.page.bid(i).to_string();
        let verb = match self.page.node(i).role {
            Role::Link => "follow",
            Role::Tab => "open",
            Role::MenuItem => "choose",
            _ => "click",
        };
        self.plan(ctl, i, Action::Click { bid }, why.into(), verb.to_string())
    }

    pub fn fill(&mut self, ctl: Ctl, value: &str, why: impl Into<String>) -> Plan {
        let Some(i) = self.node(ctl) else {
            return self.recover(ctl);
        };
        let bid = self.page.bid(i).to_string();
        let verb = if value.is_empty() { "clear the text in".to_string() } else { format!("type \"{value}\" into") };
        self.plan(ctl, i, Action::Fill { bid, value: value.to_string() }, why.into(), verb)
    }

    pub fn select(&mut self, ctl: Ctl, option: &str, why: impl Into<String>) -> Plan {
        let Some(i) = self.node(ctl) else {
            return self.recover(ctl);
        };
        let bid = self.page.bid(i).to_string();
        let verb = format!("select the option '{option}' in");
        let action = Action::SelectOption { bid, options: Selection::One(option.to_string()) };
        self.plan(ctl, i, action, why.into(), verb)
    }

    pub fn check(&mut self, ctl: Ctl, on: bool, why: impl Into<String>) -> Plan {
        let Some(i) = self.node(ctl) else {
            return self.recover(ctl);
        };
        let bid = self.page.bid(i).to_string();
        let (action, verb) = if on { (Action::Check { bid }, "check") } else { (Action::Uncheck { bid }, "uncheck") };
        self.plan(ctl, i, action, why.into(), verb.to_string())
    }

    pub fn press_enter(&mut self, ctl: Ctl, why: impl Into<String>) -> Plan {
        let Some(i) = self.node(ctl) else {
            return self.recover(ctl);
        };
        let bid = self.page.bid(i).to_string();
        let action = Action::Press { bid, key: "Enter".to_string() };
        self.plan(ctl, i, action, why.into(), "press Enter in".to_string())
    }

    /// Sends the final answer `answer`, phrased as `message`; `source` says where it was
    /// read ("the article \"X\" says").
    pub fn answer(&mut self, message: String, answer: &str, decoys: Vec<String>, source: impl Into<String>) -> Plan {
        Plan {
            kind: PlanKind::Answer,
            see: message.trim_end_matches('.').to_string(),
            element: String::new(),
            action: Action::SendMsgToUser { text: message },
            why: source.into(),
            verb: "send".to_string(),
            finishing: true,
            decoys,
            answer: Some(answer.to_string()),
            ctl: Ctl::None,
        }
    }

    /// Goes back to the task's start page (used when the expected element is missing).
    pub fn recover(&mut self, missing: Ctl) -> Plan {
        let _ = missing;
        let start = url(self.world, self.start);
        Plan {
            kind: PlanKind::Recover,
            action: Action::Goto { url: start.clone() },
            see: start,
            element: String::new(),
            why: "this page does not have what I need for the next step".to_string(),
            verb: "go to".to_string(),
            finishing: false,
            decoys: Vec::new(),
            answer: None,
            ctl: Ctl::None,
        }
    }
}

impl Plan {
    pub fn finishing(mut self) -> Plan {
        self.finishing = true;
        self
    }
}

/// An expert agent. Call [`Expert::act`] once per step of an [`Env`] episode (it resets
/// itself at step 0).
pub struct Expert {
    cfg: ExpertConfig,
    rng: Rng,
    memory: Memory,
}

impl Expert {
    pub fn new(cfg: ExpertConfig) -> anyhow::Result<Expert> {
        cfg.validate()?;
        Ok(Expert { cfg, rng: pick::rng("expert", 0), memory: Memory::default() })
    }

    /// A preset expert (see [`ExpertConfig::preset`]).
    pub fn preset(name: &str) -> anyhow::Result<Expert> {
        Expert::new(ExpertConfig::preset(name)?)
    }

    pub fn config(&self) -> &ExpertConfig {
        &self.cfg
    }

    pub fn agent_info(&self) -> AgentInfo {
        AgentInfo { model_name: self.cfg.model_name.clone(), agent_name: self.cfg.name.clone() }
    }

    /// Starts an episode: the random generator is seeded from (task, seed, config), so the
    /// same seed gives the same episode.
    pub fn begin(&mut self, env: &Env) {
        self.rng = pick::rng(&format!("expert|{}", env.task_name()), env.seed() ^ self.cfg.key());
        self.memory = Memory { strategy: self.rng.random(), ..Memory::default() };
    }

    /// The next step: a chain of thought (if configured) and an action text.
    pub fn act(&mut self, env: &Env) -> AgentOutput {
        if env.n_steps() == 0 {
            self.begin(env);
        }
        let last_error = env.last_action_error().to_string();
        let mut think = String::new();
        // Believing the task is done although the episode goes on: say so (and fail).
        if self.memory.done {
            let text =
                *["I have completed the task.", "Done, the task is complete.", "The requested change has been made."].choose(&mut self.rng).unwrap_or(&"Done.");
            if self.cfg.think {
                think = "I have done everything the goal asked for, so I will tell the user that the task is complete.".to_string();
            }
            return self.output(think, Action::SendMsgToUser { text: text.to_string() }.to_string());
        }
        let plan = {
            let (world, session, page, target, start) = env.expert_view();
            let mut cx = PlanCx { world, session, page, memory: &self.memory, start };
            target.plan(&mut cx)
        };
        if self.cfg.give_up_rate > 0.0 && self.rng.random_bool(self.cfg.give_up_rate) {
            return self.give_up(&plan);
        }
        if self.cfg.think {
            think = self.think(env, &plan, &last_error);
        }
        let r: f64 = self.rng.random();
        let mut action = plan.action.clone();
        let mut text: Option<String> = None;
        let mut slipped = false;
        if r < self.cfg.wrong_element_rate {
            if let Some(a) = self.wrong_element(env.page(), &plan) {
                action = a;
                slipped = true;
            }
        } else if r < self.cfg.wrong_element_rate + self.cfg.mistake_rate {
            slipped = true;
            match self.mistake(env.page(), &plan) {
                Mistake::Action(a) => action = a,
                Mistake::Text(t) => text = Some(t),
            }
        }
        if plan.finishing && !slipped {
            self.memory.done = true;
        }
        let text = text.unwrap_or_else(|| action.to_string());
        self.output(think, text)
    }

    fn output(&self, think: String, action: String) -> AgentOutput {
        AgentOutput { think: self.cfg.think.then_some(think), action }
    }

    fn give_up(&mut self, plan: &Plan) -> AgentOutput {
        let rng = &mut self.rng;
        let doubt = match plan.kind {
            PlanKind::Element => format!("I could {} {}, but I am not sure that leads to the goal.", plan.verb, plan.element),
            _ => "I am not sure how to go on from here.".to_string(),
        };
        let (think, action) = if rng.random_bool(0.5) {
            let reason = *[
                "I cannot find the element needed to complete this task.",
                "The page does not offer a way to do what the goal asks.",
                "The requested option does not seem to exist.",
            ]
            .choose(rng)
            .unwrap_or(&"");
            (format!("{doubt} The task looks infeasible, so I will report it."), Action::ReportInfeasible { reason: reason.to_string() })
        } else {
            let text =
                *["Sorry, I was not able to complete this task.", "I could not figure out how to finish this task.", "I am unable to complete the request."]
                    .choose(rng)
                    .unwrap_or(&"");
            (format!("{doubt} I will stop and tell the user that I could not finish."), Action::SendMsgToUser { text: text.to_string() })
        };
        self.output(think, action.to_string())
    }

    /// The same kind of action on another element of the same kind.
    fn wrong_element(&mut self, page: &Page, plan: &Plan) -> Option<Action> {
        let bid = plan.action.target_bid()?;
        let want: &[Role] = match &plan.action {
            Action::Fill { .. } | Action::Clear { .. } | Action::Press { .. } => &[Role::Textbox, Role::Searchbox],
            Action::SelectOption { .. } => &[Role::Combobox],
            Action::Check { .. } | Action::Uncheck { .. } => &[Role::Checkbox, Role::Radio],
            _ => &[Role::Link, Role::Button, Role::Tab, Role::MenuItem, Role::ColumnHeader],
        };
        let candidates: Vec<usize> =
            (0..page.nodes().len()).filter(|&i| want.contains(&page.node(i).role) && page.bid(i) != bid && !page.bid(i).is_empty()).collect();
        let &i = candidates.choose(&mut self.rng)?;
        let other = page.bid(i).to_string();
        let mut a = plan.action.clone();
        *a.target_bid_mut()? = other;
        Some(a)
    }

    fn mistake(&mut self, page: &Page, plan: &Plan) -> Mistake {
        let overlook = self.rng.random_bool(0.5);
        match &plan.action {
            Action::Fill { bid, value } if !value.is_empty() && self.rng.random_bool(0.8) => {
                if overlook {
                    self.memory.overlooked.push(plan.ctl);
                }
                Mistake::Action(Action::Fill { bid: bid.clone(), value: typo(&mut self.rng, value) })
            }
            Action::SelectOption { bid, options } if self.rng.random_bool(0.8) => {
                let chosen = options.as_slice().first().cloned().unwrap_or_default();
                let others: Vec<String> = page
                    .find_bid(bid)
                    .map(|i| page.options(i).filter(|o| *o != chosen && !o.starts_with("--")).map(String::from).collect())
                    .unwrap_or_default();
                match others.choose(&mut self.rng) {
                    Some(o) => {
                        if overlook {
                            self.memory.overlooked.push(plan.ctl);
                        }
                        Mistake::Action(Action::SelectOption { bid: bid.clone(), options: Selection::One(o.clone()) })
                    }
                    None => Mistake::Text(malformed(&mut self.rng, &plan.action)),
                }
            }
            Action::SendMsgToUser { text } if plan.answer.is_some() && !plan.decoys.is_empty() => {
                let answer = plan.answer.clone().unwrap_or_default();
                let decoy = plan.decoys.choose(&mut self.rng).cloned().unwrap_or_default();
                Mistake::Action(Action::SendMsgToUser { text: text.replace(&answer, &decoy) })
            }
            a => Mistake::Text(malformed(&mut self.rng, a)),
        }
    }

    fn think(&mut self, env: &Env, plan: &Plan, last_error: &str) -> String {
        let rng = &mut self.rng;
        let mut out = String::new();
        if env.n_steps() == 0 {
            let opener = *["Let me look at the task.", "I'll start by understanding what is asked.", "First, the goal."].choose(rng).unwrap_or(&"");
            out.push_str(opener);
            out.push(' ');
            let goal_line = env.goal().split_whitespace().collect::<Vec<_>>().join(" ");
            out.push_str(&format!("The goal is: {goal_line} "));
        }
        if !last_error.is_empty() {
            let e = last_error.lines().next().unwrap_or(last_error);
            let s = match rng.random_range(0..3) {
                0 => format!("My previous action failed ({e}), so I need to correct it. "),
                1 => format!("That did not work: {e}. "),
                _ => format!("The last action produced an error: {e}. Let me fix that. "),
            };
            out.push_str(&s);
        }
        let why = plan.why.trim_end_matches('.');
        let see = plan.see.trim_end_matches('.');
        let (verb, element) = (&plan.verb, &plan.element);
        let main = match (plan.kind, rng.random_range(0..5)) {
            (PlanKind::Element, 0) => {
                format!("{}. I can see {see}, so I will {verb} it.", cap(why))
            }
            (PlanKind::Element, 1) => {
                format!("Looking at the page, I find {see}. Since {why}, the next step is to {verb} it.")
            }
            (PlanKind::Element, 2) => format!("{} is on the page. {}, therefore I'll {verb} it.", cap(element), cap(why)),
            (PlanKind::Element, 3) => format!("Next I need to {verb} {element}: {why}."),
            (PlanKind::Element, _) => format!("{}. The right element is {see}; I will {verb} it.", cap(why)),
            (PlanKind::Answer, 0 | 1) => {
                format!("{}: {see}. That answers the question, so I will send it to the user.", cap(why))
            }
            (PlanKind::Answer, 2 | 3) => format!("I found what I was looking for. {}: {see}. I'll report it.", cap(why)),
            (PlanKind::Answer, _) => format!("{}: {see}. I will send this as my answer.", cap(why)),
            (PlanKind::Recover, 0 | 1) => {
                format!("{}, so I will go back to the start page {see}.", cap(why))
            }
            (PlanKind::Recover, _) => {
                format!("I seem to be in the wrong place: {why}. Going back to {see}.")
            }
        };
        out.push_str(&main);
        if plan.finishing && rng.random_bool(0.5) {
            out.push_str(" This should complete the task.");
        }
        out
    }
}

enum Mistake {
    /// A well-formed but wrong action.
    Action(Action),
    /// A malformed action text.
    Text(String),
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// A typing slip: a dropped, doubled or swapped character.
fn typo(rng: &mut Rng, value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 2 {
        return format!("{value}{value}");
    }
    let i = rng.random_range(0..chars.len() - 1);
    let mut out = chars.clone();
    match rng.random_range(0..3) {
        0 => {
            out.remove(i);
        }
        1 => out.insert(i, chars[i]),
        _ => {
            if chars[i] == chars[i + 1] {
                out.remove(i);
            } else {
                out.swap(i, i + 1);
            }
        }
    }
    out.into_iter().collect()
}

/// A malformed version of an action (as language models sometimes write them).
fn malformed(rng: &mut Rng, a: &Action) -> String {
    let text = a.to_string();
    let name = a.name();
    match (rng.random_range(0..4), a.target_bid()) {
        (0, _) => text.trim_end_matches(')').to_string(),
        (1, Some(bid)) => text.replacen(&format!("'{bid}'"), bid, 1),
        (2, _) => {
            let wrong = match name {
                "click" => "clik",
                "fill" => "type",
                "select_option" => "select",
                "send_msg_to_user" => "send_message",
                "check" => "tick",
                "goto" => "navigate",
                _ => "do",
            };
            text.replacen(name, wrong, 1)
        }
        (_, Some(bid)) => text.replacen(bid, &format!("{bid}0"), 1),
        (_, None) => format!("{text} {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_differ() {
        for p in PRESETS {
            ExpertConfig::preset(p).unwrap().validate().unwrap();
        }
        assert!(ExpertConfig::preset("superb").is_err());
        let bad = ExpertConfig { mistake_rate: 1.5, ..ExpertConfig::perfect() };
        assert!(bad.validate().is_err());
        assert_ne!(ExpertConfig::preset("weak").unwrap().key(), ExpertConfig::preset("strong").unwrap().key());
    }

    #[test]
    fn config_is_strict_json() {
        let cfg: ExpertConfig = serde_json::from_str(r#"{"name": "e", "model_name": "m", "mistake_rate": 0.1}"#).unwrap();
        assert!(cfg.think);
        assert_eq!(cfg.wrong_element_rate, 0.0);
        let err = serde_json::from_str::<ExpertConfig>(r#"{"name": "e", "model_name": "m", "mistakes": 0.1}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `mistakes`"), "{err}");
        let schema = serde_json::to_string(&schemars::schema_for!(ExpertConfig)).unwrap();
        assert!(schema.contains("wrong_element_rate"));
    }

    #[test]
    fn typos_change_the_value() {
        let mut rng = pick::rng("t", 1);
        for v in ["ab", "Hello world", "x", "aa"] {
            for _ in 0..20 {
                assert_ne!(typo(&mut rng, v), v);
            }
        }
    }

    #[test]
    fn malformed_actions_do_not_parse() {
        let mut rng = pick::rng("t", 2);
        let actions = [
            Action::Click { bid: "a1".into() },
            Action::Fill { bid: "b2".into(), value: "x".into() },
            Action::SendMsgToUser { text: "hi".into() },
            Action::GoBack,
        ];
        for a in &actions {
            for _ in 0..30 {
                let t = malformed(&mut rng, a);
                // A bid with a digit appended still parses; it fails as an unknown element.
                if agentmerge_traces::parse_action(&t).is_ok() {
                    assert!(t.contains("0'"), "{t}");
                }
            }
        }
    }
}
