//! Task templates: the registry (`miniarena.<category>.<template>`), the instance a template
//! draws from a seed (a world, a start page, a goal, and a target), and the target's
//! validator. Each category's templates, validators and expert plans live in one file.

pub mod catalog;
pub mod dashboard;
pub mod form;
pub mod knowledge;
pub mod list;
pub mod menu;

use rand::seq::SliceRandom;
use rand::Rng as _;
use serde::Serialize;

use crate::app::{chrome, Filler, Route, Session, World};
use crate::expert::{Plan, PlanCx};
use crate::pick::Rng;
use crate::size::PageSize;
use crate::vocab;

/// WorkArena L1's seven categories.
pub const CATEGORIES: [&str; 7] = ["form", "list_filter", "list_sort", "service_catalog", "menu", "knowledge_base", "dashboard"];

/// A task template.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TemplateInfo {
    /// `miniarena.<category>.<template>`.
    pub name: &'static str,
    /// One of [`CATEGORIES`].
    pub category: &'static str,
    pub description: &'static str,
    #[serde(skip)]
    pub(crate) generate: fn(&'static str, u64, PageSize) -> Instance,
}

/// One task instance: everything a seed decides.
pub(crate) struct Instance {
    pub goal: String,
    pub world: World,
    pub start: Route,
    pub target: Target,
}

/// The answer of a question-answering task.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    /// What the message must contain (normalised, see [`answer_matches`]).
    pub answer: String,
    /// The expert's answer sentence (it contains `answer`).
    pub message: String,
    /// Plausible wrong answers (for expert mistakes and tests).
    pub decoys: Vec<String>,
}

/// What the task asks for; decides the reward.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Record(form::RecordTarget),
    Filter(list::FilterTarget),
    Sort(list::SortTarget),
    Order(catalog::OrderTarget),
    Page(menu::PageTarget),
    Impersonate(menu::ImpersonateTarget),
    Kb(knowledge::KbTarget),
    Dash(dashboard::DashTarget),
}

impl Target {
    /// Whether success is judged from a final message rather than the state.
    pub fn expects_answer(&self) -> bool {
        matches!(self, Target::Kb(_) | Target::Dash(_))
    }

    /// State-based success (always false for question-answering targets).
    pub fn satisfied(&self, w: &World, s: &Session) -> bool {
        match self {
            Target::Record(t) => t.satisfied(w),
            Target::Filter(t) => t.satisfied(s),
            Target::Sort(t) => t.satisfied(w, s),
            Target::Order(t) => t.satisfied(w),
            Target::Page(t) => t.satisfied(s),
            Target::Impersonate(t) => t.satisfied(w),
            Target::Kb(_) | Target::Dash(_) => false,
        }
    }

    /// Whether a message to the user answers the question.
    pub fn answer_ok(&self, msg: &str) -> bool {
        match self {
            Target::Kb(t) => answer_matches(msg, &t.reply.answer),
            Target::Dash(t) => answer_matches(msg, &t.reply.answer),
            _ => false,
        }
    }

    /// The goal's expected outcome, in words (used to check instances are distinct).
    pub fn summary(&self) -> String {
        match self {
            Target::Record(t) => format!("{t:?}"),
            Target::Filter(t) => format!("{t:?}"),
            Target::Sort(t) => format!("{t:?}"),
            Target::Order(t) => format!("{t:?}"),
            Target::Page(t) => format!("{t:?}"),
            Target::Impersonate(t) => format!("{t:?}"),
            Target::Kb(t) => format!("answer {:?}", t.reply.answer),
            Target::Dash(t) => format!("answer {:?}", t.reply.answer),
        }
    }

    /// The expert's next step towards the target.
    pub fn plan(&self, cx: &mut PlanCx<'_>) -> Plan {
        match self {
            Target::Record(t) => t.plan(cx),
            Target::Filter(t) => t.plan(cx),
            Target::Sort(t) => t.plan(cx),
            Target::Order(t) => t.plan(cx),
            Target::Page(t) => t.plan(cx),
            Target::Impersonate(t) => t.plan(cx),
            Target::Kb(t) => t.plan(cx),
            Target::Dash(t) => t.plan(cx),
        }
    }

    /// The plain answer (for question-answering targets).
    pub fn answer(&self) -> Option<&str> {
        match self {
            Target::Kb(t) => Some(&t.reply.answer),
            Target::Dash(t) => Some(&t.reply.answer),
            _ => None,
        }
    }
}

/// Lower-cases, drops thousands separators and currency signs, and splits into words
/// (keeping `.`, `-`, `@`, `+`, `/` and `:` inside words; trailing dots are dropped).
pub fn normalize_answer(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut cleaned = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        let between_digits = i > 0 && i + 1 < chars.len() && chars[i - 1].is_ascii_digit() && chars[i + 1].is_ascii_digit();
        if c == ',' && between_digits {
            continue;
        }
        if c.is_alphanumeric() || matches!(c, '.' | '-' | '@' | '+' | '/' | ':') {
            cleaned.extend(c.to_lowercase());
        } else {
            cleaned.push(' ');
        }
    }
    cleaned.split_whitespace().map(|w| w.trim_end_matches(['.', ':']).trim_start_matches(':').to_string()).filter(|w| !w.is_empty()).collect()
}

/// Whether the normalised `expected` words appear, in a row, in the normalised message.
pub fn answer_matches(msg: &str, expected: &str) -> bool {
    let m = normalize_answer(msg);
    let e = normalize_answer(expected);
    !e.is_empty() && m.windows(e.len()).any(|w| w == e.as_slice())
}

macro_rules! template {
    ($name:literal, $cat:literal, $desc:literal, $gen:path) => {
        TemplateInfo { name: $name, category: $cat, description: $desc, generate: $gen }
    };
}

static TEMPLATES: [TemplateInfo; 23] = [
    template!("miniarena.form.create_incident", "form", "Create an incident with given field values (some on form tabs).", form::create_incident),
    template!(
        "miniarena.form.create_change_request",
        "form",
        "Create a change request with given field values, including planning and schedule tabs.",
        form::create_change_request
    ),
    template!("miniarena.form.create_problem", "form", "Create a problem record with given field values.", form::create_problem),
    template!("miniarena.form.create_user", "form", "Create a user with given names, contact details, choices and checkboxes.", form::create_user),
    template!(
        "miniarena.form.create_hardware_asset",
        "form",
        "Create a hardware asset with given model, state, location and financial fields.",
        form::create_hardware_asset
    ),
    template!(
        "miniarena.list_filter.filter_incidents",
        "list_filter",
        "Filter the incident list with 2-3 conditions using the condition builder.",
        list::filter_incidents
    ),
    template!(
        "miniarena.list_filter.filter_change_requests",
        "list_filter",
        "Filter the change request list with 2-3 conditions.",
        list::filter_change_requests
    ),
    template!(
        "miniarena.list_filter.filter_hardware_assets",
        "list_filter",
        "Filter the hardware asset list with 2-3 conditions.",
        list::filter_hardware_assets
    ),
    template!("miniarena.list_sort.sort_incidents", "list_sort", "Sort the incident list by three fields with given directions.", list::sort_incidents),
    template!("miniarena.list_sort.sort_users", "list_sort", "Sort the user list by three fields with given directions.", list::sort_users),
    template!(
        "miniarena.list_sort.sort_hardware_assets",
        "list_sort",
        "Sort the hardware asset list by three fields with given directions.",
        list::sort_hardware_assets
    ),
    template!(
        "miniarena.service_catalog.order_hardware",
        "service_catalog",
        "Order a laptop or desktop with a configuration and quantity.",
        catalog::order_hardware
    ),
    template!(
        "miniarena.service_catalog.order_mobile_device",
        "service_catalog",
        "Order a phone or tablet with colour, storage, plan and accessories.",
        catalog::order_mobile_device
    ),
    template!(
        "miniarena.service_catalog.order_software",
        "service_catalog",
        "Order software licences with options and a business justification.",
        catalog::order_software
    ),
    template!(
        "miniarena.service_catalog.order_peripheral",
        "service_catalog",
        "Order a monitor, keyboard or headset with options and quantity.",
        catalog::order_peripheral
    ),
    template!("miniarena.menu.navigate_to_module", "menu", "Open a given module of a given application from the All menu.", menu::navigate_to_module),
    template!("miniarena.menu.impersonate_user", "menu", "Impersonate a given user from the user menu.", menu::impersonate_user),
    template!(
        "miniarena.knowledge_base.travel_policy",
        "knowledge_base",
        "Search the knowledge base and answer a question about a city's travel policy.",
        knowledge::travel_policy
    ),
    template!(
        "miniarena.knowledge_base.support_contact",
        "knowledge_base",
        "Search the knowledge base for a support team's phone extension in an office.",
        knowledge::support_contact
    ),
    template!(
        "miniarena.knowledge_base.approved_version",
        "knowledge_base",
        "Search the knowledge base for the approved version of a software on a platform.",
        knowledge::approved_version
    ),
    template!("miniarena.dashboard.read_value", "dashboard", "Read one data point of a chart on a dashboard tab and report it.", dashboard::read_value),
    template!("miniarena.dashboard.find_max", "dashboard", "Report which label has the highest value in a chart.", dashboard::find_max),
    template!("miniarena.dashboard.sum_values", "dashboard", "Report the total of all values in a chart.", dashboard::sum_values),
];

/// All templates.
pub fn templates() -> &'static [TemplateInfo] {
    &TEMPLATES
}

/// The template called `name`; the error lists the nearest names (or all of them).
pub fn template(name: &str) -> anyhow::Result<&'static TemplateInfo> {
    if let Some(t) = TEMPLATES.iter().find(|t| t.name == name) {
        return Ok(t);
    }
    let mut near: Vec<(f64, &str)> = TEMPLATES
        .iter()
        .map(|t| {
            let short = t.name.trim_start_matches("miniarena.");
            let score = strsim::jaro_winkler(name, t.name).max(strsim::jaro_winkler(name, short));
            (score, t.name)
        })
        .filter(|(s, _)| *s > 0.8)
        .collect();
    near.sort_by(|a, b| b.0.total_cmp(&a.0));
    let hint = if near.is_empty() {
        format!("known templates: {}", TEMPLATES.iter().map(|t| t.name).collect::<Vec<_>>().join(", "))
    } else {
        let names: Vec<String> = near.iter().take(3).map(|(_, n)| format!("`{n}`")).collect();
        format!("did you mean {}?", names.join(" or "))
    };
    anyhow::bail!("unknown MiniArena task `{name}`; {hint} (task names are `miniarena.<category>.<template>`)")
}

/// Expands a list of selectors: full template names, category names (`form`), `all`.
pub fn select_templates(selectors: &[&str]) -> anyhow::Result<Vec<&'static TemplateInfo>> {
    let mut out: Vec<&'static TemplateInfo> = Vec::new();
    for sel in selectors {
        let matched: Vec<&'static TemplateInfo> = if *sel == "all" {
            TEMPLATES.iter().collect()
        } else if CATEGORIES.contains(sel) {
            TEMPLATES.iter().filter(|t| t.category == *sel).collect()
        } else {
            vec![template(sel)?]
        };
        for t in matched {
            if !out.iter().any(|o| o.name == t.name) {
                out.push(t);
            }
        }
    }
    Ok(out)
}

/// Seeds `start, start+1, …, start+count−1`: one task instance per seed and template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Seeds {
    /// The first seed.
    #[serde(default)]
    pub start: u64,
    /// How many seeds.
    pub count: u64,
}

impl Seeds {
    pub fn list(&self) -> Vec<u64> {
        (self.start..self.start + self.count).collect()
    }

    /// What is wrong with these seeds, if anything: the field (`count`, `start`) and why.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.count == 0 {
            Some(("count", "must be at least 1"))
        } else if self.start.checked_add(self.count).is_none() {
            Some(("start", "start + count overflows"))
        } else {
            None
        }
    }
}

/// The instance `seed` of template `t` with pages of `size`.
///
/// Every size makes the same random draws up to the goal, so a seed has the same goal at every
/// size; what a smaller size leaves out is cut after drawing (here the people, in the
/// templates the rest).
pub(crate) fn instantiate(t: &'static TemplateInfo, seed: u64, size: PageSize) -> Instance {
    let mut inst = (t.generate)(t.name, seed, size);
    keep_first(&mut inst.world.people, size.people(), |_| false);
    inst
}

/// Keeps the first `n` items, and beyond them those that `must` keeps (counted in `n`), in
/// their order.
pub(crate) fn keep_first<T>(items: &mut Vec<T>, n: usize, must: impl Fn(&T) -> bool) {
    if items.len() <= n {
        return;
    }
    let musts = items.iter().filter(|x| must(x)).count();
    let mut others = n.saturating_sub(musts);
    items.retain(|x| {
        if must(x) {
            return true;
        }
        let keep = others > 0;
        others = others.saturating_sub(1);
        keep
    });
}

/// The world every instance starts from: people, a few records per table, the standard and
/// some custom applications, filler knowledge articles and dashboards.
///
/// All of the 24 people are kept here, whatever the size (goals draw from them); `instantiate`
/// keeps the first ones of a smaller size (a random subset: they are drawn in random order).
pub(crate) fn base_world(rng: &mut Rng, size: PageSize) -> World {
    let mut idx: Vec<usize> = (0..vocab::person_count()).collect();
    let (chosen, _) = idx.partial_shuffle(rng, 24);
    let people: Vec<String> = chosen.iter().map(|&i| vocab::person(i)).collect();
    let user = "System Administrator".to_string();
    let n_custom = rng.random_range(3..=5);
    let mut custom = random_custom_apps(rng, n_custom, None);
    custom.truncate(size.custom_apps());
    let apps = build_apps(&user, custom);
    let seed = rng.random();
    let filler = match size {
        PageSize::Full => Filler {
            seed,
            articles: |rng| knowledge::filler_articles(rng, PageSize::Full.filler_articles()),
            dashboards: |rng| dashboard::random_dashboards(rng, PageSize::Full.filler_dashboards(), &[]),
        },
        PageSize::Small => Filler {
            seed,
            articles: |rng| knowledge::small_articles(knowledge::filler_articles(rng, PageSize::Small.filler_articles())),
            dashboards: |rng| dashboard::small_dashboards(dashboard::random_dashboards(rng, PageSize::Small.filler_dashboards(), &[]), None),
        },
    };
    World::new(user, people, apps, rng.random_range(0..60), filler, size)
}

/// A custom application to add to the navigator: a name and module indices.
pub(crate) struct CustomApp {
    pub name: String,
    pub modules: Vec<usize>,
}

pub(crate) fn random_custom_apps(rng: &mut Rng, n: usize, avoid: Option<&str>) -> Vec<CustomApp> {
    let mut out: Vec<CustomApp> = Vec::new();
    while out.len() < n {
        let name = format!("{} {}", vocab::pick(rng, chrome::CUSTOM_PREFIXES), vocab::pick(rng, chrome::CUSTOM_DOMAINS));
        if Some(name.as_str()) == avoid || out.iter().any(|a| a.name == name) {
            continue;
        }
        let k = rng.random_range(3..=6);
        let mut modules: Vec<usize> = (0..chrome::CUSTOM_MODULES.len()).collect();
        modules.shuffle(rng);
        modules.truncate(k);
        modules.sort_unstable();
        out.push(CustomApp { name, modules });
    }
    out
}

/// The navigator: standard and custom applications in alphabetical order.
pub(crate) fn build_apps(user: &str, custom: Vec<CustomApp>) -> Vec<chrome::App> {
    let mut entries: Vec<(String, Option<CustomApp>)> = chrome::standard_apps(user).into_iter().map(|a| (a.name, None)).collect();
    entries.extend(custom.into_iter().map(|c| (c.name.clone(), Some(c))));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let standard = chrome::standard_apps(user);
    entries
        .into_iter()
        .enumerate()
        .map(|(i, (name, custom))| match custom {
            Some(c) => chrome::custom_app(c.name, i as u8, &c.modules),
            None => standard.iter().find(|a| a.name == name).cloned().unwrap_or(chrome::App { name, modules: Vec::new() }),
        })
        .collect()
}

/// Quotes a value for a goal, as WorkArena does.
pub(crate) fn q(s: &str) -> String {
    format!("\"{s}\"")
}

/// "a, b, and c".
pub(crate) fn join_and(items: &[String]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        2 => format!("{} and {}", items[0], items[1]),
        n => format!("{}, and {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

#[cfg(test)]
mod validator_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_normalised() {
        assert!(answer_matches("The rate is $185.", "$185"));
        assert!(answer_matches("  the RATE is 185 ", "185"));
        assert!(!answer_matches("The rate is 1185.", "185"));
        assert!(answer_matches("Total: 1,234", "1234"));
        assert!(answer_matches("It is 1 - Critical.", "1 - Critical"));
        assert!(answer_matches("Version 12.4.1 is approved", "12.4.1"));
        assert!(!answer_matches("Version 12.4 is approved", "12.4.1"));
        assert!(answer_matches("extension x4821", "x4821"));
        assert!(!answer_matches("anything", ""));
    }

    #[test]
    fn lookup_suggests_near_names() {
        let err = template("miniarena.form.create_incidnt").unwrap_err().to_string();
        assert!(err.contains("did you mean `miniarena.form.create_incident`"), "{err}");
        let err = template("zzz").unwrap_err().to_string();
        assert!(err.contains("known templates: miniarena.form.create_incident"), "{err}");
        assert_eq!(select_templates(&["form"]).unwrap().len(), 5);
        assert_eq!(select_templates(&["all", "form"]).unwrap().len(), TEMPLATES.len());
    }

    #[test]
    fn registry_covers_every_category_twice() {
        for c in CATEGORIES {
            let n = TEMPLATES.iter().filter(|t| t.category == c).count();
            assert!(n >= 2, "{c}: {n}");
        }
        for t in &TEMPLATES {
            assert!(t.name.starts_with(&format!("miniarena.{}.", t.category)), "{}", t.name);
        }
    }
}
