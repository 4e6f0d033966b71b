//! The environment: one task instance, stepped with BrowserGym action texts, returning
//! BrowserGym-style observations, rewards and episode ends.
//!
//! A bad or impossible action (parse error, unknown bid, filling a button, an option that is
//! not in the combobox...) leaves the state unchanged and is reported in
//! `last_action_error`, as BrowserGym does.

use agentmerge_traces::{parse_action, Action, Observation};

use crate::app::{self, Route, Session, World};
use crate::page::{Page, Role};
use crate::size::PageSize;
use crate::tasks::{self, Target, TemplateInfo};

/// The step limit WorkArena L1 agents usually get.
pub const DEFAULT_MAX_STEPS: usize = 15;

/// What one step returns.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutcome {
    pub obs: Observation,
    /// 1.0 on the step that solves the task, else 0.0.
    pub reward: f64,
    /// The episode ended by success or by a final message / `report_infeasible`.
    pub terminated: bool,
    /// The episode ran out of steps.
    pub truncated: bool,
}

/// A MiniArena environment for one task instance.
pub struct Env {
    template: &'static TemplateInfo,
    seed: u64,
    size: PageSize,
    max_steps: usize,
    goal: String,
    start: Route,
    target: Target,
    world: World,
    session: Session,
    page: Page,
    n_steps: usize,
    terminated: bool,
    truncated: bool,
    success: bool,
    /// Whether the state is still the generated one (so `reset` need not regenerate).
    pristine: bool,
    last_action: String,
    last_action_error: String,
    messages: Vec<String>,
}

impl Env {
    /// The instance `seed` of task `task_name` (`miniarena.<category>.<template>`), with full
    /// pages.
    pub fn new(task_name: &str, seed: u64, max_steps: usize) -> anyhow::Result<Env> {
        Env::with_size(task_name, seed, max_steps, PageSize::Full)
    }

    /// The instance `seed` of task `task_name` with pages of `size`: the same goal at every
    /// size, with less on the pages at [`PageSize::Small`].
    pub fn with_size(task_name: &str, seed: u64, max_steps: usize, size: PageSize) -> anyhow::Result<Env> {
        let template = tasks::template(task_name)?;
        if max_steps == 0 {
            anyhow::bail!("max_steps must be at least 1");
        }
        let inst = tasks::instantiate(template, seed, size);
        let session = Session::new(&inst.world, inst.start.clone());
        let mut env = Env {
            template,
            seed,
            size,
            max_steps,
            goal: inst.goal,
            start: inst.start,
            target: inst.target,
            world: inst.world,
            session,
            page: Page::default(),
            n_steps: 0,
            terminated: false,
            truncated: false,
            success: false,
            pristine: true,
            last_action: String::new(),
            last_action_error: String::new(),
            messages: Vec::new(),
        };
        env.render();
        Ok(env)
    }

    /// Starts the episode over from the instance's initial state; returns the first observation.
    pub fn reset(&mut self) -> Observation {
        if !self.pristine {
            let inst = tasks::instantiate(self.template, self.seed, self.size);
            self.session = Session::new(&inst.world, inst.start.clone());
            self.world = inst.world;
            self.start = inst.start;
            self.target = inst.target;
            self.goal = inst.goal;
            self.pristine = true;
        }
        self.n_steps = 0;
        self.terminated = false;
        self.truncated = false;
        self.success = false;
        self.last_action.clear();
        self.last_action_error.clear();
        self.messages.clear();
        self.render();
        self.observation()
    }

    /// Performs one action (BrowserGym syntax). Fails only when the episode is already over.
    pub fn step(&mut self, action_text: &str) -> anyhow::Result<StepOutcome> {
        if self.is_done() {
            anyhow::bail!("the episode of {} (seed {}) is over after {} steps; call reset() to start again", self.template.name, self.seed, self.n_steps);
        }
        self.pristine = false;
        self.n_steps += 1;
        self.last_action.clear();
        self.last_action.push_str(action_text);
        self.last_action_error.clear();
        let mut final_message: Option<Option<String>> = None;
        match parse_action(action_text) {
            Err(e) => self.last_action_error = e.message,
            Ok(action) => {
                match self.apply(&action) {
                    Ok(Final::No) => {}
                    Ok(Final::Message(m)) => final_message = Some(Some(m)),
                    Ok(Final::Infeasible) => final_message = Some(None),
                    Err(e) => self.last_action_error = e,
                }
                self.render();
            }
        }
        let solved = match &final_message {
            Some(Some(msg)) if self.target.expects_answer() => self.target.answer_ok(msg),
            Some(None) => false,
            _ => !self.target.expects_answer() && self.target.satisfied(&self.world, &self.session),
        };
        self.success = solved;
        self.terminated = solved || final_message.is_some();
        self.truncated = !self.terminated && self.n_steps >= self.max_steps;
        Ok(StepOutcome { obs: self.observation(), reward: if solved { 1.0 } else { 0.0 }, terminated: self.terminated, truncated: self.truncated })
    }

    fn render(&mut self) {
        app::render(&self.world, &self.session, &mut self.page);
    }

    /// Applies a parsed action; `Err` is the `last_action_error` text.
    fn apply(&mut self, action: &Action) -> Result<Final, String> {
        let (w, s) = (&mut self.world, &mut self.session);
        let element = |page: &Page, bid: &str| -> Result<usize, String> {
            page.find_bid(bid).ok_or_else(|| format!("ValueError: Could not find element with bid \"{bid}\""))
        };
        match action {
            Action::Click { bid } | Action::Dblclick { bid } => {
                let i = element(&self.page, bid)?;
                let n = *self.page.node(i);
                if n.disabled() {
                    return Err(format!("TimeoutError: element [{bid}] is disabled and cannot be clicked"));
                }
                match n.role {
                    Role::Option => {
                        let parent = (0..i).rev().find(|&j| self.page.node(j).depth < n.depth);
                        let hint = parent.map(|j| format!(" use select_option('{}', ...) instead", self.page.bid(j)));
                        Err(format!("Error: cannot click an <option> of a <select>;{}", hint.unwrap_or_default()))
                    }
                    Role::Checkbox => {
                        let on = !n.checked().unwrap_or(false);
                        app::set_checked(w, s, n.ctl, on).map(|_| Final::No)
                    }
                    Role::Radio => app::set_checked(w, s, n.ctl, true).map(|_| Final::No),
                    _ => app::click(w, s, n.ctl).map(|_| Final::No),
                }
            }
            Action::Fill { bid, value } => {
                let i = element(&self.page, bid)?;
                let n = *self.page.node(i);
                if !n.role.is_text_input() {
                    return Err("Error: Element is not an <input>, <textarea> or [contenteditable] element".to_string());
                }
                if n.readonly() || n.disabled() {
                    return Err(format!("Error: Element [{bid}] is not editable"));
                }
                app::set_text(w, s, n.ctl, value).map(|_| Final::No)
            }
            Action::Clear { bid } => {
                let i = element(&self.page, bid)?;
                let n = *self.page.node(i);
                if !n.role.is_text_input() || n.readonly() || n.disabled() {
                    return Err("Error: Element is not an editable <input> or <textarea>".to_string());
                }
                app::set_text(w, s, n.ctl, "").map(|_| Final::No)
            }
            Action::SelectOption { bid, options } => {
                let i = element(&self.page, bid)?;
                let n = *self.page.node(i);
                if n.role != Role::Combobox {
                    return Err("Error: Element is not a <select> element".to_string());
                }
                if n.disabled() {
                    return Err(format!("Error: Element [{bid}] is disabled"));
                }
                let [option] = options.as_slice() else {
                    return Err(format!("Error: Element [{bid}] is not a <select multiple>; give exactly one option"));
                };
                if !self.page.options(i).any(|o| o == option) {
                    let available: Vec<String> = self.page.options(i).map(|o| format!("'{o}'")).collect();
                    return Err(format!("Error: Could not find option '{option}' in select [{bid}]; available options: {}", available.join(", ")));
                }
                app::select(w, s, n.ctl, option).map(|_| Final::No)
            }
            Action::Check { bid } | Action::Uncheck { bid } => {
                let on = matches!(action, Action::Check { .. });
                let i = element(&self.page, bid)?;
                let n = *self.page.node(i);
                match n.role {
                    Role::Checkbox | Role::Radio if n.checked() == Some(on) => Ok(Final::No),
                    Role::Radio if !on => Err("Error: Cannot uncheck a radio button".to_string()),
                    Role::Checkbox | Role::Radio => app::set_checked(w, s, n.ctl, on).map(|_| Final::No),
                    _ => Err("Error: Not a checkbox or radio button".to_string()),
                }
            }
            Action::Hover { bid } => element(&self.page, bid).map(|_| Final::No),
            Action::Focus { bid } => {
                let i = element(&self.page, bid)?;
                let ctl = self.page.node(i).ctl;
                if ctl != app::Ctl::None {
                    s.focus = Some(ctl);
                }
                Ok(Final::No)
            }
            Action::Press { bid, key } => {
                let i = element(&self.page, bid)?;
                check_key(key)?;
                let n = *self.page.node(i);
                match key.as_str() {
                    "Enter" => app::press_enter(w, s, n.ctl).map(|_| Final::No),
                    "Tab" => {
                        let next = (i + 1..self.page.nodes().len()).map(|j| self.page.node(j).ctl).find(|c| *c != app::Ctl::None);
                        s.focus = next;
                        Ok(Final::No)
                    }
                    _ => {
                        if n.ctl != app::Ctl::None {
                            s.focus = Some(n.ctl);
                        }
                        Ok(Final::No)
                    }
                }
            }
            Action::Scroll { .. } | Action::Noop { .. } => Ok(Final::No),
            Action::Goto { url } => app::goto(w, s, url).map(|_| Final::No),
            Action::GoBack => {
                app::go_back(w, s);
                Ok(Final::No)
            }
            Action::GoForward => {
                app::go_forward(w, s);
                Ok(Final::No)
            }
            Action::SendMsgToUser { text } => {
                self.messages.push(text.clone());
                Ok(Final::Message(text.clone()))
            }
            Action::ReportInfeasible { reason } => {
                self.messages.push(reason.clone());
                Ok(Final::Infeasible)
            }
        }
    }

    /// The current observation.
    pub fn observation(&self) -> Observation {
        Observation {
            goal: self.goal.clone(),
            url: self.page.url().to_string(),
            axtree_txt: self.page.axtree(),
            focused_element_bid: self.page.focused_bid().map(str::to_string),
            last_action: self.last_action.clone(),
            last_action_error: self.last_action_error.clone(),
        }
    }

    pub fn task_name(&self) -> &'static str {
        self.template.name
    }

    pub fn category(&self) -> &'static str {
        self.template.category
    }

    pub fn template(&self) -> &'static TemplateInfo {
        self.template
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The size of the pages.
    pub fn page_size(&self) -> PageSize {
        self.size
    }

    pub fn goal(&self) -> &str {
        &self.goal
    }

    pub fn max_steps(&self) -> usize {
        self.max_steps
    }

    /// Actions taken so far in this episode.
    pub fn n_steps(&self) -> usize {
        self.n_steps
    }

    pub fn is_done(&self) -> bool {
        self.terminated || self.truncated
    }

    pub fn terminated(&self) -> bool {
        self.terminated
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Whether the task has been solved.
    pub fn success(&self) -> bool {
        self.success
    }

    pub fn url(&self) -> &str {
        self.page.url()
    }

    pub fn last_action_error(&self) -> &str {
        &self.last_action_error
    }

    /// Messages the agent sent to the user (and infeasibility reasons).
    pub fn messages(&self) -> &[String] {
        &self.messages
    }

    /// The instance's goal and expected outcome in one string: equal strings mean the same
    /// task (used to check that seeds give distinct instances).
    pub fn instance_signature(&self) -> String {
        format!("{}\n=> {}", self.goal, self.target.summary())
    }

    /// The expected answer of question-answering tasks (knowledge base, dashboards).
    pub fn expected_answer(&self) -> Option<&str> {
        self.target.answer()
    }

    pub(crate) fn page(&self) -> &Page {
        &self.page
    }

    /// What experts may look at: the state, the page, the target, the start page.
    pub(crate) fn expert_view(&self) -> (&World, &Session, &Page, &Target, &Route) {
        (&self.world, &self.session, &self.page, &self.target, &self.start)
    }

    /// For tests of validators: the state to change, and the target.
    #[cfg(test)]
    pub(crate) fn parts_mut(&mut self) -> (&mut World, &mut Session, &Target) {
        (&mut self.world, &mut self.session, &self.target)
    }

    /// Re-checks the validator on the current state (for tests of final states).
    pub fn state_satisfies_goal(&self) -> bool {
        self.target.satisfied(&self.world, &self.session)
    }
}

enum Final {
    No,
    Message(String),
    Infeasible,
}

/// Playwright's key names; `Control+a`-style combinations allowed.
fn check_key(key: &str) -> Result<(), String> {
    const NAMED: &[&str] = &[
        "Enter",
        "Tab",
        "Escape",
        "Backspace",
        "Delete",
        "ArrowUp",
        "ArrowDown",
        "ArrowLeft",
        "ArrowRight",
        "Home",
        "End",
        "PageUp",
        "PageDown",
        "Space",
        "Insert",
        "F1",
        "F2",
        "F3",
        "F4",
        "F5",
        "F6",
        "F7",
        "F8",
        "F9",
        "F10",
        "F11",
        "F12",
    ];
    const MODIFIERS: &[&str] = &["Control", "Shift", "Alt", "Meta", "ControlOrMeta"];
    let parts: Vec<&str> = key.split('+').collect();
    let (last, mods) = parts.split_last().ok_or_else(|| "Error: empty key".to_string())?;
    let last_ok = NAMED.contains(last) || last.chars().count() == 1;
    if !last_ok || mods.iter().any(|m| !MODIFIERS.contains(m)) {
        return Err(format!("Error: Unknown key: \"{key}\""));
    }
    Ok(())
}
