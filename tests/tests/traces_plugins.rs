//! The `traces` and `sft` plugins end to end: a synthetic trace file (several templates,
//! categories, seeds and agents; failures; thoughts on some agents' steps; long AXTrees whose
//! target element sometimes sits near the bottom) goes through read → stats / filter → think →
//! dedup → split → mix and tokenizer → build in the real host, and every count is checked
//! against what the test computes from the episodes it wrote. Bad lines, file changes and
//! config typos are checked too.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    path::{Path, PathBuf},
};

use agentmerge_sft::SftReader;
use agentmerge_traces::{ops::fully_thought, read_episodes, write_episodes, AgentInfo, Episode, Observation, OnBadLine, Step};
use common::*;
use serde_json::Value as Json;

/// SplitMix64: deterministic "random" content without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

const TASKS: &[(&str, &str)] = &[
    ("miniarena.form.create_incident", "form"),
    ("miniarena.form.create_user", "form"),
    ("miniarena.list_filter.filter_incidents", "list_filter"),
    ("miniarena.list_sort.sort_users", "list_sort"),
    ("miniarena.menu.open_module", "menu"),
    ("workarena.l2.custom_dashboard", ""),
];
const HELD_OUT: &str = "miniarena.menu.open_module";
const LONG_TREE: usize = 300;
const SHORT_TREE: usize = 10;

#[derive(Clone, Copy, PartialEq)]
enum Thinks {
    Always,
    Never,
    EvenSteps,
}

const AGENTS: &[(&str, &str, Thinks)] =
    &[("gpt-4o", "cot", Thinks::Always), ("llama-70b", "plain", Thinks::Never), ("gpt-4o-mini", "sometimes", Thinks::EvenSteps)];

fn axtree(task: &str, lines: usize) -> String {
    const ROLES: [&str; 4] = ["button", "link", "textbox", "combobox"];
    const LABELS: [&str; 6] = ["Incident", "Caller", "Short description", "Priority", "Assignment group", "State"];
    let mut s = format!("RootWebArea '{task}', focused");
    for i in 0..lines {
        s.push_str(&format!("\n\t[b{i}] {} '{} {i}'", ROLES[i % 4], LABELS[(i / 4) % 6]));
    }
    s
}

/// An episode of `agent` on (task, seed). Long AXTrees put the target near the bottom on
/// about half the steps, so a short context cuts it.
fn episode(r: &mut Rng, task: (&str, &str), seed: u64, agent: (&str, &str, Thinks)) -> Episode {
    let long = r.chance(0.4);
    let lines = if long { LONG_TREE } else { SHORT_TREE };
    let tree = axtree(task.0, lines);
    let goal = format!("On task {} number {seed}, set the priority to {} and save.", task.0, 1 + r.below(4));
    let success = r.chance(0.65);
    let n_act = 2 + r.below(4);
    let mut steps = Vec::new();
    for i in 0..n_act {
        let k = if long && r.chance(0.5) { lines - 1 - r.below(3) } else { r.below(lines.min(6)) };
        let action = match r.below(10) {
            0 => "scroll(0, 300)".to_string(),
            1..=2 => format!("fill('b{k}', \"value {seed} {i}\")"),
            3 => format!("select_option('b{k}', 'Option {}')", r.below(3)),
            _ => format!("click('b{k}')"),
        };
        let think = match agent.2 {
            Thinks::Always => true,
            Thinks::Never => false,
            Thinks::EvenSteps => i % 2 == 0,
        }
        .then(|| format!("Step {i}: the element b{k} is the one to use for {}.", task.1));
        steps.push(Step {
            step: i,
            obs: Observation {
                goal: goal.clone(),
                url: format!("http://mini/{}/{seed}", task.0),
                axtree_txt: tree.clone(),
                focused_element_bid: (i % 2 == 1).then(|| "b1".to_string()),
                last_action: steps.last().and_then(|s: &Step| s.action.clone()).unwrap_or_default(),
                last_action_error: if i == 2 { "TimeoutError: element not visible".into() } else { String::new() },
            },
            think,
            action: Some(action),
            ..Default::default()
        });
    }
    let cum_reward = if success { 1.0 } else { [0.0, 0.5][r.below(2)] };
    steps.push(Step {
        step: n_act,
        obs: Observation { goal: goal.clone(), axtree_txt: tree, ..Default::default() },
        reward: cum_reward,
        terminated: success,
        truncated: !success,
        ..Default::default()
    });
    Episode {
        task_name: task.0.into(),
        category: task.1.into(),
        seed,
        page_size: None,
        goal,
        agent: AgentInfo { model_name: agent.0.into(), agent_name: agent.1.into() },
        success,
        cum_reward,
        n_steps: n_act,
        err_msg: (!success).then(|| "step limit".to_string()),
        steps,
    }
}

fn dataset() -> Vec<Episode> {
    let mut r = Rng(20240601);
    let mut eps = Vec::new();
    for &task in TASKS {
        for seed in 0..5 {
            for &agent in AGENTS {
                if r.chance(0.8) {
                    eps.push(episode(&mut r, task, seed, agent));
                }
            }
        }
    }
    // Two exact repeats (same instance, same actions and thoughts, another model name): dedup
    // removes them.
    let copies: Vec<Episode> = eps
        .iter()
        .filter(|e| e.success && e.agent.agent_name == "cot" && e.task_name != HELD_OUT)
        .take(2)
        .cloned()
        .map(|mut e| {
            e.agent.model_name = "gpt-4o-copy".into();
            e
        })
        .collect();
    assert_eq!(copies.len(), 2);
    eps.extend(copies);
    // One unparsable action in a successful episode of a training template.
    let broken = eps.iter_mut().find(|e| e.success && e.agent.agent_name == "plain" && e.task_name != HELD_OUT).unwrap();
    broken.steps[0].action = Some("click('b3'".into());
    eps
}

const PIPELINE: &str = "
name: traces-e2e
nodes:
  - id: read
    uses: traces/read
    with: {path: traces.jsonl.gz}
  - id: stats
    uses: traces/stats
    inputs: {traces: read.traces}
  - id: filter
    uses: traces/filter
    inputs: {traces: read.traces}
  - id: graded
    uses: traces/filter
    with: {success_only: false, min_reward: 0.5}
    inputs: {traces: read.traces}
  - id: think
    uses: traces/think
    with: {mode: both}
    inputs: {traces: filter.traces}
  - id: dedup
    uses: traces/dedup
    inputs: {traces: think.traces}
  - id: split
    uses: traces/split
    with: {kind: cross_task, held_out_tasks: [miniarena.menu.open_module, miniarena.menu.not_collected], allow_missing: true}
    inputs: {traces: dedup.traces}
  - id: inter
    uses: traces/split
    with: {kind: inter_task, test_fraction: 0.3, split_seed: 1}
    inputs: {traces: filter.traces}
  - id: mix
    uses: traces/mix
    with: {weights: [2, 1], size: 30, seed: 3}
    inputs: {pools: [split.train, graded.traces]}
  - id: tok
    uses: sft/tokenizer
    with: {vocab_size: 1000}
    inputs: {traces: split.train}
  - id: sft
    uses: sft/build
    with: {max_len: 512, preview_examples: 3}
    inputs: {traces: split.train, tokenizer: tok.tokenizer}
";

fn node<'a>(report: &'a Json, id: &str) -> &'a Json {
    report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node `{id}` in {report}"))
}

fn output(report: &Json, id: &str, port: &str) -> Json {
    node(report, id)["outputs"][port].clone()
}

fn path_of(report: &Json, id: &str, port: &str) -> PathBuf {
    PathBuf::from(output(report, id, port).as_str().unwrap_or_else(|| panic!("{id}.{port} is not a path")))
}

fn episodes_of(report: &Json, id: &str, port: &str) -> Vec<Episode> {
    read_episodes(&path_of(report, id, port), OnBadLine::Fail).unwrap().0
}

fn n(j: &Json) -> u64 {
    j.as_u64().unwrap_or_else(|| panic!("not a count: {j}"))
}

fn f(j: &Json) -> f64 {
    j.as_f64().unwrap_or_else(|| panic!("not a number: {j}"))
}

fn dedup_key(e: &Episode) -> (String, u64, Vec<Option<String>>, bool) {
    let thought = e.steps.iter().any(|s| s.think.as_deref().is_some_and(|t| !t.trim().is_empty()));
    (e.task_name.clone(), e.seed, e.steps.iter().map(|s| s.action.clone()).collect(), thought)
}

#[test]
fn traces_to_sft_pipeline_counts_match_and_reruns_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let eps = dataset();
    write_episodes(&dir.path().join("traces.jsonl.gz"), &eps).unwrap();
    write(dir.path(), "p.yaml", PIPELINE);
    let store = dir.path().join("store");
    let store_arg = store.to_str().unwrap();
    ok(dir.path(), &["run", "p.yaml", "--store", store_arg]);
    let report = latest_report(&store);
    assert!(statuses(&report).values().all(|s| s == "ran"), "{:?}", statuses(&report));

    // read: every episode, in order.
    assert_eq!(episodes_of(&report, "read", "traces"), eps);
    let rr = output(&report, "read", "report");
    assert_eq!((n(&rr["episodes"]), n(&rr["skipped"])), (eps.len() as u64, 0));

    // stats of everything.
    let st = output(&report, "stats", "stats");
    let steps: usize = eps.iter().map(|e| e.action_steps().count()).sum();
    let think_steps = eps.iter().flat_map(|e| e.action_steps()).filter(|s| s.think.is_some()).count();
    let successes = eps.iter().filter(|e| e.success).count();
    let instances: HashSet<(&str, u64)> = eps.iter().map(|e| (e.task_name.as_str(), e.seed)).collect();
    assert_eq!(n(&st["episodes"]), eps.len() as u64);
    assert_eq!(n(&st["instances"]), instances.len() as u64);
    assert_eq!(n(&st["successes"]), successes as u64);
    assert_eq!(n(&st["steps"]), steps as u64);
    assert!((f(&st["success_rate"]) - successes as f64 / eps.len() as f64).abs() < 1e-12);
    assert!((f(&st["mean_steps"]) - steps as f64 / eps.len() as f64).abs() < 1e-12);
    assert!((f(&st["think_fraction"]) - think_steps as f64 / steps as f64).abs() < 1e-12);
    let mean_reward = eps.iter().map(|e| e.cum_reward).sum::<f64>() / eps.len() as f64;
    assert!((f(&st["mean_reward"]) - mean_reward).abs() < 1e-12);
    let categories: BTreeSet<&str> = eps.iter().map(|e| if e.category.is_empty() { "unknown" } else { e.category.as_str() }).collect();
    assert_eq!((n(&st["tasks"]), n(&st["categories"])), (TASKS.len() as u64, categories.len() as u64));
    assert_eq!(n(&st["per_category"]["unknown"]["episodes"]), eps.iter().filter(|e| e.category.is_empty()).count() as u64);
    assert_eq!(n(&st["per_task"][HELD_OUT]["episodes"]), eps.iter().filter(|e| e.task_name == HELD_OUT).count() as u64);
    let agents: BTreeSet<String> = eps.iter().map(|e| format!("{}/{}", e.agent.model_name, e.agent.agent_name)).collect();
    assert_eq!(st["per_agent"].as_object().unwrap().keys().cloned().collect::<BTreeSet<_>>(), agents);

    // filter: the successes, in order; the graded filter keeps cum_reward >= 0.5.
    let wanted: Vec<Episode> = eps.iter().filter(|e| e.success).cloned().collect();
    assert!(successes > 20 && successes < eps.len(), "the data has both outcomes: {successes} of {}", eps.len());
    assert_eq!(episodes_of(&report, "filter", "traces"), wanted);
    let fr = output(&report, "filter", "report");
    assert_eq!(
        (n(&fr["kept"]), n(&fr["dropped"]), n(&fr["dropped_not_success"]), n(&fr["dropped_low_reward"])),
        (successes as u64, (eps.len() - successes) as u64, (eps.len() - successes) as u64, 0)
    );
    let graded = eps.iter().filter(|e| e.cum_reward >= 0.5).count();
    assert!(graded > successes, "partial rewards pass the graded filter");
    assert_eq!(n(&output(&report, "graded", "report")["kept"]), graded as u64);
    assert_eq!(episodes_of(&report, "graded", "traces").len(), graded);

    // think both: the fully-thought episodes twice (with, then without), the others once.
    let full = wanted.iter().filter(|e| fully_thought(e)).count();
    let cot = wanted.iter().filter(|e| e.agent.agent_name == "cot").count();
    assert_eq!(full, cot, "only the `cot` agent thinks at every step");
    let think = episodes_of(&report, "think", "traces");
    assert_eq!(think.len(), wanted.len() + full);
    let tr = output(&report, "think", "report");
    assert_eq!((n(&tr["with_think"]), n(&tr["without_think"]), n(&tr["episodes"])), (full as u64, wanted.len() as u64, think.len() as u64));
    let cot_out = think.iter().filter(|e| e.agent.agent_name.starts_with("cot")).count();
    assert_eq!(cot_out, 2 * cot, "each fully-thought episode doubles");
    assert_eq!(think.iter().filter(|e| e.agent.agent_name == "cot+nothink").count(), cot);
    assert!(think[full..].iter().all(|e| e.steps.iter().all(|s| s.think.is_none())));

    // dedup: the first of each (task, seed, actions, thought) group.
    let mut seen = HashSet::new();
    let deduped: Vec<Episode> = think.iter().filter(|e| seen.insert(dedup_key(e))).cloned().collect();
    assert!(deduped.len() <= think.len() - 4, "the two copies go, with and without thoughts");
    assert_eq!(episodes_of(&report, "dedup", "traces"), deduped);
    assert_eq!(n(&output(&report, "dedup", "report")["removed"]), (think.len() - deduped.len()) as u64);

    // cross-task split: the test set is exactly the held-out template.
    let train = episodes_of(&report, "split", "train");
    let test = episodes_of(&report, "split", "test");
    let held: Vec<Episode> = deduped.iter().filter(|e| e.task_name == HELD_OUT).cloned().collect();
    assert!(!held.is_empty());
    assert_eq!(test, held);
    assert_eq!(train, deduped.iter().filter(|e| e.task_name != HELD_OUT).cloned().collect::<Vec<_>>());
    let sr = output(&report, "split", "report");
    assert_eq!(sr["test_tasks"], serde_json::json!([HELD_OUT]));
    assert_eq!(sr["missing_held_out"], serde_json::json!(["miniarena.menu.not_collected"]), "allow_missing lists the absent name");
    assert_eq!((n(&sr["train_episodes"]), n(&sr["test_episodes"])), (train.len() as u64, test.len() as u64));

    // inter-task split: instances never on both sides.
    let (itrain, itest) = (episodes_of(&report, "inter", "train"), episodes_of(&report, "inter", "test"));
    assert_eq!(itrain.len() + itest.len(), wanted.len());
    assert!(!itest.is_empty() && !itrain.is_empty());
    let test_inst: HashSet<(String, u64)> = itest.iter().map(|e| (e.task_name.clone(), e.seed)).collect();
    assert!(itrain.iter().all(|e| !test_inst.contains(&(e.task_name.clone(), e.seed))));

    // mix: 2:1 of 30.
    let mixed = episodes_of(&report, "mix", "traces");
    assert_eq!(mixed.len(), 30);
    let mr = output(&report, "mix", "report");
    assert_eq!(mr["taken"], serde_json::json!([20, 10]));
    assert_eq!(mr["available"], serde_json::json!([train.len(), graded]));

    // tokenizer: trained on the training set, with the chat template and its tokens.
    let tok_dir = path_of(&report, "tok", "tokenizer");
    let tok_cfg: Json = serde_json::from_str(&std::fs::read_to_string(tok_dir.join("tokenizer_config.json")).unwrap()).unwrap();
    assert_eq!(tok_cfg["eos_token"], "<|eos|>");
    assert!(tok_cfg["chat_template"].as_str().unwrap().contains("<|start|>"));
    assert!(tok_dir.join("tokenizer.json").is_file());
    let tk = output(&report, "tok", "report");
    assert_eq!(tk["source"], "trained");
    assert!(n(&tk["vocab_size"]) > 300 && n(&tk["vocab_size"]) <= 1000, "{tk}");
    assert!(f(&tk["tokens_per_char"]) < 0.5, "BPE merges: {tk}");
    let tokenizer = agentmerge_sft::tokenizer::load(&tok_dir).unwrap();
    assert_eq!(tokenizer.token_to_id("<|bos|>"), Some(0));
    assert_eq!(tokenizer.token_to_id("<|eos|>"), Some(1));

    // sft: one example per kept action step of the training set; the file agrees with the report.
    let sft = output(&report, "sft", "report");
    let sft_path = path_of(&report, "sft", "dataset");
    let reader = SftReader::open(&sft_path).unwrap();
    assert_eq!(reader.len() as u64, n(&sft["examples"]));
    assert_eq!(n(&sft["sequences"]), n(&sft["examples"]));
    assert_eq!(reader.vocab_size, n(&sft["vocab_size"]));
    let train_steps: usize = train.iter().map(|e| e.action_steps().count()).sum();
    assert_eq!((n(&sft["episodes"]), n(&sft["action_steps"])), (train.len() as u64, train_steps as u64));
    let d = &sft["dropped"];
    assert_eq!(n(&sft["examples"]) + n(&d["missing_bid"]) + n(&d["too_long"]) + n(&d["unparsable_action"]), train_steps as u64);
    let unparsable = train.iter().flat_map(|e| e.action_steps()).filter(|s| s.action.as_deref() == Some("click('b3'")).count();
    assert_eq!(n(&d["unparsable_action"]), unparsable as u64);
    assert!(unparsable > 0);
    assert!(n(&d["missing_bid"]) > 0, "targets near the bottom of long AXTrees are cut: {sft}");
    assert!(n(&sft["examples"]) > n(&d["missing_bid"]), "{sft}");
    assert!(n(&sft["truncated_examples"]) > 0, "some kept examples had their AXTree cut: {sft}");
    assert!(n(&sft["with_think"]) > 0 && n(&sft["with_think"]) < n(&sft["examples"]));
    let max_len = (0..reader.len()).map(|i| reader.example(i).0.len()).max().unwrap();
    assert!(max_len <= 512);
    let loss: usize = (0..reader.len()).map(|i| reader.example(i).1.iter().filter(|m| **m == 1).count()).sum();
    assert_eq!(loss as u64, n(&sft["loss_tokens"]));
    let preview = path_of(&report, "sft", "preview");
    assert_eq!(preview.parent(), sft_path.parent());
    assert_eq!(preview.file_name().unwrap().to_str().unwrap(), sft["preview_file"].as_str().unwrap());
    let text = std::fs::read_to_string(&preview).unwrap();
    assert_eq!(text.matches("\n>>>>>> LOSS >>>>>>\n").count(), 3, "{text}");

    // A rerun is fully cached.
    ok(dir.path(), &["run", "p.yaml", "--store", store_arg]);
    let again = latest_report(&store);
    assert!(statuses(&again).values().all(|s| s == "cached"), "{:?}", statuses(&again));
    assert_eq!(output(&again, "sft", "report"), sft);
}

/// A chat template unlike the default one, so its use is visible in the preview.
const MODEL_TEMPLATE: &str =
    "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}<|end|>{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}";

/// A tiny checkpoint directory with its own tokenizer (eos `<|end|>` in Hugging Face's object
/// form) and chat template, as a downloaded model would have.
fn model_with_tokenizer(dir: &Path, eps: &[Episode]) -> PathBuf {
    use agentmerge_checkpoint::{CheckpointWriter, DType, TensorSpec, WriteOptions};
    let out = dir.join("mymodel");
    let spec = TensorSpec { name: "model.embed_tokens.weight".into(), dtype: DType::F32, shape: vec![4, 2] };
    let mut w = CheckpointWriter::plan(&out, vec![spec], WriteOptions::default()).unwrap();
    w.write_f32("model.embed_tokens.weight", &[0.5; 8]).unwrap();
    w.set_config(serde_json::json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}), None);
    w.finish().unwrap();
    let corpus: Vec<String> = eps.iter().flat_map(|e| e.action_steps().map(|s| format!("{} {}", s.obs.axtree_txt, s.action.as_deref().unwrap()))).collect();
    let specials = ["<s>".to_string(), "<|end|>".to_string()];
    let tok = agentmerge_sft::tokenizer::train_bpe(corpus.iter(), 700, &specials).unwrap();
    tok.save(out.join("tokenizer.json"), false).unwrap();
    let cfg = serde_json::json!({"bos_token": "<s>", "eos_token": {"content": "<|end|>", "special": true}, "chat_template": MODEL_TEMPLATE, "model_max_length": 4096});
    std::fs::write(out.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    out
}

#[test]
fn a_models_tokenizer_and_chat_template_are_used_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    // Short pages and parsable actions: every action step becomes an example.
    let short =
        |e: &Episode| e.steps[0].obs.axtree_txt.lines().count() == SHORT_TREE + 1 && e.action_steps().all(|s| s.action.as_deref() != Some("click('b3'"));
    let eps: Vec<Episode> = dataset().into_iter().filter(|e| e.success && short(e)).take(12).collect();
    assert_eq!(eps.len(), 12);
    write_episodes(&dir.path().join("t.jsonl.zst"), &eps).unwrap();
    let model = model_with_tokenizer(dir.path(), &eps);
    write(
        dir.path(),
        "p.yaml",
        "nodes:
  - id: read
    uses: traces/read
    with: {path: t.jsonl.zst}
  - id: model
    uses: merge/mergekit
    with: {recipe: {merge_method: linear, models: [{model: ./mymodel, parameters: {weight: 1.0}}], dtype: float32}}
  - id: tok
    uses: sft/tokenizer
    inputs: {model: model.model, traces: read.traces}
  - id: sft
    uses: sft/build
    with: {max_len: 4096, preview_examples: 2, prompt: {use_thinking: false}}
    inputs: {traces: read.traces, tokenizer: tok.tokenizer}
",
    );
    let store = dir.path().join("store");
    ok(dir.path(), &["run", "p.yaml", "--store", store.to_str().unwrap()]);
    let report = latest_report(&store);
    let tk = output(&report, "tok", "report");
    assert_eq!((tk["source"].as_str(), tk["eos_token"].as_str(), tk["bos_token"].as_str()), (Some("model"), Some("<|end|>"), Some("<s>")), "{tk}");
    assert!(f(&tk["tokens_per_char"]) > 0.0, "{tk}");
    let tok_dir = path_of(&report, "tok", "tokenizer");
    assert_eq!(std::fs::read(tok_dir.join("tokenizer.json")).unwrap(), std::fs::read(model.join("tokenizer.json")).unwrap(), "copied as is");
    let cfg: Json = serde_json::from_str(&std::fs::read_to_string(tok_dir.join("tokenizer_config.json")).unwrap()).unwrap();
    assert_eq!(
        (cfg["chat_template"].as_str(), cfg["eos_token"].as_str(), cfg["model_max_length"].as_u64()),
        (Some(MODEL_TEMPLATE), Some("<|end|>"), Some(4096))
    );

    let sft = output(&report, "sft", "report");
    let steps: usize = eps.iter().map(|e| e.action_steps().count()).sum();
    assert_eq!((n(&sft["examples"]), n(&sft["with_think"])), (steps as u64, 0), "{sft}");
    assert_eq!(SftReader::open(&path_of(&report, "sft", "dataset")).unwrap().len(), steps);
    let preview = std::fs::read_to_string(path_of(&report, "sft", "preview")).unwrap();
    assert!(preview.contains("<s>[system] You are an agent") && preview.contains("[assistant] \n>>>>>> LOSS >>>>>>\n<action>"), "{preview}");
    assert!(preview.contains("</action><|end|>\n<<<<<< END LOSS <<<<<<"), "{preview}");

    // Neither input: nothing to train on and no model to take a tokenizer from.
    write(dir.path(), "lone.yaml", "nodes:\n  - id: tok\n    uses: sft/tokenizer\n");
    let out = agentmerge(dir.path(), &["run", "lone.yaml", "--store", store.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("connect `traces` (and/or `text`) to train a tokenizer, or `model` to take a model's tokenizer"), "{}", stderr(&out));
}

fn bad_file(dir: &Path, lines: &[String]) {
    std::fs::write(dir.join("file.jsonl"), lines.join("\n") + "\n").unwrap();
}

#[test]
fn bad_lines_fail_with_file_and_line_or_are_skipped_and_file_changes_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Rng(7);
    let mut lines: Vec<String> = (0..5).map(|s| serde_json::to_string(&episode(&mut r, TASKS[0], s, AGENTS[0])).unwrap()).collect();
    let good = lines[2].clone();
    lines[2] = "{\"task_name\": \"t\", \"seed\": \"three\"".into();
    bad_file(dir.path(), &lines);
    let store = dir.path().join("store");
    let store_arg = store.to_str().unwrap();
    let pipeline = |policy: &str| {
        format!("nodes:\n  - id: read\n    uses: traces/read\n    with: {{path: file.jsonl{policy}}}\n  - id: stats\n    uses: traces/stats\n    inputs: {{traces: read.traces}}\n")
    };
    write(dir.path(), "fail.yaml", &pipeline(""));
    write(dir.path(), "skip.yaml", &pipeline(", on_bad_line: skip"));

    let out = agentmerge(dir.path(), &["run", "fail.yaml", "--store", store_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("file.jsonl:3:"), "{}", stderr(&out));
    let report = latest_report(&store);
    assert_eq!(statuses(&report)["read"], "failed");
    assert_eq!(statuses(&report)["stats"], "skipped");
    let err = node(&report, "read")["error"].as_str().unwrap().to_string();
    assert!(err.contains("file.jsonl:3:") && err.contains("on_bad_line"), "{err}");

    ok(dir.path(), &["run", "skip.yaml", "--store", store_arg]);
    let report = latest_report(&store);
    let rr = output(&report, "read", "report");
    assert_eq!((n(&rr["episodes"]), n(&rr["skipped"])), (4, 1), "{rr}");
    assert!(rr["skipped_lines"][0].as_str().unwrap().starts_with("file.jsonl:3:"), "{rr}");
    assert_eq!(n(&output(&report, "stats", "stats")["episodes"]), 4);

    // Unchanged file: cached. Fixed file: read runs again (its fingerprint is in the config).
    ok(dir.path(), &["run", "skip.yaml", "--store", store_arg]);
    assert!(statuses(&latest_report(&store)).values().all(|s| s == "cached"));
    lines[2] = good;
    bad_file(dir.path(), &lines);
    ok(dir.path(), &["run", "skip.yaml", "--store", store_arg]);
    let report = latest_report(&store);
    assert_eq!(statuses(&report)["read"], "ran");
    let rr = output(&report, "read", "report");
    assert_eq!((n(&rr["episodes"]), n(&rr["skipped"])), (5, 0), "{rr}");
}

#[test]
fn config_mistakes_fail_check_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    write_episodes(&dir.path().join("t.jsonl"), &[Episode::default()]).unwrap();
    write(
        dir.path(),
        "p.yaml",
        "nodes:
  - id: read
    uses: traces/read
    with: {path: t.jsonl}
  - id: missing
    uses: traces/read
    with: {path: nowhere.jsonl}
  - id: filter
    uses: traces/filter
    with:
      sucess_only: true
    inputs: {traces: read.traces}
  - id: split
    uses: traces/split
    with: {kind: cross_task, test_fraction: 0.2, held_out_tasks: [t]}
    inputs: {traces: read.traces}
  - id: mix
    uses: traces/mix
    with: {weights: [1, -2]}
    inputs: {pools: [read.traces]}
  - id: tok
    uses: sft/tokenizer
    with: {vocab_size: 100}
    inputs: {traces: read.traces}
  - id: build
    uses: sft/build
    with: {max_len: 512, prompt: {use_thinkng: false}}
    inputs: {traces: read.traces, tokenizer: tok.tokenizer}
",
    );
    let out = agentmerge(dir.path(), &["check", "p.yaml"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    for want in [
        "p.yaml:11:7: error: bad config for `filter` (traces/filter) field `sucess_only`: unknown field `sucess_only`, expected `success_only` or `min_reward`",
        "bad config for `missing` (traces/read) field `path`: nowhere.jsonl does not exist",
        "bad config for `split` (traces/split) field `test_fraction`: applies only to `kind: inter_task`",
        "bad config for `mix` (traces/mix) field `weights[1]`: must be a finite, non-negative number, got -2",
        "bad config for `tok` (sft/tokenizer) field `vocab_size`: must be at least 260",
        "bad config for `build` (sft/build) field `prompt.use_thinkng`: unknown field `use_thinkng`",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains("`read` (traces/read)"), "{err}");
    // The ops' own fields are listed by `agentmerge plugins`.
    let listing = ok(dir.path(), &["plugins", "traces/filter"]);
    assert!(listing.contains("success_only") && listing.contains("min_reward"), "{listing}");
    let listing: BTreeMap<&str, String> = [("sft/build", "max_len"), ("traces/mix", "weights"), ("traces/split", "held_out_categories")]
        .into_iter()
        .map(|(k, field)| {
            let l = ok(dir.path(), &["plugins", k]);
            assert!(l.contains(field), "{k}: {l}");
            (k, l)
        })
        .collect();
    assert_eq!(listing.len(), 3);
}
