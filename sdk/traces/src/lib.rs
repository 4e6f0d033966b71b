//! The trace format: one agent episode per JSON line, field names after BrowserGym and
//! AgentLab (docs/traces.md), and its reader and writer (plain, `.gz` or `.zst`).

pub mod action;
pub mod io;
pub mod ops;

pub use action::{parse_action, Action, ActionError, ActionErrorKind, Selection, ACTION_NAMES};
pub use io::{read_episodes, write_episodes, Compression, OnBadLine, ReadReport, TraceWriter};

use serde::{Deserialize, Serialize};

/// What the agent saw before a step (BrowserGym's observation, AXTree flattened to text).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Observation {
    pub goal: String,
    pub url: String,
    /// The accessibility tree as text, one element per line, each with its `[bid]`.
    pub axtree_txt: String,
    pub focused_element_bid: Option<String>,
    /// The previous action, as the agent wrote it (empty on the first step).
    pub last_action: String,
    /// Why the previous action failed (empty when it did not), as BrowserGym reports it.
    pub last_action_error: String,
}

/// One step, as AgentLab records it: an observation, the reward and end flags `env.step`
/// returned with it (so action N's reward is on step N+1; step 0 has reward 0), and the
/// agent's thought and action in response to it (none on the final observation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Step {
    /// 0-based step number.
    pub step: usize,
    pub obs: Observation,
    /// The chain of thought (AgentLab's `agent_info.think`); `None` when the agent had none.
    pub think: Option<String>,
    /// The action text; `None` on the final observation of an episode.
    pub action: Option<String>,
    pub reward: f64,
    pub terminated: bool,
    pub truncated: bool,
}

/// Who produced an episode: the "expert model × agent config" pool it belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentInfo {
    /// The model name (AgentLab's `chat_model_args.model_name`).
    pub model_name: String,
    /// The agent configuration (AgentLab's `agent_name`), e.g. `expert-cot`.
    pub agent_name: String,
}

/// One episode (a JSON line).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Episode {
    /// The task template, e.g. `miniarena.form.create_incident`.
    pub task_name: String,
    /// One of the seven WorkArena L1 categories (`form`, `list_filter`, `list_sort`,
    /// `service_catalog`, `menu`, `knowledge_base`, `dashboard`), or empty if unknown.
    pub category: String,
    pub seed: u64,
    /// The size of MiniArena's pages when they were not full (`small`); absent for full pages
    /// and for traces of other environments. `(task_name, seed, page_size)` replays an episode's
    /// instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<String>,
    pub goal: String,
    pub agent: AgentInfo,
    /// Whether the task was solved (reward reached 1).
    pub success: bool,
    pub cum_reward: f64,
    pub n_steps: usize,
    /// Why the episode ended abnormally (AgentLab's `err_msg`), if it did.
    pub err_msg: Option<String>,
    pub steps: Vec<Step>,
}

impl Episode {
    /// The steps that carry an action (all but a final observation-only step).
    pub fn action_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.action.is_some())
    }
}
