//! List screens: a table's records filtered and sorted by a query, paged 20 at a time (5 on
//! small pages), with ServiceNow's condition builder (conditions joined by AND, sort rows, Run)
//! and sortable column headers. The applied query is part of the URL (`sysparm_query`).

use std::cmp::Ordering;

use super::tables::{FieldKind, Record, TableId, TableSpec};
use super::{navigate, Ctl, Route, Session, Ui, World};
use crate::page::{Page, Role};
use crate::size::PageSize;

const CHOOSE_FIELD: &str = "-- choose field --";
const NONE: &str = "-- None --";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Op {
    #[default]
    Is,
    IsNot,
}

impl Op {
    pub fn label(self) -> &'static str {
        match self {
            Op::Is => "is",
            Op::IsNot => "is not",
        }
    }
}

/// One condition: field (index into the table's fields), operator, value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cond {
    pub field: u8,
    pub op: Op,
    pub value: String,
}

impl Cond {
    pub fn matches(&self, r: &Record) -> bool {
        let v = r.values.get(self.field as usize).map_or("", |s| s.as_str());
        (v == self.value) == (self.op == Op::Is)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SortKey {
    pub field: u8,
    pub desc: bool,
}

/// An applied list query: conditions (all must hold) and sort keys (in priority order).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Query {
    pub conds: Vec<Cond>,
    pub sort: Vec<SortKey>,
}

impl Query {
    pub fn is_empty(&self) -> bool {
        self.conds.is_empty() && self.sort.is_empty()
    }

    /// ServiceNow's encoded query: `state=New^priority!=1 - Critical^ORDERBYDESCnumber`.
    pub fn encode(&self, spec: &TableSpec) -> String {
        let mut parts: Vec<String> = Vec::new();
        for c in &self.conds {
            let name = spec.fields[c.field as usize].name;
            let op = if c.op == Op::Is { "=" } else { "!=" };
            parts.push(format!("{name}{op}{}", c.value));
        }
        for k in &self.sort {
            let name = spec.fields[k.field as usize].name;
            parts.push(format!("{}{name}", if k.desc { "ORDERBYDESC" } else { "ORDERBY" }));
        }
        parts.join("^")
    }

    /// Parses an encoded query; `None` when it names unknown fields.
    pub fn decode(spec: &TableSpec, q: &str) -> Option<Query> {
        let mut query = Query::default();
        for part in q.split('^').filter(|p| !p.is_empty()) {
            if let Some(name) = part.strip_prefix("ORDERBYDESC") {
                query.sort.push(SortKey { field: spec.field_index(name)? as u8, desc: true });
            } else if let Some(name) = part.strip_prefix("ORDERBY") {
                query.sort.push(SortKey { field: spec.field_index(name)? as u8, desc: false });
            } else if let Some((name, value)) = part.split_once("!=") {
                let field = spec.field_index(name)? as u8;
                query.conds.push(Cond { field, op: Op::IsNot, value: value.to_string() });
            } else {
                let (name, value) = part.split_once('=')?;
                let field = spec.field_index(name)? as u8;
                query.conds.push(Cond { field, op: Op::Is, value: value.to_string() });
            }
        }
        Some(query)
    }

    /// The breadcrumb text: `Category = Hardware > Priority != 1 - Critical`.
    pub fn describe(&self, spec: &TableSpec) -> String {
        let mut s = String::from("All");
        for c in &self.conds {
            let label = spec.fields[c.field as usize].label;
            let op = if c.op == Op::Is { "=" } else { "!=" };
            s.push_str(&format!(" > {label} {op} {}", c.value));
        }
        s
    }
}

/// Compares two field values: numerically when both are numbers, else as text.
fn compare_values(a: &str, b: &str) -> Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => a.cmp(b),
    }
}

/// Indices of the records the query selects, in its order (stable: ties keep table order).
pub fn run_query(records: &[Record], query: &Query) -> Vec<u32> {
    let mut rows: Vec<u32> = (0..records.len() as u32).filter(|&i| query.conds.iter().all(|c| c.matches(&records[i as usize]))).collect();
    if !query.sort.is_empty() {
        rows.sort_by(|&a, &b| {
            let (ra, rb) = (&records[a as usize], &records[b as usize]);
            for k in &query.sort {
                let f = k.field as usize;
                let o = compare_values(&ra.values[f], &rb.values[f]);
                let o = if k.desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
    }
    rows
}

/// Whether `rows` (record indices) are in the order `sort` asks for.
pub fn is_sorted(records: &[Record], rows: &[u32], sort: &[SortKey]) -> bool {
    rows.windows(2).all(|w| {
        let (ra, rb) = (&records[w[0] as usize], &records[w[1] as usize]);
        for k in sort {
            let f = k.field as usize;
            let o = compare_values(&ra.values[f], &rb.values[f]);
            let o = if k.desc { o.reverse() } else { o };
            match o {
                Ordering::Less => return true,
                Ordering::Greater => return false,
                Ordering::Equal => {}
            }
        }
        true
    })
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CondDraft {
    pub field: Option<u8>,
    pub op: Op,
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SortDraft {
    pub field: Option<u8>,
    pub desc: bool,
}

/// The state of a list page.
#[derive(Clone, Debug)]
pub struct ListUi {
    pub table: TableId,
    pub query: Query,
    /// Matching record indices, in display order.
    pub rows: Vec<u32>,
    pub page: usize,
    pub filter_open: bool,
    pub conds: Vec<CondDraft>,
    pub sorts: Vec<SortDraft>,
    pub message: Option<String>,
}

impl ListUi {
    pub fn new(w: &World, table: TableId, query: Query) -> ListUi {
        let rows = run_query(&w.table(table).records, &query);
        ListUi { table, query, rows, page: 0, filter_open: false, conds: Vec::new(), sorts: Vec::new(), message: None }
    }

    /// Opens the condition builder with the applied query in it.
    fn open_filter(&mut self) {
        self.filter_open = true;
        self.conds = self.query.conds.iter().map(|c| CondDraft { field: Some(c.field), op: c.op, value: c.value.clone() }).collect();
        if self.conds.is_empty() {
            self.conds.push(CondDraft::default());
        }
        self.sorts = self.query.sort.iter().map(|k| SortDraft { field: Some(k.field), desc: k.desc }).collect();
    }
}

pub fn render(w: &World, l: &ListUi, page: &mut Page) {
    let table = w.table(l.table);
    let spec = table.spec();
    page.open(Role::Main, "");
    page.add(Role::Heading, spec.plural);
    page.add(Role::Button, "New").ctl(Ctl::ListNew);
    page.add(Role::Button, "Show / hide filter").expanded(l.filter_open).ctl(Ctl::FilterToggle);
    page.text_fmt(format_args!("Filter: {}", l.query.describe(spec)));
    if !l.query.conds.is_empty() {
        page.add(Role::Link, "Remove all filter conditions").ctl(Ctl::ClearFilter);
    }
    if let Some(m) = &l.message {
        page.add(Role::Alert, m);
    }
    if l.filter_open {
        render_filter(w.size, spec, l, page);
    }
    page.region(b'd');
    page.open(Role::Table, spec.plural);
    page.open(Role::Row, "");
    let primary = l.query.sort.first();
    for f in spec.columns() {
        let dir = primary.filter(|k| k.field as usize == f).map(|k| k.desc);
        page.add(Role::ColumnHeader, spec.fields[f].label).sort(dir).ctl(Ctl::Column(f as u8));
    }
    page.close();
    let per_page = w.size.list_rows();
    let start = l.page * per_page;
    for &ri in l.rows.iter().skip(start).take(per_page) {
        let r = &table.records[ri as usize];
        page.open(Role::Row, "");
        for (k, f) in spec.columns().enumerate() {
            let v = &r.values[f];
            if k == 0 {
                page.add(Role::Link, v).ctl(Ctl::OpenRecord(r.id));
            } else {
                page.add(Role::Gridcell, v);
            }
        }
        page.close();
    }
    page.close();
    let n = l.rows.len();
    if n == 0 {
        page.text("No records to display");
    } else {
        page.text_fmt(format_args!("Rows {} to {} of {}", start + 1, (start + per_page).min(n), n));
    }
    page.add(Role::Button, "Previous page").disabled(l.page == 0).ctl(Ctl::PrevPage);
    page.add(Role::Button, "Next page").disabled(start + per_page >= n).ctl(Ctl::NextPage);
    page.close();
}

/// The condition builder. Small pages offer only the fields goals filter or sort by (and the
/// one a row has).
fn render_filter(size: PageSize, spec: &TableSpec, l: &ListUi, page: &mut Page) {
    page.region(b'c');
    page.open(Role::Region, "Condition builder");
    page.text("All of these conditions must be met");
    let fields: Vec<usize> = spec.filterable().collect();
    let offered = |f: usize, current: Option<u8>, goal: bool| size.is_full() || goal || current == Some(f as u8);
    for (i, c) in l.conds.iter().enumerate() {
        let i8 = i as u8;
        let group = format!("Condition {}", i + 1);
        page.open(Role::Group, &group);
        let label = c.field.map_or(CHOOSE_FIELD, |f| spec.fields[f as usize].label);
        page.open(Role::Combobox, "Field").value(label).ctl(Ctl::CondField(i8));
        page.add(Role::Option, CHOOSE_FIELD).selected(c.field.is_none());
        for &f in fields.iter().filter(|&&f| offered(f, c.field, spec.fields[f].filter)) {
            page.add(Role::Option, spec.fields[f].label).selected(c.field == Some(f as u8));
        }
        page.close();
        page.open(Role::Combobox, "Operator").value(c.op.label()).ctl(Ctl::CondOp(i8));
        for op in [Op::Is, Op::IsNot] {
            page.add(Role::Option, op.label()).selected(c.op == op);
        }
        page.close();
        match c.field.map(|f| spec.fields[f as usize].kind.choices()) {
            Some(Some(choices)) => {
                let shown = if c.value.is_empty() { NONE } else { &c.value };
                page.open(Role::Combobox, "Value").value(shown).ctl(Ctl::CondValue(i8));
                page.add(Role::Option, NONE).selected(c.value.is_empty());
                for &v in choices {
                    page.add(Role::Option, v).selected(c.value == v);
                }
                page.close();
            }
            _ => {
                page.add(Role::Textbox, "Value").value(&c.value).ctl(Ctl::CondValue(i8));
            }
        }
        page.add_fmt(Role::Button, format_args!("Remove condition {}", i + 1)).ctl(Ctl::CondRemove(i8));
        page.close();
    }
    page.add(Role::Button, "AND").ctl(Ctl::CondAdd);
    for (i, k) in l.sorts.iter().enumerate() {
        let i8 = i as u8;
        let group = format!("Sort {}", i + 1);
        page.open(Role::Group, &group);
        let label = k.field.map_or(CHOOSE_FIELD, |f| spec.fields[f as usize].label);
        page.open(Role::Combobox, "Sort by").value(label).ctl(Ctl::SortField(i8));
        page.add(Role::Option, CHOOSE_FIELD).selected(k.field.is_none());
        for (f, field) in spec.fields.iter().enumerate() {
            if field.kind != FieldKind::TextArea && offered(f, k.field, field.sort) {
                page.add(Role::Option, field.label).selected(k.field == Some(f as u8));
            }
        }
        page.close();
        let dir = if k.desc { "z to a" } else { "a to z" };
        page.open(Role::Combobox, "Sort direction").value(dir).ctl(Ctl::SortDir(i8));
        page.add(Role::Option, "a to z").selected(!k.desc);
        page.add(Role::Option, "z to a").selected(k.desc);
        page.close();
        page.add_fmt(Role::Button, format_args!("Remove sort {}", i + 1)).ctl(Ctl::SortRemove(i8));
        page.close();
    }
    page.add(Role::Button, "Add Sort").ctl(Ctl::SortAdd);
    page.add(Role::Button, "Run").ctl(Ctl::RunFilter);
    page.close();
    page.region(b'b');
}

fn list_ui(s: &mut Session) -> Result<&mut ListUi, String> {
    match &mut s.ui {
        Ui::List(l) => Ok(l),
        _ => Err("Error: element is not on a list page".to_string()),
    }
}

pub fn click(w: &mut World, s: &mut Session, ctl: Ctl) -> Result<(), String> {
    let per_page = w.size.list_rows();
    let l = list_ui(s)?;
    let table = l.table;
    let spec = table.spec();
    let mut go: Option<Route> = None;
    match ctl {
        Ctl::ListNew => go = Some(Route::Form { table, record: None }),
        Ctl::OpenRecord(id) => go = Some(Route::Form { table, record: Some(id) }),
        Ctl::FilterToggle => {
            if l.filter_open {
                l.filter_open = false;
            } else {
                l.open_filter();
            }
        }
        Ctl::CondAdd => l.conds.push(CondDraft::default()),
        Ctl::CondRemove(i) if (i as usize) < l.conds.len() => {
            l.conds.remove(i as usize);
        }
        Ctl::SortAdd => l.sorts.push(SortDraft::default()),
        Ctl::SortRemove(i) if (i as usize) < l.sorts.len() => {
            l.sorts.remove(i as usize);
        }
        Ctl::ClearFilter => {
            let query = Query { conds: vec![], sort: l.query.sort.clone() };
            go = Some(Route::List { table, query });
        }
        Ctl::Column(f) => {
            let desc = matches!(l.query.sort.first(), Some(k) if k.field == f && !k.desc);
            let query = Query { conds: l.query.conds.clone(), sort: vec![SortKey { field: f, desc }] };
            go = Some(Route::List { table, query });
        }
        Ctl::PrevPage => l.page = l.page.saturating_sub(1),
        Ctl::NextPage if (l.page + 1) * per_page < l.rows.len() => l.page += 1,
        Ctl::RunFilter => {
            let mut conds = Vec::new();
            for (i, c) in l.conds.iter().enumerate() {
                match c.field {
                    None => {}
                    Some(f) if c.value.trim().is_empty() => {
                        let label = spec.fields[f as usize].label;
                        l.message = Some(format!("Condition {} ({label}) needs a value.", i + 1));
                        return Ok(());
                    }
                    Some(f) => conds.push(Cond { field: f, op: c.op, value: c.value.trim().to_string() }),
                }
            }
            let sort = l.sorts.iter().filter_map(|k| k.field.map(|f| SortKey { field: f, desc: k.desc })).collect();
            go = Some(Route::List { table, query: Query { conds, sort } });
        }
        _ => {}
    }
    if let Some(route) = go {
        navigate(w, s, route);
    }
    Ok(())
}

pub fn select(s: &mut Session, ctl: Ctl, option: &str) -> Result<(), String> {
    let l = list_ui(s)?;
    let spec = l.table.spec();
    let field_of = |label: &str| spec.field_by_label(label).map(|f| f as u8);
    match ctl {
        Ctl::CondField(i) => {
            if let Some(c) = l.conds.get_mut(i as usize) {
                let f = field_of(option);
                if c.field != f {
                    *c = CondDraft { field: f, op: Op::Is, value: String::new() };
                }
            }
        }
        Ctl::CondOp(i) => {
            if let Some(c) = l.conds.get_mut(i as usize) {
                c.op = if option == "is not" { Op::IsNot } else { Op::Is };
            }
        }
        Ctl::CondValue(i) => {
            if let Some(c) = l.conds.get_mut(i as usize) {
                c.value = if option == NONE { String::new() } else { option.to_string() };
            }
        }
        Ctl::SortField(i) => {
            if let Some(k) = l.sorts.get_mut(i as usize) {
                k.field = field_of(option);
            }
        }
        Ctl::SortDir(i) => {
            if let Some(k) = l.sorts.get_mut(i as usize) {
                k.desc = option == "z to a";
            }
        }
        _ => {}
    }
    Ok(())
}

pub fn set_text(s: &mut Session, ctl: Ctl, value: &str) -> Result<(), String> {
    let l = list_ui(s)?;
    if let Ctl::CondValue(i) = ctl {
        if let Some(c) = l.conds.get_mut(i as usize) {
            c.value = value.to_string();
        }
    }
    Ok(())
}
