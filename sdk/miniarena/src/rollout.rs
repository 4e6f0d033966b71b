//! Running agents: [`rollout`] plays one episode into an `agentmerge_traces::Episode`,
//! [`collect`] plays many (trace collection), and [`evaluate`] / [`summarize`] turn episodes
//! into success rates with standard errors per task, per category and overall.

use agentmerge_traces::{AgentInfo, Episode, Step};
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::policy::Actor;
use crate::tasks;

/// Plays one episode of `task` (instance `seed`) with `actor`, for at most `max_steps` actions.
///
/// Steps follow AgentLab (docs/traces.md): step N holds observation N, the reward and end
/// flags that `env.step` returned with it (so action N's reward is on step N+1 and step 0 has
/// reward 0), and the agent's think and action in response; the last step is the final
/// observation with no action, `terminated` or `truncated` set. If the actor fails, the
/// episode ends there with `err_msg` set.
pub fn rollout<A: Actor + ?Sized>(task: &str, seed: u64, actor: &mut A, max_steps: usize) -> anyhow::Result<Episode> {
    let mut env = Env::new(task, seed, max_steps)?;
    let mut obs = env.reset();
    let mut steps: Vec<Step> = Vec::with_capacity(max_steps + 1);
    let mut err_msg = None;
    let mut reward = 0.0;
    let mut cum_reward = 0.0;
    loop {
        let out = match actor.act(&env, &obs, &steps) {
            Ok(out) => out,
            Err(e) => {
                err_msg = Some(format!("{e:#}"));
                break;
            }
        };
        let res = env.step(&out.action)?;
        steps.push(Step { step: steps.len(), obs, think: out.think, action: Some(out.action), reward, terminated: false, truncated: false });
        obs = res.obs;
        reward = res.reward;
        cum_reward += res.reward;
        if res.terminated || res.truncated {
            break;
        }
    }
    let n_steps = steps.len();
    steps.push(Step { step: n_steps, obs, think: None, action: None, reward, terminated: env.terminated(), truncated: env.truncated() });
    Ok(Episode {
        task_name: env.task_name().to_string(),
        category: env.category().to_string(),
        seed,
        goal: env.goal().to_string(),
        agent: actor.agent_info(),
        success: env.success(),
        cum_reward,
        n_steps,
        err_msg,
        steps,
    })
}

/// Plays every (template, seed) pair with a fresh actor from `factory`.
///
/// `templates` are template names, category names (`form`) or `all`.
pub fn collect<A, F>(mut factory: F, templates: &[&str], seeds: &[u64], max_steps: usize) -> anyhow::Result<Vec<Episode>>
where
    A: Actor,
    F: FnMut() -> anyhow::Result<A>,
{
    let selected = tasks::select_templates(templates)?;
    let mut out = Vec::with_capacity(selected.len() * seeds.len());
    for t in selected {
        for &seed in seeds {
            let mut actor = factory()?;
            out.push(rollout(t.name, seed, &mut actor, max_steps)?);
        }
    }
    Ok(out)
}

/// A success rate with its standard error `sqrt(p(1-p)/n)`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub n: usize,
    pub successes: usize,
    pub success_rate: f64,
    pub std_err: f64,
    /// Mean number of actions per episode.
    pub mean_steps: f64,
}

impl Score {
    fn of<'a>(episodes: impl Iterator<Item = &'a Episode>) -> Score {
        let (mut n, mut successes, mut steps) = (0usize, 0usize, 0usize);
        for e in episodes {
            n += 1;
            successes += usize::from(e.success);
            steps += e.n_steps;
        }
        let p = if n == 0 { 0.0 } else { successes as f64 / n as f64 };
        let std_err = if n == 0 { 0.0 } else { (p * (1.0 - p) / n as f64).sqrt() };
        let mean_steps = if n == 0 { 0.0 } else { steps as f64 / n as f64 };
        Score { n, successes, success_rate: p, std_err, mean_steps }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    pub task: String,
    pub category: String,
    #[serde(flatten)]
    pub score: Score,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CategoryScore {
    pub category: String,
    #[serde(flatten)]
    pub score: Score,
}

/// Success rates of one agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub agent: AgentInfo,
    /// Over all episodes.
    pub overall: Score,
    pub per_category: Vec<CategoryScore>,
    pub per_task: Vec<TaskScore>,
    /// Episodes that ended with an agent error (`err_msg`), counted as failures.
    pub n_errors: usize,
}

/// Success rates of a set of episodes (of one agent): per task, per category, overall.
pub fn summarize(episodes: &[Episode]) -> EvalReport {
    let mut tasks: Vec<(&str, &str)> = Vec::new();
    for e in episodes {
        if !tasks.iter().any(|(t, _)| *t == e.task_name) {
            tasks.push((&e.task_name, &e.category));
        }
    }
    let mut categories: Vec<&str> = Vec::new();
    for (_, c) in &tasks {
        if !categories.contains(c) {
            categories.push(c);
        }
    }
    EvalReport {
        agent: episodes.first().map(|e| e.agent.clone()).unwrap_or_default(),
        overall: Score::of(episodes.iter()),
        per_category: categories
            .iter()
            .map(|c| CategoryScore { category: c.to_string(), score: Score::of(episodes.iter().filter(|e| e.category == *c)) })
            .collect(),
        per_task: tasks
            .iter()
            .map(|(t, c)| TaskScore { task: t.to_string(), category: c.to_string(), score: Score::of(episodes.iter().filter(|e| e.task_name == *t)) })
            .collect(),
        n_errors: episodes.iter().filter(|e| e.err_msg.is_some()).count(),
    }
}

/// Plays every (template, seed) pair with a fresh actor from `factory` and reports success
/// rates. `templates` are template names, category names or `all`.
pub fn evaluate<A, F>(factory: F, templates: &[&str], seeds: &[u64], max_steps: usize) -> anyhow::Result<EvalReport>
where
    A: Actor,
    F: FnMut() -> anyhow::Result<A>,
{
    Ok(summarize(&collect(factory, templates, seeds, max_steps)?))
}
