//! Dataset operations on episodes: success filters, chain-of-thought variants, train/test
//! splits (inter-task and cross-task), deduplication, weighted mixing of pools, and stats.
//!
//! Each operation takes a small config struct (serde + JSON schema, so a plugin node can use
//! it as its config as is) and returns its result with a serializable report. The decisions
//! behind each operation are written down in docs/traces.md ("Dataset operations").

use std::collections::{BTreeMap, BTreeSet, HashSet};

use anyhow::bail;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::Episode;

// ---------------------------------------------------------------------------------------------
// Deterministic randomness, stable across versions and platforms (no dependency on `rand`'s
// algorithms): a 64-bit FNV-1a hash finished with the SplitMix64 mixer, and a SplitMix64 stream.

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash_bytes(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") hash differently.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// A number in [0, 1) fixed by `(split_seed, task_name, seed)`.
fn unit_hash(split_seed: u64, task_name: &str, seed: u64) -> f64 {
    let h = hash_bytes(&[&split_seed.to_le_bytes(), task_name.as_bytes(), &seed.to_le_bytes()]);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in 0..n (n > 0), without modulo bias.
    fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }

    /// Fisher–Yates shuffle.
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Lists names for an error message, shortened when there are many.
fn name_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    if names.is_empty() {
        return "(none)".into();
    }
    let shown: Vec<String> = names.iter().take(40).map(|n| format!("`{n}`")).collect();
    let more = names.len().saturating_sub(40);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

// ---------------------------------------------------------------------------------------------
// Filter

/// Which episodes to keep: the paper keeps only successful trajectories.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Keep only episodes marked successful (`success: true`).
    pub success_only: bool,
    /// Keep only episodes whose cumulative reward (`cum_reward`) is at least this value.
    /// Unset: no reward threshold. Use it for tasks with graded rewards.
    pub min_reward: Option<f64>,
}

impl Default for FilterConfig {
    fn default() -> FilterConfig {
        FilterConfig { success_only: true, min_reward: None }
    }
}

/// What [`filter`] kept and dropped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FilterReport {
    pub kept: usize,
    pub dropped: usize,
    /// Dropped because `success` was false (counted first).
    pub dropped_not_success: usize,
    /// Dropped because `cum_reward` was below `min_reward` (or not a number).
    pub dropped_low_reward: usize,
}

/// Keeps the episodes that pass `cfg`, in their order.
pub fn filter(episodes: Vec<Episode>, cfg: &FilterConfig) -> anyhow::Result<(Vec<Episode>, FilterReport)> {
    if let Some(m) = cfg.min_reward {
        if !m.is_finite() {
            bail!("filter: min_reward must be a finite number, got {m}");
        }
    }
    let mut report = FilterReport::default();
    let mut kept = Vec::with_capacity(episodes.len());
    for e in episodes {
        if cfg.success_only && !e.success {
            report.dropped_not_success += 1;
        } else if cfg.min_reward.is_some_and(|m| e.cum_reward.is_nan() || e.cum_reward < m) {
            report.dropped_low_reward += 1;
        } else {
            kept.push(e);
        }
    }
    report.kept = kept.len();
    report.dropped = report.dropped_not_success + report.dropped_low_reward;
    Ok((kept, report))
}

// ---------------------------------------------------------------------------------------------
// Chain of thought

/// Which chain-of-thought variant of the data to produce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThinkMode {
    /// Keep the thoughts; drop the episodes in which some action step has none.
    #[default]
    WithThink,
    /// Remove every thought.
    WithoutThink,
    /// Both of the above, one after the other: each episode once with its thoughts and once
    /// without (the copy without is marked `+nothink` in its agent name).
    Both,
}

/// The chain-of-thought variant of a dataset (the paper trains with, without, and both).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ThinkConfig {
    /// `with_think`, `without_think` or `both`.
    pub mode: ThinkMode,
}

/// The suffix added to `agent.agent_name` of an episode whose thoughts were removed.
pub const NOTHINK_SUFFIX: &str = "+nothink";

/// What [`think_variant`] produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThinkReport {
    /// Episodes in the output.
    pub episodes: usize,
    /// Output episodes that carry their thoughts.
    pub with_think: usize,
    /// Output episodes without thoughts.
    pub without_think: usize,
    /// Input episodes left out of the "with thoughts" part because an action step had no
    /// (or an empty) thought.
    pub dropped_missing_think: usize,
}

fn has_think(s: &crate::Step) -> bool {
    s.think.as_deref().is_some_and(|t| !t.trim().is_empty())
}

/// True when every action step of `e` has a non-empty thought (and there is at least one).
pub fn fully_thought(e: &Episode) -> bool {
    let mut any = false;
    for s in e.action_steps() {
        if !has_think(s) {
            return false;
        }
        any = true;
    }
    any
}

/// `e` without its thoughts; the agent name gets [`NOTHINK_SUFFIX`] if a thought was removed.
pub fn strip_think(mut e: Episode) -> Episode {
    let mut removed = false;
    for s in &mut e.steps {
        removed |= s.think.take().is_some_and(|t| !t.trim().is_empty());
    }
    if removed && !e.agent.agent_name.ends_with(NOTHINK_SUFFIX) {
        e.agent.agent_name.push_str(NOTHINK_SUFFIX);
    }
    e
}

/// Produces the chain-of-thought variant `cfg.mode` of `episodes`.
pub fn think_variant(episodes: Vec<Episode>, cfg: &ThinkConfig) -> (Vec<Episode>, ThinkReport) {
    let mut report = ThinkReport::default();
    let mut with = Vec::new();
    let mut without = Vec::new();
    for e in episodes {
        match cfg.mode {
            ThinkMode::WithThink => {
                if fully_thought(&e) {
                    with.push(e);
                } else {
                    report.dropped_missing_think += 1;
                }
            }
            ThinkMode::WithoutThink => without.push(strip_think(e)),
            ThinkMode::Both => {
                if fully_thought(&e) {
                    with.push(e.clone());
                } else {
                    report.dropped_missing_think += 1;
                }
                without.push(strip_think(e));
            }
        }
    }
    report.with_think = with.len();
    report.without_think = without.len();
    with.extend(without);
    report.episodes = with.len();
    (with, report)
}

// ---------------------------------------------------------------------------------------------
// Splits

/// How to split episodes into a training and a test set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SplitConfig {
    /// Inter-task generalization: held-out seeds (instances) of templates seen in training.
    /// Each (task_name, seed) goes to the test set when a hash of it and `split_seed` falls
    /// below `test_fraction`, so an instance never changes side when more data is added, and
    /// all episodes of one instance (from any agent) land on the same side.
    InterTask {
        /// Expected fraction of each template's seeds held out for the test set, in [0, 1].
        test_fraction: f64,
        /// Changes which seeds are held out.
        #[serde(default)]
        split_seed: u64,
    },
    /// Cross-task generalization: whole templates (or whole categories) held out.
    CrossTask {
        /// Task templates (`task_name`) held out for the test set.
        #[serde(default)]
        held_out_tasks: Vec<String>,
        /// Categories held out for the test set: every template of the category.
        #[serde(default)]
        held_out_categories: Vec<String>,
        /// A held-out name absent from the data is listed in the report (`missing_held_out`)
        /// instead of being an error: for one list of held-out templates shared by several
        /// datasets, some of which lack a few (a user's own traces). Off by default, since a
        /// misspelt name would otherwise hold out nothing without a word.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        allow_missing: bool,
    },
}

/// What [`split`] did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitReport {
    pub train_episodes: usize,
    pub test_episodes: usize,
    /// Distinct (task_name, seed) instances on each side.
    pub train_instances: usize,
    pub test_instances: usize,
    /// Templates with episodes in the test set.
    pub test_tasks: Vec<String>,
    /// Inter-task only: templates whose seeds all went to the test set (so they are not
    /// "seen" in training); add seeds or change `split_seed` if this matters.
    pub tasks_only_in_test: Vec<String>,
    /// Cross-task with `allow_missing`: held-out templates and categories absent from the data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_held_out: Vec<String>,
}

/// The result of [`split`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    pub train: Vec<Episode>,
    pub test: Vec<Episode>,
    pub report: SplitReport,
}

/// Checks that every held-out `names` entry (of `kind`: task or category) is in `present`:
/// an absent one is an error naming what is there, or with `allow_missing`, listed in `missing`.
fn check_present(names: &[String], present: &BTreeSet<&str>, kind: &str, allow_missing: bool, missing: &mut Vec<String>) -> anyhow::Result<()> {
    for n in names.iter().filter(|n| !present.contains(n.as_str())) {
        if !allow_missing {
            bail!(
                "split: held-out {kind} `{n}` is not in the data (set `allow_missing: true` if that is expected); {} present: {}",
                if kind == "category" { "categories" } else { "tasks" },
                name_list(present.iter().copied())
            );
        }
        missing.push(n.clone());
    }
    Ok(())
}

/// Splits episodes into train and test (each keeps the input order).
pub fn split(episodes: Vec<Episode>, cfg: &SplitConfig) -> anyhow::Result<Split> {
    let mut missing = Vec::new();
    let is_test: Box<dyn Fn(&Episode) -> bool> = match cfg {
        SplitConfig::InterTask { test_fraction, split_seed } => {
            let (f, s) = (*test_fraction, *split_seed);
            if !(0.0..=1.0).contains(&f) {
                bail!("split: test_fraction must be between 0 and 1, got {f}");
            }
            Box::new(move |e: &Episode| unit_hash(s, &e.task_name, e.seed) < f)
        }
        SplitConfig::CrossTask { held_out_tasks, held_out_categories, allow_missing } => {
            if held_out_tasks.is_empty() && held_out_categories.is_empty() {
                bail!("split: a cross_task split needs `held_out_tasks` or `held_out_categories` (none given)");
            }
            let tasks: BTreeSet<&str> = episodes.iter().map(|e| e.task_name.as_str()).collect();
            let cats: BTreeSet<&str> = episodes.iter().map(|e| e.category.as_str()).filter(|c| !c.is_empty()).collect();
            check_present(held_out_tasks, &tasks, "task", *allow_missing, &mut missing)?;
            check_present(held_out_categories, &cats, "category", *allow_missing, &mut missing)?;
            let tasks: HashSet<String> = held_out_tasks.iter().cloned().collect();
            let cats: HashSet<String> = held_out_categories.iter().cloned().collect();
            Box::new(move |e: &Episode| tasks.contains(&e.task_name) || cats.contains(&e.category))
        }
    };
    let mut out = Split::default();
    let mut train_inst = HashSet::new();
    let mut test_inst = HashSet::new();
    for e in episodes {
        if is_test(&e) {
            test_inst.insert((e.task_name.clone(), e.seed));
            out.test.push(e);
        } else {
            train_inst.insert((e.task_name.clone(), e.seed));
            out.train.push(e);
        }
    }
    let train_tasks: BTreeSet<&str> = out.train.iter().map(|e| e.task_name.as_str()).collect();
    let test_tasks: BTreeSet<&str> = out.test.iter().map(|e| e.task_name.as_str()).collect();
    out.report = SplitReport {
        train_episodes: out.train.len(),
        test_episodes: out.test.len(),
        train_instances: train_inst.len(),
        test_instances: test_inst.len(),
        test_tasks: test_tasks.iter().map(|t| t.to_string()).collect(),
        tasks_only_in_test: match cfg {
            SplitConfig::InterTask { .. } => test_tasks.difference(&train_tasks).map(|t| t.to_string()).collect(),
            SplitConfig::CrossTask { .. } => Vec::new(),
        },
        missing_held_out: missing,
    };
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Dedup

/// Removes repeated episodes: same `task_name`, same `seed`, same action sequence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// Count episodes of different agents (model_name, agent_name) as distinct even when
    /// their actions are identical.
    pub per_agent: bool,
}

/// What [`dedup`] removed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DedupReport {
    pub kept: usize,
    pub removed: usize,
}

/// Keeps the first episode of each (task_name, seed, actions) group, in input order. Whether
/// the episode carries thoughts is part of the key: the same actions with and without chain
/// of thought teach different outputs, so both are kept (see docs/traces.md).
pub fn dedup(episodes: Vec<Episode>, cfg: &DedupConfig) -> (Vec<Episode>, DedupReport) {
    let mut seen = HashSet::new();
    let mut kept = Vec::with_capacity(episodes.len());
    let mut removed = 0;
    for e in episodes {
        let actions: Vec<Option<String>> = e.steps.iter().map(|s| s.action.clone()).collect();
        let agent = cfg.per_agent.then(|| e.agent.clone());
        let thought = e.steps.iter().any(has_think);
        if seen.insert((e.task_name.clone(), e.seed, actions, thought, agent)) {
            kept.push(e);
        } else {
            removed += 1;
        }
    }
    let report = DedupReport { kept: kept.len(), removed };
    (kept, report)
}

// ---------------------------------------------------------------------------------------------
// Mix

/// Mixes several pools (e.g. one per expert model × agent config) into one dataset whose
/// composition follows the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixConfig {
    /// One weight per pool, in the order of the pools; only their ratios matter.
    pub weights: Vec<f64>,
    /// Episodes in the output. Unset: the largest size at which no pool has to repeat an
    /// episode (limited by the pool that is smallest relative to its weight).
    #[serde(default)]
    pub size: Option<usize>,
    /// Allow a pool to contribute more episodes than it has, by repeating it (whole shuffled
    /// passes, so each episode appears ⌊k⌋ or ⌈k⌉ times). Otherwise that is an error.
    #[serde(default)]
    pub allow_repeats: bool,
    /// Seed of the sampling and of the final shuffle.
    #[serde(default)]
    pub seed: u64,
}

/// What [`mix`] took from each pool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MixReport {
    pub episodes: usize,
    /// Episodes taken from each pool, in pool order.
    pub taken: Vec<usize>,
    /// Size of each pool.
    pub available: Vec<usize>,
    /// Episodes that are repeats (only with `allow_repeats`).
    pub repeated: usize,
}

/// Splits `total` into integer shares proportional to `weights` (largest remainder; ties go
/// to the earlier pool), so the shares add up to `total` exactly.
fn apportion(total: usize, weights: &[f64]) -> Vec<usize> {
    let sum: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut shares: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut left = total.saturating_sub(shares.iter().sum());
    let mut order: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0.0).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        shares[i] += 1;
        left -= 1;
    }
    shares
}

/// Samples each pool (without replacement, seeded) to its share of the target size, then
/// shuffles the result so the pools are interleaved. Deterministic for a given seed.
pub fn mix(pools: Vec<Vec<Episode>>, cfg: &MixConfig) -> anyhow::Result<(Vec<Episode>, MixReport)> {
    if pools.is_empty() {
        bail!("mix: no input pools");
    }
    if cfg.weights.len() != pools.len() {
        bail!("mix: {} weights for {} pools; give one weight per pool, in pool order", cfg.weights.len(), pools.len());
    }
    if let Some((i, w)) = cfg.weights.iter().enumerate().find(|(_, w)| !w.is_finite() || **w < 0.0) {
        bail!("mix: weight {i} is {w}; weights must be finite and non-negative");
    }
    if cfg.weights.iter().all(|w| *w == 0.0) {
        bail!("mix: all weights are zero");
    }
    for (i, (p, w)) in pools.iter().zip(&cfg.weights).enumerate() {
        if *w > 0.0 && p.is_empty() {
            bail!("mix: pool {i} is empty but has weight {w}; give it weight 0 or feed it episodes");
        }
    }
    let sum: f64 = cfg.weights.iter().sum();
    let size = match cfg.size {
        Some(s) => s,
        None => pools.iter().zip(&cfg.weights).filter(|(_, w)| **w > 0.0).map(|(p, w)| ((p.len() as f64) * sum / w + 1e-9).floor() as usize).min().unwrap_or(0),
    };
    let mut shares = apportion(size, &cfg.weights);
    // Without a given size, make sure rounding never asks a pool for more than it has.
    let mut size = size;
    while cfg.size.is_none() && size > 0 && shares.iter().zip(&pools).any(|(n, p)| *n > p.len()) {
        size -= 1;
        shares = apportion(size, &cfg.weights);
    }
    let mut report = MixReport { available: pools.iter().map(Vec::len).collect(), ..Default::default() };
    let mut out = Vec::with_capacity(size);
    for (i, (pool, &want)) in pools.into_iter().zip(&shares).enumerate() {
        if want > pool.len() && !cfg.allow_repeats {
            bail!(
                "mix: pool {i} has {} episodes but its share of {size} is {want}; lower `size`, change the weights, or set `allow_repeats: true`",
                pool.len()
            );
        }
        let mut rng = SplitMix64(cfg.seed ^ mix64(i as u64 + 1));
        let mut order: Vec<usize> = (0..pool.len()).collect();
        let mut taken = 0;
        while taken < want {
            rng.shuffle(&mut order);
            for &j in order.iter().take(want - taken) {
                out.push(pool[j].clone());
                taken += 1;
            }
        }
        report.taken.push(want);
        report.repeated += want.saturating_sub(pool.len());
    }
    SplitMix64(cfg.seed ^ 0x6d69_785f_616c_6c00).shuffle(&mut out);
    report.episodes = out.len();
    Ok((out, report))
}

// ---------------------------------------------------------------------------------------------
// Stats

/// Which breakdowns [`stats`] includes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Include a breakdown per task template (`per_task`).
    pub per_task: bool,
    /// Include a breakdown per category (`per_category`).
    pub per_category: bool,
    /// Include a breakdown per agent, keyed `model_name/agent_name` (`per_agent`).
    pub per_agent: bool,
}

impl Default for StatsConfig {
    fn default() -> StatsConfig {
        StatsConfig { per_task: true, per_category: true, per_agent: true }
    }
}

#[derive(Default)]
struct Tally {
    episodes: usize,
    successes: usize,
    action_steps: usize,
    think_steps: usize,
    reward: f64,
    instances: HashSet<(String, u64)>,
}

impl Tally {
    fn add(&mut self, e: &Episode) {
        self.episodes += 1;
        self.successes += e.success as usize;
        for s in e.action_steps() {
            self.action_steps += 1;
            self.think_steps += has_think(s) as usize;
        }
        self.reward += e.cum_reward;
        self.instances.insert((e.task_name.clone(), e.seed));
    }

    fn to_value(&self) -> Value {
        let per_ep = |x: f64| if self.episodes == 0 { 0.0 } else { x / self.episodes as f64 };
        json!({
            "episodes": self.episodes,
            "instances": self.instances.len(),
            "successes": self.successes,
            "success_rate": per_ep(self.successes as f64),
            "steps": self.action_steps,
            "mean_steps": per_ep(self.action_steps as f64),
            "mean_reward": per_ep(self.reward),
            "think_fraction": if self.action_steps == 0 { 0.0 } else { self.think_steps as f64 / self.action_steps as f64 },
        })
    }
}

/// Dataset statistics as a JSON object suitable as metrics: `episodes`, `instances` (distinct
/// task_name+seed), `successes`, `success_rate`, `steps` (action steps), `mean_steps`,
/// `mean_reward`, `think_fraction` (action steps with a thought), `tasks`, `categories`, and
/// the same numbers `per_task`, `per_category` (empty category: `unknown`) and `per_agent`
/// (`model_name/agent_name`). Token counts come from the SFT builder.
pub fn stats(episodes: &[Episode], cfg: &StatsConfig) -> Map<String, Value> {
    let mut all = Tally::default();
    let mut per_task: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut per_cat: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut per_agent: BTreeMap<String, Tally> = BTreeMap::new();
    for e in episodes {
        all.add(e);
        per_task.entry(&e.task_name).or_default().add(e);
        per_cat.entry(if e.category.is_empty() { "unknown" } else { &e.category }).or_default().add(e);
        per_agent.entry(format!("{}/{}", e.agent.model_name, e.agent.agent_name)).or_default().add(e);
    }
    let mut m = match all.to_value() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert("tasks".into(), json!(per_task.len()));
    m.insert("categories".into(), json!(per_cat.len()));
    let group = |g: BTreeMap<String, Tally>| Value::Object(g.into_iter().map(|(k, t)| (k, t.to_value())).collect());
    if cfg.per_task {
        m.insert("per_task".into(), group(per_task.into_iter().map(|(k, t)| (k.to_string(), t)).collect()));
    }
    if cfg.per_category {
        m.insert("per_category".into(), group(per_cat.into_iter().map(|(k, t)| (k.to_string(), t)).collect()));
    }
    if cfg.per_agent {
        m.insert("per_agent".into(), group(per_agent));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentInfo, Observation, Step};

    const CATS: [&str; 7] = ["form", "list_filter", "list_sort", "service_catalog", "menu", "knowledge_base", "dashboard"];

    /// Random-ish episodes from a seeded stream: 7 categories × 3 templates, seeds 0..40,
    /// two agents, 1–6 action steps (plus a final observation), some without thoughts.
    fn data(seed: u64, n: usize) -> Vec<Episode> {
        let mut r = SplitMix64(seed);
        (0..n)
            .map(|_| {
                let cat = CATS[r.below(CATS.len())];
                let task_name = format!("miniarena.{cat}.t{}", r.below(3));
                let n_act = 1 + r.below(6);
                let thinks = r.below(10) > 0;
                let mut steps: Vec<Step> = (0..n_act)
                    .map(|i| Step {
                        step: i,
                        obs: Observation { goal: "g".into(), axtree_txt: format!("[a{i}] button 'x'"), ..Default::default() },
                        think: (thinks || r.below(2) == 0).then(|| format!("thought {}", r.below(1000))),
                        action: Some(format!("click('a{}')", r.below(4))),
                        ..Default::default()
                    })
                    .collect();
                steps.push(Step { step: n_act, ..Default::default() });
                let success = r.below(3) > 0;
                Episode {
                    task_name,
                    category: cat.into(),
                    seed: r.below(40) as u64,
                    goal: "g".into(),
                    agent: AgentInfo { model_name: ["gpt-4o", "llama-70b"][r.below(2)].into(), agent_name: "expert".into() },
                    success,
                    cum_reward: if success { 1.0 } else { [0.0, 0.5][r.below(2)] },
                    n_steps: n_act,
                    steps,
                    ..Default::default()
                }
            })
            .collect()
    }

    #[test]
    fn filter_keeps_successes_and_reward_threshold() {
        let eps = data(1, 300);
        let n_success = eps.iter().filter(|e| e.success).count();
        let (kept, rep) = filter(eps.clone(), &FilterConfig::default()).unwrap();
        assert!(kept.iter().all(|e| e.success));
        assert_eq!((rep.kept, rep.dropped, rep.dropped_not_success), (n_success, 300 - n_success, 300 - n_success));
        let cfg = FilterConfig { success_only: false, min_reward: Some(0.5) };
        let (kept, rep) = filter(eps.clone(), &cfg).unwrap();
        assert!(kept.iter().all(|e| e.cum_reward >= 0.5));
        assert_eq!(rep.kept, eps.iter().filter(|e| e.cum_reward >= 0.5).count());
        assert_eq!(rep.kept + rep.dropped, 300);
        assert!(rep.kept > n_success, "partial rewards of 0.5 pass");
        assert!(filter(eps, &FilterConfig { success_only: false, min_reward: Some(f64::NAN) }).is_err());
    }

    #[test]
    fn think_variants() {
        let eps = data(2, 200);
        let full = eps.iter().filter(|e| fully_thought(e)).count();
        assert!(full > 0 && full < 200, "the data has both kinds");
        let (with, rep) = think_variant(eps.clone(), &ThinkConfig { mode: ThinkMode::WithThink });
        assert_eq!((with.len(), rep.dropped_missing_think), (full, 200 - full));
        assert!(with.iter().all(|e| e.action_steps().all(|s| s.think.is_some()) && e.agent.agent_name == "expert"));

        let (without, rep) = think_variant(eps.clone(), &ThinkConfig { mode: ThinkMode::WithoutThink });
        assert_eq!((without.len(), rep.without_think), (200, 200));
        assert!(without.iter().all(|e| e.steps.iter().all(|s| s.think.is_none())));
        // Marked only where a thought was removed.
        for (orig, stripped) in eps.iter().zip(&without) {
            let had = orig.steps.iter().any(has_think);
            assert_eq!(stripped.agent.agent_name, if had { "expert+nothink" } else { "expert" });
        }
        assert!(without.iter().any(|e| e.agent.agent_name == "expert"), "the data has episodes without any thought");
        // Stripping twice does not add the suffix twice.
        let mut twice = eps.iter().find(|e| fully_thought(e)).unwrap().clone();
        twice.agent.agent_name.push_str(NOTHINK_SUFFIX);
        assert_eq!(strip_think(twice).agent.agent_name, "expert+nothink");

        let (both, rep) = think_variant(eps.clone(), &ThinkConfig { mode: ThinkMode::Both });
        assert_eq!((both.len(), rep.with_think, rep.without_think), (full + 200, full, 200));
        // Same actions on both sides, only the thoughts and the name differ.
        assert_eq!(
            both[0].steps.iter().map(|s| &s.action).collect::<Vec<_>>(),
            both[full..]
                .iter()
                .find(|e| e.task_name == both[0].task_name && e.seed == both[0].seed && e.steps.len() == both[0].steps.len())
                .unwrap()
                .steps
                .iter()
                .map(|s| &s.action)
                .collect::<Vec<_>>()
        );
        let cfg: ThinkConfig = serde_json::from_str(r#"{"mode": "both"}"#).unwrap();
        assert_eq!(cfg.mode, ThinkMode::Both);
    }

    #[test]
    fn inter_task_split_is_stable_and_keeps_instances_together() {
        let eps = data(3, 1000);
        let cfg = SplitConfig::InterTask { test_fraction: 0.25, split_seed: 7 };
        let s = split(eps.clone(), &cfg).unwrap();
        assert_eq!(s.train.len() + s.test.len(), 1000);
        let test_inst: HashSet<(String, u64)> = s.test.iter().map(|e| (e.task_name.clone(), e.seed)).collect();
        assert!(s.train.iter().all(|e| !test_inst.contains(&(e.task_name.clone(), e.seed))), "no instance on both sides");
        let frac = s.report.test_instances as f64 / (s.report.test_instances + s.report.train_instances) as f64;
        assert!((0.17..0.33).contains(&frac), "about a quarter of the instances held out: {frac}");
        // Held-out instances are seeds of templates seen in training.
        let train_tasks: HashSet<&str> = s.train.iter().map(|e| e.task_name.as_str()).collect();
        assert!(s.test.iter().all(|e| train_tasks.contains(e.task_name.as_str())));
        assert!(s.report.tasks_only_in_test.is_empty());

        // More data: every instance stays on its side.
        let mut grown = eps.clone();
        grown.extend(data(99, 500));
        let g = split(grown, &cfg).unwrap();
        let g_test: HashSet<(String, u64)> = g.test.iter().map(|e| (e.task_name.clone(), e.seed)).collect();
        assert!(test_inst.is_subset(&g_test));
        assert!(g.train.iter().all(|e| !test_inst.contains(&(e.task_name.clone(), e.seed))));
        // Another split seed holds out other instances.
        let o = split(eps.clone(), &SplitConfig::InterTask { test_fraction: 0.25, split_seed: 8 }).unwrap();
        let o_test: HashSet<(String, u64)> = o.test.iter().map(|e| (e.task_name.clone(), e.seed)).collect();
        assert_ne!(o_test, test_inst);
        assert!(split(eps, &SplitConfig::InterTask { test_fraction: 1.5, split_seed: 0 }).is_err());
    }

    #[test]
    fn cross_task_split_holds_out_templates_and_categories() {
        let eps = data(4, 500);
        let cfg: SplitConfig =
            serde_json::from_str(r#"{"kind": "cross_task", "held_out_tasks": ["miniarena.form.t1"], "held_out_categories": ["menu"]}"#).unwrap();
        let s = split(eps.clone(), &cfg).unwrap();
        assert!(s.test.iter().all(|e| e.task_name == "miniarena.form.t1" || e.category == "menu"));
        assert!(s.train.iter().all(|e| e.task_name != "miniarena.form.t1" && e.category != "menu"));
        assert_eq!(s.test.len(), eps.iter().filter(|e| e.task_name == "miniarena.form.t1" || e.category == "menu").count());
        assert!(s.report.test_tasks.contains(&"miniarena.menu.t0".to_string()));

        let err =
            split(eps.clone(), &SplitConfig::CrossTask { held_out_tasks: vec!["miniarena.form.t9".into()], held_out_categories: vec![], allow_missing: false })
                .unwrap_err()
                .to_string();
        assert!(err.contains("`miniarena.form.t9` is not in the data") && err.contains("`miniarena.form.t0`"), "{err}");
        let err = split(eps.clone(), &SplitConfig::CrossTask { held_out_tasks: vec![], held_out_categories: vec!["forms".into()], allow_missing: false })
            .unwrap_err()
            .to_string();
        assert!(err.contains("`forms`") && err.contains("`form`"), "{err}");
        assert!(split(eps.clone(), &SplitConfig::CrossTask { held_out_tasks: vec![], held_out_categories: vec![], allow_missing: true }).is_err());
        // With allow_missing, absent names are reported and the present ones still held out.
        let cfg = SplitConfig::CrossTask {
            held_out_tasks: vec!["miniarena.form.t9".into(), "miniarena.form.t1".into()],
            held_out_categories: vec!["forms".into()],
            allow_missing: true,
        };
        let s = split(eps.clone(), &cfg).unwrap();
        assert_eq!(s.report.missing_held_out, ["miniarena.form.t9", "forms"]);
        assert!(!s.test.is_empty() && s.test.iter().all(|e| e.task_name == "miniarena.form.t1"));
        // The default config serializes as before (cache keys of existing pipelines stay).
        let plain = SplitConfig::CrossTask { held_out_tasks: vec!["a".into()], held_out_categories: vec![], allow_missing: false };
        assert!(!serde_json::to_string(&plain).unwrap().contains("allow_missing"));
        // Unknown config fields are refused.
        assert!(serde_json::from_str::<SplitConfig>(r#"{"kind": "inter_task", "test_fraction": 0.2, "seed": 1}"#).is_err());
        assert!(serde_json::from_str::<SplitConfig>(r#"{"kind": "inter_task", "test_fraction": 0.2}"#).is_ok());
    }

    #[test]
    fn dedup_removes_repeated_action_sequences() {
        let eps = data(5, 100);
        let mut doubled = eps.clone();
        doubled.extend(eps.iter().cloned().map(|mut e| {
            e.agent.model_name = "other".into(); // another agent, same actions
            for s in &mut e.steps {
                if s.think.is_some() {
                    s.think = Some("different words".into());
                }
            }
            e
        }));
        let (kept, rep) = dedup(doubled.clone(), &DedupConfig::default());
        // The originals may already repeat among themselves: compare with a plain count.
        let distinct: HashSet<_> = eps
            .iter()
            .map(|e| (e.task_name.clone(), e.seed, e.steps.iter().map(|s| s.action.clone()).collect::<Vec<_>>(), e.steps.iter().any(has_think)))
            .collect();
        assert_eq!(rep.kept, distinct.len());
        assert_eq!(rep.removed, 200 - distinct.len());
        assert_eq!(kept.len(), rep.kept);
        assert!(kept.iter().all(|e| e.agent.model_name != "other"), "the first occurrence is kept");
        let (_, rep) = dedup(doubled, &DedupConfig { per_agent: true });
        assert!(rep.kept > distinct.len());
        // With and without thoughts are both kept.
        let (both, _) = think_variant(eps.clone(), &ThinkConfig { mode: ThinkMode::Both });
        let n = both.len();
        let (_, rep) = dedup(both.clone(), &DedupConfig::default());
        let (_, rep_with) = dedup(both[..n - eps.len()].to_vec(), &DedupConfig::default());
        let (_, rep_without) = dedup(both[n - eps.len()..].to_vec(), &DedupConfig::default());
        assert_eq!(rep.kept, rep_with.kept + rep_without.kept);
    }

    #[test]
    fn mix_follows_weights_and_is_deterministic() {
        let pool = |name: &str, seed: u64, n: usize| -> Vec<Episode> {
            data(seed, n)
                .into_iter()
                .map(|mut e| {
                    e.agent.model_name = name.into();
                    e
                })
                .collect()
        };
        let pools = vec![pool("a", 10, 100), pool("b", 11, 40), pool("c", 12, 300)];
        let cfg = MixConfig { weights: vec![2.0, 1.0, 1.0], size: Some(120), allow_repeats: false, seed: 5 };
        let (out, rep) = mix(pools.clone(), &cfg).unwrap();
        assert_eq!(out.len(), 120);
        assert_eq!(rep.taken, vec![60, 30, 30]);
        for (name, n) in [("a", 60), ("b", 30), ("c", 30)] {
            assert_eq!(out.iter().filter(|e| e.agent.model_name == name).count(), n);
        }
        // Without replacement: no episode twice.
        let ids: HashSet<String> = out.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
        let pool_ids: HashSet<String> = pools.iter().flatten().map(|e| serde_json::to_string(e).unwrap()).collect();
        assert!(ids.is_subset(&pool_ids));
        // Interleaved, not concatenated.
        assert!(out[..60].iter().any(|e| e.agent.model_name != "a"));
        // Same seed, same result; another seed, another sample.
        assert_eq!(mix(pools.clone(), &cfg).unwrap().0, out);
        assert_ne!(mix(pools.clone(), &MixConfig { seed: 6, ..cfg.clone() }).unwrap().0, out);
        // Default size: the largest without repeats — pool b (40 episodes, 1/4) limits it to 160.
        let (out, rep) = mix(pools.clone(), &MixConfig { size: None, ..cfg.clone() }).unwrap();
        assert_eq!((out.len(), rep.taken.clone(), rep.repeated), (160, vec![80, 40, 40], 0));
        // Too large without repeats: an error that says what to do; with repeats: ⌊k⌋/⌈k⌉.
        let err = mix(pools.clone(), &MixConfig { size: Some(400), ..cfg.clone() }).unwrap_err().to_string();
        assert!(err.contains("pool 0 has 100 episodes") && err.contains("allow_repeats"), "{err}");
        let (out, rep) = mix(pools.clone(), &MixConfig { size: Some(400), allow_repeats: true, ..cfg.clone() }).unwrap();
        assert_eq!((rep.taken.clone(), rep.repeated), (vec![200, 100, 100], 100 + 60));
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for e in out.iter().filter(|e| e.agent.model_name == "b") {
            *count.entry(serde_json::to_string(e).unwrap()).or_default() += 1;
        }
        assert_eq!(count.len(), 40, "every episode of pool b is used");
        assert!(count.values().all(|&c| c == 2 || c == 3), "pool b repeated 2.5 times: each episode 2 or 3 times ({count:?})");
        // Bad configs.
        assert!(mix(pools.clone(), &MixConfig { weights: vec![1.0, 1.0], ..cfg.clone() }).unwrap_err().to_string().contains("2 weights for 3 pools"));
        assert!(mix(pools.clone(), &MixConfig { weights: vec![1.0, -1.0, 1.0], ..cfg.clone() }).is_err());
        let (out, rep) = mix(vec![pools[0].clone(), vec![]], &MixConfig { weights: vec![1.0, 0.0], size: Some(10), ..cfg.clone() }).unwrap();
        assert_eq!((out.len(), rep.taken), (10, vec![10, 0]));
    }

    #[test]
    fn configs_have_schemas_with_field_docs() {
        let split = serde_json::to_string(&schemars::schema_for!(SplitConfig)).unwrap();
        assert!(split.contains("inter_task") && split.contains("held_out_categories") && split.contains("Expected fraction"), "{split}");
        let mix = serde_json::to_string(&schemars::schema_for!(MixConfig)).unwrap();
        assert!(mix.contains("allow_repeats") && mix.contains("only their ratios matter"), "{mix}");
        for s in [
            serde_json::to_string(&schemars::schema_for!(FilterConfig)).unwrap(),
            serde_json::to_string(&schemars::schema_for!(ThinkConfig)).unwrap(),
            serde_json::to_string(&schemars::schema_for!(DedupConfig)).unwrap(),
            serde_json::to_string(&schemars::schema_for!(StatsConfig)).unwrap(),
        ] {
            assert!(s.contains("description"), "{s}");
        }
        // Defaults and unknown fields, as a pipeline YAML would give them.
        assert_eq!(serde_json::from_str::<FilterConfig>("{}").unwrap(), FilterConfig::default());
        assert!(serde_json::from_str::<FilterConfig>(r#"{"succes_only": true}"#).is_err());
        assert!(serde_json::from_str::<MixConfig>(r#"{"weights": [1, 2], "sede": 3}"#).is_err());
        assert!(serde_json::from_str::<MixConfig>(r#"{"weights": [1, 2]}"#).is_ok());
    }

    #[test]
    fn apportion_is_exact() {
        assert_eq!(apportion(10, &[1.0, 1.0, 1.0]), vec![4, 3, 3]);
        assert_eq!(apportion(7, &[0.5, 0.0, 0.5]), vec![4, 0, 3]);
        for n in 0..50 {
            assert_eq!(apportion(n, &[0.3, 0.2, 0.1, 0.4]).iter().sum::<usize>(), n);
        }
    }

    #[test]
    fn stats_count_everything() {
        let eps = data(6, 250);
        let m = stats(&eps, &StatsConfig::default());
        assert_eq!(m["episodes"], json!(250));
        let steps: usize = eps.iter().map(|e| e.action_steps().count()).sum();
        assert_eq!(m["steps"], json!(steps));
        let sr = eps.iter().filter(|e| e.success).count() as f64 / 250.0;
        assert!((m["success_rate"].as_f64().unwrap() - sr).abs() < 1e-12);
        assert!((m["mean_steps"].as_f64().unwrap() - steps as f64 / 250.0).abs() < 1e-12);
        let per_task = m["per_task"].as_object().unwrap();
        assert_eq!(per_task.len(), m["tasks"].as_u64().unwrap() as usize);
        assert_eq!(per_task.values().map(|v| v["episodes"].as_u64().unwrap()).sum::<u64>(), 250);
        let per_cat = m["per_category"].as_object().unwrap();
        assert_eq!(per_cat["form"]["episodes"], json!(eps.iter().filter(|e| e.category == "form").count()));
        let per_agent = m["per_agent"].as_object().unwrap();
        assert_eq!(per_agent.keys().collect::<Vec<_>>(), vec!["gpt-4o/expert", "llama-70b/expert"]);
        let small = stats(&[], &StatsConfig { per_task: false, per_category: false, per_agent: false });
        assert_eq!(small["episodes"], json!(0));
        assert_eq!(small["success_rate"], json!(0.0));
        assert!(!small.contains_key("per_task"));
    }
}
