//! Builds SFT data from episodes: one example per action step (the step's prompt fitted to the
//! context, the expert's `<think>…</think><action>…</action>` as the response), dropping and
//! counting the samples that cannot be trained on, then written as an SFT token file with a
//! readable preview.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use agentmerge_traces::{action::parse_action, Episode, Observation, Step};
use anyhow::{bail, Context as _};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::{
    dataset::{encode_example_with, Example, SftWriter},
    prompt::{fit_prompt, DropReason, PromptOptions, StepPrompt},
    template::ChatTemplate,
    tokenizer::encode,
};

/// How to turn episodes into SFT examples.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// What goes into each step's prompt (AgentLab's prompt flags). With `use_thinking`, a
    /// step that has a chain of thought gets `<think>…</think>` before its action in the
    /// response; without it (or for a step without a thought) the response is the action only
    /// and the prompt does not ask for thinking.
    pub prompt: PromptOptions,
    /// The most tokens in one example: prompt + response + end-of-sequence token (the trained
    /// model's context length). Prompts are cut (AXTree lines from the bottom) to fit.
    pub max_len: usize,
    /// Concatenate consecutive examples into sequences of up to `max_len` tokens (each keeps
    /// its loss mask). Fewer, fuller rows; examples in one row see each other.
    pub pack: bool,
    /// How many examples the readable preview shows.
    pub preview_examples: usize,
}

impl Default for BuildConfig {
    fn default() -> BuildConfig {
        BuildConfig { prompt: PromptOptions::default(), max_len: 2048, pack: false, preview_examples: 20 }
    }
}

/// Why a step gave no example.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleDrop {
    /// The element the expert acted on was cut from the AXTree to fit the context.
    MissingBid,
    /// The prompt does not fit even without AXTree (or the response alone is too long).
    TooLong,
    /// The action is not a BrowserGym action this parser knows.
    UnparsableAction,
}

/// Dropped samples, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedCounts {
    pub missing_bid: usize,
    pub too_long: usize,
    pub unparsable_action: usize,
}

/// What [`build_sft`] produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildReport {
    pub episodes: usize,
    /// Steps with an action (the candidates).
    pub action_steps: usize,
    /// Examples kept.
    pub examples: usize,
    /// Rows in the file: `examples`, or fewer when packed.
    pub sequences: usize,
    pub dropped: DroppedCounts,
    /// Kept examples whose response has a chain of thought.
    pub with_think: usize,
    /// All tokens written.
    pub total_tokens: usize,
    /// Tokens in the loss (responses and their end-of-sequence tokens).
    pub loss_tokens: usize,
    /// Kept examples whose AXTree was cut.
    pub truncated_examples: usize,
    /// Mean AXTree lines deleted per kept example.
    pub mean_deleted_lines: f64,
    /// Kept examples and their tokens per task template.
    pub per_task: BTreeMap<String, TokenCount>,
    /// Kept examples and their tokens per agent (`model_name/agent_name`).
    pub per_agent: BTreeMap<String, TokenCount>,
}

/// Examples and tokens of one group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenCount {
    pub examples: usize,
    pub tokens: usize,
    pub loss_tokens: usize,
}

/// Where a sample comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleId {
    pub task_name: String,
    pub seed: u64,
    /// The episode's agent, `model_name/agent_name`.
    pub agent: String,
    /// The step number in the episode.
    pub step: usize,
}

/// A kept example.
#[derive(Clone, Debug, PartialEq)]
pub struct BuiltExample {
    pub id: SampleId,
    pub example: Example,
    /// The response text (without the end-of-sequence token).
    pub response: String,
    pub deleted_lines: usize,
}

/// A dropped sample.
#[derive(Clone, Debug, PartialEq)]
pub struct DroppedSample {
    pub id: SampleId,
    pub reason: SampleDrop,
    /// AXTree lines that had to be deleted (for `missing_bid`).
    pub deleted_lines: usize,
    /// The parser's message (for `unparsable_action`).
    pub detail: String,
}

/// The training response for a step: AgentLab's `<think>…</think>` then `<action>…</action>`,
/// or the action alone.
pub fn response_text(think: Option<&str>, action: &str) -> String {
    match think {
        Some(t) => format!("<think>{t}</think>\n<action>{action}</action>"),
        None => format!("<action>{action}</action>"),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_string())
}

/// The prompt of `e.steps[i]`: its observation, and the earlier action steps as history
/// (think, action, the error that action caused as reported by the next observation).
pub fn step_prompt(e: &Episode, i: usize) -> StepPrompt {
    history_prompt(&e.goal, &e.steps[i].obs, &e.steps[..i])
}

/// The prompt of observation `obs` after the steps `history` of the same episode (in order;
/// steps without an action are skipped): what [`step_prompt`] builds for a recorded step, and
/// what an agent playing an episode is shown. The error of each history action is the
/// `last_action_error` of the observation after it (`obs` for the last one). `goal` stands in
/// when the observation carries none.
pub fn history_prompt(goal: &str, obs: &Observation, history: &[Step]) -> StepPrompt {
    let history = history
        .iter()
        .enumerate()
        .filter_map(|(j, p)| {
            let action = p.action.clone()?;
            let next = history.get(j + 1).map_or(obs, |n| &n.obs);
            Some((p.think.clone(), action, non_empty(&next.last_action_error)))
        })
        .collect();
    StepPrompt {
        goal: if obs.goal.is_empty() { goal.to_string() } else { obs.goal.clone() },
        url: obs.url.clone(),
        axtree: obs.axtree_txt.clone(),
        focused_element_bid: obs.focused_element_bid.as_deref().and_then(non_empty),
        last_action_error: non_empty(&obs.last_action_error),
        history,
    }
}

/// A step's thought, unless it has none or only whitespace: what the training target puts in
/// `<think>` when the prompt asks for thoughts.
pub fn step_think(s: &Step) -> Option<&str> {
    s.think.as_deref().filter(|t| !t.trim().is_empty())
}

/// Makes the examples of every action step of every episode, in order, and the samples that
/// were dropped (with why).
pub fn build_examples(
    episodes: &[Episode],
    tok: &Tokenizer,
    template: &ChatTemplate,
    cfg: &BuildConfig,
) -> anyhow::Result<(Vec<BuiltExample>, Vec<DroppedSample>)> {
    if cfg.max_len == 0 {
        bail!("SFT build: max_len must be at least 1");
    }
    // Every action step is independent: build them in parallel, keep them in order.
    let steps: Vec<(&Episode, usize)> =
        episodes.iter().flat_map(|e| e.steps.iter().enumerate().filter(|(_, s)| s.action.is_some()).map(move |(i, _)| (e, i))).collect();
    let built = steps
        .par_iter()
        .map(|&(e, i)| -> anyhow::Result<Result<BuiltExample, DroppedSample>> {
            let s = &e.steps[i];
            let action = s.action.as_deref().expect("action steps only");
            // The response and the fitted prompt are counted and then encoded again: remember
            // the last few encodings instead of running the tokenizer twice.
            let recent: RefCell<Vec<(String, Vec<u32>)>> = RefCell::new(Vec::new());
            let encode_recent = |text: &str| -> anyhow::Result<Vec<u32>> {
                if let Some((_, ids)) = recent.borrow().iter().find(|(t, _)| t == text) {
                    return Ok(ids.clone());
                }
                let ids = encode(tok, text)?;
                let mut r = recent.borrow_mut();
                if r.len() == 3 {
                    r.remove(1); // keep the first (the response), replace the older prompts
                }
                r.push((text.to_string(), ids.clone()));
                Ok(ids)
            };
            let count = |text: &str| -> anyhow::Result<usize> { Ok(encode_recent(text)?.len()) };
            let agent = format!("{}/{}", e.agent.model_name, e.agent.agent_name);
            let id = SampleId { task_name: e.task_name.clone(), seed: e.seed, agent, step: s.step };
            let drop = |reason, deleted_lines, detail: String| Err(DroppedSample { id: id.clone(), reason, deleted_lines, detail });
            let target = match parse_action(action) {
                Ok(a) => a.target_bid().map(str::to_string),
                Err(err) => return Ok(drop(SampleDrop::UnparsableAction, 0, err.to_string())),
            };
            let think = step_think(s).filter(|_| cfg.prompt.use_thinking);
            let response = response_text(think, action);
            let response_tokens = count(&format!("{response}{}", template.eos_token))?;
            if response_tokens >= cfg.max_len {
                return Ok(drop(SampleDrop::TooLong, 0, format!("the response alone is {response_tokens} tokens")));
            }
            let opts = PromptOptions { use_thinking: think.is_some(), ..cfg.prompt.clone() };
            let prompt = step_prompt(e, i);
            let fitted = fit_prompt(&prompt, &opts, template, cfg.max_len - response_tokens, target.as_deref(), &count)
                .with_context(|| format!("building the prompt of {} seed {} step {}", e.task_name, e.seed, s.step))?;
            match fitted.dropped {
                Some(DropReason::MissingBid) => return Ok(drop(SampleDrop::MissingBid, fitted.deleted_lines, String::new())),
                Some(DropReason::TooLong) => {
                    return Ok(drop(SampleDrop::TooLong, fitted.deleted_lines, format!("the prompt is {} tokens without AXTree", fitted.tokens)))
                }
                None => {}
            }
            Ok(match encode_example_with(&encode_recent, template, &fitted.messages, &response, cfg.max_len)? {
                Some(example) => Ok(BuiltExample { id, example, response, deleted_lines: fitted.deleted_lines }),
                None => drop(SampleDrop::TooLong, fitted.deleted_lines, "longer than max_len once encoded".into()),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for b in built {
        match b {
            Ok(k) => kept.push(k),
            Err(d) => dropped.push(d),
        }
    }
    Ok((kept, dropped))
}

/// Concatenates consecutive examples into sequences of at most `max_len` tokens, in order,
/// keeping each token's mask.
pub fn pack(examples: &[Example], max_len: usize) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let mut cur = Example { ids: Vec::new(), mask: Vec::new() };
    for ex in examples {
        if !cur.ids.is_empty() && cur.ids.len() + ex.ids.len() > max_len {
            out.push(std::mem::replace(&mut cur, Example { ids: Vec::new(), mask: Vec::new() }));
        }
        cur.ids.extend_from_slice(&ex.ids);
        cur.mask.extend_from_slice(&ex.mask);
    }
    if !cur.ids.is_empty() {
        out.push(cur);
    }
    out
}

/// Writes a readable preview: each example detokenized, the part in the loss between markers.
pub fn write_preview(path: &Path, examples: &[BuiltExample], total: usize, tok: &Tokenizer) -> anyhow::Result<()> {
    let mut s = String::new();
    writeln!(s, "# SFT preview: the first {} of {total} examples.", examples.len())?;
    writeln!(s, "# The prompt is shown as the model sees it; the tokens in the loss (the response and the")?;
    writeln!(s, "# end-of-sequence token) are between `>>>>>> LOSS >>>>>>` and `<<<<<< END LOSS <<<<<<`.\n")?;
    for (n, b) in examples.iter().enumerate() {
        let loss = b.example.mask.iter().filter(|m| **m == 1).count();
        writeln!(
            s,
            "======== example {n}: {} seed {} step {} | {} tokens, {loss} in the loss | {} AXTree lines deleted ========",
            b.id.task_name,
            b.id.seed,
            b.id.step,
            b.example.ids.len(),
            b.deleted_lines
        )?;
        s.push_str(&show_example(&b.example, tok)?);
        s.push_str("\n\n");
    }
    std::fs::write(path, s).with_context(|| format!("cannot write the SFT preview {}", path.display()))
}

/// An example detokenized, the tokens in the loss between `>>>>>> LOSS >>>>>>` and
/// `<<<<<< END LOSS <<<<<<` (runs of equal mask values are decoded separately).
pub fn show_example(ex: &Example, tok: &Tokenizer) -> anyhow::Result<String> {
    let mut s = String::new();
    let mut start = 0;
    while start < ex.ids.len() {
        let m = ex.mask[start];
        let end = (start..ex.ids.len()).find(|&k| ex.mask[k] != m).unwrap_or(ex.ids.len());
        let text = tok.decode(&ex.ids[start..end], false).map_err(|e| anyhow::anyhow!("detokenizing the preview failed: {e}"))?;
        if m == 1 {
            writeln!(s, "\n>>>>>> LOSS >>>>>>\n{text}\n<<<<<< END LOSS <<<<<<")?;
        } else {
            s.push_str(&text);
        }
        start = end;
    }
    Ok(s)
}

/// Builds the SFT token file `out` (see [`crate::dataset`]) from `episodes`, and the preview
/// file `preview` if given. Returns what was kept and dropped.
pub fn build_sft(
    episodes: &[Episode],
    tok: &Tokenizer,
    template: &ChatTemplate,
    cfg: &BuildConfig,
    out: &Path,
    preview: Option<&Path>,
) -> anyhow::Result<BuildReport> {
    let (kept, dropped) = build_examples(episodes, tok, template, cfg)?;
    let mut report = BuildReport { episodes: episodes.len(), action_steps: kept.len() + dropped.len(), examples: kept.len(), ..Default::default() };
    for d in &dropped {
        match d.reason {
            SampleDrop::MissingBid => report.dropped.missing_bid += 1,
            SampleDrop::TooLong => report.dropped.too_long += 1,
            SampleDrop::UnparsableAction => report.dropped.unparsable_action += 1,
        }
    }
    let mut deleted = 0usize;
    for b in &kept {
        let (tokens, loss) = (b.example.ids.len(), b.example.mask.iter().filter(|m| **m == 1).count());
        report.total_tokens += tokens;
        report.loss_tokens += loss;
        for group in [report.per_task.entry(b.id.task_name.clone()).or_default(), report.per_agent.entry(b.id.agent.clone()).or_default()] {
            group.examples += 1;
            group.tokens += tokens;
            group.loss_tokens += loss;
        }
        report.with_think += b.response.starts_with("<think>") as usize;
        report.truncated_examples += (b.deleted_lines > 0) as usize;
        deleted += b.deleted_lines;
    }
    report.mean_deleted_lines = if kept.is_empty() { 0.0 } else { deleted as f64 / kept.len() as f64 };

    let examples: Vec<Example> = kept.iter().map(|b| b.example.clone()).collect();
    let rows = if cfg.pack { pack(&examples, cfg.max_len) } else { examples };
    report.sequences = rows.len();
    let mut w = SftWriter::new(out, tok.get_vocab_size(true) as u64);
    for r in &rows {
        w.push(r)?;
    }
    w.finish()?;
    if let Some(p) = preview {
        write_preview(p, &kept[..kept.len().min(cfg.preview_examples)], kept.len(), tok)?;
    }
    Ok(report)
}

/// The default preview path next to an SFT file: `<out>.preview.txt`.
pub fn preview_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".preview.txt");
    out.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dataset::SftReader, template::Message, tokenizer::train_bpe};
    use agentmerge_traces::{AgentInfo, Observation};

    const LINES: usize = 40;

    fn axtree(n: usize) -> String {
        let mut s = String::from("RootWebArea 'Inventory'");
        for i in 0..n {
            s.push_str(&format!("\n\t[b{i}] button 'Item number {i}'"));
        }
        s
    }

    fn target_of(action: &str) -> Option<usize> {
        let rest = action.split_once("('b")?.1;
        rest.split_once('\'')?.0.parse().ok()
    }

    /// Episodes with a 40-line AXTree; the expert acts on lines spread over the tree, with
    /// and without thoughts, plus actions without a target, an unparsable action, an episode
    /// whose goal alone is too long, and one with a short AXTree that always fits.
    fn episodes() -> Vec<Episode> {
        let plans: [&[(&str, Option<&str>)]; 5] = [
            &[
                ("click('b0')", Some("Start at the top.")),
                ("click('b39')", Some("The last item.")),
                ("fill('b20', 'Printer jam')", None),
                ("send_msg_to_user('done')", Some("Tell the user.")),
            ],
            &[
                ("click('b5')", None),
                ("click('b33')", Some("Scroll target.")),
                ("scroll(0, 300)", Some("Look further down.")),
                ("click('b2')", Some("Back up.")),
            ],
            &[
                ("click('b38')", Some("x")),
                ("click('b11'", Some("a broken action")),
                ("select_option('b27', 'Blue')", Some("Pick a colour.")),
                ("click('b15')", None),
            ],
            &[("hover('b25')", Some("Look.")), ("click('b1')", None), ("goto('http://mini/home')", Some("Go home."))],
            &[("click('b3')", Some("The short page."))],
        ];
        let mut eps = Vec::new();
        for (n, plan) in plans.iter().enumerate() {
            let tree = if n == 4 { axtree(5) } else { axtree(LINES) };
            let mut steps: Vec<Step> = plan
                .iter()
                .enumerate()
                .map(|(i, (action, think))| Step {
                    step: i,
                    obs: Observation {
                        goal: format!("Open item {n} in the inventory"),
                        url: format!("http://mini/list/{n}"),
                        axtree_txt: tree.clone(),
                        focused_element_bid: (i % 2 == 1).then(|| "b4".to_string()),
                        last_action: if i == 0 { String::new() } else { plan[i - 1].0.to_string() },
                        last_action_error: if i == 2 { "TimeoutError: the element did not respond".into() } else { String::new() },
                    },
                    think: think.map(str::to_string),
                    action: Some(action.to_string()),
                    ..Default::default()
                })
                .collect();
            steps.push(Step {
                step: plan.len(),
                obs: Observation { axtree_txt: tree.clone(), ..Default::default() },
                reward: 1.0,
                terminated: true,
                ..Default::default()
            });
            eps.push(Episode {
                task_name: format!("miniarena.list_filter.t{n}"),
                category: "list_filter".into(),
                seed: n as u64,
                goal: format!("Open item {n} in the inventory"),
                agent: AgentInfo { model_name: "expert".into(), agent_name: "cot".into() },
                success: true,
                cum_reward: 1.0,
                n_steps: plan.len(),
                steps,
                ..Default::default()
            });
        }
        // The goal alone does not fit.
        let mut long = eps[0].clone();
        long.task_name = "miniarena.list_filter.long".into();
        let goal = "open the item number seven ".repeat(400);
        for s in &mut long.steps {
            s.obs.goal = goal.clone();
        }
        eps.push(long);
        eps
    }

    fn tokenizer() -> Tokenizer {
        let mut corpus: Vec<String> = axtree(LINES).lines().map(str::to_string).collect();
        corpus.push(PromptOptions::default().system);
        for e in episodes().iter().take(5) {
            corpus.push(e.goal.clone());
            for s in e.action_steps() {
                corpus.push(response_text(s.think.as_deref(), s.action.as_deref().unwrap()));
            }
        }
        corpus.push("# Goal # Current page URL: Focused element: ## AXTree # History of past actions ## step Error: lines deleted to fit the context # Error from the last action # Action space".into());
        let corpus: Vec<String> = corpus.iter().cycle().take(corpus.len() * 3).cloned().collect();
        let specials: Vec<String> = ["<|bos|>", "<|eos|>", "<|start|>", "<|end|>"].iter().map(|s| s.to_string()).collect();
        train_bpe(corpus.iter(), 600, &specials).unwrap()
    }

    fn decode_where(tok: &Tokenizer, ex: &Example, m: u8) -> String {
        let ids: Vec<u32> = ex.ids.iter().zip(&ex.mask).filter(|(_, k)| **k == m).map(|(i, _)| *i).collect();
        tok.decode(&ids, false).unwrap()
    }

    /// Tokens of the step's whole prompt (nothing cut) plus its response.
    fn full_len(tok: &Tokenizer, t: &ChatTemplate, e: &Episode, i: usize, cfg: &BuildConfig) -> usize {
        let count = |s: &str| -> anyhow::Result<usize> { Ok(encode(tok, s)?.len()) };
        let s = &e.steps[i];
        let think = step_think(s).filter(|_| cfg.prompt.use_thinking);
        let opts = PromptOptions { use_thinking: think.is_some(), ..cfg.prompt.clone() };
        let f = fit_prompt(&step_prompt(e, i), &opts, t, usize::MAX, None, &count).unwrap();
        f.tokens + count(&format!("{}{}", response_text(think, s.action.as_deref().unwrap()), t.eos_token)).unwrap()
    }

    #[test]
    fn drops_exactly_the_samples_whose_target_was_cut_and_masks_exactly_the_response() {
        let tok = tokenizer();
        let t = ChatTemplate::default();
        let eps = episodes();
        // A context that holds about half of the AXTree of the first step.
        let mut cfg = BuildConfig { preview_examples: 3, ..Default::default() };
        let full = full_len(&tok, &t, &eps[0], 0, &cfg);
        let no_tree = {
            let mut e = eps[0].clone();
            e.steps[0].obs.axtree_txt = "RootWebArea 'Inventory'".into();
            full_len(&tok, &t, &e, 0, &cfg)
        };
        cfg.max_len = (full + no_tree) / 2;
        assert!(full > no_tree + 100, "the AXTree is a large part of the prompt ({full} vs {no_tree})");

        let (kept, dropped) = build_examples(&eps, &tok, &t, &cfg).unwrap();
        let steps: usize = eps.iter().map(|e| e.action_steps().count()).sum();
        assert_eq!(kept.len() + dropped.len(), steps);

        let find = |id: &SampleId| -> (&Episode, usize) {
            let e = eps.iter().find(|e| e.task_name == id.task_name && e.seed == id.seed).unwrap();
            (e, e.steps.iter().position(|s| s.step == id.step).unwrap())
        };
        // Every kept example: within the context; the AXTree cut exactly when the whole prompt
        // does not fit; the target line among the kept lines; the lines kept are the first ones.
        let mut cut_and_kept = 0;
        for b in &kept {
            let (e, i) = find(&b.id);
            let s = &e.steps[i];
            let action = s.action.as_deref().unwrap();
            assert!(b.example.ids.len() <= cfg.max_len);
            assert_eq!(b.deleted_lines > 0, full_len(&tok, &t, e, i, &cfg) > cfg.max_len, "{:?}", b.id);
            let n_lines = s.obs.axtree_txt.lines().count();
            let kept_lines = n_lines - b.deleted_lines;
            let prompt = decode_where(&tok, &b.example, 0);
            if let Some(k) = target_of(action) {
                assert!(k + 1 < kept_lines, "{:?}: target line {} kept ({kept_lines} lines)", b.id, k + 1);
                assert!(prompt.contains(&format!("[b{k}]")));
                cut_and_kept += (b.deleted_lines > 0) as usize;
            }
            if b.deleted_lines > 0 {
                assert!(prompt.contains(&format!("\t[b{}] button", kept_lines - 2)), "last kept line present");
                assert!(!prompt.contains(&format!("\t[b{}] button", kept_lines - 1)), "first cut line absent");
                assert!(prompt.contains(&format!("... ({} lines deleted to fit the context)", b.deleted_lines)));
            }
            // The loss covers exactly the response and the end-of-sequence token.
            let think = step_think(s);
            let want = match think {
                Some(th) => format!("<think>{th}</think>\n<action>{action}</action>"),
                None => format!("<action>{action}</action>"),
            };
            assert_eq!(decode_where(&tok, &b.example, 1), format!("{want}<|eos|>"));
            assert!(b.example.mask.windows(2).all(|w| w[0] <= w[1]), "the loss is one tail");
            assert!(prompt.starts_with("<|bos|><|start|>system\n") && prompt.ends_with("<|start|>assistant\n"));
            assert_eq!(prompt.contains("Think step by step"), think.is_some());
            // The history lists the earlier actions.
            if i > 0 {
                assert!(prompt.contains(&format!("<action>{}</action>", e.steps[i - 1].action.as_deref().unwrap())));
            }
        }
        assert!(cut_and_kept > 0, "some kept samples had their AXTree cut");
        // Every dropped sample, for the right reason.
        let mut reasons = DroppedCounts::default();
        for d in &dropped {
            let (e, i) = find(&d.id);
            let action = e.steps[i].action.as_deref().unwrap();
            match d.reason {
                SampleDrop::MissingBid => {
                    reasons.missing_bid += 1;
                    let k = target_of(action).expect("a missing bid needs a target");
                    let kept_lines = e.steps[i].obs.axtree_txt.lines().count() - d.deleted_lines;
                    assert!(d.deleted_lines > 0 && k + 1 >= kept_lines, "{:?}: target line {} was cut ({kept_lines} kept)", d.id, k + 1);
                }
                SampleDrop::TooLong => {
                    reasons.too_long += 1;
                    assert_eq!(e.task_name, "miniarena.list_filter.long");
                }
                SampleDrop::UnparsableAction => {
                    reasons.unparsable_action += 1;
                    assert_eq!(action, "click('b11'");
                    assert!(!d.detail.is_empty());
                }
            }
        }
        assert!(reasons.missing_bid > 0);
        assert_eq!(reasons.too_long, 4);
        assert_eq!(reasons.unparsable_action, 1);
        assert!(kept.iter().any(|b| b.id.task_name == "miniarena.list_filter.t4" && b.deleted_lines == 0));

        // The file, the report and the preview.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("train.amsft");
        let preview = preview_path(&out);
        let report = build_sft(&eps, &tok, &t, &cfg, &out, Some(&preview)).unwrap();
        assert_eq!((report.examples, report.sequences, report.action_steps, report.episodes), (kept.len(), kept.len(), steps, eps.len()));
        assert_eq!(report.dropped, reasons);
        assert_eq!(report.total_tokens, kept.iter().map(|b| b.example.ids.len()).sum::<usize>());
        assert_eq!(report.loss_tokens, kept.iter().map(|b| b.example.mask.iter().filter(|m| **m == 1).count()).sum::<usize>());
        let mean = kept.iter().map(|b| b.deleted_lines).sum::<usize>() as f64 / kept.len() as f64;
        assert!((report.mean_deleted_lines - mean).abs() < 1e-12);
        let r = SftReader::open(&out).unwrap();
        assert_eq!(r.len(), kept.len());
        for (n, b) in kept.iter().enumerate() {
            assert_eq!(r.example(n), (&b.example.ids[..], &b.example.mask[..]));
        }
        let text = std::fs::read_to_string(&preview).unwrap();
        assert!(text.contains(&format!("the first 3 of {} examples", kept.len())), "{text}");
        assert_eq!(text.matches("\n>>>>>> LOSS >>>>>>\n").count(), 3);
        assert!(text.contains(&format!(">>>>>> LOSS >>>>>>\n{}<|eos|>\n<<<<<< END LOSS <<<<<<", kept[0].response)), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["dropped"]["unparsable_action"], 1);
    }

    #[test]
    fn packing_keeps_every_token_and_mask() {
        let tok = tokenizer();
        let t = ChatTemplate::default();
        let eps = episodes();
        let cfg = BuildConfig { max_len: 4096, pack: true, ..Default::default() };
        let (kept, _) = build_examples(&eps, &tok, &t, &cfg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("packed.amsft");
        let report = build_sft(&eps, &tok, &t, &cfg, &out, None).unwrap();
        let r = SftReader::open(&out).unwrap();
        assert_eq!(r.len(), report.sequences);
        assert!(report.sequences < report.examples, "{} rows for {} examples", report.sequences, report.examples);
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for n in 0..r.len() {
            let (i, m) = r.example(n);
            assert!(i.len() <= cfg.max_len);
            ids.extend_from_slice(i);
            mask.extend_from_slice(m);
        }
        let want_ids: Vec<u32> = kept.iter().flat_map(|b| b.example.ids.clone()).collect();
        let want_mask: Vec<u8> = kept.iter().flat_map(|b| b.example.mask.clone()).collect();
        assert_eq!((ids, mask), (want_ids, want_mask));
        // Greedy: no row could take the first example of the next one.
        let rows: Vec<usize> = (0..r.len()).map(|n| r.example(n).0.len()).collect();
        let mut k = 0;
        for w in rows.windows(2) {
            let mut filled = 0;
            while filled < w[0] {
                filled += kept[k].example.ids.len();
                k += 1;
            }
            assert!(w[0] + kept[k].example.ids.len() > cfg.max_len);
        }
        assert_eq!(pack(&[], 10), Vec::<Example>::new());
    }

    #[test]
    fn without_thinking_the_response_is_the_action() {
        let tok = tokenizer();
        let t = ChatTemplate::default();
        let mut cfg = BuildConfig { max_len: 4096, ..Default::default() };
        cfg.prompt.use_thinking = false;
        let (kept, _) = build_examples(&episodes(), &tok, &t, &cfg).unwrap();
        assert!(!kept.is_empty());
        for b in &kept {
            assert!(b.response.starts_with("<action>"), "{}", b.response);
            let prompt = decode_where(&tok, &b.example, 0);
            assert!(!prompt.contains("<think>") && prompt.contains("Give exactly one action"));
        }
        // Config as a plugin would get it: unknown fields are refused.
        let c: BuildConfig = serde_json::from_str(r#"{"max_len": 512, "pack": true, "prompt": {"use_thinking": false}}"#).unwrap();
        assert!(c.pack && !c.prompt.use_thinking && c.max_len == 512);
        assert!(serde_json::from_str::<BuildConfig>(r#"{"max_length": 512}"#).is_err());
        assert!(build_examples(&episodes(), &tok, &t, &BuildConfig { max_len: 0, ..Default::default() }).is_err());
        let _ = Message::new("user", "unused import guard");
    }
}
