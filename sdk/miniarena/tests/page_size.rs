//! Page sizes: full pages are exactly what MiniArena showed before sizes existed (fingerprints
//! of goals, first pages and expert episodes taken at that commit); small pages hold the same
//! goals, answers and expert plans with fewer AXTree lines on every template; episodes record
//! their size, and a batch of mixed sizes plays each job at its own.

mod common;

use agentmerge_miniarena::{
    parse_action, rollout, rollout_batch_sized, rollout_env, templates, AgentOutput, Env, Episode, Expert, ExpertConfig, Observation, OneByOne, PageSize,
    Policy, Step, DEFAULT_MAX_STEPS,
};

/// Per template: FNV-1a of the goals and first AXTrees of seeds 0..50 and of the `perfect` and
/// `medium` experts' episodes as JSON on seeds 0..4, computed with `Env::new` and `rollout` at
/// the commit before `PageSize` (b6a9c82).
const FULL: [(&str, &str); 23] = [
    ("miniarena.form.create_incident", "2678a74521d21134"),
    ("miniarena.form.create_change_request", "d3ae32bdc901b399"),
    ("miniarena.form.create_problem", "9f3d46f5cc8fc314"),
    ("miniarena.form.create_user", "faa394a74746792f"),
    ("miniarena.form.create_hardware_asset", "b98c0c7d29df2e5c"),
    ("miniarena.list_filter.filter_incidents", "2eb9b70d4643612b"),
    ("miniarena.list_filter.filter_change_requests", "296b9915549e6950"),
    ("miniarena.list_filter.filter_hardware_assets", "b767a259ac00604b"),
    ("miniarena.list_sort.sort_incidents", "5e1e28bc9b4b2c74"),
    ("miniarena.list_sort.sort_users", "b17c66ec8c0b5cbc"),
    ("miniarena.list_sort.sort_hardware_assets", "5ff7357acc2ec758"),
    ("miniarena.service_catalog.order_hardware", "e0aa6e06b41825cb"),
    ("miniarena.service_catalog.order_mobile_device", "4c6e9fd415eee4cb"),
    ("miniarena.service_catalog.order_software", "19d3ecac6c37ad91"),
    ("miniarena.service_catalog.order_peripheral", "6a57d5f674a6ab73"),
    ("miniarena.menu.navigate_to_module", "faa15e46c303f3b6"),
    ("miniarena.menu.impersonate_user", "a78395614f17f998"),
    ("miniarena.knowledge_base.travel_policy", "113bebacbfeb10ac"),
    ("miniarena.knowledge_base.support_contact", "1de9c3dec59cd6ca"),
    ("miniarena.knowledge_base.approved_version", "56493108c43f1260"),
    ("miniarena.dashboard.read_value", "814d60d3fed5f4d9"),
    ("miniarena.dashboard.find_max", "7444210ed935516b"),
    ("miniarena.dashboard.sum_values", "86e7f72631eaa6ec"),
];

fn fnv(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= u64::from(*b);
        *h = h.wrapping_mul(0x100000001b3);
    }
}

/// The fingerprint of `task` (see [`FULL`]), with instances made by `env` and episodes played by
/// `play`.
fn fingerprint(task: &str, env: impl Fn(u64) -> Env, play: impl Fn(u64, &mut Expert) -> Episode) -> String {
    let mut h = 0xcbf29ce484222325u64;
    for seed in 0..50 {
        let env = env(seed);
        fnv(&mut h, env.goal().as_bytes());
        fnv(&mut h, env.observation().axtree_txt.as_bytes());
    }
    for seed in 0..4 {
        for preset in ["perfect", "medium"] {
            let ep = play(seed, &mut Expert::preset(preset).unwrap());
            assert_eq!(ep.task_name, task);
            fnv(&mut h, serde_json::to_string(&ep).unwrap().as_bytes());
            fnv(&mut h, b"\n");
        }
    }
    format!("{h:016x}")
}

#[test]
fn full_pages_are_unchanged() {
    assert_eq!(FULL.len(), templates().len());
    for (task, want) in FULL {
        let old_api = fingerprint(task, |s| Env::new(task, s, 15).unwrap(), |s, e| rollout(task, s, e, 15).unwrap());
        let sized = fingerprint(
            task,
            |s| Env::with_size(task, s, 15, PageSize::Full).unwrap(),
            |s, e| rollout_env(Env::with_size(task, s, 15, PageSize::Full).unwrap(), e).unwrap(),
        );
        assert_eq!((old_api.as_str(), sized.as_str()), (want, want), "{task}: full pages changed");
    }
}

fn lines(obs: &Observation) -> usize {
    obs.axtree_txt.lines().count()
}

/// Mean AXTree lines per step of an episode.
fn mean_lines(ep: &Episode) -> f64 {
    ep.steps.iter().map(|s| lines(&s.obs)).sum::<usize>() as f64 / ep.steps.len() as f64
}

#[test]
fn small_pages_hold_the_same_tasks_in_fewer_lines() {
    let mut expert = Expert::new(ExpertConfig::perfect().without_think()).unwrap();
    let (mut all_full, mut all_small) = (0.0, 0.0);
    for t in templates() {
        let (mut full_lines, mut small_lines) = (0.0, 0.0);
        for seed in 0..20 {
            let full = Env::new(t.name, seed, DEFAULT_MAX_STEPS).unwrap();
            let small = Env::with_size(t.name, seed, DEFAULT_MAX_STEPS, PageSize::Small).unwrap();
            assert_eq!((small.goal(), small.expected_answer()), (full.goal(), full.expected_answer()), "{} seed {seed}", t.name);
            assert_eq!(small.page_size(), PageSize::Small);
            let (f, s) = (full.observation(), small.observation());
            assert!(lines(&s) < lines(&f), "{} seed {seed}: the first small page has {} lines, the full one {}", t.name, lines(&s), lines(&f));

            // The same plan: the same actions but for the bids.
            let ef = rollout_env(full, &mut expert).unwrap();
            let es = rollout_env(small, &mut expert).unwrap();
            assert!(es.success, "{} seed {seed}", t.name);
            let plan = |e: &Episode| -> Vec<String> {
                e.action_steps()
                    .map(|s| {
                        let a = parse_action(s.action.as_deref().unwrap()).unwrap();
                        let bid = a.target_bid().map(str::to_string).unwrap_or_default();
                        a.to_string().replace(&format!("'{bid}'"), "BID")
                    })
                    .collect()
            };
            assert_eq!(plan(&es), plan(&ef), "{} seed {seed}", t.name);
            full_lines += mean_lines(&ef);
            small_lines += mean_lines(&es);
        }
        assert!(small_lines < 0.9 * full_lines, "{}: {small_lines:.0} lines per step at small vs {full_lines:.0} at full (sums over 20 seeds)", t.name);
        all_full += full_lines;
        all_small += small_lines;
    }
    // Lists, the largest pages, lose the most: about half of all lines go.
    assert!(all_small < 0.6 * all_full, "{all_small:.0} vs {all_full:.0}");
}

#[test]
fn episodes_record_their_size() {
    let mut expert = Expert::preset("perfect").unwrap();
    let task = "miniarena.menu.impersonate_user";
    let small = rollout_env(Env::with_size(task, 3, 15, PageSize::Small).unwrap(), &mut expert).unwrap();
    let full = rollout(task, 3, &mut expert, 15).unwrap();
    assert_eq!((small.page_size.as_deref(), full.page_size.as_deref()), (Some("small"), None));
    let (js, jf) = (serde_json::to_string(&small).unwrap(), serde_json::to_string(&full).unwrap());
    assert!(js.contains(r#""page_size":"small""#) && !jf.contains("page_size"), "full episodes keep the old format");
    assert_eq!(PageSize::of_episode(&serde_json::from_str(&js).unwrap()).unwrap(), PageSize::Small);
    assert_eq!(PageSize::of_episode(&serde_json::from_str(&jf).unwrap()).unwrap(), PageSize::Full);
    let unknown = Episode { page_size: Some("tiny".into()), ..full.clone() };
    let err = PageSize::of_episode(&unknown).unwrap_err().to_string();
    assert!(err.contains("`tiny`") && err.contains("`small`"), "{err}");

    // The dialog lists 6 people, the goal's among them.
    let dialog = &small.steps[2].obs.axtree_txt;
    let people = dialog.lines().filter(|l| l.contains("option '") && !l.contains("-- Select")).count();
    assert_eq!(people, 6, "{dialog}");
    let name = small.goal.split('"').nth(1).unwrap();
    assert!(common::bid_of(dialog, "option", name).is_some(), "{dialog}");

    // Sizes parse and print as configs spell them.
    assert_eq!("small".parse::<PageSize>().unwrap(), PageSize::Small);
    assert_eq!(PageSize::Full.to_string(), "full");
    assert_eq!(serde_json::to_string(&PageSize::Small).unwrap(), r#""small""#);
}

/// Clicks the first bid of the page, then stops.
struct FirstBid;
impl Policy for FirstBid {
    fn name(&self) -> String {
        "first".into()
    }
    fn act(&mut self, obs: &Observation, history: &[Step]) -> anyhow::Result<AgentOutput> {
        let bids = common::bids(&obs.axtree_txt);
        let action = if history.len() < 2 { format!("click('{}')", bids[history.len()]) } else { "send_msg_to_user('done')".into() };
        Ok(AgentOutput { think: None, action })
    }
}

#[test]
fn batches_play_each_job_at_its_size() {
    let jobs: Vec<(&str, u64, PageSize)> = ["miniarena.list_sort.sort_users", "miniarena.knowledge_base.support_contact"]
        .iter()
        .flat_map(|t| (0..3).flat_map(move |s| PageSize::ALL.map(|size| (*t, s, size))))
        .collect();
    let want: Vec<Episode> = jobs.iter().map(|&(t, s, size)| rollout_env(Env::with_size(t, s, 5, size).unwrap(), &mut FirstBid).unwrap()).collect();
    let got = rollout_batch_sized(&jobs, &mut OneByOne(FirstBid), 5, 4, &mut |_, _| Ok(())).unwrap();
    assert_eq!(got, want);
    for (e, (_, _, size)) in got.iter().zip(&jobs) {
        assert_eq!(PageSize::of_episode(e).unwrap(), *size);
    }
}
