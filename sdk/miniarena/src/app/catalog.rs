//! The service catalog: categories and items with configurable options, the item page
//! (options, quantity, Order Now / Add to Cart), the cart, and order confirmations.

use super::{navigate, Ctl, Dest, Route, Session, Ui, World};
use crate::page::{Page, Role};

pub struct Category {
    pub name: &'static str,
    pub description: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptKind {
    /// A drop-down (one choice; defaults to the first).
    Select,
    /// Radio buttons (one choice; defaults to the first).
    Radio,
    /// Checkboxes (any number; none by default).
    Checks,
    /// Free text (mandatory).
    Text,
}

pub struct ItemOption {
    pub label: &'static str,
    pub kind: OptKind,
    pub choices: &'static [&'static str],
}

pub struct CatalogItem {
    pub name: &'static str,
    pub category: u8,
    pub price: &'static str,
    pub description: &'static str,
    pub options: &'static [ItemOption],
}

const fn opt(label: &'static str, kind: OptKind, choices: &'static [&'static str]) -> ItemOption {
    ItemOption { label, kind, choices }
}

use OptKind::{Checks, Radio, Select, Text};

pub const CATEGORIES: &[Category] = &[
    Category { name: "Hardware", description: "Laptops and desktops for every role." },
    Category { name: "Mobiles", description: "Company phones and tablets with data plans." },
    Category { name: "Software", description: "Licences for approved software." },
    Category { name: "Peripherals", description: "Monitors, keyboards, headsets and more." },
];

const DATA: &[&str] = &["Unlimited", "10 GB", "20 GB"];
const PHONE_EXTRAS: &[&str] = &["Protective case", "Screen protector", "Wireless charger"];
const JUSTIFY: ItemOption = opt("Business justification", Text, &[]);

pub const ITEMS: &[CatalogItem] = &[
    CatalogItem {
        name: "Developer Laptop (Mac)",
        category: 0,
        price: "$2,499.00",
        description: "A high-performance laptop for software development.",
        options: &[
            opt("Processor", Select, &["M3 Pro 11-core", "M3 Pro 12-core", "M3 Max 14-core"]),
            opt("Memory", Radio, &["18 GB", "36 GB", "48 GB"]),
            opt("Storage", Select, &["512 GB SSD", "1 TB SSD", "2 TB SSD"]),
            opt("Additional software", Checks, &["Xcode", "Docker Desktop", "JetBrains Toolbox", "Microsoft Office"]),
        ],
    },
    CatalogItem {
        name: "Standard Laptop",
        category: 0,
        price: "$1,099.00",
        description: "A lightweight laptop for general office work.",
        options: &[
            opt("Operating system", Radio, &["Windows 11", "Ubuntu 22.04"]),
            opt("Memory", Select, &["8 GB", "16 GB", "32 GB"]),
            opt("Warranty", Select, &["1 year", "3 years"]),
            opt("Accessories", Checks, &["Carrying case", "Docking station", "Wireless mouse", "Privacy screen"]),
        ],
    },
    CatalogItem {
        name: "Sales Laptop",
        category: 0,
        price: "$1,299.00",
        description: "A durable laptop for employees who travel.",
        options: &[
            opt("Color", Radio, &["Silver", "Black"]),
            opt("Memory", Select, &["16 GB", "32 GB"]),
            opt("Storage", Select, &["256 GB SSD", "512 GB SSD"]),
            opt("Additional software", Checks, &["Salesforce Desktop", "Microsoft Office", "Adobe Acrobat"]),
        ],
    },
    CatalogItem {
        name: "Executive Desktop",
        category: 0,
        price: "$1,599.00",
        description: "A quiet desktop workstation with a large display.",
        options: &[
            opt("Monitor size", Select, &["24 inch", "27 inch", "32 inch"]),
            opt("Processor", Radio, &["Intel Core i5", "Intel Core i7", "Intel Core i9"]),
            opt("Accessories", Checks, &["Webcam", "Speakers", "Ergonomic keyboard", "USB hub"]),
        ],
    },
    CatalogItem {
        name: "Apple iPhone 15",
        category: 1,
        price: "$799.00",
        description: "A company iPhone with a corporate data plan.",
        options: &[
            opt("Color", Radio, &["Black", "Blue", "Green", "Pink", "Yellow"]),
            opt("Storage", Select, &["128 GB", "256 GB", "512 GB"]),
            opt("Monthly data allowance", Select, DATA),
            opt("Accessories", Checks, PHONE_EXTRAS),
        ],
    },
    CatalogItem {
        name: "Samsung Galaxy S24",
        category: 1,
        price: "$749.00",
        description: "A company Android phone with a corporate data plan.",
        options: &[
            opt("Color", Radio, &["Onyx Black", "Marble Grey", "Cobalt Violet", "Amber Yellow"]),
            opt("Storage", Select, &["128 GB", "256 GB", "512 GB"]),
            opt("Monthly data allowance", Select, DATA),
            opt("Accessories", Checks, PHONE_EXTRAS),
        ],
    },
    CatalogItem {
        name: "Apple iPad Pro",
        category: 1,
        price: "$999.00",
        description: "A tablet for presentations and field work.",
        options: &[
            opt("Color", Radio, &["Space Black", "Silver"]),
            opt("Storage", Select, &["256 GB", "512 GB", "1 TB"]),
            opt("Connectivity", Radio, &["Wi-Fi", "Wi-Fi + Cellular"]),
            opt("Accessories", Checks, &["Apple Pencil Pro", "Magic Keyboard", "Smart Folio"]),
        ],
    },
    CatalogItem {
        name: "Google Pixel 8",
        category: 1,
        price: "$699.00",
        description: "A company Android phone with a great camera.",
        options: &[
            opt("Color", Radio, &["Obsidian", "Hazel", "Rose"]),
            opt("Storage", Select, &["128 GB", "256 GB"]),
            opt("Monthly data allowance", Select, DATA),
            opt("Accessories", Checks, PHONE_EXTRAS),
        ],
    },
    CatalogItem {
        name: "Adobe Creative Cloud",
        category: 2,
        price: "$84.99 / month",
        description: "Adobe's design and video applications.",
        options: &[
            opt("License type", Radio, &["Individual", "Team"]),
            opt("Applications", Checks, &["Photoshop", "Illustrator", "InDesign", "Premiere Pro"]),
            JUSTIFY,
        ],
    },
    CatalogItem {
        name: "Microsoft Visio",
        category: 2,
        price: "$15.00 / month",
        description: "Diagramming and flowcharts.",
        options: &[opt("Edition", Radio, &["Plan 1", "Plan 2"]), JUSTIFY],
    },
    CatalogItem {
        name: "JetBrains IntelliJ IDEA",
        category: 2,
        price: "$599.00 / year",
        description: "A Java and Kotlin IDE.",
        options: &[opt("Edition", Radio, &["Community", "Ultimate"]), opt("License term", Select, &["1 year", "2 years", "3 years"]), JUSTIFY],
    },
    CatalogItem {
        name: "Tableau Creator",
        category: 2,
        price: "$75.00 / month",
        description: "Data visualisation and dashboards.",
        options: &[
            opt("License term", Select, &["1 year", "2 years", "3 years"]),
            opt("Training", Checks, &["Online course", "Instructor-led workshop"]),
            JUSTIFY,
        ],
    },
    CatalogItem {
        name: "Dell 27-inch Monitor",
        category: 3,
        price: "$349.00",
        description: "A 4K monitor for the office or home.",
        options: &[
            opt("Stand", Radio, &["Standard", "Height-adjustable", "Wall mount"]),
            opt("Cable", Select, &["HDMI", "DisplayPort", "USB-C"]),
            opt("Extras", Checks, &["Monitor arm", "Privacy filter", "Cleaning kit"]),
        ],
    },
    CatalogItem {
        name: "Wireless Keyboard and Mouse",
        category: 3,
        price: "$89.00",
        description: "A wireless keyboard and mouse set.",
        options: &[
            opt("Layout", Select, &["US English", "UK English", "German", "French", "Spanish"]),
            opt("Color", Radio, &["Black", "White", "Graphite"]),
            opt("Extras", Checks, &["Wrist rest", "Mouse pad", "Spare batteries"]),
        ],
    },
    CatalogItem {
        name: "Noise-cancelling Headset",
        category: 3,
        price: "$229.00",
        description: "A headset for calls in open-plan offices.",
        options: &[
            opt("Connection", Radio, &["USB-A", "USB-C", "Bluetooth"]),
            opt("Fit", Select, &["On-ear", "Over-ear"]),
            opt("Extras", Checks, &["Carrying pouch", "Spare ear cushions", "Charging stand"]),
        ],
    },
];

/// One ordered item: its configuration (one string per option) and quantity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderLine {
    pub item: u16,
    pub config: Vec<String>,
    pub quantity: u8,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    pub number: String,
    pub lines: Vec<OrderLine>,
}

/// The value of one option on the item page.
#[derive(Clone, Debug, PartialEq)]
pub enum OptValue {
    Choice(u8),
    /// Bit i: choice i is checked.
    Checks(u16),
    Text(String),
}

/// The item page being filled in.
#[derive(Clone, Debug)]
pub struct ItemDraft {
    pub item: u16,
    pub values: Vec<OptValue>,
    pub quantity: u8,
    pub message: Option<String>,
}

impl ItemDraft {
    pub fn new(item: u16) -> ItemDraft {
        let values = ITEMS[item as usize]
            .options
            .iter()
            .map(|o| match o.kind {
                Select | Radio => OptValue::Choice(0),
                Checks => OptValue::Checks(0),
                Text => OptValue::Text(String::new()),
            })
            .collect();
        ItemDraft { item, values, quantity: 1, message: None }
    }

    /// The configuration strings an order of this draft gets.
    pub fn config(&self) -> Vec<String> {
        let item = &ITEMS[self.item as usize];
        item.options.iter().zip(&self.values).map(|(o, v)| config_value(o, v)).collect()
    }
}

/// How an option's value is recorded on an order: the choice, the checked choices joined
/// by ", " (in the item's order), or the text.
pub fn config_value(o: &ItemOption, v: &OptValue) -> String {
    match v {
        OptValue::Choice(i) => o.choices.get(*i as usize).copied().unwrap_or("").to_string(),
        OptValue::Checks(bits) => o.choices.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, c)| *c).collect::<Vec<_>>().join(", "),
        OptValue::Text(t) => t.trim().to_string(),
    }
}

/// Items of a category.
pub fn items_in(category: u8) -> impl Iterator<Item = usize> {
    ITEMS.iter().enumerate().filter(move |(_, it)| it.category == category).map(|(i, _)| i)
}

fn cart_link(w: &World, page: &mut Page) {
    page.add_fmt(Role::Link, format_args!("View cart ({})", w.cart.len())).ctl(Ctl::Go(Dest::Cart));
}

pub fn render_home(w: &World, page: &mut Page) {
    page.open(Role::Main, "");
    page.add(Role::Heading, "Service Catalog");
    if w.size.descriptions() {
        page.text("Order hardware, software and services.");
    }
    cart_link(w, page);
    page.open(Role::List, "Categories");
    for (i, c) in CATEGORIES.iter().enumerate() {
        page.open(Role::ListItem, "");
        page.add(Role::Link, c.name).ctl(Ctl::Category(i as u8));
        if w.size.descriptions() {
            page.text(c.description);
        }
        page.close();
    }
    page.close();
    page.close();
}

pub fn render_category(w: &World, c: u8, page: &mut Page) {
    let Some(cat) = CATEGORIES.get(c as usize) else {
        return;
    };
    page.open(Role::Main, "");
    page.add(Role::Heading, cat.name);
    page.add(Role::Link, "Service Catalog").ctl(Ctl::Go(Dest::CatalogHome));
    cart_link(w, page);
    page.open(Role::List, "Items");
    for i in items_in(c) {
        let it = &ITEMS[i];
        page.open(Role::ListItem, "");
        page.add(Role::Link, it.name).ctl(Ctl::Item(i as u16));
        if w.size.descriptions() {
            page.text_fmt(format_args!("{} · {}", it.price, it.description));
        }
        page.close();
    }
    page.close();
    page.close();
}

pub fn render_item(w: &World, d: &ItemDraft, page: &mut Page) {
    let item = &ITEMS[d.item as usize];
    page.open(Role::Main, "");
    page.add(Role::Link, "Service Catalog").ctl(Ctl::Go(Dest::CatalogHome));
    page.add(Role::Link, CATEGORIES[item.category as usize].name).ctl(Ctl::Category(item.category));
    page.add(Role::Heading, item.name);
    page.text_fmt(format_args!("Price: {}", item.price));
    if w.size.descriptions() {
        page.text(item.description);
    }
    if let Some(m) = &d.message {
        page.add(Role::Alert, m);
    }
    page.open(Role::Form, item.name);
    for (k, (o, v)) in item.options.iter().zip(&d.values).enumerate() {
        let k = k as u8;
        match (o.kind, v) {
            (Select, OptValue::Choice(sel)) => {
                let cur = o.choices.get(*sel as usize).copied().unwrap_or("");
                page.open(Role::Combobox, o.label).value(cur).ctl(Ctl::ItemSelect(k));
                for (i, c) in o.choices.iter().enumerate() {
                    page.add(Role::Option, c).selected(i == *sel as usize);
                }
                page.close();
            }
            (Radio, OptValue::Choice(sel)) => {
                page.open(Role::RadioGroup, o.label);
                for (i, c) in o.choices.iter().enumerate() {
                    page.add(Role::Radio, c).checked(i == *sel as usize).ctl(Ctl::ItemRadio(k, i as u8));
                }
                page.close();
            }
            (Checks, OptValue::Checks(bits)) => {
                page.open(Role::Group, o.label);
                for (i, c) in o.choices.iter().enumerate() {
                    page.add(Role::Checkbox, c).checked(bits & (1 << i) != 0).ctl(Ctl::ItemCheck(k, i as u8));
                }
                page.close();
            }
            (_, OptValue::Text(t)) => {
                page.add(Role::Textbox, o.label).value(t).required(true).ctl(Ctl::ItemText(k));
            }
            _ => {}
        }
    }
    let q = d.quantity.to_string();
    page.open(Role::Combobox, "Quantity").value(&q).ctl(Ctl::Quantity);
    for n in 1..=w.size.max_quantity() {
        page.add_fmt(Role::Option, format_args!("{n}")).selected(n == d.quantity);
    }
    page.close();
    page.close();
    page.add(Role::Button, "Order Now").ctl(Ctl::OrderNow);
    page.add(Role::Button, "Add to Cart").ctl(Ctl::AddToCart);
    cart_link(w, page);
    page.close();
}

fn summary(line: &OrderLine) -> String {
    let item = &ITEMS[line.item as usize];
    item.options.iter().zip(&line.config).filter(|(_, v)| !v.is_empty()).map(|(o, v)| format!("{}: {v}", o.label)).collect::<Vec<_>>().join("; ")
}

fn render_lines(lines: &[OrderLine], removable: bool, page: &mut Page) {
    page.open(Role::Table, "Items");
    page.open(Role::Row, "");
    for h in ["Item", "Quantity", "Configuration"] {
        page.add(Role::ColumnHeader, h);
    }
    page.close();
    for (i, line) in lines.iter().enumerate() {
        page.open(Role::Row, "");
        page.add(Role::Gridcell, ITEMS[line.item as usize].name);
        page.add_fmt(Role::Gridcell, format_args!("{}", line.quantity));
        page.add(Role::Gridcell, &summary(line));
        if removable {
            page.add(Role::Button, "Remove").ctl(Ctl::CartRemove(i as u8));
        }
        page.close();
    }
    page.close();
}

pub fn render_cart(w: &World, page: &mut Page) {
    page.open(Role::Main, "");
    page.add(Role::Heading, "Shopping Cart");
    if w.cart.is_empty() {
        page.text("Your cart is empty.");
    } else {
        render_lines(&w.cart, true, page);
    }
    page.add(Role::Button, "Proceed to Checkout").disabled(w.cart.is_empty()).ctl(Ctl::Checkout);
    page.add(Role::Link, "Continue shopping").ctl(Ctl::Go(Dest::CatalogHome));
    page.close();
}

pub fn render_order(w: &World, o: u32, page: &mut Page) {
    let Some(order) = w.orders.get(o as usize) else {
        return;
    };
    page.open(Role::Main, "");
    page.add(Role::Heading, "Order Status");
    page.text("Thank you, your request has been submitted.");
    page.text_fmt(format_args!("Request number: {}", order.number));
    render_lines(&order.lines, false, page);
    page.add(Role::Link, "Continue shopping").ctl(Ctl::Go(Dest::CatalogHome));
    page.close();
}

fn place_order(w: &mut World, s: &mut Session, lines: Vec<OrderLine>) {
    let number = format!("REQ{:07}", 10001 + w.orders.len());
    w.orders.push(Order { number, lines });
    let o = (w.orders.len() - 1) as u32;
    navigate(w, s, Route::Order(o));
}

pub fn click(w: &mut World, s: &mut Session, ctl: Ctl) -> Result<(), String> {
    match ctl {
        Ctl::Category(c) => navigate(w, s, Route::CatalogCategory(c)),
        Ctl::Item(i) => navigate(w, s, Route::CatalogItem(i)),
        Ctl::CartRemove(i) if (i as usize) < w.cart.len() => {
            w.cart.remove(i as usize);
        }
        Ctl::Checkout if !w.cart.is_empty() => {
            let lines = std::mem::take(&mut w.cart);
            place_order(w, s, lines);
        }
        Ctl::OrderNow | Ctl::AddToCart => {
            let Ui::Item(d) = &mut s.ui else {
                return Ok(());
            };
            let item = &ITEMS[d.item as usize];
            let missing: Vec<&str> =
                item.options.iter().zip(&d.values).filter(|(_, v)| matches!(v, OptValue::Text(t) if t.trim().is_empty())).map(|(o, _)| o.label).collect();
            if !missing.is_empty() {
                d.message = Some(format!("Fill in the mandatory fields: {}", missing.join(", ")));
                return Ok(());
            }
            let line = OrderLine { item: d.item, config: d.config(), quantity: d.quantity };
            if ctl == Ctl::OrderNow {
                place_order(w, s, vec![line]);
            } else {
                w.cart.push(line);
                d.message = Some(format!("{} was added to your cart.", item.name));
            }
        }
        _ => {}
    }
    Ok(())
}

fn item_draft(s: &mut Session) -> Result<&mut ItemDraft, String> {
    match &mut s.ui {
        Ui::Item(d) => Ok(d),
        _ => Err("Error: element is not on a catalog item page".to_string()),
    }
}

pub fn select(s: &mut Session, ctl: Ctl, option: &str) -> Result<(), String> {
    let d = item_draft(s)?;
    let item = &ITEMS[d.item as usize];
    match ctl {
        Ctl::Quantity => d.quantity = option.parse().unwrap_or(1),
        Ctl::ItemSelect(k) => {
            if let Some(o) = item.options.get(k as usize) {
                if let Some(i) = o.choices.iter().position(|c| *c == option) {
                    d.values[k as usize] = OptValue::Choice(i as u8);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

pub fn set_checked(s: &mut Session, ctl: Ctl, on: bool) -> Result<(), String> {
    let d = item_draft(s)?;
    match ctl {
        Ctl::ItemRadio(k, i) => {
            if !on {
                return Err("Error: Cannot uncheck a radio button; check another one instead".into());
            }
            d.values[k as usize] = OptValue::Choice(i);
        }
        Ctl::ItemCheck(k, i) => {
            if let OptValue::Checks(bits) = &mut d.values[k as usize] {
                if on {
                    *bits |= 1 << i;
                } else {
                    *bits &= !(1 << i);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

pub fn set_text(s: &mut Session, ctl: Ctl, value: &str) -> Result<(), String> {
    let d = item_draft(s)?;
    if let Ctl::ItemText(k) = ctl {
        d.values[k as usize] = OptValue::Text(value.to_string());
    }
    Ok(())
}
