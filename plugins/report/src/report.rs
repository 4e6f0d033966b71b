//! The report's numbers: every result sorted into its method, learning rate and λ, each
//! evaluate row pooled into inter-task and cross-task, and λ chosen per learning rate on the
//! validation split. Rendering (tables, figures) reads only this.

use serde_json::Value as Json;

use crate::config::{Method, Paper, Role, Split};
use crate::labels::{Label, NodeId};
use crate::metrics::{self, Body, EvalRow, Forgetting, LogpRow, Score, StepScore, TaskCount};
use crate::select::{self, Candidate};

/// One evaluated model or checkpoint: its success pooled per split and its step accuracy.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub step: u64,
    pub checkpoint: Option<String>,
    pub inter: Score,
    pub cross: Score,
    /// Every task together (what λ is chosen on).
    pub all: Score,
    pub exact: Option<f64>,
    pub verb: Option<f64>,
    pub element: Option<f64>,
    pub scored_steps: Option<u64>,
    /// Step accuracy pooled per split, by the rule of `inter` and `cross`; `None` when the
    /// evaluation has no per-task step counts (older metrics).
    pub steps_inter: Option<StepScore>,
    pub steps_cross: Option<StepScore>,
    /// Success per task, as the evaluation counted it (Table 3).
    pub tasks: Vec<TaskCount>,
}

impl Point {
    pub fn of(row: &EvalRow, cross_task: &[String]) -> Point {
        Point {
            step: row.step,
            checkpoint: row.checkpoint.clone(),
            inter: metrics::pool(&row.tasks, cross_task, false),
            cross: metrics::pool(&row.tasks, cross_task, true),
            all: metrics::pool_all(&row.tasks),
            exact: row.exact,
            verb: row.verb,
            element: row.element,
            scored_steps: row.scored_steps,
            steps_inter: row.step_tasks.as_ref().map(|t| metrics::pool(t, cross_task, false)),
            steps_cross: row.step_tasks.as_ref().map(|t| metrics::pool(t, cross_task, true)),
            tasks: row.tasks.clone(),
        }
    }

    pub fn split(&self, split: Split) -> Score {
        match split {
            Split::Inter => self.inter,
            Split::Cross => self.cross,
        }
    }

    /// The step accuracy of one split (`None`: no per-task step counts).
    pub fn steps(&self, split: Split) -> Option<StepScore> {
        match split {
            Split::Inter => self.steps_inter,
            Split::Cross => self.steps_cross,
        }
    }
}

/// Where a result sits: its node instance, method, learning rate and λ.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub node: String,
    pub method: Method,
    pub lr: Option<Label>,
    pub lambda: Option<Label>,
}

impl Key {
    /// Same learning rate, and the same λ unless one of the two has none.
    pub fn fits(&self, method: Method, lr: Option<&Label>, lambda: Option<&Label>) -> bool {
        self.method == method && self.lr.as_ref() == lr && (self.lambda.is_none() || lambda.is_none() || self.lambda.as_ref() == lambda)
    }
}

/// One evaluate node instance: its checkpoints in step order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub key: Key,
    pub points: Vec<Point>,
}

impl Series {
    /// The final checkpoint: the last row in step order. Every table cell uses it.
    pub fn last(&self) -> &Point {
        self.points.last().expect("a series has at least one point")
    }
}

/// One likelihood node instance on one split.
#[derive(Clone, Debug, PartialEq)]
pub struct LogpSeries {
    pub key: Key,
    pub split: Split,
    pub rows: Vec<LogpRow>,
}

/// One forgetting node instance.
#[derive(Clone, Debug, PartialEq)]
pub struct ForgettingEntry {
    pub key: Key,
    pub value: Forgetting,
}

/// The λ chosen for one learning rate.
#[derive(Clone, Debug)]
pub struct LambdaChoice {
    pub lr: Option<Label>,
    /// Every λ swept at this learning rate, with its validation node (when found).
    pub candidates: Vec<(Candidate, Option<String>)>,
    pub chosen: usize,
    pub validated: bool,
}

impl LambdaChoice {
    pub fn lambda(&self) -> &Label {
        &self.candidates[self.chosen].0.lambda
    }
}

/// Everything the report shows.
#[derive(Clone, Debug)]
pub struct Report {
    pub title: String,
    pub cross_task: Vec<String>,
    /// Test-split evaluations of every configured method.
    pub test: Vec<Series>,
    pub validation: Vec<Series>,
    pub likelihood: Vec<LogpSeries>,
    pub forgetting: Vec<ForgettingEntry>,
    /// AgentMerge's λ per learning rate (empty when AgentMerge has no λ label).
    pub choices: Vec<LambdaChoice>,
    /// Warnings and decisions worth reading next to the tables.
    pub notes: Vec<String>,
}

pub const DEFAULT_TITLE: &str = "AgentMerge: Table 1 and Figures 2–3";

impl Report {
    /// Sorts `results` into the report. A result of an unconfigured node is ignored with a
    /// warning; a configured node without a result, or a result of the wrong kind, is an error.
    pub fn build(cfg: &Paper, results: &[Json]) -> anyhow::Result<Report> {
        let mut report = Report {
            title: cfg.title.clone().unwrap_or_else(|| DEFAULT_TITLE.into()),
            cross_task: cfg.cross_task.clone(),
            test: Vec::new(),
            validation: Vec::new(),
            likelihood: Vec::new(),
            forgetting: Vec::new(),
            choices: Vec::new(),
            notes: Vec::new(),
        };
        let (mut received, mut ignored) = (Vec::<String>::new(), Vec::<String>::new());
        // Every task name and category in the evaluate results, to check `cross_task` against.
        let mut seen = Vec::<String>::new();
        for (i, result) in results.iter().enumerate() {
            let id = NodeId::parse(metrics::node_of(result, i)?);
            if !received.contains(&id.base) {
                received.push(id.base.clone());
            }
            let Some(role) = cfg.role_of(&id.base) else {
                ignored.push(id.full);
                continue;
            };
            let what = format!("results[{i}] (`{}`)", id.full);
            let obj = result.as_object().ok_or_else(|| anyhow::anyhow!("{what} is not a JSON object"))?;
            let body = Body::parse(obj, &what)?;
            if let Body::Evaluate(rows) = &body {
                let success = rows.iter().flat_map(|r| &r.tasks).map(|t| (&t.task, &t.category));
                let steps = rows.iter().flat_map(|r| r.step_tasks.iter().flatten()).map(|t| (&t.task, &t.category));
                for (task, category) in success.chain(steps) {
                    for name in [task, category] {
                        if !seen.contains(name) {
                            seen.push(name.clone());
                        }
                    }
                }
            }
            let label = |name: &str| id.label(name).map(Label::new);
            let key = |method| Key { node: id.full.clone(), method, lr: label(&cfg.lr_label), lambda: label(&cfg.lambda_label) };
            match (role, body) {
                (Role::Test(m), Body::Evaluate(rows)) => report.test.push(series(key(m), &rows, &cfg.cross_task)),
                (Role::Validation, Body::Evaluate(rows)) => report.validation.push(series(key(Method::AgentMerge), &rows, &cfg.cross_task)),
                (Role::Likelihood(m, split), Body::Likelihood(mut rows)) => {
                    rows.sort_by_key(|r| r.step);
                    report.likelihood.push(LogpSeries { key: key(m), split, rows })
                }
                (Role::Forgetting(m), Body::Forgetting(value)) => report.forgetting.push(ForgettingEntry { key: key(m), value }),
                (role, body) => anyhow::bail!(
                    "{what} holds {} metrics, but node `{}` is configured as {} node; check the report's config and wiring",
                    body.kind(),
                    id.base,
                    role.kind()
                ),
            }
        }
        for (field, id, _) in cfg.roles() {
            anyhow::ensure!(
                received.iter().any(|r| r == id),
                "`{field}` names node `{id}`, but no result on `results` comes from it; connect `{id}[*].metrics` to `results` (results received from: {})",
                if received.is_empty() { "none".to_string() } else { received.join(", ") }
            );
        }
        if !ignored.is_empty() {
            tracing::warn!("ignored results from nodes the config does not name: {}", ignored.join(", "));
            report.notes.push(format!("Ignored results from nodes the config does not name: {}.", ignored.join(", ")));
        }
        report.check_duplicates()?;
        report.check_cross_task(&seen);
        report.choose_lambdas();
        Ok(report)
    }

    /// Two results at the same method, learning rate and λ would make a cell ambiguous.
    fn check_duplicates(&self) -> anyhow::Result<()> {
        let keys = self
            .test
            .iter()
            .map(|s| (&s.key, "methods"))
            .chain(self.validation.iter().map(|s| (&s.key, "validation")))
            .chain(self.likelihood.iter().map(|s| (&s.key, if s.split == Split::Inter { "likelihood inter" } else { "likelihood cross" })))
            .chain(self.forgetting.iter().map(|f| (&f.key, "forgetting")))
            .collect::<Vec<_>>();
        for (i, (a, role_a)) in keys.iter().enumerate() {
            if let Some((b, _)) = keys[..i].iter().find(|(b, role_b)| role_a == role_b && b.method == a.method && b.lr == a.lr && b.lambda == a.lambda) {
                anyhow::bail!(
                    "two results for {} ({role_a}) at the same learning rate and λ: `{}` and `{}`; the report tells instances apart by their `lr` and `lambda` labels only (see `lr_label`, `lambda_label`)",
                    a.method.title(),
                    b.node,
                    a.node
                );
            }
        }
        Ok(())
    }

    /// Notes a `cross_task` entry that matches no task or category seen (`seen`), and an
    /// empty list.
    fn check_cross_task(&mut self, seen: &[String]) {
        if self.cross_task.is_empty() {
            self.notes.push("`cross_task` is empty: every task counts as inter-task and the cross-task columns are empty.".into());
            return;
        }
        let unmatched: Vec<String> = self.cross_task.iter().filter(|c| !seen.contains(c)).cloned().collect();
        if !unmatched.is_empty() {
            tracing::warn!("cross_task entries that match no task or category in the results: {}", unmatched.join(", "));
            self.notes.push(format!("`cross_task` entries that match no task or category in the results: {}.", unmatched.join(", ")));
        }
    }

    /// For each learning rate of AgentMerge, the λ chosen on validation ([`select::choose`]).
    fn choose_lambdas(&mut self) {
        let mut lrs: Vec<Option<Label>> = Vec::new();
        for s in self.test.iter().filter(|s| s.key.method == Method::AgentMerge && s.key.lambda.is_some()) {
            if !lrs.contains(&s.key.lr) {
                lrs.push(s.key.lr.clone());
            }
        }
        lrs.sort_by(descending);
        for lr in lrs {
            let mut lambdas: Vec<Label> = Vec::new();
            for s in self.test.iter().filter(|s| s.key.method == Method::AgentMerge && s.key.lr == lr) {
                if let Some(l) = &s.key.lambda {
                    if !lambdas.contains(l) {
                        lambdas.push(l.clone());
                    }
                }
            }
            lambdas.sort_by(Label::order);
            let candidates: Vec<(Candidate, Option<String>)> = lambdas
                .into_iter()
                .map(|lambda| {
                    // A validation node swept over λ only (no learning rate) serves every rate.
                    let val = self.validation.iter().find(|v| v.key.lambda.as_ref() == Some(&lambda) && (v.key.lr.is_none() || v.key.lr == lr));
                    let rate = val.map(|v| v.last().all.rate());
                    let exact = val.and_then(|v| v.last().exact);
                    (Candidate { lambda, rate, exact }, val.map(|v| v.key.node.clone()))
                })
                .collect();
            let plain: Vec<Candidate> = candidates.iter().map(|(c, _)| c.clone()).collect();
            let Some(choice) = select::choose(&plain) else { continue };
            let at = format!("lr = {}", crate::labels::show(lr.as_ref()));
            let lambda = &plain[choice.index].lambda;
            if !choice.validated {
                let why = if self.validation.is_empty() { "no `validation.agentmerge` results" } else { "no validation result for any of its λ" };
                tracing::warn!("AgentMerge at {at}: λ = {lambda} NOT validated ({why})");
                self.notes.push(format!("AgentMerge at {at}: λ = {lambda} was not validated ({why}); it is λ = 1 when swept, else the smallest λ."));
            } else if let Some((c, _)) = candidates.iter().find(|(c, _)| c.rate.is_none()) {
                self.notes.push(format!("AgentMerge at {at}: λ = {} has no validation result and could not be chosen.", c.lambda));
            }
            tracing::info!("AgentMerge at {at}: λ = {lambda}{}", if choice.validated { " (chosen on validation)" } else { "" });
            self.choices.push(LambdaChoice { lr, candidates, chosen: choice.index, validated: choice.validated });
        }
    }

    /// The λ used for AgentMerge at `lr` (`None` when AgentMerge is not swept over λ).
    pub fn lambda_at(&self, lr: Option<&Label>) -> Option<&Label> {
        self.choices.iter().find(|c| c.lr.as_ref() == lr).map(LambdaChoice::lambda)
    }

    /// The λ a method uses at `lr`: AgentMerge's chosen one, none for the others.
    fn lambda_for(&self, method: Method, lr: Option<&Label>) -> Option<&Label> {
        if method == Method::AgentMerge {
            self.lambda_at(lr)
        } else {
            None
        }
    }

    /// The test series of `method` at `lr` (AgentMerge: at the chosen λ).
    pub fn pick(&self, method: Method, lr: Option<&Label>) -> Option<&Series> {
        let lambda = self.lambda_for(method, lr);
        self.test.iter().find(|s| s.key.fits(method, lr, lambda))
    }

    /// The likelihood series of `method` on `split` at `lr` (AgentMerge: at the chosen λ).
    pub fn logp(&self, method: Method, split: Split, lr: Option<&Label>) -> Option<&LogpSeries> {
        let lambda = self.lambda_for(method, lr);
        self.likelihood.iter().find(|s| s.split == split && s.key.fits(method, lr, lambda))
    }

    /// The forgetting of `method` at `lr` (AgentMerge: at the chosen λ).
    pub fn forgetting_of(&self, method: Method, lr: Option<&Label>) -> Option<&ForgettingEntry> {
        let lambda = self.lambda_for(method, lr);
        self.forgetting.iter().find(|f| f.key.fits(method, lr, lambda))
    }

    /// The learning rates of `methods`' test results, highest first (unlabelled last).
    pub fn lrs_of(&self, methods: &[Method]) -> Vec<Option<Label>> {
        let mut lrs: Vec<Option<Label>> = Vec::new();
        for s in self.test.iter().filter(|s| methods.contains(&s.key.method)) {
            if !lrs.contains(&s.key.lr) {
                lrs.push(s.key.lr.clone());
            }
        }
        lrs.sort_by(descending);
        lrs
    }

    /// Table 1's rows: the learning rates of Instruct-FT, the soup and AgentMerge, highest first.
    /// An unlabelled soup is a context row instead, so it does not add a row.
    pub fn table_lrs(&self) -> Vec<Option<Label>> {
        let mut lrs = self.lrs_of(&[Method::InstructFt, Method::AgentMerge]);
        for lr in self.lrs_of(&[Method::Soup]).into_iter().flatten() {
            if !lrs.contains(&Some(lr.clone())) {
                lrs.push(Some(lr));
            }
        }
        lrs.sort_by(descending);
        lrs
    }

    /// The context rows below Table 1: the instruct and agent models, the uniform soup and an
    /// unlabelled soup, in that order.
    pub fn context(&self) -> Vec<&Series> {
        let is_context = |s: &&Series| match s.key.method {
            Method::Instruct | Method::Agent | Method::SoupUniform => true,
            Method::Soup => s.key.lr.is_none(),
            _ => false,
        };
        let mut rows: Vec<&Series> = self.test.iter().filter(is_context).collect();
        rows.sort_by(|a, b| a.key.method.cmp(&b.key.method).then(descending(&a.key.lr, &b.key.lr)));
        rows
    }

    /// The test series the report shows, by method (in [`Method::ALL`] order) and learning
    /// rate (highest first); AgentMerge only at the chosen λ of each learning rate.
    pub fn shown(&self) -> Vec<&Series> {
        let mut rows: Vec<&Series> = self
            .test
            .iter()
            .filter(|s| s.key.method != Method::AgentMerge || s.key.lambda.is_none() || s.key.lambda.as_ref() == self.lambda_at(s.key.lr.as_ref()))
            .collect();
        rows.sort_by(|a, b| a.key.method.cmp(&b.key.method).then(descending(&a.key.lr, &b.key.lr)));
        rows
    }

    /// The (method, learning rate) pairs with likelihood results, as [`Report::shown`] orders them.
    pub fn likelihood_rows(&self) -> Vec<(Method, Option<Label>)> {
        let mut rows: Vec<(Method, Option<Label>)> = Vec::new();
        for s in &self.likelihood {
            let pair = (s.key.method, s.key.lr.clone());
            if !rows.contains(&pair) && self.logp(pair.0, s.split, pair.1.as_ref()).is_some() {
                rows.push(pair);
            }
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0).then(descending(&a.1, &b.1)));
        rows
    }

    /// The number of test episodes behind the table cells, per split: (smallest, largest).
    pub fn episode_range(&self, split: Split) -> Option<(u64, u64)> {
        let ns: Vec<u64> = self.test.iter().map(|s| s.last().split(split).n).filter(|n| *n > 0).collect();
        Some((*ns.iter().min()?, *ns.iter().max()?))
    }
}

/// Highest learning rate first; unlabelled last.
pub fn descending(a: &Option<Label>, b: &Option<Label>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.order(a),
        (a, b) => b.is_some().cmp(&a.is_some()),
    }
}

/// A series from evaluate rows, sorted by step (stable: rows of equal step keep their order).
fn series(key: Key, rows: &[EvalRow], cross_task: &[String]) -> Series {
    let mut points: Vec<Point> = rows.iter().map(|r| Point::of(r, cross_task)).collect();
    points.sort_by_key(|p| p.step);
    Series { key, points }
}
