//! The model-backed agent: its prompts are exactly `sft/build`'s (a stand-in decoder that
//! answers each training prompt with its training response replays the expert and solves every
//! episode, full and small pages alike), malformed answers reach the environment and are
//! counted, a random model's episodes end cleanly, and teacher-forced step accuracy is counted
//! per task.

use std::collections::HashMap;

use agentmerge_agent::{
    eval::{instances_of, step_accuracy, ActionStepAccuracy, TaskStepAccuracy},
    play, AgentOptions, Decoder, LoadedModel, ModelPolicy,
};
use agentmerge_backend_cpu::CpuBackend;
use agentmerge_miniarena::{rollout_env, Env, Expert, PageSize};
use agentmerge_model::{
    checkpoint::{self, SaveOptions},
    generate::{Generated, Sampling, StopReason},
    LlamaConfig,
};
use agentmerge_sft::{
    build::{build_examples, response_text, BuildConfig},
    prompt::PromptOptions,
    template::ChatTemplate,
    tokenizer::{self as tk, train_bpe},
};
use agentmerge_traces::{parse_action, AgentInfo, Episode};
use tokenizers::Tokenizer;

const TASKS: [&str; 3] = ["miniarena.menu.navigate_to_module", "miniarena.menu.impersonate_user", "miniarena.form.create_problem"];

fn expert_episodes(think: bool) -> Vec<Episode> {
    let mut cfg = agentmerge_miniarena::ExpertConfig::perfect();
    if !think {
        cfg = cfg.without_think();
    }
    let jobs = TASKS.iter().flat_map(|t| (0..3).flat_map(move |s| PageSize::ALL.map(|size| (*t, s, size))));
    jobs.map(|(t, s, size)| rollout_env(Env::with_size(t, s, 15, size).unwrap(), &mut Expert::new(cfg.clone()).unwrap()).unwrap()).collect()
}

fn tokenizer(episodes: &[Episode]) -> Tokenizer {
    let mut corpus: Vec<String> = Vec::new();
    for e in episodes {
        for s in &e.steps {
            corpus.push(s.obs.axtree_txt.clone());
            corpus.push(s.obs.goal.clone());
            if let Some(a) = &s.action {
                corpus.push(response_text(s.think.as_deref(), a));
            }
        }
    }
    corpus.push(PromptOptions::default().system);
    let specials: Vec<String> = ["<|bos|>", "<|eos|>", "<|start|>", "<|end|>"].iter().map(|s| s.to_string()).collect();
    train_bpe(corpus.iter(), 700, &specials).unwrap()
}

/// Answers every prompt it was trained on with the training response (and fails the test on
/// any other prompt); records the batch sizes.
struct Replay {
    answers: HashMap<Vec<u32>, Vec<u32>>,
    batches: Vec<usize>,
    eos: u32,
}

impl Decoder for Replay {
    fn generate(
        &mut self,
        prompts: &[Vec<u32>],
        s: &Sampling,
        _seed: u64,
        decode: &dyn Fn(&[u32]) -> anyhow::Result<String>,
    ) -> anyhow::Result<Vec<Generated>> {
        assert_eq!(s.eos, vec![self.eos]);
        self.batches.push(prompts.len());
        prompts
            .iter()
            .map(|p| {
                let r = self.answers.get(p).unwrap_or_else(|| panic!("a prompt sft/build never wrote:\n{}", decode(p).unwrap()));
                Ok(Generated { tokens: r.clone(), text: decode(&r[..r.len() - 1])?, reason: StopReason::Eos })
            })
            .collect()
    }
}

fn replay_case(prompt: PromptOptions, think: bool) {
    let episodes = expert_episodes(think);
    let tok = tokenizer(&episodes);
    let template = ChatTemplate::default();
    let eos = tok.token_to_id("<|eos|>").unwrap();
    let cfg = BuildConfig { prompt: prompt.clone(), max_len: 8192, ..Default::default() };
    let (kept, dropped) = build_examples(&episodes, &tok, &template, &cfg).unwrap();
    assert!(dropped.is_empty());
    let answers: HashMap<Vec<u32>, Vec<u32>> = kept
        .iter()
        .map(|b| {
            let cut = b.example.mask.iter().position(|&m| m == 1).unwrap();
            (b.example.ids[..cut].to_vec(), b.example.ids[cut..].to_vec())
        })
        .collect();
    let opts = AgentOptions { prompt, max_len: 8192, max_new_tokens: 512, ..Default::default() };
    let agent = AgentInfo { model_name: "replay".into(), agent_name: "model".into() };
    let mut policy = ModelPolicy::new(Replay { answers, batches: Vec::new(), eos }, tok, template, vec![eos], opts, 0, agent).unwrap();
    // The traces' instances, each at its page size.
    let jobs = instances_of(&episodes).unwrap();
    assert_eq!(jobs.len(), episodes.len());
    let eval = play(&mut policy, &jobs, 15, 4, &mut |_, _| Ok(())).unwrap();
    assert_eq!(eval.report.overall.success_rate, 1.0, "{:?}", eval.report);
    let steps: usize = episodes.iter().map(|e| e.n_steps).sum();
    assert_eq!(eval.counts.actions, steps);
    assert_eq!((eval.counts.parse_errors, eval.counts.invalid_actions, eval.counts.truncated, eval.counts.cut_prompts), (0, 0, 0, 0));
    // The same actions and thoughts as the expert's.
    for (got, want) in eval.episodes.iter().zip(&episodes) {
        let a = |e: &Episode| e.steps.iter().map(|s| (s.think.clone(), s.action.clone())).collect::<Vec<_>>();
        assert_eq!(a(got), a(want));
        assert_eq!((got.agent.model_name.as_str(), &got.page_size), ("replay", &want.page_size));
    }
    assert!(policy.decoder.batches.iter().all(|&b| b <= 4) && policy.decoder.batches[0] == 4);
    let m = eval.metrics();
    assert_eq!(m["overall"]["success_rate"], 1.0);
    assert_eq!(m["per_task"].as_array().unwrap().len(), 3);
    assert_eq!(m["per_task"][0]["parse_errors"], 0);
}

#[test]
fn prompts_are_the_training_prompts_default_options() {
    replay_case(PromptOptions::default(), true);
}

#[test]
fn prompts_are_the_training_prompts_compact_options() {
    let prompt = PromptOptions { system: String::new(), max_history: Some(2), use_thinking: false, ..Default::default() };
    replay_case(prompt, false);
}

/// Answers from a script, in turn order.
struct Scripted(Vec<(String, StopReason)>);

impl Decoder for Scripted {
    fn generate(
        &mut self,
        prompts: &[Vec<u32>],
        _s: &Sampling,
        _seed: u64,
        _decode: &dyn Fn(&[u32]) -> anyhow::Result<String>,
    ) -> anyhow::Result<Vec<Generated>> {
        Ok(prompts
            .iter()
            .map(|_| {
                let (text, reason) = if self.0.is_empty() { ("noop()".to_string(), StopReason::Eos) } else { self.0.remove(0) };
                Generated { tokens: vec![7; 3], text, reason }
            })
            .collect())
    }
}

#[test]
fn bad_answers_go_to_the_environment_and_are_counted() {
    let episodes = expert_episodes(false);
    let tok = tokenizer(&episodes);
    let script = vec![
        ("<action>click('zz1')</action>".to_string(), StopReason::Stop),     // not on the page: invalid
        ("I think I should click".to_string(), StopReason::Eos),             // no tags: parse error
        ("<think>the menu is on the le".to_string(), StopReason::MaxTokens), // cut: parse error, truncated
        ("<action>click(a15)</action>".to_string(), StopReason::Eos),        // not BrowserGym syntax
        ("<action>scroll(0, 100)</action>".to_string(), StopReason::Eos),    // fine
    ];
    let opts = AgentOptions { prompt: PromptOptions { use_thinking: false, ..Default::default() }, max_len: 4096, max_new_tokens: 64, ..Default::default() };
    let mut policy = ModelPolicy::new(Scripted(script), tok.clone(), ChatTemplate::default(), vec![1], opts.clone(), 0, AgentInfo::default()).unwrap();
    let eval = play(&mut policy, &[(TASKS[0], 5, PageSize::Full)], 5, 1, &mut |_, _| Ok(())).unwrap();
    let e = &eval.episodes[0];
    assert_eq!((e.n_steps, e.success, e.err_msg.as_deref()), (5, false, None));
    assert!(e.steps[1].obs.last_action_error.contains("zz1"), "{}", e.steps[1].obs.last_action_error);
    assert_eq!(e.steps[1].action.as_deref(), Some("I think I should click"));
    assert!(!e.steps[2].obs.last_action_error.is_empty() && !e.steps[3].obs.last_action_error.is_empty());
    assert_eq!(e.steps[2].action.as_deref(), Some(""));
    let c = &eval.counts;
    assert_eq!((c.actions, c.parse_errors, c.invalid_actions, c.truncated), (5, 3, 1, 1));
    assert!(e.steps[5].truncated);
    // Long answers fill the history: past steps are left out (oldest first) rather than the
    // episode ended.
    let long = "blah ".repeat(120);
    let fits_two = {
        let count = |t: &str| -> anyhow::Result<usize> { Ok(tk::encode(&tok, t).unwrap().len()) };
        // The prompt once the long answer failed: its error, no AXTree, no history.
        let mut env = agentmerge_miniarena::Env::new(TASKS[0], 5, 5).unwrap();
        env.reset();
        let mut p = agentmerge_sft::build::history_prompt("", &env.step(long.trim()).unwrap().obs, &[]);
        p.axtree.clear();
        let f = agentmerge_sft::prompt::fit_prompt(&p, &opts.prompt, &ChatTemplate::default(), usize::MAX, None, &count).unwrap();
        f.tokens + 60 + opts.max_new_tokens
    };
    let script = (0..5).map(|_| (long.clone(), StopReason::MaxTokens)).collect();
    let short = AgentOptions { max_len: fits_two, ..opts.clone() };
    let mut policy = ModelPolicy::new(Scripted(script), tok.clone(), ChatTemplate::default(), vec![1], short, 0, AgentInfo::default()).unwrap();
    let eval = play(&mut policy, &[(TASKS[0], 5, PageSize::Full)], 5, 1, &mut |_, _| Ok(())).unwrap();
    assert_eq!((eval.episodes[0].n_steps, eval.report.n_errors, eval.counts.prompt_too_long), (5, 0, 0));
    assert!(eval.counts.cut_prompts >= 3, "{:?}", eval.counts);
    // A prompt that cannot fit even without its AXTree and history ends the episode.
    let tiny = AgentOptions { max_len: 40, max_new_tokens: 8, ..opts };
    let mut policy = ModelPolicy::new(Scripted(Vec::new()), tok, ChatTemplate::default(), vec![1], tiny, 0, AgentInfo::default()).unwrap();
    let eval = play(&mut policy, &[(TASKS[0], 5, PageSize::Full)], 5, 1, &mut |_, _| Ok(())).unwrap();
    assert_eq!((eval.episodes[0].n_steps, eval.counts.prompt_too_long, eval.report.n_errors), (0, 1, 1));
    assert!(eval.episodes[0].err_msg.as_deref().unwrap().contains("even without its AXTree"));
}

#[test]
fn a_random_model_plays_to_the_end_with_its_errors_counted() {
    let episodes = expert_episodes(false);
    let tok = tokenizer(&episodes);
    let dir = tempfile::tempdir().unwrap();
    tk::save(&tok, &dir.path().join("tok"), agentmerge_sft::template::DEFAULT_TEMPLATE, "<|bos|>", "<|eos|>", None).unwrap();
    let mut config = LlamaConfig::new(tok.get_vocab_size(true), 32, 64, 2, 4);
    config.max_position_embeddings = 4096;
    let model_dir = checkpoint::save(
        &config,
        &checkpoint::init(&config, 1),
        agentmerge_checkpoint::DType::F32,
        &dir.path().join("model"),
        &SaveOptions { tokenizer_from: vec![dir.path().join("tok")], ..Default::default() },
    )
    .unwrap();
    let loaded = LoadedModel::load(Box::new(CpuBackend::new()), &model_dir, None).unwrap();
    assert_eq!(loaded.eos, vec![tok.token_to_id("<|eos|>").unwrap()]);
    let (t, tm, eos) = (loaded.tokenizer.clone(), loaded.template.clone(), loaded.eos.clone());
    let opts = AgentOptions {
        prompt: PromptOptions { system: String::new(), use_thinking: false, max_history: Some(2), ..Default::default() },
        max_len: 4096,
        max_new_tokens: 12,
        ..Default::default()
    };
    let mut policy = ModelPolicy::new(loaded, t, tm, eos, opts, 3, AgentInfo::default()).unwrap();
    let jobs = [(TASKS[0], 100, PageSize::Full), (TASKS[1], 100, PageSize::Small), (TASKS[2], 100, PageSize::Full)];
    let eval = play(&mut policy, &jobs, 3, 2, &mut |_, _| Ok(())).unwrap();
    assert_eq!(eval.report.overall.success_rate, 0.0);
    for e in &eval.episodes {
        assert_eq!((e.n_steps, e.err_msg.as_deref()), (3, None), "{:?}", e.err_msg);
        assert!(e.steps.last().unwrap().truncated);
    }
    assert_eq!(eval.counts.actions, 9);
    assert_eq!(eval.counts.parse_errors, 9, "a random model writes no action");
    assert!(eval.counts.truncated > 0 && eval.counts.new_tokens <= 12 * eval.counts.actions);
}

#[test]
fn step_accuracy_is_counted_per_task_and_pools_by_summing() {
    let all = expert_episodes(false);
    let tok = tokenizer(&all);
    // navigate_to_module seed 0 (full) and seed 1 (small), create_problem seed 1, impersonate_user
    // seed 2 (small): two episodes of one task, and tasks of two categories, interleaved.
    let episodes: Vec<Episode> = [0, 14, 11, 3].iter().map(|&i| all[i].clone()).collect();
    let tasks: Vec<&str> = episodes.iter().map(|e| e.task_name.as_str()).collect();
    assert_eq!(tasks, [TASKS[0], TASKS[2], TASKS[1], TASKS[0]]);
    // The model's answers, step by step: navigate_to_module the expert's action; create_problem
    // the expert's action on even steps and, on odd steps, the same verb on another element;
    // impersonate_user prose that does not parse.
    let mut script = Vec::new();
    let mut want: std::collections::BTreeMap<&str, TaskStepAccuracy> = Default::default();
    for e in &episodes {
        let w = want.entry(e.task_name.as_str()).or_insert_with(|| TaskStepAccuracy {
            task: e.task_name.clone(),
            category: e.category.clone(),
            ..Default::default()
        });
        for (i, a) in e.steps.iter().filter_map(|s| s.action.as_deref()).enumerate() {
            let expert = parse_action(a).unwrap();
            let targeted = expert.target_bid().is_some();
            let parses = e.task_name != TASKS[1];
            let exact = parses && (e.task_name == TASKS[0] || i % 2 == 0 || !targeted);
            let answer = if !parses {
                "I would look for the user menu first".to_string()
            } else if exact {
                format!("<action>{a}</action>")
            } else {
                let mut other = expert.clone();
                *other.target_bid_mut().unwrap() = "zz9".into();
                format!("<action>{other}</action>")
            };
            script.push((answer, StopReason::Eos));
            w.steps += 1;
            w.element_steps += usize::from(targeted);
            w.exact += usize::from(exact);
            w.verb += usize::from(parses);
            w.parses += usize::from(parses);
            w.element += usize::from(exact && targeted);
            let by = match w.per_action.iter_mut().find(|x| x.action == expert.name()) {
                Some(x) => x,
                None => {
                    w.per_action.push(ActionStepAccuracy { action: expert.name().into(), ..Default::default() });
                    w.per_action.last_mut().unwrap()
                }
            };
            by.steps += 1;
            by.exact += usize::from(exact);
        }
        w.per_action.sort_by(|a, b| a.action.cmp(&b.action));
    }
    let opts = AgentOptions { prompt: PromptOptions { use_thinking: false, ..Default::default() }, max_len: 8192, max_new_tokens: 64, ..Default::default() };
    let mut policy = ModelPolicy::new(Scripted(script), tok, ChatTemplate::default(), vec![1], opts, 0, AgentInfo::default()).unwrap();
    let mut seen = Vec::new();
    let acc = step_accuracy(&mut policy, &episodes, 3, &mut |done, total| {
        seen.push((done, total));
        Ok(())
    })
    .unwrap();
    assert!(policy.decoder.0.is_empty(), "every scripted answer used");
    let rate = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let want: Vec<TaskStepAccuracy> = want
        .into_values()
        .map(|t| TaskStepAccuracy { exact_rate: rate(t.exact, t.steps), verb_rate: rate(t.verb, t.steps), element_rate: rate(t.element, t.element_steps), ..t })
        .collect();
    assert_eq!(acc.per_task, want);
    // By the expert's action: each task's counts in name order, pooled over tasks by summing.
    let mut pooled: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for a in acc.per_task.iter().flat_map(|t| &t.per_action) {
        let p = pooled.entry(a.action.as_str()).or_default();
        p.0 += a.steps;
        p.1 += a.exact;
    }
    let got: Vec<(&str, usize, usize)> = acc.per_action.iter().map(|a| (a.action.as_str(), a.steps, a.exact)).collect();
    assert_eq!(got, pooled.iter().map(|(k, (s, e))| (*k, *s, *e)).collect::<Vec<_>>());
    assert!(acc.per_action.len() >= 3 && acc.per_action.iter().any(|a| a.action == "click" && 0 < a.exact && a.exact < a.steps), "{:?}", acc.per_action);
    // In task-name order, with the episodes' categories; the two navigate episodes are one task.
    let names: Vec<(&str, &str)> = acc.per_task.iter().map(|t| (t.task.as_str(), t.category.as_str())).collect();
    assert_eq!(names, [(TASKS[2], "form"), (TASKS[1], "menu"), (TASKS[0], "menu")]);
    let (form, imp, nav) = (&acc.per_task[0], &acc.per_task[1], &acc.per_task[2]);
    assert_eq!(nav.steps, episodes[0].action_steps().count() + episodes[3].action_steps().count());
    assert_eq!((nav.exact, nav.verb, nav.parses, nav.exact_rate), (nav.steps, nav.steps, nav.steps, 1.0));
    assert_eq!((imp.exact, imp.verb, imp.element, imp.parses), (0, 0, 0, 0));
    assert!(imp.element_steps > 0 && form.steps > 2, "{imp:?} {form:?}");
    assert!(0 < form.exact && form.exact < form.steps && form.verb == form.steps && form.element < form.element_steps, "{form:?}");
    // The pooled figures are the per-task counts summed.
    let sum = |f: fn(&TaskStepAccuracy) -> usize| acc.per_task.iter().map(f).sum::<usize>();
    assert_eq!(acc.steps, episodes.iter().map(|e| e.action_steps().count()).sum::<usize>());
    assert_eq!((acc.steps, acc.element_steps), (sum(|t| t.steps), sum(|t| t.element_steps)));
    assert_eq!(acc.exact, sum(|t| t.exact) as f64 / acc.steps as f64);
    assert_eq!(acc.verb, sum(|t| t.verb) as f64 / acc.steps as f64);
    assert_eq!(acc.element, sum(|t| t.element) as f64 / acc.element_steps as f64);
    assert_eq!(acc.parses, (nav.steps + form.steps) as f64 / acc.steps as f64);
    assert_eq!(seen.last(), Some(&(acc.steps, acc.steps)));
    // In the metrics: the pooled rates as before, and the per-task counts.
    let json = serde_json::to_value(&acc).unwrap();
    assert_eq!(json["per_task"][1]["task"], TASKS[1]);
    assert_eq!(json["per_task"][0]["exact"], form.exact);
    // Metrics written before per_task existed still read.
    let old: agentmerge_agent::eval::StepAccuracy =
        serde_json::from_value(serde_json::json!({"steps": 4, "exact": 0.5, "verb": 0.75, "element": 0.5, "element_steps": 2, "parses": 1.0})).unwrap();
    assert!(old.per_task.is_empty() && old.per_action.is_empty());
}

/// The answer budget counts the recorded answers a model could not finish within
/// `max_new_tokens`, measured against `sft/build`'s training targets (the loss tokens less the
/// end-of-sequence token), with and without thoughts.
#[test]
fn recorded_answers_longer_than_the_budget_are_counted() {
    for think in [false, true] {
        let episodes = expert_episodes(think);
        let tok = tokenizer(&episodes);
        let template = ChatTemplate::default();
        let prompt = PromptOptions { use_thinking: think, ..Default::default() };
        let cfg = BuildConfig { prompt: prompt.clone(), max_len: 8192, ..Default::default() };
        let (kept, _) = build_examples(&episodes, &tok, &template, &cfg).unwrap();
        let mut lens: Vec<usize> = kept.iter().map(|b| b.example.mask.iter().filter(|&&m| m == 1).count() - 1).collect();
        lens.sort_unstable();
        let (longest, budget) = (*lens.last().unwrap(), lens[lens.len() / 2]);
        assert!(budget < longest, "{lens:?}");
        let over = lens.iter().filter(|&&n| n > budget).count();
        for (max_new_tokens, want_over) in [(budget, over), (longest, 0)] {
            let opts = AgentOptions { prompt: prompt.clone(), max_len: 8192, max_new_tokens, ..Default::default() };
            let policy = ModelPolicy::new(Scripted(Vec::new()), tok.clone(), template.clone(), vec![1], opts, 0, AgentInfo::default()).unwrap();
            let b = policy.answers_over_budget(&episodes).unwrap();
            assert_eq!((b.answers, b.over, b.longest, b.max_new_tokens), (lens.len(), want_over, longest, max_new_tokens), "think: {think}");
        }
    }
}
