//! Evaluation runs: a model agent plays a list of MiniArena instances in batches
//! ([`play`]), and the result becomes the metrics `miniarena/evaluate` reports for experts
//! (success rates overall, per category and per task with standard errors), plus what went
//! wrong on the model's steps ([`StepCounts`]). Also: which instances a traces file names, and
//! the training step of a checkpoint.

use std::{collections::BTreeMap, path::Path, time::Instant};

use agentmerge_miniarena::{rollout_batch_sized, summarize, EvalReport, PageSize};
use agentmerge_traces::{parse_action, Episode};
use anyhow::Context as _;
use serde_json::{json, Map, Value as Json};

use crate::policy::{Decoder, ModelPolicy, Seconds, StepCounts};

/// A finished evaluation of one model.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// The episodes, in job order.
    pub episodes: Vec<Episode>,
    pub report: EvalReport,
    /// Over all episodes.
    pub counts: StepCounts,
    /// By task template.
    pub per_task: BTreeMap<String, StepCounts>,
    pub seconds: f64,
    /// Of which building prompts, and decoding.
    pub split: Seconds,
}

/// Steps whose action parses but that the environment rejected (the next observation carries a
/// `last_action_error`).
pub fn invalid_actions(e: &Episode) -> usize {
    e.steps
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            s.action.as_deref().is_some_and(|a| parse_action(a).is_ok()) && e.steps.get(i + 1).is_some_and(|n| !n.obs.last_action_error.is_empty())
        })
        .count()
}

/// Plays every job (template, seed, page size) with `policy`, `batch` episodes in lockstep, at
/// most `max_steps` actions each. `round(done, total)` follows the episodes; its error stops the
/// run.
pub fn play<D: Decoder>(
    policy: &mut ModelPolicy<D>,
    jobs: &[(&str, u64, PageSize)],
    max_steps: usize,
    batch: usize,
    round: &mut dyn FnMut(usize, usize) -> anyhow::Result<()>,
) -> anyhow::Result<Evaluation> {
    let start = Instant::now();
    policy.take_counts();
    let before = policy.seconds;
    let episodes = rollout_batch_sized(jobs, policy, max_steps, batch, round)?;
    let split = Seconds { prompts: policy.seconds.prompts - before.prompts, decoding: policy.seconds.decoding - before.decoding };
    let mut per_episode = policy.take_counts();
    let (mut counts, mut per_task) = (StepCounts::default(), BTreeMap::<String, StepCounts>::new());
    for (i, e) in episodes.iter().enumerate() {
        let c = per_episode.entry(i).or_default();
        c.invalid_actions = invalid_actions(e);
        counts.add(c);
        per_task.entry(e.task_name.clone()).or_default().add(c);
    }
    let report = summarize(&episodes);
    Ok(Evaluation { episodes, report, counts, per_task, seconds: start.elapsed().as_secs_f64(), split })
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl Evaluation {
    /// The metrics: `miniarena/evaluate`'s (agent, overall, per_category, per_task, n_errors)
    /// with each task's step counts, then the step counts overall with their rates per action,
    /// and the time taken.
    pub fn metrics(&self) -> Map<String, Json> {
        let Json::Object(mut m) = json!(self.report) else { unreachable!("an EvalReport is an object") };
        if let Some(Json::Array(tasks)) = m.get_mut("per_task") {
            for t in tasks {
                let name = t["task"].as_str().unwrap_or_default().to_string();
                if let (Json::Object(t), Some(c)) = (t, self.per_task.get(&name)) {
                    t.insert("parse_errors".into(), json!(c.parse_errors));
                    t.insert("invalid_actions".into(), json!(c.invalid_actions));
                    t.insert("truncated".into(), json!(c.truncated));
                }
            }
        }
        let c = &self.counts;
        let Json::Object(counts) = json!(c) else { unreachable!() };
        m.extend(counts);
        m.insert("parse_error_rate".into(), json!(ratio(c.parse_errors, c.actions)));
        m.insert("invalid_action_rate".into(), json!(ratio(c.invalid_actions, c.actions)));
        m.insert("truncated_rate".into(), json!(ratio(c.truncated, c.actions)));
        m.insert("seconds".into(), json!(self.seconds));
        m.insert("prompt_seconds".into(), json!(self.split.prompts));
        m.insert("decoding_seconds".into(), json!(self.split.decoding));
        m.insert("episodes_per_s".into(), json!(self.episodes.len() as f64 / self.seconds.max(1e-9)));
        m.insert("new_tokens_per_s".into(), json!(c.new_tokens as f64 / self.seconds.max(1e-9)));
        m
    }
}

/// How often a model's next action matches the expert's on recorded steps.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepAccuracy {
    /// Expert action steps scored.
    pub steps: usize,
    /// The model's action equals the expert's (both parsed and written canonically).
    pub exact: f64,
    /// The same action name (`click`, `fill`...).
    pub verb: f64,
    /// Among steps whose expert action targets an element: the model's targets the same bid.
    pub element: f64,
    /// Steps whose expert action targets an element.
    pub element_steps: usize,
    /// The model's answer parses as one BrowserGym action in AgentLab's format.
    pub parses: f64,
    /// The same by task (in name order), as counts: tasks pool by summing them.
    #[serde(default)]
    pub per_task: Vec<TaskStepAccuracy>,
    /// Steps and exact answers by the expert's action (`click`, `fill`, `send_msg_to_user`...,
    /// in name order), all tasks pooled: which kind of step a model misses (the final
    /// messages, say).
    #[serde(default)]
    pub per_action: Vec<ActionStepAccuracy>,
}

/// Steps of one expert action name and how many the model matched exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActionStepAccuracy {
    pub action: String,
    pub steps: usize,
    pub exact: usize,
}

/// One task's steps in [`StepAccuracy`]: counts, so that a split of the tasks (inter-task,
/// cross-task) pools exactly by summing, and their rates.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskStepAccuracy {
    /// The episodes' `task_name` and `category`.
    pub task: String,
    pub category: String,
    /// Expert action steps scored.
    pub steps: usize,
    /// Steps whose action equals the expert's.
    pub exact: usize,
    /// Steps whose action has the expert's action name.
    pub verb: usize,
    /// Steps whose action targets the expert's element (of `element_steps`).
    pub element: usize,
    /// Steps whose expert action targets an element.
    pub element_steps: usize,
    /// Answers that parse.
    pub parses: usize,
    /// The same steps by the expert's action name (in name order).
    #[serde(default)]
    pub per_action: Vec<ActionStepAccuracy>,
    /// `exact / steps`, `verb / steps`, `element / element_steps` (0 when there are none).
    pub exact_rate: f64,
    pub verb_rate: f64,
    pub element_rate: f64,
}

/// Teacher-forced step accuracy: for every action step of `episodes` (e.g. held-out expert
/// traces), the model is shown the step's observation and the expert's history, exactly as an
/// agent in that state, and its action is compared with the expert's; overall and per task.
/// `batch` steps are decoded together. The element accuracy is the grounding figure of
/// docs/evaluation.md.
pub fn step_accuracy<D: Decoder>(
    policy: &mut ModelPolicy<D>,
    episodes: &[Episode],
    batch: usize,
    progress: &mut dyn FnMut(usize, usize) -> anyhow::Result<()>,
) -> anyhow::Result<StepAccuracy> {
    use agentmerge_miniarena::{BatchPolicy, Turn};
    anyhow::ensure!(batch > 0, "the batch must hold at least one step");
    let turns: Vec<(Turn<'_>, &str)> = episodes
        .iter()
        .enumerate()
        .flat_map(|(k, e)| {
            e.steps.iter().enumerate().filter_map(move |(i, s)| Some((Turn { episode: k, obs: &s.obs, history: &e.steps[..i] }, s.action.as_deref()?)))
        })
        .collect();
    let canonical = |a: &str| parse_action(a).ok();
    let mut tasks = BTreeMap::<&str, TaskStepAccuracy>::new();
    let mut actions = BTreeMap::<(&str, String), ActionStepAccuracy>::new();
    policy.take_counts();
    for (n, chunk) in turns.chunks(batch).enumerate() {
        let ts: Vec<Turn<'_>> = chunk.iter().map(|(t, _)| *t).collect();
        let outs = policy.act_batch(&ts)?;
        for ((turn, want), got) in chunk.iter().zip(outs) {
            let t = task_entry(&mut tasks, &episodes[turn.episode]);
            t.steps += 1;
            let want = canonical(want);
            let got = got.ok().and_then(|o| canonical(&o.action));
            let name = want.as_ref().map_or("unparsable", |w| w.name()).to_string();
            let a = actions
                .entry((episodes[turn.episode].task_name.as_str(), name.clone()))
                .or_insert_with(|| ActionStepAccuracy { action: name, ..Default::default() });
            a.steps += 1;
            if let Some(w) = &want {
                if let Some(b) = w.target_bid() {
                    t.element_steps += 1;
                    t.element += usize::from(got.as_ref().and_then(|g| g.target_bid()) == Some(b));
                }
                t.verb += usize::from(got.as_ref().is_some_and(|g| g.name() == w.name()));
                let exact = got.as_ref().is_some_and(|g| g.to_string() == w.to_string());
                t.exact += usize::from(exact);
                a.exact += usize::from(exact);
            }
        }
        progress(((n + 1) * batch).min(turns.len()), turns.len())?;
    }
    // The policy counts answers per episode: an answer parses unless it is a parse error.
    for (k, c) in policy.take_counts() {
        if let Some(e) = episodes.get(k) {
            task_entry(&mut tasks, e).parses += c.actions.saturating_sub(c.parse_errors);
        }
    }
    let mut pooled = BTreeMap::<String, ActionStepAccuracy>::new();
    for ((task, name), a) in actions {
        let p = pooled.entry(name.clone()).or_insert_with(|| ActionStepAccuracy { action: name, ..Default::default() });
        p.steps += a.steps;
        p.exact += a.exact;
        if let Some(t) = tasks.get_mut(task) {
            t.per_action.push(a);
        }
    }
    let per_task: Vec<TaskStepAccuracy> = tasks
        .into_values()
        .map(|t| TaskStepAccuracy {
            exact_rate: ratio(t.exact, t.steps),
            verb_rate: ratio(t.verb, t.steps),
            element_rate: ratio(t.element, t.element_steps),
            ..t
        })
        .collect();
    let sum = |f: fn(&TaskStepAccuracy) -> usize| per_task.iter().map(f).sum::<usize>();
    let (steps, element_steps) = (sum(|t| t.steps), sum(|t| t.element_steps));
    Ok(StepAccuracy {
        steps,
        exact: ratio(sum(|t| t.exact), steps),
        verb: ratio(sum(|t| t.verb), steps),
        element: ratio(sum(|t| t.element), element_steps),
        element_steps,
        parses: ratio(sum(|t| t.parses), steps),
        per_task,
        per_action: pooled.into_values().collect(),
    })
}

/// The entry of `e`'s task, made on first use.
fn task_entry<'a, 'e>(tasks: &'a mut BTreeMap<&'e str, TaskStepAccuracy>, e: &'e Episode) -> &'a mut TaskStepAccuracy {
    tasks.entry(&e.task_name).or_insert_with(|| TaskStepAccuracy { task: e.task_name.clone(), category: e.category.clone(), ..Default::default() })
}

/// The MiniArena instances a traces file names: each distinct (task, seed, page size), in order
/// of first appearance (episodes without `page_size` are of full pages). Every task must be a
/// MiniArena template.
pub fn instances_of(episodes: &[Episode]) -> anyhow::Result<Vec<(&'static str, u64, PageSize)>> {
    let mut out: Vec<(&'static str, u64, PageSize)> = Vec::new();
    for e in episodes {
        let t = agentmerge_miniarena::template(&e.task_name).with_context(|| format!("the traces name task `{}`, which MiniArena cannot play", e.task_name))?;
        let job = (t.name, e.seed, PageSize::of_episode(e)?);
        if !out.contains(&job) {
            out.push(job);
        }
    }
    Ok(out)
}

/// The training step of a checkpoint: `global_step` of its trainer_state.json (`None` for a
/// model without one, e.g. a fresh or merged model).
pub fn checkpoint_step(dir: &Path) -> anyhow::Result<Option<u64>> {
    let path = dir.join("trainer_state.json");
    if !path.exists() {
        return Ok(None);
    }
    let state: Json = serde_json::from_str(&std::fs::read_to_string(&path)?).with_context(|| format!("{}: not valid JSON", path.display()))?;
    Ok(state["global_step"].as_u64())
}

/// A model directory with its training step (`None`: no trainer_state.json).
pub type StepModel = (Option<u64>, std::path::PathBuf);

/// Models ordered for a table of rows: those without a step first (in input order), then the
/// checkpoints by step (input order among equal steps).
pub fn by_step(dirs: &[std::path::PathBuf]) -> anyhow::Result<Vec<StepModel>> {
    let mut rows: Vec<StepModel> = dirs.iter().map(|d| Ok((checkpoint_step(d)?, d.clone()))).collect::<anyhow::Result<_>>()?;
    rows.sort_by_key(|(s, _)| *s);
    Ok(rows)
}
