//! Page sizes: `full` pages are WorkArena-like (24 people in the impersonation dialog, 20 rows
//! on a list page, long knowledge articles...); `small` pages hold the same tasks — the same
//! goal for the same seed, the same validators, the same expert plans — with less on every
//! page, for models trained on a small budget (docs/traces.md, "Page size").
//!
//! Small instances are drawn exactly as full ones (the same random draws, so the goal does not
//! change) and then cut: fewer people, list rows, applications, articles, dashboards and
//! widgets, shorter articles, form fields and option lists limited to what the task can use.

use std::fmt;

use agentmerge_traces::Episode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How much a MiniArena page holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PageSize {
    /// WorkArena-like pages (the default).
    #[default]
    Full,
    /// Pages for small models: the same tasks with less on every page (about half the prompt
    /// tokens of a step overall, from 0.46 on lists to 0.89 on catalog pages: docs/traces.md).
    Small,
}

impl PageSize {
    pub const ALL: [PageSize; 2] = [PageSize::Full, PageSize::Small];

    /// `full` or `small`, as configs and traces spell it.
    pub fn name(self) -> &'static str {
        match self {
            PageSize::Full => "full",
            PageSize::Small => "small",
        }
    }

    /// The size called `name`.
    pub fn from_name(name: &str) -> anyhow::Result<PageSize> {
        PageSize::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| anyhow::anyhow!("unknown MiniArena page size `{name}`; sizes are `full` and `small`"))
    }

    /// Whether this is the default size (what configs and traces leave out).
    pub fn is_full(&self) -> bool {
        *self == PageSize::Full
    }

    /// What an episode records in `page_size`: nothing for full pages, so traces of full pages
    /// read as before.
    pub fn recorded(self) -> Option<String> {
        (!self.is_full()).then(|| self.name().to_string())
    }

    /// The size an episode was played at (its `page_size`; absent means full).
    pub fn of_episode(e: &Episode) -> anyhow::Result<PageSize> {
        match &e.page_size {
            None => Ok(PageSize::Full),
            Some(name) => PageSize::from_name(name).map_err(|err| anyhow::anyhow!("episode {} seed {}: {err}", e.task_name, e.seed)),
        }
    }

    // What a size holds. Full values are today's pages; small ones are the measured cuts
    // (docs/traces.md has the prompt tokens per template at both sizes).

    /// People of the instance (the impersonation dialog lists them all).
    pub(crate) fn people(self) -> usize {
        self.pick(24, 6)
    }

    /// Rows shown on one list page.
    pub(crate) fn list_rows(self) -> usize {
        self.pick(20, 5)
    }

    /// Custom applications in the navigator besides a task's own.
    pub(crate) fn custom_apps(self) -> usize {
        self.pick(usize::MAX, 1)
    }

    /// Articles a knowledge base search can turn up besides the one with the answer: similar
    /// ones (distractors) and others.
    pub(crate) fn kb_distractors(self) -> usize {
        self.pick(usize::MAX, 2)
    }
    pub(crate) fn kb_fillers(self) -> usize {
        self.pick(usize::MAX, 1)
    }

    /// Paragraphs of filler text kept per article section (key sentences are always kept).
    pub(crate) fn article_paragraphs(self) -> usize {
        self.pick(usize::MAX, 1)
    }

    /// Links on the home page.
    pub(crate) fn quick_links(self) -> usize {
        self.pick(5, 3)
    }

    /// Featured articles on the knowledge base's home page.
    pub(crate) fn featured_articles(self) -> usize {
        self.pick(5, 3)
    }

    /// Dashboards besides the one a task is about.
    pub(crate) fn other_dashboards(self) -> usize {
        self.pick(usize::MAX, 1)
    }

    /// Widgets per dashboard tab besides a task's chart.
    pub(crate) fn other_widgets(self) -> usize {
        self.pick(usize::MAX, 1)
    }

    /// Articles and dashboards of an instance whose task is not about them.
    pub(crate) fn filler_articles(self) -> usize {
        self.pick(8, 3)
    }
    pub(crate) fn filler_dashboards(self) -> usize {
        self.pick(4, 2)
    }

    /// The largest quantity a catalog item's Quantity offers (goals ask for 1 to 5).
    pub(crate) fn max_quantity(self) -> u8 {
        match self {
            PageSize::Full => 10,
            PageSize::Small => 5,
        }
    }

    /// Whether descriptive text (catalog descriptions, search snippets, the home page's tip)
    /// is shown.
    pub(crate) fn descriptions(self) -> bool {
        self.is_full()
    }

    fn pick(self, full: usize, small: usize) -> usize {
        match self {
            PageSize::Full => full,
            PageSize::Small => small,
        }
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PageSize {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<PageSize> {
        PageSize::from_name(s)
    }
}
