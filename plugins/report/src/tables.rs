//! The report as text: `report.md` (Table 1, the λ choice, step accuracy, likelihood,
//! forgetting), `table1.csv` and `report.json`. Non-finite numbers are written as `—` in
//! markdown, an empty field in CSV and `null` in JSON.

use std::fmt::Write as _;

use serde_json::{json, Map, Value as Json};

use crate::config::{Method, Split};
use crate::labels::{show, Label};
use crate::metrics::{self, Score, StepScore};
use crate::report::{Key, Point, Report, Series};

/// Table 1's method columns, in the paper's order.
const TABLE1: [Method; 3] = [Method::InstructFt, Method::Soup, Method::AgentMerge];

/// A number with three decimals, `—` when not finite or absent.
pub fn fixed(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{x:.3}"),
        _ => "—".into(),
    }
}

/// `rate ± std_err`, `—` when there are no episodes.
pub fn cell(s: Score) -> String {
    if s.n == 0 {
        return "—".into();
    }
    format!("{} ± {}", fixed(Some(s.rate())), fixed(Some(s.std_err())))
}

/// A JSON number, `null` when not finite.
pub fn num(x: f64) -> Json {
    if x.is_finite() {
        json!(x)
    } else {
        Json::Null
    }
}

fn opt_num(x: Option<f64>) -> Json {
    x.map_or(Json::Null, num)
}

fn label_json(l: Option<&Label>) -> Json {
    l.map_or(Json::Null, |l| json!(l.text))
}

/// The markdown report.
pub fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", r.title);
    let _ = writeln!(md, "{}\n", how_to_read(r));
    table1(r, &mut md);
    lambda_table(r, &mut md);
    step_accuracy_table(r, &mut md);
    per_task_table(r, &mut md);
    likelihood_table(r, &mut md);
    forgetting_table(r, &mut md);
    md.push_str("## Figures\n\n");
    md.push_str("Figure 2: success rate (± std err) and likelihood of held-out expert trajectories over fine-tuning steps.\n\n![Figure 2](figure2.png)\n\n");
    md.push_str("Figure 3: Instruct-FT against AgentMerge (chosen λ) over fine-tuning steps.\n\n![Figure 3](figure3.png)\n\n");
    if !r.notes.is_empty() {
        md.push_str("## Notes\n\n");
        for n in &r.notes {
            let _ = writeln!(md, "- {n}");
        }
        md.push('\n');
    }
    md
}

/// The "how to read" paragraph: which checkpoint, how λ was chosen, what the error is.
fn how_to_read(r: &Report) -> String {
    let episodes = |split: Split| match r.episode_range(split) {
        Some((a, b)) if a == b => format!("{a} {} episodes", split.title()),
        Some((a, b)) => format!("{a}–{b} {} episodes", split.title()),
        None => format!("no {} episodes", split.title()),
    };
    let cross = if r.cross_task.is_empty() { "none listed: every task is inter-task".to_string() } else { r.cross_task.join(", ") };
    let lambda = if r.choices.is_empty() {
        "AgentMerge has no λ sweep here.".to_string()
    } else if r.choices.iter().all(|c| c.validated) {
        "For each learning rate, AgentMerge's λ is the one with the highest success on the validation split (all its tasks pooled, final checkpoint; ties: higher exact step accuracy, then smaller λ); test results never influence the choice.".to_string()
    } else {
        "AgentMerge's λ is chosen on the validation split where there is one; where there is none (see the notes), λ = 1 when swept, else the smallest, NOT validated.".to_string()
    };
    format!(
        "**How to read.** Every cell is the final checkpoint of its run (the last row in step order). \
         Success rates pool the test episodes of the tasks in each split (cross-task: {cross}): \
         rate = successes / n, ± the binomial standard error sqrt(rate (1 − rate) / n). \
         Cells pool {} and {}. Table 2's step accuracy is split by the same rule, pooling the tasks' step counts. {lambda} \
         Learning rates (LR) are the fine-tuning rates, highest first; `—` means no result.",
        episodes(Split::Inter),
        episodes(Split::Cross),
    )
}

fn table1(r: &Report, md: &mut String) {
    let methods: Vec<Method> = TABLE1.into_iter().filter(|m| r.test.iter().any(|s| s.key.method == *m && (*m != Method::Soup || s.key.lr.is_some()))).collect();
    let lrs = r.table_lrs();
    md.push_str("## Table 1: test success rate (final checkpoint)\n\n");
    if !methods.is_empty() {
        for split in [Split::Inter, Split::Cross] {
            let what = match split {
                Split::Inter => "held-out instances of the training tasks".to_string(),
                Split::Cross if r.cross_task.is_empty() => "no cross-task tasks configured".to_string(),
                Split::Cross => format!("held-out tasks: {}", r.cross_task.join(", ")),
            };
            let _ = writeln!(md, "### {} ({what})\n", capitalise(split.title()));
            let header: Vec<String> =
                methods.iter().map(|m| if *m == Method::AgentMerge && !r.choices.is_empty() { "AgentMerge (λ*)".into() } else { m.title().into() }).collect();
            let _ = writeln!(md, "| LR | {} |", header.join(" | "));
            let _ = writeln!(md, "|---:|{}", "---|".repeat(methods.len()));
            for lr in &lrs {
                let cells: Vec<String> = methods
                    .iter()
                    .map(|m| match r.pick(*m, lr.as_ref()) {
                        None => "—".into(),
                        Some(s) => match (m, r.lambda_at(lr.as_ref())) {
                            (Method::AgentMerge, Some(l)) => format!("{} (λ = {l})", cell(s.last().split(split))),
                            _ => cell(s.last().split(split)),
                        },
                    })
                    .collect();
                let _ = writeln!(md, "| {} | {} |", show(lr.as_ref()), cells.join(" | "));
            }
            md.push('\n');
        }
    }
    let context = r.context();
    if !context.is_empty() {
        md.push_str("### Reference models\n\n| Model | LR | Inter-task | Cross-task | Step |\n|---|---:|---|---|---:|\n");
        for s in context {
            let p = s.last();
            let _ = writeln!(md, "| {} | {} | {} | {} | {} |", s.key.method.title(), show(s.key.lr.as_ref()), cell(p.inter), cell(p.cross), p.step);
        }
        md.push('\n');
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn lambda_table(r: &Report, md: &mut String) {
    if r.choices.is_empty() {
        return;
    }
    md.push_str("## Choice of λ for AgentMerge (validation split)\n\n");
    md.push_str("| LR | λ | validation success | validation exact | validation node | chosen |\n|---:|---:|---|---:|---|---|\n");
    for c in &r.choices {
        for (i, (cand, node)) in c.candidates.iter().enumerate() {
            let val = r.validation.iter().find(|v| Some(&v.key.node) == node.as_ref());
            let success = val.map_or("—".into(), |v| cell(v.last().all));
            let chosen = match (i == c.chosen, c.validated) {
                (true, true) => "**yes**",
                (true, false) => "**yes** (not validated)",
                _ => "",
            };
            let _ = writeln!(
                md,
                "| {} | {} | {success} | {} | {} | {chosen} |",
                show(c.lr.as_ref()),
                cand.lambda,
                fixed(cand.exact),
                node.as_deref().unwrap_or("—")
            );
        }
    }
    md.push('\n');
}

fn step_accuracy_table(r: &Report, md: &mut String) {
    let rows: Vec<&Series> = r.shown().into_iter().filter(|s| s.last().exact.is_some()).collect();
    if rows.is_empty() {
        return;
    }
    md.push_str("## Table 2: teacher-forced step accuracy (final checkpoint)\n\n");
    md.push_str("The model sees each expert step's observation and history and must produce the expert's action: exact (whole action), verb (action name) and element (target element, among the steps whose expert action targets one). At small scale success is often 0 and this is the informative figure. ");
    md.push_str("The first columns pool every scored step; inter-task and cross-task pool the steps of the tasks in each split (Table 1's rule) by summing the per-task counts: rate = right / steps. `—` in a split: the evaluation recorded no per-task counts, or the split has no steps.\n\n");
    md.push_str("| Model | LR | λ | exact | verb | element | steps | inter-task exact / verb / element | inter steps | cross-task exact / verb / element | cross steps |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in rows {
        let p = s.last();
        let steps = p.scored_steps.map_or("—".into(), |n| n.to_string());
        let split = |split| {
            let a = p.steps(split);
            (accuracy_cell(a), a.map_or("—".into(), |a| a.steps.to_string()))
        };
        let ((inter, inter_steps), (cross, cross_steps)) = (split(Split::Inter), split(Split::Cross));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {steps} | {inter} | {inter_steps} | {cross} | {cross_steps} |",
            s.key.method.title(),
            show(s.key.lr.as_ref()),
            show(s.key.lambda.as_ref()),
            fixed(p.exact),
            fixed(p.verb),
            fixed(p.element)
        );
    }
    md.push('\n');
}

/// Table 3: each task's test success for every shown model (final checkpoint), seen tasks
/// first, so a pooled rate can be traced to the tasks it comes from.
fn per_task_table(r: &Report, md: &mut String) {
    let models = r.shown();
    let mut tasks: Vec<(&str, bool)> = Vec::new();
    for t in models.iter().flat_map(|s| &s.last().tasks) {
        if !tasks.iter().any(|(name, _)| *name == t.task) {
            tasks.push((&t.task, metrics::is_cross(&t.task, &t.category, &r.cross_task)));
        }
    }
    if tasks.is_empty() {
        return;
    }
    tasks.sort_by_key(|(_, cross)| *cross);
    md.push_str("## Table 3: test success per task (final checkpoint)\n\n");
    md.push_str("Successes / episodes of each task, for the models of Tables 1 and 2; Table 1 pools these counts per split.\n\n");
    let header: Vec<String> = models.iter().map(|s| model_label(&s.key)).collect();
    let _ = writeln!(md, "| Task | split | {} |", header.join(" | "));
    let _ = writeln!(md, "|---|---|{}", "---:|".repeat(models.len()));
    for (task, cross) in tasks {
        let cells: Vec<String> = models
            .iter()
            .map(|s| match s.last().tasks.iter().find(|t| t.task == task) {
                Some(t) => format!("{}/{}", t.score.successes, t.score.n),
                None => "—".into(),
            })
            .collect();
        let split = if cross { Split::Cross } else { Split::Inter };
        let _ = writeln!(md, "| {task} | {} | {} |", split.title(), cells.join(" | "));
    }
    md.push('\n');
}

/// A model's column title: its method, with its learning rate and λ when it has them.
fn model_label(k: &Key) -> String {
    let labels: Vec<String> = [k.lr.as_ref().map(|l| l.text.clone()), k.lambda.as_ref().map(|l| format!("λ = {}", l.text))].into_iter().flatten().collect();
    if labels.is_empty() {
        k.method.title().to_string()
    } else {
        format!("{} ({})", k.method.title(), labels.join(", "))
    }
}

/// `exact / verb / element` of one split, `—` when it has no steps or no counts.
fn accuracy_cell(a: Option<StepScore>) -> String {
    match a {
        Some(a) if a.steps > 0 => format!("{} / {} / {}", fixed(Some(a.exact_rate())), fixed(Some(a.verb_rate())), fixed(Some(a.element_rate()))),
        _ => "—".into(),
    }
}

fn likelihood_table(r: &Report, md: &mut String) {
    let rows = r.likelihood_rows();
    if rows.is_empty() {
        return;
    }
    md.push_str("## Likelihood of held-out expert trajectories (final checkpoint)\n\nMean log-likelihood per response token (nats; higher is better).\n\n");
    md.push_str("| Model | LR | λ | inter-task | cross-task |\n|---|---:|---:|---:|---:|\n");
    for (m, lr) in rows {
        let last = |split| r.logp(m, split, lr.as_ref()).and_then(|s| s.rows.last()).and_then(|row| row.mean_logprob);
        let lambda = r.logp(m, Split::Inter, lr.as_ref()).or(r.logp(m, Split::Cross, lr.as_ref())).and_then(|s| s.key.lambda.as_ref());
        let _ = writeln!(md, "| {} | {} | {} | {} | {} |", m.title(), show(lr.as_ref()), show(lambda), fixed(last(Split::Inter)), fixed(last(Split::Cross)));
    }
    md.push('\n');
}

fn forgetting_table(r: &Report, md: &mut String) {
    if r.forgetting.is_empty() {
        return;
    }
    md.push_str("## Forgetting (nats/token)\n\nThe drop in mean log-likelihood of held-out data from before to after (positive = forgotten).\n\n");
    md.push_str("| Model | LR | λ | before | after | forgetting |\n|---|---:|---:|---:|---:|---:|\n");
    let mut rows: Vec<_> = r.forgetting.iter().filter(|f| r.forgetting_of(f.key.method, f.key.lr.as_ref()).is_some_and(|g| g.key == f.key)).collect();
    rows.sort_by(|a, b| a.key.method.cmp(&b.key.method).then(crate::report::descending(&a.key.lr, &b.key.lr)));
    for f in rows {
        let v = &f.value;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            f.key.method.title(),
            show(f.key.lr.as_ref()),
            show(f.key.lambda.as_ref()),
            fixed(v.before),
            fixed(v.after),
            fixed(v.forgetting)
        );
    }
    md.push('\n');
}

/// One line of `table1.csv` / `report.json`'s `table1`: a shown series' final checkpoint on
/// one split.
fn table1_records(r: &Report) -> Vec<Map<String, Json>> {
    let mut out = Vec::new();
    for s in r.shown() {
        let p = s.last();
        for split in [Split::Inter, Split::Cross] {
            let mut m = key_json(&s.key);
            m.insert("split".into(), json!(split.key()));
            m.insert("step".into(), json!(p.step));
            m.insert("checkpoint".into(), json!(p.checkpoint));
            m.extend(score_fields(p.split(split)));
            m.insert("exact".into(), opt_num(p.exact));
            m.insert("verb".into(), opt_num(p.verb));
            m.insert("element".into(), opt_num(p.element));
            let a = p.steps(split);
            m.insert("split_steps".into(), json!(a.map(|a| a.steps)));
            m.insert("split_exact".into(), opt_num(a.map(|a| a.exact_rate())));
            m.insert("split_verb".into(), opt_num(a.map(|a| a.verb_rate())));
            m.insert("split_element".into(), opt_num(a.map(|a| a.element_rate())));
            m.insert("split_element_steps".into(), json!(a.map(|a| a.element_steps)));
            out.push(m);
        }
    }
    out
}

const CSV_COLUMNS: [&str; 19] = [
    "method",
    "lr",
    "lambda",
    "split",
    "step",
    "checkpoint",
    "n",
    "successes",
    "rate",
    "std_err",
    "exact",
    "verb",
    "element",
    "split_steps",
    "split_exact",
    "split_verb",
    "split_element",
    "split_element_steps",
    "node",
];

/// `table1.csv`: every number of Table 1, its reference rows and Table 2, one line per model and
/// split. `exact`, `verb` and `element` pool every scored step (the same on both lines of a
/// model); the `split_` columns are the line's split (empty without per-task counts).
pub fn csv(r: &Report) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for rec in table1_records(r) {
        let fields: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|c| match rec.get(*c) {
                None | Some(Json::Null) => String::new(),
                Some(Json::String(s)) => csv_field(s),
                Some(v) => v.to_string(),
            })
            .collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// Quotes a field holding a comma, quote or newline.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn key_json(k: &Key) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("method".into(), json!(k.method.key()));
    m.insert("lr".into(), label_json(k.lr.as_ref()));
    m.insert("lambda".into(), label_json(k.lambda.as_ref()));
    m.insert("node".into(), json!(k.node));
    m
}

fn score_fields(s: Score) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("n".into(), json!(s.n));
    m.insert("successes".into(), json!(s.successes));
    m.insert("rate".into(), num(s.rate()));
    m.insert("std_err".into(), num(s.std_err()));
    m
}

fn point_json(p: &Point) -> Json {
    json!({
        "step": p.step,
        "checkpoint": p.checkpoint,
        "inter": score_fields(p.inter),
        "cross": score_fields(p.cross),
        "all": score_fields(p.all),
        "exact": opt_num(p.exact),
        "verb": opt_num(p.verb),
        "element": opt_num(p.element),
        "scored_steps": p.scored_steps,
        "split_accuracy": {"inter": p.steps_inter.map(step_score_json), "cross": p.steps_cross.map(step_score_json)},
        "per_task": p.tasks.iter().map(|t| {
            let mut o = score_fields(t.score);
            o.insert("task".into(), json!(t.task));
            o.insert("category".into(), json!(t.category));
            Json::Object(o)
        }).collect::<Vec<_>>(),
    })
}

/// Step-accuracy counts with their rates (`null` over no steps).
fn step_score_json(a: StepScore) -> Json {
    json!({
        "steps": a.steps,
        "exact": a.exact,
        "verb": a.verb,
        "element": a.element,
        "element_steps": a.element_steps,
        "exact_rate": num(a.exact_rate()),
        "verb_rate": num(a.verb_rate()),
        "element_rate": num(a.element_rate()),
    })
}

fn series_json(s: &Series, chosen: bool) -> Json {
    let mut m = key_json(&s.key);
    if s.key.method == Method::AgentMerge {
        m.insert("chosen".into(), json!(chosen));
    }
    m.insert("points".into(), Json::Array(s.points.iter().map(point_json).collect()));
    Json::Object(m)
}

/// `report.json`: every number the report uses, and the same as the node's metrics.
pub fn json(r: &Report) -> Map<String, Json> {
    let shown = r.shown();
    let mut m = Map::new();
    m.insert("title".into(), json!(r.title));
    m.insert("cross_task".into(), json!(r.cross_task));
    m.insert(
        "how".into(),
        json!({
            "checkpoint": "every table cell is the final checkpoint: the last row in step order",
            "std_err": "binomial: sqrt(rate (1 - rate) / n) over the pooled episodes of the split",
            "step_accuracy": "exact, verb, element pool every scored step; split_accuracy (and table1's split_ fields) pool the per-task step counts of each split's tasks, null when the evaluation recorded none",
            "lambda": "per learning rate, the highest validation success (all validation tasks pooled, final checkpoint); ties: higher exact step accuracy, then smaller lambda; without validation: lambda = 1 if swept, else the smallest",
        }),
    );
    m.insert("table1".into(), Json::Array(table1_records(r).into_iter().map(Json::Object).collect()));
    let choices = r
        .choices
        .iter()
        .map(|c| {
            json!({
                "lr": label_json(c.lr.as_ref()),
                "lambda": c.lambda().text,
                "validated": c.validated,
                "candidates": c.candidates.iter().map(|(cand, node)| json!({
                    "lambda": cand.lambda.text, "validation_node": node, "rate": opt_num(cand.rate), "exact": opt_num(cand.exact),
                })).collect::<Vec<_>>(),
            })
        })
        .collect::<Vec<_>>();
    m.insert("lambda_choice".into(), Json::Array(choices));
    m.insert("series".into(), Json::Array(r.test.iter().map(|s| series_json(s, shown.iter().any(|t| std::ptr::eq(*t, s)))).collect()));
    m.insert("validation".into(), Json::Array(r.validation.iter().map(|s| series_json(s, false)).collect()));
    let likelihood = r
        .likelihood
        .iter()
        .map(|s| {
            let mut o = key_json(&s.key);
            o.insert("split".into(), json!(s.split.key()));
            let rows = s
                .rows
                .iter()
                .map(|row| json!({"step": row.step, "checkpoint": row.checkpoint, "mean_logprob": opt_num(row.mean_logprob), "tokens": row.tokens}));
            o.insert("rows".into(), Json::Array(rows.collect()));
            Json::Object(o)
        })
        .collect();
    m.insert("likelihood".into(), Json::Array(likelihood));
    let forgetting = r
        .forgetting
        .iter()
        .map(|f| {
            let mut o = key_json(&f.key);
            o.insert("forgetting".into(), opt_num(f.value.forgetting));
            o.insert("before".into(), opt_num(f.value.before));
            o.insert("after".into(), opt_num(f.value.after));
            Json::Object(o)
        })
        .collect();
    m.insert("forgetting".into(), Json::Array(forgetting));
    m.insert("notes".into(), json!(r.notes));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_numbers() {
        assert_eq!(cell(Score { n: 80, successes: 22 }), "0.275 ± 0.050");
        assert_eq!(cell(Score { n: 0, successes: 0 }), "—");
        assert_eq!(fixed(Some(f64::NAN)), "—");
        assert_eq!(fixed(None), "—");
        assert_eq!(fixed(Some(-1.25)), "-1.250");
        assert_eq!(num(f64::INFINITY), Json::Null);
        assert_eq!(num(f64::NAN), Json::Null);
        assert_eq!(num(0.5), json!(0.5));
        assert_eq!(csv_field("ev[a=1,b=2]"), "\"ev[a=1,b=2]\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
