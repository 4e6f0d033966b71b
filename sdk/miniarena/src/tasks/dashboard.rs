//! `dashboard` tasks: open a dashboard, find a chart (possibly on another tab) and report a
//! value read from it, the label with the highest value, or the total of its values, with
//! `send_msg_to_user`. Also makes the dashboards every instance has.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng as _;

use super::{base_world, q, Instance, Reply, Target};
use crate::app::dashboard::{DashTab, Dashboard, Widget, WidgetKind};
use crate::app::{Ctl, Dest, Route, Ui};
use crate::expert::{Plan, PlanCx};
use crate::pick::{self, Pick, Rng};
use crate::size::PageSize;
use crate::vocab::{self, GROUPS};

#[derive(Clone, Debug)]
pub(crate) struct DashTarget {
    pub reply: Reply,
    pub dashboard: u8,
    pub tab: u8,
    pub chart: String,
}

impl DashTarget {
    pub fn plan(&self, cx: &mut PlanCx<'_>) -> Plan {
        let chart = &self.chart;
        let name = cx.world.dashboards()[self.dashboard as usize].name.clone();
        match (&cx.session.route, &cx.session.ui) {
            (Route::Dashboards, _) => cx.click(Ctl::Dashboard(self.dashboard), format!("the chart \"{chart}\" is on the \"{name}\" dashboard")),
            (Route::Dashboard(d), Ui::Dashboard { tab }) if *d == self.dashboard => {
                if *tab != self.tab {
                    let tab_name = cx.world.dashboards()[*d as usize].tabs[self.tab as usize].name.clone();
                    return cx.click(Ctl::DashTab(self.tab), format!("the chart \"{chart}\" is not on this tab; it is on the \"{tab_name}\" tab"));
                }
                let why = format!("the chart \"{chart}\" shows");
                let r = &self.reply;
                cx.answer(r.message.clone(), &r.answer, r.decoys.clone(), why)
            }
            (Route::Dashboard(_), _) => cx.click(Ctl::Go(Dest::Dashboards), format!("this is not the \"{name}\" dashboard")),
            _ => cx.recover(Ctl::Dashboard(self.dashboard)),
        }
    }
}

pub(crate) const DASHBOARDS: &[&str] = &[
    "IT Operations",
    "Service Desk Overview",
    "Change Management",
    "Asset Overview",
    "HR Service Delivery",
    "Security Operations",
    "Customer Service",
    "Facilities",
];
const TAB_NAMES: &[&str] = &["Overview", "Trends", "Backlog", "Teams", "SLA"];
const METRICS: &[&str] =
    &["Open incidents", "Resolved incidents", "Change requests", "Problems", "Catalog requests", "Hardware assets", "Open tasks", "SLA breaches"];
const DIMENSIONS: &[(&str, &[&str])] = &[
    ("Category", &["Software", "Hardware", "Network", "Database", "Inquiry / Help"]),
    ("Priority", &["1 - Critical", "2 - High", "3 - Moderate", "4 - Low", "5 - Planning"]),
    ("Assignment group", GROUPS),
    ("Location", &["Berlin", "Chicago", "London", "Paris", "Singapore", "Sydney"]),
    ("State", &["New", "In Progress", "On Hold", "Resolved"]),
    ("Channel", &["Email", "Phone", "Self-service", "Walk-in", "Chat"]),
];

fn chart_title(metric: usize, dim: usize) -> String {
    format!("{} by {}", METRICS[metric], DIMENSIONS[dim].0)
}

fn random_kind(rng: &mut Rng) -> WidgetKind {
    *[WidgetKind::Bar, WidgetKind::Pie, WidgetKind::Table].choose(rng).unwrap_or(&WidgetKind::Bar)
}

fn random_widget(rng: &mut Rng, taken: &[String]) -> Widget {
    loop {
        if rng.random_bool(0.2) {
            let m = rng.random_range(0..METRICS.len());
            let title = METRICS[m].to_string();
            if !taken.contains(&title) {
                return Widget { title, kind: WidgetKind::Score, data: vec![(String::new(), rng.random_range(0..500))] };
            }
            continue;
        }
        let (m, d) = (rng.random_range(0..METRICS.len()), rng.random_range(0..DIMENSIONS.len()));
        let title = chart_title(m, d);
        if taken.contains(&title) {
            continue;
        }
        let data = DIMENSIONS[d].1.iter().map(|l| (l.to_string(), rng.random_range(0..100))).collect();
        return Widget { title, kind: random_kind(rng), data };
    }
}

fn random_dashboard(rng: &mut Rng, name: &str) -> Dashboard {
    let n_tabs = rng.random_range(2..=3);
    let mut tab_names: Vec<&str> = TAB_NAMES.to_vec();
    tab_names.shuffle(rng);
    let mut taken: Vec<String> = Vec::new();
    let tabs = tab_names[..n_tabs]
        .iter()
        .map(|t| {
            let widgets = (0..rng.random_range(2..=3))
                .map(|_| {
                    let w = random_widget(rng, &taken);
                    taken.push(w.title.clone());
                    w
                })
                .collect();
            DashTab { name: t.to_string(), widgets }
        })
        .collect();
    Dashboard { name: name.to_string(), owner: vocab::random_person(rng), tabs }
}

/// `n` random dashboards, none called one of `avoid`.
pub(crate) fn random_dashboards(rng: &mut Rng, n: usize, avoid: &[&str]) -> Vec<Dashboard> {
    let mut names: Vec<&str> = DASHBOARDS.iter().copied().filter(|d| !avoid.contains(d)).collect();
    names.shuffle(rng);
    names.iter().take(n).map(|name| random_dashboard(rng, name)).collect()
}

/// Dashboards cut to small pages: at most `PageSize::Small.other_widgets()` widgets per tab
/// besides the chart called `keep`.
pub(crate) fn small_dashboards(mut dashboards: Vec<Dashboard>, keep: Option<&str>) -> Vec<Dashboard> {
    for d in &mut dashboards {
        for t in &mut d.tabs {
            super::keep_first(&mut t.widgets, PageSize::Small.other_widgets(), |w| Some(w.title.as_str()) == keep);
        }
    }
    dashboards
}

/// The world with dashboard `dash` holding chart (metric, dim) with `data`; returns where. A
/// smaller size keeps fewer other dashboards and widgets (drawn all the same).
fn place_chart(rng: &mut Rng, size: PageSize, dash: usize, metric: usize, dim: usize, data: Vec<(String, u32)>) -> Placed {
    let mut world = base_world(rng, size);
    let name = DASHBOARDS[dash];
    let mut target = random_dashboard(rng, name);
    let title = chart_title(metric, dim);
    for t in &mut target.tabs {
        t.widgets.retain(|w| w.title != title);
    }
    let tab = rng.random_range(0..target.tabs.len());
    let at = rng.random_range(0..=target.tabs[tab].widgets.len());
    target.tabs[tab].widgets.insert(at, Widget { title: title.clone(), kind: random_kind(rng), data });
    let n_other = rng.random_range(3..=5);
    let mut dashboards = random_dashboards(rng, n_other, &[name]);
    dashboards.truncate(size.other_dashboards());
    let pos = rng.random_range(0..=dashboards.len());
    dashboards.insert(pos, target);
    if !size.is_full() {
        dashboards = small_dashboards(dashboards, Some(&title));
    }
    world.set_dashboards(dashboards);
    (world, pos as u8, tab as u8, title)
}

/// Where the chart is: (world, dashboard index, tab index, chart title).
type Placed = (crate::app::World, u8, u8, String);

fn instance(placed: Placed, goal: String, reply: Reply) -> Instance {
    let (world, dashboard, tab, chart) = placed;
    Instance { goal, world, start: Route::Dashboards, target: Target::Dash(DashTarget { reply, dashboard, tab, chart }) }
}

pub(crate) fn read_value(name: &'static str, seed: u64, size: PageSize) -> Instance {
    let mut rng = pick::rng(name, seed);
    let sizes: Vec<u64> = DIMENSIONS.iter().map(|d| d.1.len() as u64 * 100).collect();
    let base = (DASHBOARDS.len() * METRICS.len()) as u64;
    let mut pick = Pick::new(name, seed, base * sizes.iter().sum::<u64>());
    let dash = pick.digit(DASHBOARDS.len());
    let metric = pick.digit(METRICS.len());
    let dim = pick.branch(&sizes);
    let labels = DIMENSIONS[dim].1;
    let li = pick.digit(labels.len());
    let value = pick.digit(100) as u32;
    let data: Vec<(String, u32)> = labels.iter().enumerate().map(|(i, l)| (l.to_string(), if i == li { value } else { rng.random_range(0..100) })).collect();
    let mut decoys: Vec<String> = data.iter().filter(|p| p.1 != value).map(|p| p.1.to_string()).collect();
    decoys.push((value + 1).to_string());
    let label = labels[li];
    let placed = place_chart(&mut rng, size, dash, metric, dim, data);
    let chart = placed.3.clone();
    let goal = format!("What is the value of {} in the {} chart on the {} dashboard? Report the number.", q(label), q(&chart), q(DASHBOARDS[dash]));
    let message = format!("The value of {label} is {value}.");
    instance(placed, goal, Reply { answer: value.to_string(), message, decoys })
}

pub(crate) fn find_max(name: &'static str, seed: u64, size: PageSize) -> Instance {
    let mut rng = pick::rng(name, seed);
    let sizes: Vec<u64> = DIMENSIONS.iter().map(|d| d.1.len() as u64).collect();
    let base = (DASHBOARDS.len() * METRICS.len() * 2) as u64;
    let mut pick = Pick::new(name, seed, base * sizes.iter().sum::<u64>());
    let dash = pick.digit(DASHBOARDS.len());
    let metric = pick.digit(METRICS.len());
    let phrasing = pick.digit(2);
    let dim = pick.branch(&sizes);
    let labels = DIMENSIONS[dim].1;
    let li = pick.digit(labels.len());
    let max = rng.random_range(40..100);
    let data: Vec<(String, u32)> = labels.iter().enumerate().map(|(i, l)| (l.to_string(), if i == li { max } else { rng.random_range(0..max) })).collect();
    let label = labels[li];
    let decoys: Vec<String> = labels.iter().filter(|l| **l != label).map(|l| l.to_string()).collect();
    let placed = place_chart(&mut rng, size, dash, metric, dim, data);
    let chart = placed.3.clone();
    let dim_name = DIMENSIONS[dim].0.to_lowercase();
    let goal = if phrasing == 0 {
        format!("Which {dim_name} has the highest value in the {} chart on the {} dashboard?", q(&chart), q(DASHBOARDS[dash]))
    } else {
        format!("In the {} chart of the {} dashboard, which {dim_name} has the largest value?", q(&chart), q(DASHBOARDS[dash]))
    };
    let message = format!("{label} has the highest value ({max}).");
    instance(placed, goal, Reply { answer: label.to_string(), message, decoys })
}

pub(crate) fn sum_values(name: &'static str, seed: u64, size: PageSize) -> Instance {
    let mut rng = pick::rng(name, seed);
    let base = (DASHBOARDS.len() * METRICS.len() * DIMENSIONS.len() * 2) as u64;
    let mut pick = Pick::new(name, seed, base * 200);
    let dash = pick.digit(DASHBOARDS.len());
    let metric = pick.digit(METRICS.len());
    let dim = pick.digit(DIMENSIONS.len());
    let phrasing = pick.digit(2);
    let total = 60 + pick.digit(200) as u32;
    let labels = DIMENSIONS[dim].1;
    // A random split of `total` into one part per label.
    let mut cuts: Vec<u32> = (0..labels.len() - 1).map(|_| rng.random_range(0..=total)).collect();
    cuts.sort_unstable();
    let mut prev = 0;
    let mut parts = Vec::with_capacity(labels.len());
    for c in cuts.iter().chain(std::iter::once(&total)) {
        parts.push(c - prev);
        prev = *c;
    }
    let data: Vec<(String, u32)> = labels.iter().map(|l| l.to_string()).zip(parts).collect();
    let decoys = vec![(total + 1).to_string(), (total - 1).to_string(), (total + 10).to_string()];
    let placed = place_chart(&mut rng, size, dash, metric, dim, data);
    let chart = placed.3.clone();
    let goal = if phrasing == 0 {
        format!("What is the total of all values in the {} chart on the {} dashboard? Report the number.", q(&chart), q(DASHBOARDS[dash]))
    } else {
        format!("Add up all the values shown in the {} chart on the {} dashboard. What is the total?", q(&chart), q(DASHBOARDS[dash]))
    };
    let message = format!("The values add up to {total}.");
    instance(placed, goal, Reply { answer: total.to_string(), message, decoys })
}
