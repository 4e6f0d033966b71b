//! Validators accept the right final state and reject near misses (wrong field value, wrong
//! sort, wrong filter, wrong order, wrong page, wrong answer), at every page size.

use super::Target;
use crate::app::catalog::Order;
use crate::app::list::{ListUi, Op, Query};
use crate::app::{Route, Session, Ui, World};
use crate::env::Env;
use crate::size::PageSize;

fn env(task: &str, seed: u64, size: PageSize) -> Env {
    Env::with_size(task, seed, 15, size).unwrap()
}

/// Seeds `0..n` at every page size.
fn cases(n: u64) -> impl Iterator<Item = (u64, PageSize)> {
    PageSize::ALL.into_iter().flat_map(move |size| (0..n).map(move |seed| (seed, size)))
}

/// Shows the list of `table` with `query`, as running the condition builder does.
fn show_list(w: &World, s: &mut Session, table: crate::app::tables::TableId, query: Query) {
    s.ui = Ui::List(ListUi::new(w, table, query.clone()));
    s.route = Route::List { table, query };
}

#[test]
fn record_needs_every_value() {
    for task in ["miniarena.form.create_incident", "miniarena.form.create_user", "miniarena.form.create_hardware_asset"] {
        for (seed, size) in cases(20) {
            let mut e = env(task, seed, size);
            let (w, _, target) = e.parts_mut();
            let Target::Record(t) = target.clone() else { panic!("{task}") };
            let table = w.table(t.table);
            let mut values = crate::app::tables::defaults(table.spec());
            for (f, v) in &t.values {
                values[*f as usize] = v.clone();
            }
            assert!(!t.satisfied(w), "{task} {seed}: nothing created yet");
            // Wrong value in one field.
            let mut wrong = values.clone();
            let (f0, v0) = &t.values[seed as usize % t.values.len()];
            wrong[*f0 as usize] = format!("{v0}x");
            w.table_mut(t.table).insert(wrong, true);
            assert!(!t.satisfied(w), "{task} {seed}: wrong value accepted");
            // Right values in a pre-existing (not created) record.
            w.table_mut(t.table).insert(values.clone(), false);
            assert!(!t.satisfied(w), "{task} {seed}: old record accepted");
            w.table_mut(t.table).insert(values, true);
            assert!(t.satisfied(w), "{task} {seed}");
        }
    }
}

#[test]
fn filter_needs_exactly_the_conditions() {
    for task in ["miniarena.list_filter.filter_incidents", "miniarena.list_filter.filter_hardware_assets"] {
        for (seed, size) in cases(20) {
            let mut e = env(task, seed, size);
            let (w, s, target) = e.parts_mut();
            let Target::Filter(t) = target.clone() else { panic!() };
            assert!(!t.satisfied(s));
            let mut conds = t.conds.clone();
            conds.reverse();
            show_list(w, s, t.table, Query { conds: conds.clone(), sort: vec![] });
            assert!(t.satisfied(s), "order of conditions does not matter");
            let mut flipped = conds.clone();
            flipped[0].op = if flipped[0].op == Op::Is { Op::IsNot } else { Op::Is };
            show_list(w, s, t.table, Query { conds: flipped, sort: vec![] });
            assert!(!t.satisfied(s), "{task} {seed}: wrong operator accepted");
            show_list(w, s, t.table, Query { conds: conds[1..].to_vec(), sort: vec![] });
            assert!(!t.satisfied(s), "{task} {seed}: missing condition accepted");
            let mut extra = conds.clone();
            extra.push(extra[0].clone());
            extra.last_mut().unwrap().value.push('x');
            show_list(w, s, t.table, Query { conds: extra, sort: vec![] });
            assert!(!t.satisfied(s), "{task} {seed}: extra condition accepted");
            let mut value = conds.clone();
            value[0].value.push('x');
            show_list(w, s, t.table, Query { conds: value, sort: vec![] });
            assert!(!t.satisfied(s), "{task} {seed}: wrong value accepted");
        }
    }
}

#[test]
fn sort_needs_fields_directions_and_order() {
    for task in ["miniarena.list_sort.sort_incidents", "miniarena.list_sort.sort_users"] {
        for (seed, size) in cases(20) {
            let mut e = env(task, seed, size);
            let (w, s, target) = e.parts_mut();
            let Target::Sort(t) = target.clone() else { panic!() };
            assert!(!t.satisfied(w, s));
            show_list(w, s, t.table, Query { conds: vec![], sort: t.keys.clone() });
            assert!(t.satisfied(w, s), "{task} {seed}");
            let mut dir = t.keys.clone();
            dir[1].desc = !dir[1].desc;
            show_list(w, s, t.table, Query { conds: vec![], sort: dir });
            assert!(!t.satisfied(w, s), "{task} {seed}: wrong direction accepted");
            let mut order = t.keys.clone();
            order.swap(0, 2);
            show_list(w, s, t.table, Query { conds: vec![], sort: order });
            assert!(!t.satisfied(w, s), "{task} {seed}: wrong key order accepted");
            show_list(w, s, t.table, Query { conds: vec![], sort: t.keys[..2].to_vec() });
            assert!(!t.satisfied(w, s), "{task} {seed}: missing key accepted");
        }
    }
}

#[test]
fn order_needs_item_options_and_quantity() {
    for task in ["miniarena.service_catalog.order_hardware", "miniarena.service_catalog.order_software"] {
        for (seed, size) in cases(20) {
            let mut e = env(task, seed, size);
            let (w, _, target) = e.parts_mut();
            let Target::Order(t) = target.clone() else { panic!() };
            let order = |lines| Order { number: "REQ0010001".into(), lines };
            let mut qty = t.line.clone();
            qty.quantity += 1;
            w.orders.push(order(vec![qty]));
            assert!(!t.satisfied(w), "{task} {seed}: wrong quantity accepted");
            let mut cfg = t.line.clone();
            cfg.config[0].push('x');
            w.orders.push(order(vec![cfg]));
            assert!(!t.satisfied(w), "{task} {seed}: wrong option accepted");
            w.orders.push(order(vec![t.line.clone(), t.line.clone()]));
            assert!(!t.satisfied(w), "{task} {seed}: extra line accepted");
            w.orders.push(order(vec![t.line.clone()]));
            assert!(t.satisfied(w), "{task} {seed}");
        }
    }
}

#[test]
fn page_and_impersonation_targets() {
    for (seed, size) in cases(30) {
        let mut e = env("miniarena.menu.navigate_to_module", seed, size);
        let (_, s, target) = e.parts_mut();
        let Target::Page(t) = target.clone() else { panic!() };
        assert!(!t.satisfied(s), "{seed}: the start page is not the target");
        s.route = Route::NotFound("/x".into());
        assert!(!t.satisfied(s));
        s.route = t.route.clone();
        assert!(t.satisfied(s));

        let mut e = env("miniarena.menu.impersonate_user", seed, size);
        let (w, _, target) = e.parts_mut();
        let Target::Impersonate(t) = target.clone() else { panic!() };
        assert!(!t.satisfied(w));
        let other = w.people.iter().find(|p| **p != t.name).cloned();
        w.impersonating = other;
        assert!(!t.satisfied(w));
        w.impersonating = Some(t.name.clone());
        assert!(t.satisfied(w));
    }
}

#[test]
fn answers_must_contain_the_right_value() {
    for task in [
        "miniarena.knowledge_base.travel_policy",
        "miniarena.knowledge_base.support_contact",
        "miniarena.knowledge_base.approved_version",
        "miniarena.dashboard.read_value",
        "miniarena.dashboard.find_max",
        "miniarena.dashboard.sum_values",
    ] {
        for (seed, size) in cases(30) {
            let mut e = env(task, seed, size);
            let (w, s, target) = e.parts_mut();
            assert!(target.expects_answer());
            assert!(!target.satisfied(w, s));
            let answer = target.answer().unwrap().to_string();
            assert!(target.answer_ok(&answer), "{task} {seed}");
            assert!(target.answer_ok(&format!("  The answer is:   {}. ", answer.to_uppercase())), "{task} {seed}");
            assert!(!target.answer_ok("I do not know."), "{task} {seed}");
            let decoys = match target {
                Target::Kb(t) => t.reply.decoys.clone(),
                Target::Dash(t) => t.reply.decoys.clone(),
                _ => unreachable!(),
            };
            assert!(!decoys.is_empty(), "{task} {seed}");
            for d in decoys {
                assert!(!target.answer_ok(&format!("The answer is {d}.")), "{task} {seed}: decoy {d} accepted for {answer}");
            }
        }
    }
}
