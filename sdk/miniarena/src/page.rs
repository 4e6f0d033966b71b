//! A rendered page: a flat element tree (roles, names, values, states, bids) kept in reusable
//! buffers, and its BrowserGym-style `axtree_txt` rendering.
//!
//! Pages are rebuilt from the application state after every action; the node vector and the
//! text arena keep their capacity, so a rebuild does not allocate once warmed up.

use std::fmt::{self, Write as _};

use crate::app::Ctl;

/// Accessibility roles, spelled as Chrome's accessibility tree spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Alert,
    Banner,
    Button,
    Cell,
    Checkbox,
    ColumnHeader,
    Combobox,
    Dialog,
    Figure,
    Form,
    Gridcell,
    Group,
    Heading,
    Link,
    List,
    ListItem,
    Main,
    Menu,
    MenuItem,
    Navigation,
    Option,
    Paragraph,
    Radio,
    RadioGroup,
    Region,
    Row,
    Searchbox,
    StaticText,
    Tab,
    TabList,
    TabPanel,
    Table,
    Textbox,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Alert => "alert",
            Role::Banner => "banner",
            Role::Button => "button",
            Role::Cell => "cell",
            Role::Checkbox => "checkbox",
            Role::ColumnHeader => "columnheader",
            Role::Combobox => "combobox",
            Role::Dialog => "dialog",
            Role::Figure => "figure",
            Role::Form => "form",
            Role::Gridcell => "gridcell",
            Role::Group => "group",
            Role::Heading => "heading",
            Role::Link => "link",
            Role::List => "list",
            Role::ListItem => "listitem",
            Role::Main => "main",
            Role::Menu => "menu",
            Role::MenuItem => "menuitem",
            Role::Navigation => "navigation",
            Role::Option => "option",
            Role::Paragraph => "paragraph",
            Role::Radio => "radio",
            Role::RadioGroup => "radiogroup",
            Role::Region => "region",
            Role::Row => "row",
            Role::Searchbox => "searchbox",
            Role::StaticText => "StaticText",
            Role::Tab => "tab",
            Role::TabList => "tablist",
            Role::TabPanel => "tabpanel",
            Role::Table => "table",
            Role::Textbox => "textbox",
        }
    }

    /// Whether `fill` works on it (an `<input>` or `<textarea>`).
    pub fn is_text_input(self) -> bool {
        matches!(self, Role::Textbox | Role::Searchbox)
    }
}

const REQUIRED: u16 = 1;
const DISABLED: u16 = 1 << 1;
const READONLY: u16 = 1 << 2;
const HAS_CHECKED: u16 = 1 << 3;
const CHECKED: u16 = 1 << 4;
const HAS_EXPANDED: u16 = 1 << 5;
const EXPANDED: u16 = 1 << 6;
const HAS_SELECTED: u16 = 1 << 7;
const SELECTED: u16 = 1 << 8;
const HAS_VALUE: u16 = 1 << 9;
const HAS_SORT: u16 = 1 << 10;
const SORT_DESC: u16 = 1 << 11;

#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: u32,
    end: u32,
}

/// One element.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    pub role: Role,
    /// Depth below the root (children of the root are at 1).
    pub depth: u8,
    /// What the element is bound to in the application (what clicking it does).
    pub ctl: Ctl,
    bid: Span,
    name: Span,
    value: Span,
    flags: u16,
}

impl Node {
    pub fn required(&self) -> bool {
        self.flags & REQUIRED != 0
    }
    pub fn disabled(&self) -> bool {
        self.flags & DISABLED != 0
    }
    pub fn readonly(&self) -> bool {
        self.flags & READONLY != 0
    }
    /// `Some(checked)` for checkboxes and radios.
    pub fn checked(&self) -> Option<bool> {
        (self.flags & HAS_CHECKED != 0).then_some(self.flags & CHECKED != 0)
    }
    pub fn selected(&self) -> bool {
        self.flags & SELECTED != 0
    }
    pub fn expanded(&self) -> Option<bool> {
        (self.flags & HAS_EXPANDED != 0).then_some(self.flags & EXPANDED != 0)
    }
}

/// The page being shown.
#[derive(Debug, Default)]
pub struct Page {
    url: String,
    title: String,
    nodes: Vec<Node>,
    text: String,
    depth: u8,
    region: u8,
    counters: [u32; 26],
    bid_base: u32,
    focused: Option<usize>,
}

/// A node just added, to set its value and states.
pub struct NodeMut<'a> {
    page: &'a mut Page,
    idx: usize,
}

impl NodeMut<'_> {
    pub fn ctl(self, ctl: Ctl) -> Self {
        self.page.nodes[self.idx].ctl = ctl;
        self
    }
    pub fn value(self, v: &str) -> Self {
        let span = self.page.push_text(v);
        let n = &mut self.page.nodes[self.idx];
        n.value = span;
        n.flags |= HAS_VALUE;
        self
    }
    fn flag(self, on: bool, bit: u16) -> Self {
        if on {
            self.page.nodes[self.idx].flags |= bit;
        }
        self
    }
    pub fn required(self, on: bool) -> Self {
        self.flag(on, REQUIRED)
    }
    pub fn disabled(self, on: bool) -> Self {
        self.flag(on, DISABLED)
    }
    /// Read-only inputs (BrowserGym does not print this state, but `fill` fails on them).
    pub fn readonly(self, on: bool) -> Self {
        self.flag(on, READONLY)
    }
    pub fn checked(self, on: bool) -> Self {
        self.flag(true, HAS_CHECKED).flag(on, CHECKED)
    }
    pub fn expanded(self, on: bool) -> Self {
        self.flag(true, HAS_EXPANDED).flag(on, EXPANDED)
    }
    pub fn selected(self, on: bool) -> Self {
        self.flag(true, HAS_SELECTED).flag(on, SELECTED)
    }
    /// Column sort state: `Some(descending)`.
    pub fn sort(self, dir: Option<bool>) -> Self {
        match dir {
            Some(desc) => self.flag(true, HAS_SORT).flag(desc, SORT_DESC),
            None => self,
        }
    }
    pub fn index(&self) -> usize {
        self.idx
    }
}

impl Page {
    /// Starts a new page, keeping the buffers' capacity.
    pub fn start(&mut self, url: &str, title: &str, bid_base: u32) {
        self.url.clear();
        self.url.push_str(url);
        self.title.clear();
        self.title.push_str(title);
        self.title.push_str(" | MiniArena");
        self.nodes.clear();
        self.text.clear();
        self.depth = 1;
        self.region = b'a';
        self.counters = [0; 26];
        self.bid_base = bid_base;
        self.focused = None;
    }

    /// Bids of the elements added next start with this letter (`a`..=`z`).
    pub fn region(&mut self, letter: u8) {
        if letter.is_ascii_lowercase() {
            self.region = letter;
        }
    }

    fn push_text(&mut self, s: &str) -> Span {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        Span { start, end: self.text.len() as u32 }
    }

    fn push_node(&mut self, role: Role, name: Span, with_bid: bool) -> usize {
        let bid = if with_bid {
            let r = (self.region - b'a') as usize;
            self.counters[r] += 1;
            let start = self.text.len() as u32;
            let n = self.bid_base + self.counters[r];
            let _ = write!(self.text, "{}{}", self.region as char, n);
            Span { start, end: self.text.len() as u32 }
        } else {
            Span::default()
        };
        self.nodes.push(Node { role, depth: self.depth, ctl: Ctl::None, bid, name, value: Span::default(), flags: 0 });
        self.nodes.len() - 1
    }

    /// Adds an element (with a bid) at the current depth.
    pub fn add(&mut self, role: Role, name: &str) -> NodeMut<'_> {
        let name = self.push_text(name);
        let idx = self.push_node(role, name, true);
        NodeMut { page: self, idx }
    }

    /// Adds an element whose name is formatted in place (no temporary string).
    pub fn add_fmt(&mut self, role: Role, name: fmt::Arguments<'_>) -> NodeMut<'_> {
        let start = self.text.len() as u32;
        let _ = self.text.write_fmt(name);
        let span = Span { start, end: self.text.len() as u32 };
        let idx = self.push_node(role, span, true);
        NodeMut { page: self, idx }
    }

    /// Adds an element and makes the next ones its children (until [`Page::close`]).
    pub fn open(&mut self, role: Role, name: &str) -> NodeMut<'_> {
        let name = self.push_text(name);
        let idx = self.push_node(role, name, true);
        self.depth += 1;
        NodeMut { page: self, idx }
    }

    pub fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1).max(1);
    }

    /// Adds a `StaticText` line (no bid, as in BrowserGym).
    pub fn text(&mut self, s: &str) {
        let name = self.push_text(s);
        self.push_node(Role::StaticText, name, false);
    }

    pub fn text_fmt(&mut self, s: fmt::Arguments<'_>) {
        let start = self.text.len() as u32;
        let _ = self.text.write_fmt(s);
        let span = Span { start, end: self.text.len() as u32 };
        self.push_node(Role::StaticText, span, false);
    }

    /// Marks the element bound to `ctl` as focused (if it is on the page).
    pub fn set_focus(&mut self, ctl: Option<Ctl>) {
        self.focused = ctl.and_then(|c| self.find_ctl(c));
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    fn slice(&self, s: Span) -> &str {
        &self.text[s.start as usize..s.end as usize]
    }

    pub fn bid(&self, i: usize) -> &str {
        self.slice(self.nodes[i].bid)
    }

    pub fn name(&self, i: usize) -> &str {
        self.slice(self.nodes[i].name)
    }

    /// The element's value (text inputs, comboboxes); `None` when it has none.
    pub fn value(&self, i: usize) -> Option<&str> {
        let n = &self.nodes[i];
        (n.flags & HAS_VALUE != 0).then(|| self.slice(n.value))
    }

    pub fn focused(&self) -> Option<usize> {
        self.focused
    }

    pub fn focused_bid(&self) -> Option<&str> {
        self.focused.map(|i| self.bid(i))
    }

    /// The element with this bid; bids never repeat within a page.
    pub fn find_bid(&self, bid: &str) -> Option<usize> {
        if bid.is_empty() {
            return None;
        }
        (0..self.nodes.len()).find(|&i| self.nodes[i].bid.end > 0 && self.bid(i) == bid)
    }

    /// The first element bound to `ctl`.
    pub fn find_ctl(&self, ctl: Ctl) -> Option<usize> {
        if ctl == Ctl::None {
            return None;
        }
        self.nodes.iter().position(|n| n.ctl == ctl)
    }

    /// The direct children of element `i`.
    pub fn children(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let depth = self.nodes[i].depth;
        (i + 1..self.nodes.len()).take_while(move |&j| self.nodes[j].depth > depth).filter(move |&j| self.nodes[j].depth == depth + 1)
    }

    /// The names of the `option` children of a combobox.
    pub fn options(&self, i: usize) -> impl Iterator<Item = &str> + '_ {
        self.children(i).filter(|&j| self.nodes[j].role == Role::Option).map(|j| self.name(j))
    }

    /// Writes the accessibility tree as BrowserGym's `flatten_axtree_to_str` does.
    pub fn render_axtree(&self, out: &mut String) {
        out.reserve(self.text.len() + self.nodes.len() * 24 + 64);
        out.push_str("RootWebArea ");
        write_quoted(out, &self.title);
        if self.focused.is_none() {
            out.push_str(", focused");
        }
        for (i, n) in self.nodes.iter().enumerate() {
            out.push('\n');
            for _ in 0..n.depth {
                out.push('\t');
            }
            if n.bid.end > 0 {
                out.push('[');
                out.push_str(self.slice(n.bid));
                out.push_str("] ");
            }
            out.push_str(n.role.as_str());
            out.push(' ');
            write_quoted(out, self.slice(n.name).trim());
            if n.flags & HAS_VALUE != 0 {
                out.push_str(" value=");
                write_quoted(out, self.slice(n.value));
            }
            if n.flags & HAS_CHECKED != 0 {
                out.push_str(if n.flags & CHECKED != 0 { ", checked='true'" } else { ", checked='false'" });
            }
            if n.flags & HAS_SELECTED != 0 {
                out.push_str(if n.flags & SELECTED != 0 { ", selected=True" } else { ", selected=False" });
            }
            if n.flags & HAS_EXPANDED != 0 {
                out.push_str(if n.flags & EXPANDED != 0 { ", expanded=True" } else { ", expanded=False" });
            }
            if n.flags & HAS_SORT != 0 {
                out.push_str(if n.flags & SORT_DESC != 0 { ", sort='descending'" } else { ", sort='ascending'" });
            }
            if n.flags & DISABLED != 0 {
                out.push_str(", disabled=True");
            }
            if n.flags & REQUIRED != 0 {
                out.push_str(", required");
            }
            if self.focused == Some(i) {
                out.push_str(", focused");
            }
        }
    }

    /// The tree as a new string.
    pub fn axtree(&self) -> String {
        let mut s = String::new();
        self.render_axtree(&mut s);
        s
    }
}

/// Writes `s` quoted as Python's `repr` does (single quotes unless `s` has one and no double).
pub fn write_quoted(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_browsergym() {
        let mut p = Page::default();
        p.start("http://x/incident.do", "Incident", 10);
        p.open(Role::Navigation, "Application navigator");
        p.add(Role::Link, "Incidents");
        p.close();
        p.region(b'b');
        p.add(Role::Textbox, "Short description").value("").required(true);
        p.open(Role::Combobox, "Urgency").value("2 - Medium");
        p.add(Role::Option, "1 - High").selected(false);
        p.add(Role::Option, "2 - Medium").selected(true);
        p.close();
        p.add(Role::Checkbox, "Active").checked(true);
        p.text("It's done");
        p.add(Role::Button, "Submit");
        let want = "RootWebArea 'Incident | MiniArena', focused\n\
            \t[a11] navigation 'Application navigator'\n\
            \t\t[a12] link 'Incidents'\n\
            \t[b11] textbox 'Short description' value='', required\n\
            \t[b12] combobox 'Urgency' value='2 - Medium'\n\
            \t\t[b13] option '1 - High', selected=False\n\
            \t\t[b14] option '2 - Medium', selected=True\n\
            \t[b15] checkbox 'Active', checked='true'\n\
            \tStaticText \"It's done\"\n\
            \t[b16] button 'Submit'";
        assert_eq!(p.axtree(), want);
        let combo = p.find_bid("b12").unwrap();
        assert_eq!(p.options(combo).collect::<Vec<_>>(), ["1 - High", "2 - Medium"]);
        assert_eq!(p.value(combo), Some("2 - Medium"));
        assert_eq!(p.find_bid("b99"), None);
        assert_eq!(p.find_bid(""), None);
    }
}
