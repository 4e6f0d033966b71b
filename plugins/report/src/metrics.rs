//! Reading the metrics the report is built from (`cpu/evaluate`, `cpu/likelihood`,
//! `cpu/forgetting`) into plain rows, and pooling per-task success counts and step-accuracy
//! counts into the inter-task and cross-task splits.

use std::ops::Add;

use anyhow::{anyhow, bail, Context as _};
use serde_json::{Map, Value as Json};

/// A pooled success rate: `successes` of `n` episodes, `rate = successes / n` and the binomial
/// standard error `sqrt(rate (1 − rate) / n)` (the evaluator's own formula). Both are NaN when
/// `n` is 0 (written as `—` in tables and `null` in JSON).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Score {
    pub n: u64,
    pub successes: u64,
}

impl Score {
    pub fn rate(&self) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        self.successes as f64 / self.n as f64
    }

    pub fn std_err(&self) -> f64 {
        let p = self.rate();
        (p * (1.0 - p) / self.n as f64).sqrt()
    }
}

impl Add for Score {
    type Output = Score;
    fn add(self, other: Score) -> Score {
        Score { n: self.n + other.n, successes: self.successes + other.successes }
    }
}

/// One task's counts in an evaluate row: its episodes ([`TaskCount`]) or its scored steps
/// ([`TaskSteps`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PerTask<S> {
    pub task: String,
    pub category: String,
    pub score: S,
}

/// One task's episodes in an evaluate row.
pub type TaskCount = PerTask<Score>;

/// One task's scored steps in an evaluate row (`step_accuracy.per_task`).
pub type TaskSteps = PerTask<StepScore>;

/// Which split a task belongs to: cross-task when its category or its task name is listed in
/// `cross_task`, inter-task otherwise.
pub fn is_cross(task: &str, category: &str, cross_task: &[String]) -> bool {
    cross_task.iter().any(|c| c == category || c == task)
}

/// Pools the tasks of one split (`cross = true`: the cross-task split) by summing their counts
/// (for success: n = Σ n and successes = Σ successes).
pub fn pool<S: Copy + Default + Add<Output = S>>(tasks: &[PerTask<S>], cross_task: &[String], cross: bool) -> S {
    tasks.iter().filter(|t| is_cross(&t.task, &t.category, cross_task) == cross).fold(S::default(), |acc, t| acc + t.score)
}

/// Teacher-forced step accuracy as counts (one task's, or tasks pooled): of `steps` expert
/// steps, `exact` right whole actions and `verb` right action names; of the `element_steps`
/// steps whose expert action targets an element, `element` right targets. A rate over no steps
/// is NaN.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepScore {
    pub steps: u64,
    pub exact: u64,
    pub verb: u64,
    pub element: u64,
    pub element_steps: u64,
}

impl StepScore {
    pub fn exact_rate(&self) -> f64 {
        ratio(self.exact, self.steps)
    }

    pub fn verb_rate(&self) -> f64 {
        ratio(self.verb, self.steps)
    }

    pub fn element_rate(&self) -> f64 {
        ratio(self.element, self.element_steps)
    }
}

impl Add for StepScore {
    type Output = StepScore;
    fn add(self, o: StepScore) -> StepScore {
        StepScore {
            steps: self.steps + o.steps,
            exact: self.exact + o.exact,
            verb: self.verb + o.verb,
            element: self.element + o.element,
            element_steps: self.element_steps + o.element_steps,
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// Pools every task.
pub fn pool_all(tasks: &[TaskCount]) -> Score {
    tasks.iter().fold(Score::default(), |acc, t| acc + t.score)
}

/// One evaluated model (one checkpoint of a list).
#[derive(Clone, Debug, PartialEq)]
pub struct EvalRow {
    /// The training step (0 for a model without a trainer state).
    pub step: u64,
    pub checkpoint: Option<String>,
    pub tasks: Vec<TaskCount>,
    /// Teacher-forced step accuracy (`step_accuracy`), when the evaluation had expert traces.
    pub exact: Option<f64>,
    pub verb: Option<f64>,
    pub element: Option<f64>,
    pub scored_steps: Option<u64>,
    /// The same per task, as counts; `None` when the metrics have none (written before the
    /// evaluator counted per task).
    pub step_tasks: Option<Vec<TaskSteps>>,
}

/// One model's likelihood of held-out expert trajectories.
#[derive(Clone, Debug, PartialEq)]
pub struct LogpRow {
    pub step: u64,
    pub checkpoint: Option<String>,
    /// Mean log-likelihood per token (nats); `None` when the metrics held none (NaN).
    pub mean_logprob: Option<f64>,
    pub tokens: Option<u64>,
}

/// Forgetting: the held-out mean log-likelihood before and after, and the drop.
#[derive(Clone, Debug, PartialEq)]
pub struct Forgetting {
    pub forgetting: Option<f64>,
    pub before: Option<f64>,
    pub after: Option<f64>,
}

/// The body of one result, by the node kind that wrote it.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// `evaluate`: rows in step order (one row when the metrics has no `rows`).
    Evaluate(Vec<EvalRow>),
    /// `likelihood`: rows in step order.
    Likelihood(Vec<LogpRow>),
    Forgetting(Forgetting),
}

impl Body {
    /// What wrote it, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Evaluate(_) => "evaluate",
            Body::Likelihood(_) => "likelihood",
            Body::Forgetting(_) => "forgetting",
        }
    }

    /// Tells the kinds apart: `forgetting` → forgetting, `overall`/`per_task` → evaluate,
    /// `mean_logprob` → likelihood. `what` names the result in errors.
    pub fn parse(m: &Map<String, Json>, what: &str) -> anyhow::Result<Body> {
        if m.contains_key("forgetting") {
            let logp = |side: &str| m.get(side).and_then(|s| s.get("mean_logprob")).and_then(Json::as_f64);
            return Ok(Body::Forgetting(Forgetting { forgetting: m.get("forgetting").and_then(Json::as_f64), before: logp("before"), after: logp("after") }));
        }
        let rows = rows_of(m, what)?;
        if m.contains_key("overall") || m.contains_key("per_task") {
            let rows = rows.iter().enumerate().map(|(i, r)| eval_row(r, &format!("{what}, row {i}"))).collect::<anyhow::Result<_>>()?;
            return Ok(Body::Evaluate(rows));
        }
        if m.contains_key("mean_logprob") {
            let rows = rows.iter().enumerate().map(|(i, r)| logp_row(r, &format!("{what}, row {i}"))).collect::<anyhow::Result<_>>()?;
            return Ok(Body::Likelihood(rows));
        }
        bail!(
            "{what}: neither evaluate metrics (`overall`, `per_task`), likelihood metrics (`mean_logprob`) nor forgetting metrics (`forgetting`); connect the `metrics` output of an evaluate, likelihood or forgetting node"
        )
    }
}

/// The per-model objects: `rows` when present (a checkpoint list), else the metrics itself.
fn rows_of<'a>(m: &'a Map<String, Json>, what: &str) -> anyhow::Result<Vec<&'a Map<String, Json>>> {
    match m.get("rows") {
        None => Ok(vec![m]),
        Some(Json::Array(rows)) if !rows.is_empty() => {
            rows.iter().enumerate().map(|(i, r)| r.as_object().ok_or_else(|| anyhow!("{what}: `rows[{i}]` is not an object"))).collect()
        }
        Some(_) => bail!("{what}: `rows` must be a non-empty list of objects"),
    }
}

/// `step`: an integer; null or absent (a model without a trainer state) counts as 0.
fn step_of(r: &Map<String, Json>, what: &str) -> anyhow::Result<u64> {
    match r.get("step") {
        None | Some(Json::Null) => Ok(0),
        Some(v) => v.as_u64().ok_or_else(|| anyhow!("{what}: `step` must be a non-negative integer or null, got {v}")),
    }
}

fn count(o: &Map<String, Json>, field: &str, what: &str) -> anyhow::Result<u64> {
    let v = o.get(field).ok_or_else(|| anyhow!("{what}: missing `{field}`"))?;
    v.as_u64().ok_or_else(|| anyhow!("{what}: `{field}` must be a non-negative integer, got {v}"))
}

fn eval_row(r: &Map<String, Json>, what: &str) -> anyhow::Result<EvalRow> {
    let tasks = r.get("per_task").and_then(Json::as_array).ok_or_else(|| {
        anyhow!("{what}: no `per_task` list; the report pools per-task counts into the inter- and cross-task splits (is this cpu/evaluate's metrics?)")
    })?;
    let tasks = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let w = format!("{what}, per_task[{i}]");
            let t = t.as_object().ok_or_else(|| anyhow!("{w}: not an object"))?;
            let text = |f: &str| t.get(f).and_then(Json::as_str).map(str::to_string).ok_or_else(|| anyhow!("{w}: missing the string `{f}`"));
            let (n, successes) = (count(t, "n", &w)?, count(t, "successes", &w)?);
            anyhow::ensure!(successes <= n, "{w}: {successes} successes of {n} episodes");
            Ok(TaskCount { task: text("task")?, category: text("category")?, score: Score { n, successes } })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let acc = r.get("step_accuracy").and_then(Json::as_object);
    let acc_f = |f: &str| acc.and_then(|a| a.get(f)).and_then(Json::as_f64);
    let step_tasks = match acc.and_then(|a| a.get("per_task")) {
        None | Some(Json::Null) => None,
        Some(Json::Array(list)) => {
            Some(list.iter().enumerate().map(|(i, t)| task_steps(t, &format!("{what}, step_accuracy.per_task[{i}]"))).collect::<anyhow::Result<_>>()?)
        }
        Some(v) => bail!("{what}: `step_accuracy.per_task` must be a list, got {v}"),
    };
    Ok(EvalRow {
        step: step_of(r, what)?,
        checkpoint: r.get("checkpoint").and_then(Json::as_str).map(str::to_string),
        tasks,
        exact: acc_f("exact"),
        verb: acc_f("verb"),
        element: acc_f("element"),
        scored_steps: acc.and_then(|a| a.get("steps")).and_then(Json::as_u64),
        step_tasks,
    })
}

/// One entry of `step_accuracy.per_task`: the task, its category and its step counts.
fn task_steps(t: &Json, w: &str) -> anyhow::Result<TaskSteps> {
    let t = t.as_object().ok_or_else(|| anyhow!("{w}: not an object"))?;
    let text = |f: &str| t.get(f).and_then(Json::as_str).map(str::to_string).ok_or_else(|| anyhow!("{w}: missing the string `{f}`"));
    let score = StepScore {
        steps: count(t, "steps", w)?,
        exact: count(t, "exact", w)?,
        verb: count(t, "verb", w)?,
        element: count(t, "element", w)?,
        element_steps: count(t, "element_steps", w)?,
    };
    let s = &score;
    anyhow::ensure!(
        s.exact <= s.steps && s.verb <= s.steps && s.element <= s.element_steps && s.element_steps <= s.steps,
        "{w}: inconsistent counts (steps {}, exact {}, verb {}, element {} of {})",
        s.steps,
        s.exact,
        s.verb,
        s.element,
        s.element_steps
    );
    Ok(TaskSteps { task: text("task")?, category: text("category")?, score })
}

fn logp_row(r: &Map<String, Json>, what: &str) -> anyhow::Result<LogpRow> {
    Ok(LogpRow {
        step: step_of(r, what)?,
        checkpoint: r.get("checkpoint").and_then(Json::as_str).map(str::to_string),
        mean_logprob: r.get("mean_logprob").and_then(Json::as_f64),
        tokens: r.get("tokens").and_then(Json::as_u64),
    })
}

/// The `node` string of a result; `index` is its place on the `results` input.
pub fn node_of(result: &Json, index: usize) -> anyhow::Result<&str> {
    result.get("node").and_then(Json::as_str).with_context(|| {
        format!("results[{index}] has no `node` string: the report needs the node instance id each metrics came from (evaluate, likelihood and forgetting write it)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(task: &str, category: &str, n: u64, successes: u64) -> TaskCount {
        TaskCount { task: task.into(), category: category.into(), score: Score { n, successes } }
    }

    #[test]
    fn pooling_sums_counts_and_uses_the_binomial_std_err() {
        let tasks = [task("a.menu.x", "menu", 40, 6), task("a.menu.y", "menu", 20, 3), task("a.dash.z", "dashboard", 30, 12)];
        let cross = vec!["dashboard".to_string()];
        let inter = pool(&tasks, &cross, false);
        assert_eq!((inter.n, inter.successes), (60, 9));
        assert!((inter.rate() - 0.15).abs() < 1e-12);
        assert!((inter.std_err() - (0.15f64 * 0.85 / 60.0).sqrt()).abs() < 1e-12);
        let c = pool(&tasks, &cross, true);
        assert_eq!((c.n, c.successes), (30, 12));
        // A task name works as well as a category.
        assert_eq!(pool(&tasks, &["a.menu.y".to_string()], true).n, 20);
        // No cross-task list: everything is inter-task.
        assert_eq!(pool(&tasks, &[], false).n, 90);
        assert_eq!(pool(&tasks, &[], true).n, 0);
        assert!(pool(&tasks, &[], true).rate().is_nan());
        assert_eq!(pool_all(&tasks), Score { n: 90, successes: 21 });
    }

    #[test]
    fn evaluate_with_and_without_rows() {
        let one = json!({"node": "ev", "overall": {"n": 5}, "per_task": [{"task": "t", "category": "c", "n": 5, "successes": 2}]});
        let Body::Evaluate(rows) = Body::parse(one.as_object().unwrap(), "r").unwrap() else { panic!() };
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].step, rows[0].exact), (0, None));
        let list = json!({"node": "ev", "overall": {}, "per_task": [], "rows": [
            {"step": null, "per_task": [{"task": "t", "category": "c", "n": 5, "successes": 1}]},
            {"step": 300, "per_task": [{"task": "t", "category": "c", "n": 5, "successes": 4}], "step_accuracy": {"exact": 0.5, "element": 0.75, "steps": 12}}]});
        let Body::Evaluate(rows) = Body::parse(list.as_object().unwrap(), "r").unwrap() else { panic!() };
        assert_eq!(rows.iter().map(|r| r.step).collect::<Vec<_>>(), [0, 300]);
        assert_eq!((rows[1].exact, rows[1].element, rows[1].scored_steps), (Some(0.5), Some(0.75), Some(12)));
    }

    #[test]
    fn step_accuracy_per_task_pools_into_the_splits() {
        let m = json!({"node": "ev", "overall": {}, "per_task": [], "step_accuracy": {"steps": 23, "exact": 0.5, "per_task": [
            {"task": "a.dash.z", "category": "dashboard", "steps": 7, "exact": 2, "verb": 5, "element": 1, "element_steps": 3, "exact_rate": 0.2857},
            {"task": "a.menu.x", "category": "menu", "steps": 10, "exact": 6, "verb": 9, "element": 4, "element_steps": 8},
            {"task": "a.menu.y", "category": "menu", "steps": 6, "exact": 1, "verb": 2, "element": 0, "element_steps": 0}]}});
        let Body::Evaluate(rows) = Body::parse(m.as_object().unwrap(), "r").unwrap() else { panic!() };
        let tasks = rows[0].step_tasks.as_ref().unwrap();
        let cross = vec!["dashboard".to_string()];
        let inter = pool(tasks, &cross, false);
        assert_eq!(inter, StepScore { steps: 16, exact: 7, verb: 11, element: 4, element_steps: 8 });
        assert_eq!((inter.exact_rate(), inter.verb_rate(), inter.element_rate()), (7.0 / 16.0, 11.0 / 16.0, 0.5));
        assert_eq!(pool(tasks, &cross, true), StepScore { steps: 7, exact: 2, verb: 5, element: 1, element_steps: 3 });
        // By task name, as for success counts; a split without steps has NaN rates.
        assert_eq!(pool(tasks, &["a.menu.y".to_string()], true).steps, 6);
        let none = pool(tasks, &[], true);
        assert!(none.steps == 0 && none.exact_rate().is_nan() && none.element_rate().is_nan());
        // Older metrics: no per_task, no split.
        let old = json!({"overall": {}, "per_task": [], "step_accuracy": {"steps": 12, "exact": 0.5}});
        let Body::Evaluate(rows) = Body::parse(old.as_object().unwrap(), "r").unwrap() else { panic!() };
        assert_eq!((rows[0].exact, rows[0].step_tasks.as_ref()), (Some(0.5), None));
        // Bad entries are errors naming the place.
        for (bad, words) in [
            (json!("x"), "`step_accuracy.per_task` must be a list"),
            (json!([{"task": "t", "category": "c", "steps": 2, "exact": 3, "verb": 0, "element": 0, "element_steps": 0}]), "per_task[0]: inconsistent counts"),
            (json!([{"task": "t", "category": "c", "steps": 2, "exact": 1, "verb": 1, "element": 0}]), "missing `element_steps`"),
            (json!([{"task": "t", "steps": 2, "exact": 1, "verb": 1, "element": 0, "element_steps": 1}]), "missing the string `category`"),
        ] {
            let m = json!({"overall": {}, "per_task": [], "step_accuracy": {"steps": 2, "per_task": bad}});
            let e = Body::parse(m.as_object().unwrap(), "results[3]").unwrap_err().to_string();
            assert!(e.contains("results[3], row 0") && e.contains(words), "{e}");
        }
    }

    #[test]
    fn bad_shapes_are_errors_naming_the_place() {
        let e = Body::parse(json!({"overall": {}, "per_task": [{"task": "t", "category": "c", "n": 2, "successes": 3}]}).as_object().unwrap(), "results[1]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("results[1], row 0, per_task[0]") && e.contains("3 successes of 2"), "{e}");
        let e = Body::parse(json!({"loss": 1}).as_object().unwrap(), "results[2]").unwrap_err().to_string();
        assert!(e.contains("results[2]") && e.contains("evaluate"), "{e}");
        let e = Body::parse(json!({"overall": {}, "rows": [{"step": -1, "per_task": []}]}).as_object().unwrap(), "x").unwrap_err().to_string();
        assert!(e.contains("`step`"), "{e}");
        assert!(node_of(&json!({"overall": {}}), 4).unwrap_err().to_string().contains("results[4]"));
    }

    #[test]
    fn likelihood_and_forgetting() {
        let l = json!({"mean_logprob": -1.5, "tokens": 10, "rows": [{"step": 100, "mean_logprob": -2.25}, {"step": 200, "mean_logprob": null}]});
        let Body::Likelihood(rows) = Body::parse(l.as_object().unwrap(), "r").unwrap() else { panic!() };
        assert_eq!(rows[0].mean_logprob, Some(-2.25));
        assert_eq!(rows[1].mean_logprob, None);
        let f = json!({"forgetting": 0.125, "before": {"mean_logprob": -1.0}, "after": {"mean_logprob": -1.125}});
        assert_eq!(
            Body::parse(f.as_object().unwrap(), "r").unwrap(),
            Body::Forgetting(Forgetting { forgetting: Some(0.125), before: Some(-1.0), after: Some(-1.125) })
        );
    }
}
