//! `form` tasks: create a record (incident, change request, problem, user, hardware asset)
//! with given field values. The validator looks for a record created during the episode
//! with every requested value; the expert fills the fields (opening tabs as needed) and
//! submits.

use rand::seq::SliceRandom;
use rand::Rng as _;

use super::{base_world, join_and, q, Instance, Target};
use crate::app::tables::{self, FieldKind, TableId};
use crate::app::{Ctl, Route, Ui, World};
use crate::expert::{Plan, PlanCx};
use crate::pick;
use crate::size::PageSize;

/// A record of `table` with these (field index, value) pairs must have been created.
#[derive(Clone, Debug)]
pub(crate) struct RecordTarget {
    pub table: TableId,
    /// In form order: main section first, then tab by tab.
    pub values: Vec<(u8, String)>,
}

impl RecordTarget {
    pub fn satisfied(&self, w: &World) -> bool {
        w.table(self.table).records.iter().any(|r| r.created && self.values.iter().all(|(f, v)| r.values[*f as usize] == *v))
    }

    pub fn plan(&self, cx: &mut PlanCx<'_>) -> Plan {
        let d = match (&cx.session.route, &cx.session.ui) {
            (Route::Form { table, record: None }, Ui::Form(d)) if *table == self.table => d,
            _ => return cx.recover(Ctl::FormSubmit),
        };
        let spec = self.table.spec();
        for (f, want) in &self.values {
            let field = &spec.fields[*f as usize];
            let ctl = Ctl::FormField(*f);
            let have = &d.values[*f as usize];
            if have == want || cx.overlooks(ctl) {
                continue;
            }
            if field.tab != 0 && field.tab != d.tab {
                let tab = spec.tabs[field.tab as usize - 1];
                let why = format!("the field '{}' that I still have to set is in the '{tab}' section, which is not shown", field.label);
                return cx.click(Ctl::FormTab(field.tab), why);
            }
            let why = if have.is_empty() || field.default.is_some_and(|d| d == have) {
                format!("the goal asks for '{}' to be \"{want}\"", field.label)
            } else {
                format!("'{}' must be \"{want}\" but it is \"{have}\"", field.label)
            };
            return match field.kind {
                FieldKind::Choice(_) => cx.select(ctl, want, why),
                FieldKind::Checkbox => cx.check(ctl, want == "true", why),
                _ => cx.fill(ctl, want, why),
            };
        }
        let why = format!("all {} requested fields of the new {} are set", self.values.len(), spec.label.to_lowercase());
        cx.click(Ctl::FormSubmit, why).finishing()
    }
}

fn create(table: TableId, name: &str, seed: u64, size: PageSize) -> Instance {
    let mut rng = pick::rng(name, seed);
    let mut world = base_world(&mut rng, size);
    let spec = table.spec();
    let candidates: Vec<usize> = (0..spec.fields.len()).filter(|&f| spec.fields[f].goal && spec.fields[f].kind.editable()).collect();
    let mut chosen: Vec<usize> = candidates.iter().copied().filter(|&f| spec.fields[f].required).collect();
    let mut rest: Vec<usize> = candidates.iter().copied().filter(|&f| !spec.fields[f].required).collect();
    rest.shuffle(&mut rng);
    let n_total = rng.random_range(3..=6).max(chosen.len() + 1);
    let mut tab_fields = 0;
    for f in rest {
        if chosen.len() >= n_total {
            break;
        }
        if spec.fields[f].tab != 0 {
            if tab_fields >= 2 {
                continue;
            }
            tab_fields += 1;
        }
        chosen.push(f);
    }
    chosen.sort_by_key(|&f| (spec.fields[f].tab, f));
    let defaults = tables::defaults(spec);
    let values: Vec<(u8, String)> = chosen
        .iter()
        .map(|&f| {
            let field = &spec.fields[f];
            let value = match field.kind {
                FieldKind::Checkbox => (defaults[f] != "true").to_string(),
                FieldKind::Choice(choices) => {
                    let others: Vec<&&str> = choices.iter().filter(|c| **c != defaults[f]).collect();
                    others[rng.random_range(0..others.len())].to_string()
                }
                _ => tables::random_value(field, &mut rng, &world.people),
            };
            (f as u8, value)
        })
        .collect();
    world.form_fields[table.index()] = values.iter().fold(0, |mask, (f, _)| mask | (1u64 << f));
    let mut parts: Vec<String> = values.iter().map(|(f, v)| format!("a value of {} for field {}", q(v), q(spec.fields[*f as usize].label))).collect();
    parts.shuffle(&mut rng);
    let goal = format!("Create a new {} with {}.", spec.label.to_lowercase(), join_and(&parts));
    Instance { goal, world, start: Route::Form { table, record: None }, target: Target::Record(RecordTarget { table, values }) }
}

pub(crate) fn create_incident(name: &'static str, seed: u64, size: PageSize) -> Instance {
    create(TableId::Incident, name, seed, size)
}
pub(crate) fn create_change_request(name: &'static str, seed: u64, size: PageSize) -> Instance {
    create(TableId::Change, name, seed, size)
}
pub(crate) fn create_problem(name: &'static str, seed: u64, size: PageSize) -> Instance {
    create(TableId::Problem, name, seed, size)
}
pub(crate) fn create_user(name: &'static str, seed: u64, size: PageSize) -> Instance {
    create(TableId::User, name, seed, size)
}
pub(crate) fn create_hardware_asset(name: &'static str, seed: u64, size: PageSize) -> Instance {
    create(TableId::Hardware, name, seed, size)
}
