//! `list_filter` and `list_sort` tasks: apply given conditions (a set, AND-ed) or given sort
//! keys (in order) to a list with the condition builder. Validators read the applied query
//! of the list being shown; the expert opens the builder, fills rows, and runs it.

use rand::Rng as _;

use super::{base_world, q, Instance, Target};
use crate::app::list::{is_sorted, Cond, Op, SortKey};
use crate::app::tables::{self, Field, FieldKind, Gen, TableId};
use crate::app::{Ctl, Route, Session, Ui, World};
use crate::expert::{Plan, PlanCx};
use crate::pick::{self, Pick};
use crate::size::PageSize;
use crate::vocab::{self, AGENTS, TITLES};

/// The list of `table` must show exactly these conditions (in any order).
#[derive(Clone, Debug)]
pub(crate) struct FilterTarget {
    pub table: TableId,
    pub conds: Vec<Cond>,
}

/// The list of `table` must be sorted by exactly these keys, in this order.
#[derive(Clone, Debug)]
pub(crate) struct SortTarget {
    pub table: TableId,
    pub keys: Vec<SortKey>,
}

impl FilterTarget {
    pub fn satisfied(&self, s: &Session) -> bool {
        match &s.route {
            Route::List { table, query } if *table == self.table => query.conds.len() == self.conds.len() && self.conds.iter().all(|c| query.conds.contains(c)),
            _ => false,
        }
    }

    pub fn plan(&self, cx: &mut PlanCx<'_>) -> Plan {
        let l = match (&cx.session.route, &cx.session.ui) {
            (Route::List { table, .. }, Ui::List(l)) if *table == self.table => l,
            _ => return cx.recover(Ctl::FilterToggle),
        };
        let spec = self.table.spec();
        if !l.filter_open {
            return cx.click(Ctl::FilterToggle, "the conditions have to be entered in the condition builder, which is hidden");
        }
        for (i, t) in self.conds.iter().enumerate() {
            let k = i as u8;
            let field = &spec.fields[t.field as usize];
            let describe = format!("{} {} {}", q(field.label), t.op.label(), q(&t.value));
            let Some(c) = l.conds.get(i) else {
                return cx.click(Ctl::CondAdd, format!("condition {} ({describe}) needs a new row, added with AND", i + 1));
            };
            if c.field != Some(t.field) && !cx.overlooks(Ctl::CondField(k)) {
                return cx.select(Ctl::CondField(k), field.label, format!("condition {} is {describe}, so its field must be '{}'", i + 1, field.label));
            }
            if c.op != t.op && !cx.overlooks(Ctl::CondOp(k)) {
                return cx.select(Ctl::CondOp(k), t.op.label(), format!("condition {} needs the operator '{}'", i + 1, t.op.label()));
            }
            if c.value != t.value && !cx.overlooks(Ctl::CondValue(k)) {
                let why = format!("condition {} is {describe}, so its value must be \"{}\"", i + 1, t.value);
                return if field.kind.choices().is_some() { cx.select(Ctl::CondValue(k), &t.value, why) } else { cx.fill(Ctl::CondValue(k), &t.value, why) };
            }
        }
        if l.conds.len() > self.conds.len() {
            let last = l.conds.len() - 1;
            return cx.click(Ctl::CondRemove(last as u8), format!("the goal has {} conditions, so condition {} is one too many", self.conds.len(), last + 1));
        }
        cx.click(Ctl::RunFilter, format!("all {} conditions are entered in the condition builder", self.conds.len())).finishing()
    }
}

impl SortTarget {
    pub fn satisfied(&self, w: &World, s: &Session) -> bool {
        match (&s.route, &s.ui) {
            (Route::List { table, query }, Ui::List(l)) if *table == self.table => {
                query.sort == self.keys && is_sorted(&w.table(self.table).records, &l.rows, &self.keys)
            }
            _ => false,
        }
    }

    pub fn plan(&self, cx: &mut PlanCx<'_>) -> Plan {
        let l = match (&cx.session.route, &cx.session.ui) {
            (Route::List { table, .. }, Ui::List(l)) if *table == self.table => l,
            _ => return cx.recover(Ctl::FilterToggle),
        };
        let spec = self.table.spec();
        if !l.filter_open {
            return cx.click(Ctl::FilterToggle, "sorting by several fields is done with the sort rows of the condition builder, which is hidden");
        }
        for (i, t) in self.keys.iter().enumerate() {
            let k = i as u8;
            let label = spec.fields[t.field as usize].label;
            let dir = if t.desc { "z to a" } else { "a to z" };
            let Some(have) = l.sorts.get(i) else {
                return cx.click(Ctl::SortAdd, format!("sort level {} ('{label}') needs its own sort row", i + 1));
            };
            if have.field != Some(t.field) && !cx.overlooks(Ctl::SortField(k)) {
                return cx.select(Ctl::SortField(k), label, format!("sort level {} must be the field '{label}'", i + 1));
            }
            if have.desc != t.desc && !cx.overlooks(Ctl::SortDir(k)) {
                let order = if t.desc { "descending" } else { "ascending" };
                return cx.select(Ctl::SortDir(k), dir, format!("'{label}' must be sorted in {order} order, which is '{dir}'"));
            }
        }
        if l.sorts.len() > self.keys.len() {
            let last = l.sorts.len() - 1;
            return cx.click(Ctl::SortRemove(last as u8), format!("only {} sort levels are wanted, so sort row {} must go", self.keys.len(), last + 1));
        }
        cx.click(Ctl::RunFilter, "the sort rows match the requested fields and directions").finishing()
    }
}

/// People who appear as "Caller"-style values in filter goals.
fn fixed_people() -> Vec<String> {
    (0..16).map(|i| vocab::person(i * 157 + 11)).collect()
}

/// The values a filter goal may use for a field (empty: not usable).
fn filter_values(f: &Field) -> Vec<String> {
    match (f.kind, f.gen) {
        (FieldKind::Reference, Gen::Agent) => AGENTS.iter().map(|s| s.to_string()).collect(),
        (FieldKind::Reference, _) => fixed_people(),
        (FieldKind::Text, Gen::Title) => TITLES.iter().map(|s| s.to_string()).collect(),
        (kind, _) => kind.choices().map_or(Vec::new(), |c| c.iter().map(|s| s.to_string()).collect()),
    }
}

/// Ordered tuples of `k` distinct items of `0..n`.
fn tuples(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for _ in 0..k {
        let mut next = Vec::new();
        for t in &out {
            for i in 0..n {
                if !t.contains(&i) {
                    let mut u = t.clone();
                    u.push(i);
                    next.push(u);
                }
            }
        }
        out = next;
    }
    out
}

/// The list's table, regenerated with more rows (people include the fixed goal people).
fn list_world(rng: &mut pick::Rng, table: TableId, size: PageSize) -> World {
    let mut world = base_world(rng, size);
    let mut people = world.people.clone();
    people.extend(fixed_people());
    let n = rng.random_range(35..=80);
    world.set_table(tables::random_table(table, n, rng, &people));
    world
}

fn filter(table: TableId, name: &str, seed: u64, size: PageSize) -> Instance {
    let mut rng = pick::rng(name, seed);
    let spec = table.spec();
    let fields: Vec<(usize, Vec<String>)> =
        (0..spec.fields.len()).filter(|&f| spec.fields[f].filter).map(|f| (f, filter_values(&spec.fields[f]))).filter(|(_, v)| !v.is_empty()).collect();
    let k = if rng.random_bool(0.6) { 2 } else { 3 };
    let shapes = tuples(fields.len(), k);
    let sizes: Vec<u64> = shapes.iter().map(|t| t.iter().map(|&i| fields[i].1.len() as u64 * 2).product()).collect();
    let mut pick = Pick::new(&format!("{name}|{k}"), seed, sizes.iter().sum());
    let shape = &shapes[pick.branch(&sizes)];
    let conds: Vec<Cond> = shape
        .iter()
        .map(|&i| {
            let (f, values) = &fields[i];
            let value = values[pick.digit(values.len())].clone();
            let op = if pick.digit(2) == 0 { Op::Is } else { Op::IsNot };
            Cond { field: *f as u8, op, value }
        })
        .collect();
    let mut world = list_world(&mut rng, table, size);
    // Make sure a few records match.
    let t = world.table_mut(table);
    let n = t.records.len();
    for _ in 0..rng.random_range(3..=6) {
        let r = rng.random_range(0..n);
        for (c, &i) in conds.iter().zip(shape) {
            let values = &fields[i].1;
            let v = match c.op {
                Op::Is => c.value.clone(),
                Op::IsNot => values.iter().find(|v| **v != c.value).cloned().unwrap_or_default(),
            };
            t.records[r].values[c.field as usize] = v;
        }
    }
    let parts: Vec<String> = conds.iter().map(|c| format!("{} {} {}", q(spec.fields[c.field as usize].label), c.op.label(), q(&c.value))).collect();
    let goal = format!("Create a filter for the list to extract all entries where {}.", parts.join(" and "));
    Instance { goal, world, start: Route::List { table, query: Default::default() }, target: Target::Filter(FilterTarget { table, conds }) }
}

fn sort(table: TableId, name: &str, seed: u64, size: PageSize) -> Instance {
    let mut rng = pick::rng(name, seed);
    let spec = table.spec();
    let fields: Vec<usize> = (0..spec.fields.len()).filter(|&f| spec.fields[f].sort).collect();
    let space = pick::arrangements(fields.len() as u64, 3) * 8;
    let mut pick = Pick::new(name, seed, space);
    let picked = pick.distinct(fields.len(), 3);
    let keys: Vec<SortKey> = picked.into_iter().map(|i| SortKey { field: fields[i] as u8, desc: pick.digit(2) == 1 }).collect();
    let world = list_world(&mut rng, table, size);
    let lines: Vec<String> = keys
        .iter()
        .map(|k| {
            let dir = if k.desc { "descending" } else { "ascending" };
            format!(" - {} ({dir})", spec.fields[k.field as usize].label)
        })
        .collect();
    let goal = format!("Sort the \"{}\" list by the following fields:\n{}", spec.plural.to_lowercase(), lines.join("\n"));
    Instance { goal, world, start: Route::List { table, query: Default::default() }, target: Target::Sort(SortTarget { table, keys }) }
}

pub(crate) fn filter_incidents(name: &'static str, seed: u64, size: PageSize) -> Instance {
    filter(TableId::Incident, name, seed, size)
}
pub(crate) fn filter_change_requests(name: &'static str, seed: u64, size: PageSize) -> Instance {
    filter(TableId::Change, name, seed, size)
}
pub(crate) fn filter_hardware_assets(name: &'static str, seed: u64, size: PageSize) -> Instance {
    filter(TableId::Hardware, name, seed, size)
}
pub(crate) fn sort_incidents(name: &'static str, seed: u64, size: PageSize) -> Instance {
    sort(TableId::Incident, name, seed, size)
}
pub(crate) fn sort_users(name: &'static str, seed: u64, size: PageSize) -> Instance {
    sort(TableId::User, name, seed, size)
}
pub(crate) fn sort_hardware_assets(name: &'static str, seed: u64, size: PageSize) -> Instance {
    sort(TableId::Hardware, name, seed, size)
}
