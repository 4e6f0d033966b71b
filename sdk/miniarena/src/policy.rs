//! The agent interface: a [`Policy`] sees the observation and the episode so far and returns
//! a chain of thought and an action text. [`Actor`] is what `rollout` drives: every policy,
//! and the privileged [`Expert`].

use agentmerge_traces::{AgentInfo, Observation, Step};

use crate::env::Env;
use crate::expert::Expert;

/// One agent step's output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentOutput {
    /// The chain of thought (`None` for agents without one).
    pub think: Option<String>,
    /// The action, in BrowserGym syntax, e.g. `click('a12')`.
    pub action: String,
}

/// An agent that acts from observations only (e.g. a fine-tuned model).
pub trait Policy {
    /// The name recorded in traces.
    fn name(&self) -> String;

    /// The next step, given the current observation and the steps taken so far in this
    /// episode (empty at the start of an episode).
    fn act(&mut self, obs: &Observation, history: &[Step]) -> anyhow::Result<AgentOutput>;

    /// Who produced the traces (defaults to `name()` for both model and agent names).
    fn agent_info(&self) -> AgentInfo {
        AgentInfo { model_name: self.name(), agent_name: self.name() }
    }
}

/// Anything [`rollout()`](crate::rollout()) can drive: every [`Policy`] (which only sees observations) and
/// [`Expert`] (which sees the task instance through the environment).
pub trait Actor {
    fn agent_info(&self) -> AgentInfo;
    fn act(&mut self, env: &Env, obs: &Observation, history: &[Step]) -> anyhow::Result<AgentOutput>;
}

impl<P: Policy + ?Sized> Actor for P {
    fn agent_info(&self) -> AgentInfo {
        Policy::agent_info(self)
    }
    fn act(&mut self, _env: &Env, obs: &Observation, history: &[Step]) -> anyhow::Result<AgentOutput> {
        Policy::act(self, obs, history)
    }
}

impl Actor for Expert {
    fn agent_info(&self) -> AgentInfo {
        Expert::agent_info(self)
    }
    fn act(&mut self, env: &Env, _obs: &Observation, _history: &[Step]) -> anyhow::Result<AgentOutput> {
        Ok(Expert::act(self, env))
    }
}
