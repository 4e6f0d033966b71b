//! Running agents: [`rollout`] plays one episode into an `agentmerge_traces::Episode`,
//! [`rollout_batch`] plays many in lockstep for a [`BatchPolicy`] (a model decoding one batch
//! per round), [`collect`] plays many (trace collection), and [`evaluate`] / [`summarize`] turn
//! episodes into success rates with standard errors per task, per category and overall.

use agentmerge_traces::{AgentInfo, Episode, Observation, Step};
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::policy::{Actor, AgentOutput, Policy};
use crate::size::PageSize;
use crate::tasks;

/// Plays one episode of `task` (instance `seed`) with `actor`, for at most `max_steps` actions.
///
/// Steps follow AgentLab (docs/traces.md): step N holds observation N, the reward and end
/// flags that `env.step` returned with it (so action N's reward is on step N+1 and step 0 has
/// reward 0), and the agent's think and action in response; the last step is the final
/// observation with no action, `terminated` or `truncated` set. If the actor fails, the
/// episode ends there with `err_msg` set.
pub fn rollout<A: Actor + ?Sized>(task: &str, seed: u64, actor: &mut A, max_steps: usize) -> anyhow::Result<Episode> {
    rollout_env(Env::new(task, seed, max_steps)?, actor)
}

/// Plays one episode in `env` (from its start, e.g. an [`Env::with_size`]) with `actor`, for at
/// most the environment's `max_steps` actions; recorded as [`rollout`] records it, with the
/// page size when it is not full.
pub fn rollout_env<A: Actor + ?Sized>(env: Env, actor: &mut A) -> anyhow::Result<Episode> {
    let mut run = EpisodeRun::start(env);
    while !run.done {
        let out = actor.act(&run.env, &run.obs, &run.steps);
        run.advance(out)?;
    }
    Ok(run.finish(actor.agent_info()))
}

/// An agent that acts on many episodes at once, e.g. a model that decodes one batch per round.
pub trait BatchPolicy {
    /// Who produced the traces.
    fn agent_info(&self) -> AgentInfo;

    /// The next step of each turn (one unfinished episode each). Returns one result per turn,
    /// in order: an `Err` ends that episode only (its `err_msg`); an outer `Err` stops the whole
    /// rollout.
    fn act_batch(&mut self, turns: &[Turn<'_>]) -> anyhow::Result<Vec<anyhow::Result<AgentOutput>>>;
}

/// One unfinished episode's turn in a [`BatchPolicy::act_batch`] round.
#[derive(Clone, Copy, Debug)]
pub struct Turn<'a> {
    /// The episode's index in the job list given to [`rollout_batch`].
    pub episode: usize,
    pub obs: &'a Observation,
    /// The steps so far (empty on the first turn).
    pub history: &'a [Step],
}

/// Any [`Policy`] as a [`BatchPolicy`] that acts on the turns one by one.
pub struct OneByOne<P>(pub P);

impl<P: Policy> BatchPolicy for OneByOne<P> {
    fn agent_info(&self) -> AgentInfo {
        self.0.agent_info()
    }
    fn act_batch(&mut self, turns: &[Turn<'_>]) -> anyhow::Result<Vec<anyhow::Result<AgentOutput>>> {
        Ok(turns.iter().map(|t| self.0.act(t.obs, t.history)).collect())
    }
}

/// Plays the episodes `jobs` (task, seed) in lockstep: each round gives the current turn of
/// every running episode (at most `batch` at once) to one [`BatchPolicy::act_batch`] call, then
/// steps each environment; a finished episode's place goes to the next job. Episodes are
/// returned in job order, each exactly as [`rollout`] would record it. `round` is called after
/// every round with (episodes finished, total); its error (say, a cancellation) stops the run.
pub fn rollout_batch<P: BatchPolicy + ?Sized>(
    jobs: &[(&str, u64)],
    policy: &mut P,
    max_steps: usize,
    batch: usize,
    round: &mut dyn FnMut(usize, usize) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Episode>> {
    let jobs: Vec<(&str, u64, PageSize)> = jobs.iter().map(|&(task, seed)| (task, seed, PageSize::Full)).collect();
    rollout_batch_sized(&jobs, policy, max_steps, batch, round)
}

/// [`rollout_batch`] with each job's page size: (task, seed, size).
pub fn rollout_batch_sized<P: BatchPolicy + ?Sized>(
    jobs: &[(&str, u64, PageSize)],
    policy: &mut P,
    max_steps: usize,
    batch: usize,
    round: &mut dyn FnMut(usize, usize) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Episode>> {
    anyhow::ensure!(batch > 0, "the batch must hold at least one episode");
    let mut done: Vec<Option<Episode>> = (0..jobs.len()).map(|_| None).collect();
    let mut running: Vec<(usize, EpisodeRun)> = Vec::with_capacity(batch.min(jobs.len()));
    let (mut next, mut finished) = (0, 0);
    while finished < jobs.len() {
        while running.len() < batch && next < jobs.len() {
            let (task, seed, size) = jobs[next];
            running.push((next, EpisodeRun::start(Env::with_size(task, seed, max_steps, size)?)));
            next += 1;
        }
        let turns: Vec<Turn<'_>> = running.iter().map(|(i, r)| Turn { episode: *i, obs: &r.obs, history: &r.steps }).collect();
        let outs = policy.act_batch(&turns)?;
        anyhow::ensure!(outs.len() == turns.len(), "the policy answered {} of {} turns", outs.len(), turns.len());
        for ((_, run), out) in running.iter_mut().zip(outs) {
            run.advance(out)?;
        }
        let agent = policy.agent_info();
        for (i, run) in std::mem::take(&mut running) {
            if run.done {
                done[i] = Some(run.finish(agent.clone()));
                finished += 1;
            } else {
                running.push((i, run));
            }
        }
        round(finished, jobs.len())?;
    }
    Ok(done.into_iter().map(|e| e.expect("every job finished")).collect())
}

/// An episode being played: the environment, the current observation and the steps so far.
struct EpisodeRun {
    env: Env,
    obs: Observation,
    steps: Vec<Step>,
    /// The reward returned with `obs`.
    reward: f64,
    cum_reward: f64,
    err_msg: Option<String>,
    done: bool,
}

impl EpisodeRun {
    fn start(mut env: Env) -> EpisodeRun {
        let obs = env.reset();
        let steps = Vec::with_capacity(env.max_steps() + 1);
        EpisodeRun { env, obs, steps, reward: 0.0, cum_reward: 0.0, err_msg: None, done: false }
    }

    /// Records the agent's answer to the current observation and steps the environment; an
    /// agent error ends the episode with `err_msg`.
    fn advance(&mut self, out: anyhow::Result<AgentOutput>) -> anyhow::Result<()> {
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                self.err_msg = Some(format!("{e:#}"));
                self.done = true;
                return Ok(());
            }
        };
        let res = self.env.step(&out.action)?;
        let obs = std::mem::replace(&mut self.obs, res.obs);
        self.steps.push(Step {
            step: self.steps.len(),
            obs,
            think: out.think,
            action: Some(out.action),
            reward: self.reward,
            terminated: false,
            truncated: false,
        });
        self.reward = res.reward;
        self.cum_reward += res.reward;
        self.done = res.terminated || res.truncated;
        Ok(())
    }

    /// The episode, closed by the final observation.
    fn finish(mut self, agent: AgentInfo) -> Episode {
        let n_steps = self.steps.len();
        let env = &self.env;
        self.steps.push(Step {
            step: n_steps,
            obs: self.obs,
            think: None,
            action: None,
            reward: self.reward,
            terminated: env.terminated(),
            truncated: env.truncated(),
        });
        Episode {
            task_name: env.task_name().to_string(),
            category: env.category().to_string(),
            seed: env.seed(),
            page_size: env.page_size().recorded(),
            goal: env.goal().to_string(),
            agent,
            success: env.success(),
            cum_reward: self.cum_reward,
            n_steps,
            err_msg: self.err_msg,
            steps: self.steps,
        }
    }
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
