//! MiniArena: an in-process, deterministic, WorkArena-like text environment.
//!
//! WorkArena's L1 tasks (forms, list filters and sorts, service catalog orders, menu
//! navigation, knowledge base questions, dashboards) on a simulated ServiceNow instance,
//! observed as BrowserGym accessibility trees and driven with BrowserGym actions. Built-in
//! experts of configurable skill produce agent traces (`agentmerge_traces::Episode`), and any
//! [`Policy`] can be evaluated.
//!
//! ```
//! use agentmerge_miniarena::{rollout, Expert, DEFAULT_MAX_STEPS};
//! let mut expert = Expert::preset("perfect").unwrap();
//! let ep = rollout("miniarena.form.create_incident", 7, &mut expert, DEFAULT_MAX_STEPS).unwrap();
//! assert!(ep.success);
//! ```

pub mod app;
pub mod env;
pub mod expert;
pub mod page;
pub mod pick;
pub mod policy;
pub mod rollout;
pub mod size;
pub mod tasks;
pub mod vocab;

pub use agentmerge_traces::{parse_action, Action, ActionError, Episode, Observation, Step};
pub use env::{Env, StepOutcome, DEFAULT_MAX_STEPS};
pub use expert::{Expert, ExpertConfig, PRESETS};
pub use policy::{Actor, AgentOutput, Policy};
pub use rollout::{
    collect, evaluate, rollout, rollout_batch, rollout_batch_sized, rollout_env, summarize, BatchPolicy, CategoryScore, EvalReport, OneByOne, Score, TaskScore,
    Turn,
};
pub use size::PageSize;
pub use tasks::{select_templates, template, templates, Seeds, TemplateInfo, CATEGORIES};
