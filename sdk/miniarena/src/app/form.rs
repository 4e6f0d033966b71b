//! Record forms: a table's fields in a main section plus tabbed sections, edited in a draft
//! that Submit (new record) or Update (existing record) saves after checking mandatory
//! fields.

use super::tables::{self, FieldKind, TableId};
use super::{navigate, Ctl, Route, Session, Ui, World};
use crate::page::{Page, Role};

const NONE: &str = "-- None --";

/// The form being edited.
#[derive(Clone, Debug)]
pub struct FormDraft {
    pub table: TableId,
    /// `None` for a new record.
    pub record: Option<u32>,
    /// Values by field index.
    pub values: Vec<String>,
    /// The selected tab (1-based, as `Field::tab`); 0 when the table has no tabs.
    pub tab: u8,
    pub message: Option<String>,
}

impl FormDraft {
    pub fn new(w: &World, table: TableId, record: Option<u32>) -> FormDraft {
        let t = w.table(table);
        let spec = t.spec();
        let values = match record.and_then(|id| t.record(id)) {
            Some(r) => r.values.clone(),
            None => {
                let mut v = tables::defaults(spec);
                for (i, f) in spec.fields.iter().enumerate() {
                    if f.kind == FieldKind::Auto {
                        v[i] = t.next_number_text();
                    }
                }
                v
            }
        };
        let tab = u8::from(!spec.tabs.is_empty());
        FormDraft { table, record, values, tab, message: None }
    }
}

fn render_field(d: &FormDraft, f: usize, page: &mut Page) {
    let field = &d.table.spec().fields[f];
    let value = d.values[f].as_str();
    let ctl = Ctl::FormField(f as u8);
    match field.kind {
        FieldKind::Choice(choices) => {
            let shown = if value.is_empty() { NONE } else { value };
            page.open(Role::Combobox, field.label).value(shown).required(field.required).ctl(ctl);
            if field.default.is_none() {
                page.add(Role::Option, NONE).selected(value.is_empty());
            }
            for &c in choices {
                page.add(Role::Option, c).selected(c == value);
            }
            page.close();
        }
        FieldKind::Checkbox => {
            page.add(Role::Checkbox, field.label).checked(value == "true").ctl(ctl);
        }
        FieldKind::Auto | FieldKind::Derived(_) => {
            page.add(Role::Textbox, field.label).value(value).readonly(true).ctl(ctl);
        }
        FieldKind::Text | FieldKind::TextArea | FieldKind::Reference => {
            page.add(Role::Textbox, field.label).value(value).required(field.required).ctl(ctl);
        }
    }
}

pub fn render(w: &World, d: &FormDraft, page: &mut Page) {
    let spec = d.table.spec();
    page.open(Role::Main, "");
    match d.record {
        None => page.add_fmt(Role::Heading, format_args!("{} - New record", spec.label)),
        Some(_) => page.add_fmt(Role::Heading, format_args!("{} - {}", spec.label, d.values.first().map_or("", |v| v.as_str()))),
    };
    match d.record {
        None => page.add(Role::Button, "Submit").ctl(Ctl::FormSubmit),
        Some(_) => page.add(Role::Button, "Update").ctl(Ctl::FormUpdate),
    };
    if let Some(m) = &d.message {
        page.add(Role::Alert, m);
    }
    let shown = |f: usize| shown_on_form(w, d.table, f);
    page.open(Role::Form, spec.label);
    for f in (0..spec.fields.len()).filter(|&f| spec.fields[f].tab == 0 && shown(f)) {
        render_field(d, f, page);
    }
    page.close();
    // Small pages list only the tabs that show a field.
    let tab_shown = |tab: u8| w.size.is_full() || (0..spec.fields.len()).any(|f| spec.fields[f].tab == tab && shown(f));
    if (1..=spec.tabs.len() as u8).any(tab_shown) {
        page.open(Role::TabList, "Form sections");
        for (k, name) in spec.tabs.iter().enumerate() {
            let tab = k as u8 + 1;
            if tab_shown(tab) {
                page.add(Role::Tab, name).selected(d.tab == tab).ctl(Ctl::FormTab(tab));
            }
        }
        page.close();
        if tab_shown(d.tab) {
            let name = spec.tabs.get(d.tab.saturating_sub(1) as usize).copied().unwrap_or("");
            page.open(Role::TabPanel, name);
            for f in (0..spec.fields.len()).filter(|&f| spec.fields[f].tab == d.tab && shown(f)) {
                render_field(d, f, page);
            }
            page.close();
        }
    }
    page.close();
}

/// Whether field `f` of `table` is on the form: always on full pages; on small pages when it
/// is the record's number, mandatory, or named by the goal (`World::form_fields`).
pub fn shown_on_form(w: &World, table: TableId, f: usize) -> bool {
    let field = &table.spec().fields[f];
    w.size.is_full() || field.kind == FieldKind::Auto || field.required || w.form_fields[table.index()] & (1u64 << f) != 0
}

fn draft(s: &mut Session) -> Result<&mut FormDraft, String> {
    match &mut s.ui {
        Ui::Form(d) => Ok(d),
        _ => Err("Error: element is not on a form".to_string()),
    }
}

/// Sets a field from typing, choosing an option, or (un)checking.
pub fn set_value(s: &mut Session, ctl: Ctl, value: &str) -> Result<(), String> {
    let d = draft(s)?;
    let Ctl::FormField(f) = ctl else {
        return Ok(());
    };
    let spec = d.table.spec();
    let field = &spec.fields[f as usize];
    if !field.kind.editable() {
        return Err(format!("Error: Element is not editable (the field '{}' is read-only)", field.label));
    }
    d.values[f as usize] = if value == NONE { String::new() } else { value.to_string() };
    tables::derive(spec, &mut d.values);
    Ok(())
}

pub fn click(w: &mut World, s: &mut Session, ctl: Ctl) -> Result<(), String> {
    let d = draft(s)?;
    match ctl {
        Ctl::FormTab(t) => d.tab = t,
        Ctl::FormSubmit | Ctl::FormUpdate => {
            let spec = d.table.spec();
            let missing: Vec<&str> = spec.fields.iter().zip(&d.values).filter(|(f, v)| f.required && v.trim().is_empty()).map(|(f, _)| f.label).collect();
            if !missing.is_empty() {
                d.message = Some(format!("The following mandatory fields are not filled in: {}", missing.join(", ")));
                return Ok(());
            }
            let values: Vec<String> = d.values.iter().map(|v| v.trim().to_string()).collect();
            let (table, record) = (d.table, d.record);
            let t = w.table_mut(table);
            let notice = match record.and_then(|id| t.records.iter_mut().find(|r| r.id == id)) {
                Some(r) => {
                    r.values = values;
                    format!("{} {} was updated.", spec.label, r.values.first().map_or("", |v| v.as_str()))
                }
                None => {
                    let id = t.insert(values, true);
                    let r = t.record(id).map(|r| t.display(r)).unwrap_or_default();
                    format!("{} {r} was created.", spec.label)
                }
            };
            navigate(w, s, Route::List { table, query: Default::default() });
            s.notice = Some(notice);
        }
        _ => {}
    }
    Ok(())
}
