//! Experts: the perfect one solves everything (at every page size); imperfect ones fail
//! sometimes; rollouts are deterministic; episodes are filled like AgentLab's; policies plug in.

mod common;

use agentmerge_miniarena::{
    evaluate, rollout, rollout_batch, rollout_env, summarize, templates, AgentOutput, BatchPolicy, Env, EvalReport, Expert, ExpertConfig, Observation,
    OneByOne, PageSize, Policy, Step, Turn, DEFAULT_MAX_STEPS,
};

#[test]
fn perfect_expert_solves_every_template() {
    let mut expert = Expert::preset("perfect").unwrap();
    for size in PageSize::ALL {
        for t in templates() {
            for seed in 0..200 {
                let ep = rollout_env(Env::with_size(t.name, seed, DEFAULT_MAX_STEPS, size).unwrap(), &mut expert).unwrap();
                assert!(ep.success, "{} seed {seed} ({size} pages) failed after {} steps: {:#?}", t.name, ep.n_steps, ep.steps.last());
                assert_eq!(ep.cum_reward, 1.0);
                assert!(ep.steps.iter().all(|s| s.obs.last_action_error.is_empty()), "{} {seed} ({size} pages)", t.name);
            }
        }
    }
}

#[test]
fn same_seed_same_episode_and_different_seeds_differ() {
    for t in templates() {
        let mut a = Expert::preset("medium").unwrap();
        let mut b = Expert::preset("medium").unwrap();
        for seed in 0..6 {
            let e1 = rollout(t.name, seed, &mut a, DEFAULT_MAX_STEPS).unwrap();
            let e2 = rollout(t.name, seed, &mut b, DEFAULT_MAX_STEPS).unwrap();
            assert_eq!(e1, e2, "{} seed {seed}", t.name);
        }
        let e0 = rollout(t.name, 0, &mut a, DEFAULT_MAX_STEPS).unwrap();
        let e1 = rollout(t.name, 1, &mut a, DEFAULT_MAX_STEPS).unwrap();
        assert_ne!(e0.goal, e1.goal, "{}", t.name);
        assert_ne!(e0.steps[0].obs, e1.steps[0].obs, "{}", t.name);
    }
}

fn rate(preset: &str, seeds: u64) -> EvalReport {
    let names: Vec<&str> = templates().iter().map(|t| t.name).collect();
    let seeds: Vec<u64> = (0..seeds).collect();
    evaluate(|| Expert::preset(preset), &names, &seeds, DEFAULT_MAX_STEPS).unwrap()
}

#[test]
fn imperfect_experts_succeed_sometimes_and_presets_are_ordered() {
    let strong = rate("strong", 40);
    let medium = rate("medium", 40);
    let weak = rate("weak", 40);
    for r in [&strong, &medium, &weak] {
        assert!(r.overall.success_rate > 0.0 && r.overall.success_rate < 1.0, "{:?}", r.overall);
        assert_eq!(r.overall.n, 40 * templates().len());
        assert_eq!(r.per_task.len(), templates().len());
        assert_eq!(r.per_category.len(), 7);
        let p = r.overall.success_rate;
        assert!((r.overall.std_err - (p * (1.0 - p) / r.overall.n as f64).sqrt()).abs() < 1e-12);
    }
    assert!(strong.overall.success_rate > medium.overall.success_rate);
    assert!(medium.overall.success_rate > weak.overall.success_rate);
    // Rates differ across tasks too.
    let rates: Vec<f64> = weak.per_task.iter().map(|t| t.score.success_rate).collect();
    let (lo, hi) = rates.iter().fold((1.0f64, 0.0f64), |(l, h), r| (l.min(*r), h.max(*r)));
    assert!(hi - lo > 0.2, "{rates:?}");
    assert_eq!(strong.agent.model_name, "expert-strong");
    let json = serde_json::to_string(&strong).unwrap();
    let back: EvalReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, strong);
}

#[test]
fn think_follows_the_config_and_is_grounded() {
    let mut with = Expert::preset("perfect").unwrap();
    let mut without = Expert::new(ExpertConfig::perfect().without_think()).unwrap();
    assert_eq!(without.agent_info().agent_name, "expert");
    for t in templates() {
        for seed in 0..5 {
            let ep = rollout(t.name, seed, &mut without, DEFAULT_MAX_STEPS).unwrap();
            assert!(ep.steps.iter().all(|s| s.think.is_none()), "{}", t.name);
            let ep = rollout(t.name, seed, &mut with, DEFAULT_MAX_STEPS).unwrap();
            for s in ep.action_steps() {
                let think = s.think.as_deref().unwrap_or("");
                assert!(think.len() > 30, "{}: {think:?}", t.name);
                let action = agentmerge_miniarena::parse_action(s.action.as_deref().unwrap()).unwrap();
                if let Some(bid) = action.target_bid() {
                    assert!(think.contains(&format!("[{bid}]")), "{}: think does not name [{bid}]: {think}", t.name);
                }
            }
        }
    }
    // Wording varies.
    let mut thinks = std::collections::HashSet::new();
    for seed in 0..20 {
        let ep = rollout("miniarena.form.create_incident", seed, &mut with, DEFAULT_MAX_STEPS).unwrap();
        for s in ep.action_steps() {
            let t = s.think.clone().unwrap();
            thinks.insert(t.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
        }
    }
    assert!(thinks.len() >= 5, "{thinks:?}");
}

#[test]
fn episodes_are_filled_like_agentlab() {
    let mut expert = Expert::preset("weak").unwrap();
    let mut saw_error = false;
    for t in templates() {
        for seed in 0..8 {
            let ep = rollout(t.name, seed, &mut expert, DEFAULT_MAX_STEPS).unwrap();
            assert_eq!(ep.task_name, t.name);
            assert_eq!(ep.category, t.category);
            assert_eq!(ep.seed, seed);
            assert_eq!(ep.agent.model_name, "expert-weak");
            assert_eq!(ep.n_steps + 1, ep.steps.len());
            assert!(ep.n_steps <= DEFAULT_MAX_STEPS);
            let last = ep.steps.last().unwrap();
            assert!(last.action.is_none() && last.think.is_none());
            assert!(last.terminated || last.truncated);
            assert_eq!(ep.cum_reward, ep.steps.iter().map(|s| s.reward).sum::<f64>());
            assert_eq!(ep.success, ep.cum_reward == 1.0);
            assert_eq!(ep.success, last.reward == 1.0, "the solving action's reward is on the final step");
            assert!(ep.err_msg.is_none());
            for (i, s) in ep.steps.iter().enumerate() {
                assert_eq!(s.step, i);
                assert_eq!(s.obs.goal, ep.goal);
                assert!(s.obs.axtree_txt.starts_with("RootWebArea '"));
                assert!(s.obs.url.starts_with("http://miniarena.local/"));
                if i > 0 {
                    assert_eq!(&s.obs.last_action, ep.steps[i - 1].action.as_ref().unwrap());
                    saw_error |= !s.obs.last_action_error.is_empty();
                } else {
                    assert!(s.obs.last_action.is_empty());
                }
                // AgentLab's convention: flags and rewards come with the observation after
                // the action, so only the final observation ends the episode.
                let ended = s.terminated || s.truncated;
                assert_eq!(ended, i == ep.n_steps, "{} {seed} step {i}", t.name);
                if i == 0 || (i < ep.n_steps && !ep.success) {
                    assert_eq!(s.reward, 0.0);
                }
            }
        }
    }
    assert!(saw_error, "a weak expert makes mistakes that produce errors");
}

/// A policy that only waits.
struct Idle;
impl Policy for Idle {
    fn name(&self) -> String {
        "idle".into()
    }
    fn act(&mut self, obs: &Observation, history: &[Step]) -> anyhow::Result<AgentOutput> {
        assert!(!obs.goal.is_empty());
        Ok(AgentOutput { think: Some(format!("waiting ({} steps so far)", history.len())), action: "noop()".into() })
    }
}

/// A policy that breaks on its third step.
struct Crashy;
impl Policy for Crashy {
    fn name(&self) -> String {
        "crashy".into()
    }
    fn act(&mut self, _obs: &Observation, history: &[Step]) -> anyhow::Result<AgentOutput> {
        if history.len() == 2 {
            anyhow::bail!("model server went away");
        }
        Ok(AgentOutput { think: None, action: "scroll(0, 100)".into() })
    }
}

#[test]
fn policies_plug_into_rollout_and_evaluate() {
    let ep = rollout("miniarena.menu.impersonate_user", 3, &mut Idle, 7).unwrap();
    assert_eq!(ep.n_steps, 7);
    assert!(!ep.success && ep.steps.last().unwrap().truncated);
    assert!(ep.steps[..7].iter().all(|s| !s.truncated && !s.terminated));
    assert_eq!(ep.steps[3].think.as_deref(), Some("waiting (3 steps so far)"));
    assert_eq!(ep.agent.agent_name, "idle");

    let dyn_policy: &mut dyn Policy = &mut Crashy;
    let ep = rollout("miniarena.form.create_user", 1, dyn_policy, 15).unwrap();
    assert_eq!(ep.n_steps, 2);
    assert_eq!(ep.err_msg.as_deref(), Some("model server went away"));
    assert!(!ep.success);

    let report = evaluate(|| Ok(Idle), &["menu", "miniarena.dashboard.read_value"], &[0, 1, 2], 3).unwrap();
    assert_eq!(report.overall.n, 9);
    assert_eq!(report.overall.success_rate, 0.0);
    assert_eq!(report.per_task.len(), 3);
    assert!(evaluate(|| Ok(Idle), &["miniarena.form.nope"], &[0], 3).is_err());
    let eps = vec![rollout("miniarena.form.create_user", 1, &mut Crashy, 15).unwrap()];
    assert_eq!(summarize(&eps).n_errors, 1);
}

/// A policy that acts on what it sees only: clicks elements picked from the page and the step
/// number, sometimes a bid that does not exist, and breaks on the third step of one goal.
struct Wander;
impl Policy for Wander {
    fn name(&self) -> String {
        "wander".into()
    }
    fn act(&mut self, obs: &Observation, history: &[Step]) -> anyhow::Result<AgentOutput> {
        if history.len() == 2 && obs.goal.len().is_multiple_of(5) {
            anyhow::bail!("decoder failed");
        }
        let bids = common::bids(&obs.axtree_txt);
        let k = history.len() * 7 + obs.goal.len();
        let action = if k.is_multiple_of(4) { "click('zz99')".to_string() } else { format!("click('{}')", bids[k % bids.len()]) };
        Ok(AgentOutput { think: Some(format!("step {}", history.len())), action })
    }
}

/// Counts the turns of each round.
struct Rounds(OneByOne<Wander>, Vec<usize>);
impl BatchPolicy for Rounds {
    fn agent_info(&self) -> agentmerge_traces::AgentInfo {
        self.0.agent_info()
    }
    fn act_batch(&mut self, turns: &[Turn<'_>]) -> anyhow::Result<Vec<anyhow::Result<AgentOutput>>> {
        self.1.push(turns.len());
        self.0.act_batch(turns)
    }
}

#[test]
fn batched_rollouts_record_what_single_rollouts_do() {
    let jobs: Vec<(&str, u64)> = ["miniarena.menu.impersonate_user", "miniarena.form.create_problem", "miniarena.menu.navigate_to_module"]
        .iter()
        .flat_map(|t| (0..4).map(move |s| (*t, s)))
        .collect();
    let want: Vec<_> = jobs.iter().map(|(t, s)| rollout(t, *s, &mut Wander, 6).unwrap()).collect();
    assert!(want.iter().any(|e| e.err_msg.is_some()) && want.iter().any(|e| e.err_msg.is_none()));
    for batch in [1, 5, 64] {
        let mut policy = Rounds(OneByOne(Wander), Vec::new());
        let mut reported = Vec::new();
        let got = rollout_batch(&jobs, &mut policy, 6, batch, &mut |done, total| {
            reported.push((done, total));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, want, "batch {batch}");
        // Full rounds while jobs wait; every turn answered once.
        assert!(policy.1.iter().all(|&n| n <= batch) && policy.1[0] == batch.min(jobs.len()));
        let turns: usize = want.iter().map(|e| e.n_steps + usize::from(e.err_msg.is_some())).sum();
        assert_eq!(policy.1.iter().sum::<usize>(), turns);
        assert_eq!(reported.last(), Some(&(jobs.len(), jobs.len())));
    }
    // A failing round stops the rollout.
    let stop = rollout_batch(&jobs, &mut OneByOne(Wander), 6, 4, &mut |_, _| anyhow::bail!("cancelled"));
    assert!(stop.unwrap_err().to_string().contains("cancelled"));
}
