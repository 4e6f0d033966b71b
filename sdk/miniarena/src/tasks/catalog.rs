//! `service_catalog` tasks: order an item of a catalog category with a given configuration
//! and quantity. The validator looks for an order of exactly that one line; the expert walks
//! catalog → category → item, sets every option and the quantity, and clicks Order Now.

use super::{base_world, q, Instance, Target};
use crate::app::catalog::{config_value, items_in, OptKind, OptValue, OrderLine, CATEGORIES, ITEMS};
use crate::app::{Ctl, Dest, Route, Ui, World};
use crate::expert::{Plan, PlanCx};
use crate::pick::{self, Pick};
use crate::size::PageSize;

#[derive(Clone, Debug)]
pub(crate) struct OrderTarget {
    pub item: u16,
    /// The wanted value of every option.
    pub values: Vec<OptValue>,
    pub line: OrderLine,
}

impl OrderTarget {
    pub fn satisfied(&self, w: &World) -> bool {
        w.orders.iter().any(|o| o.lines.len() == 1 && o.lines[0] == self.line)
    }

    pub fn plan(&self, cx: &mut PlanCx<'_>) -> Plan {
        let item = &ITEMS[self.item as usize];
        let cat = CATEGORIES[item.category as usize].name;
        match (&cx.session.route, &cx.session.ui) {
            (Route::CatalogHome, _) => cx.click(Ctl::Category(item.category), format!("the item \"{}\" is in the '{cat}' category", item.name)),
            (Route::CatalogCategory(c), _) if *c == item.category => {
                cx.click(Ctl::Item(self.item), format!("I have to order \"{}\", which is listed in this category", item.name))
            }
            (Route::CatalogCategory(_), _) => cx.click(Ctl::Go(Dest::CatalogHome), format!("this is the wrong category; \"{}\" is under '{cat}'", item.name)),
            (Route::CatalogItem(i), Ui::Item(d)) if *i == self.item => {
                for (k, (o, (want, have))) in item.options.iter().zip(self.values.iter().zip(&d.values)).enumerate() {
                    let k8 = k as u8;
                    match (o.kind, want, have) {
                        (OptKind::Select, OptValue::Choice(w), OptValue::Choice(h)) if w != h && !cx.overlooks(Ctl::ItemSelect(k8)) => {
                            let v = o.choices[*w as usize];
                            return cx.select(Ctl::ItemSelect(k8), v, format!("the configuration asks for '{}' to be \"{v}\"", o.label));
                        }
                        (OptKind::Radio, OptValue::Choice(w), OptValue::Choice(h)) if w != h => {
                            let v = o.choices[*w as usize];
                            return cx.check(Ctl::ItemRadio(k8, *w), true, format!("the configuration asks for '{}' to be \"{v}\"", o.label));
                        }
                        (OptKind::Checks, OptValue::Checks(w), OptValue::Checks(h)) if w != h => {
                            let j = (0..o.choices.len()).find(|j| (w ^ h) & (1 << j) != 0).unwrap_or(0);
                            let on = w & (1 << j) != 0;
                            let why = if on {
                                format!("'{}' must include \"{}\"", o.label, o.choices[j])
                            } else {
                                format!("\"{}\" is not part of the requested '{}'", o.choices[j], o.label)
                            };
                            return cx.check(Ctl::ItemCheck(k8, j as u8), on, why);
                        }
                        (OptKind::Text, OptValue::Text(w), OptValue::Text(h)) if w.trim() != h.trim() && !cx.overlooks(Ctl::ItemText(k8)) => {
                            return cx.fill(Ctl::ItemText(k8), w, format!("the mandatory field '{}' must say \"{w}\"", o.label));
                        }
                        _ => {}
                    }
                }
                if d.quantity != self.line.quantity && !cx.overlooks(Ctl::Quantity) {
                    let n = self.line.quantity.to_string();
                    return cx.select(Ctl::Quantity, &n, format!("the goal asks for {n} of them and the quantity is {}", d.quantity));
                }
                cx.click(Ctl::OrderNow, format!("\"{}\" is configured as requested with quantity {}", item.name, d.quantity)).finishing()
            }
            _ => cx.recover(Ctl::OrderNow),
        }
    }
}

const NEEDS: &[&str] = &[
    "Needed for",
    "Required for",
    "Requested by my manager for",
    "Essential for",
    "Blocking my work on",
    "Approved in the budget for",
    "Needed to deliver",
    "Required by the team for",
    "Replacing an expired licence for",
    "Needed during",
];
const PROJECTS: &[&str] = &[
    "the Q3 marketing campaign",
    "the website redesign",
    "the data migration project",
    "the new onboarding portal",
    "the customer analytics dashboard",
    "the mobile app release",
    "the annual audit",
    "the product launch",
    "the training programme",
    "the office move",
];

/// Subsets of up to two of `n` choices, as bit masks, in a fixed order.
fn small_subsets(n: usize) -> Vec<u16> {
    let mut out = vec![0u16];
    out.extend((0..n).map(|i| 1u16 << i));
    for i in 0..n {
        for j in i + 1..n {
            out.push((1 << i) | (1 << j));
        }
    }
    out
}

/// Radices of one item's configuration space (options, then quantity 1-5).
fn radices(item: usize) -> Vec<usize> {
    let mut r: Vec<usize> = ITEMS[item]
        .options
        .iter()
        .map(|o| match o.kind {
            OptKind::Select | OptKind::Radio => o.choices.len(),
            OptKind::Checks => small_subsets(o.choices.len()).len(),
            OptKind::Text => NEEDS.len() * PROJECTS.len(),
        })
        .collect();
    r.push(5);
    r
}

fn order(category: u8, name: &str, seed: u64, size: PageSize) -> Instance {
    let mut rng = pick::rng(name, seed);
    let world = base_world(&mut rng, size);
    let items: Vec<usize> = items_in(category).collect();
    let sizes: Vec<u64> = items.iter().map(|&i| radices(i).iter().map(|&r| r as u64).product()).collect();
    let mut pick = Pick::new(name, seed, sizes.iter().sum());
    let item = items[pick.branch(&sizes)];
    let it = &ITEMS[item];
    let values: Vec<OptValue> = it
        .options
        .iter()
        .map(|o| match o.kind {
            OptKind::Select | OptKind::Radio => OptValue::Choice(pick.digit(o.choices.len()) as u8),
            OptKind::Checks => {
                let subsets = small_subsets(o.choices.len());
                OptValue::Checks(subsets[pick.digit(subsets.len())])
            }
            OptKind::Text => {
                let d = pick.digit(NEEDS.len() * PROJECTS.len());
                OptValue::Text(format!("{} {}.", NEEDS[d % NEEDS.len()], PROJECTS[d / NEEDS.len()]))
            }
        })
        .collect();
    let quantity = pick.digit(5) as u8 + 1;
    let config: Vec<String> = it.options.iter().zip(&values).map(|(o, v)| config_value(o, v)).collect();
    let parts: Vec<String> = it
        .options
        .iter()
        .zip(&values)
        .map(|(o, v)| match v {
            OptValue::Checks(bits) => {
                let chosen: Vec<String> = (0..o.choices.len()).filter(|j| bits & (1 << j) != 0).map(|j| q(o.choices[j])).collect();
                format!("{}: [{}]", q(o.label), chosen.join(", "))
            }
            _ => format!("{}: {}", q(o.label), q(&config_value(o, v))),
        })
        .collect();
    let cat = CATEGORIES[category as usize].name;
    let goal = format!("Go to the \"{cat}\" category of the service catalog and order {quantity} {} with configuration {{{}}}.", q(it.name), parts.join(", "));
    let line = OrderLine { item: item as u16, config, quantity };
    Instance { goal, world, start: Route::CatalogHome, target: Target::Order(OrderTarget { item: item as u16, values, line }) }
}

pub(crate) fn order_hardware(name: &'static str, seed: u64, size: PageSize) -> Instance {
    order(0, name, seed, size)
}
pub(crate) fn order_mobile_device(name: &'static str, seed: u64, size: PageSize) -> Instance {
    order(1, name, seed, size)
}
pub(crate) fn order_software(name: &'static str, seed: u64, size: PageSize) -> Instance {
    order(2, name, seed, size)
}
pub(crate) fn order_peripheral(name: &'static str, seed: u64, size: PageSize) -> Instance {
    order(3, name, seed, size)
}
