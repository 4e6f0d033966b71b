//! What surrounds every page: the banner with the application navigator ("All" menu) and
//! the user menu with impersonation; plus the home page, module pages and "not found".

use super::list::{Cond, Op, Query};
use super::tables::TableId;
use super::{navigate, Ctl, Dest, Route, Session, World};
use crate::page::{Page, Role};
use crate::vocab;

/// An application in the navigator, with its modules.
#[derive(Clone, Debug)]
pub struct App {
    pub name: String,
    pub modules: Vec<Module>,
}

#[derive(Clone, Debug)]
pub struct Module {
    pub name: String,
    /// Where the module leads.
    pub target: Route,
}

/// Menus and dialogs of the chrome.
#[derive(Clone, Debug, Default)]
pub struct ChromeUi {
    pub nav_open: bool,
    pub nav_filter: String,
    /// Bit i: application i is expanded.
    pub expanded: u64,
    pub user_menu: bool,
    /// The impersonation dialog: `Some(selected person)` while open.
    pub dialog: Option<Option<usize>>,
}

impl ChromeUi {
    pub fn close_menus(&mut self) {
        self.nav_open = false;
        self.nav_filter.clear();
        self.expanded = 0;
        self.user_menu = false;
        self.dialog = None;
    }
}

/// Prefixes and domains of the custom (scoped) applications instances have.
pub const CUSTOM_PREFIXES: &[&str] = &[
    "Acme",
    "Northwind",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Contoso",
    "Tyrell",
    "Cyberdyne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Wonka",
    "Oscorp",
    "Aperture",
    "Gringotts",
    "Monarch",
    "Dunder",
    "Pied Piper",
];
pub const CUSTOM_DOMAINS: &[&str] = &[
    "Fleet",
    "Facilities",
    "Vendor Risk",
    "Travel",
    "Onboarding",
    "Legal Matters",
    "Badge Access",
    "Lab Equipment",
    "Parking",
    "Events",
    "Training",
    "Mailroom",
    "Print Services",
    "Grants",
    "Warehouse",
    "Field Audits",
    "Catering",
    "Licensing",
    "Relocation",
    "Sustainability",
];
pub const CUSTOM_MODULES: &[&str] = &[
    "Overview",
    "All Requests",
    "Open Requests",
    "My Assignments",
    "Create New",
    "Reports",
    "Schedules",
    "Properties",
    "Administration",
    "Locations",
    "Vendors",
    "Archived",
];

/// The standard applications, with the lists and forms their modules open.
pub fn standard_apps(user: &str) -> Vec<App> {
    let list = |table, conds: Vec<Cond>| Route::List { table, query: Query { conds, sort: vec![] } };
    let is =
        |table: TableId, field: &str, op: Op, value: &str| Cond { field: table.spec().field_index(field).unwrap_or(0) as u8, op, value: value.to_string() };
    let new = |table| Route::Form { table, record: None };
    let app = |name: &str, modules: Vec<(&str, Route)>| App {
        name: name.to_string(),
        modules: modules.into_iter().map(|(n, target)| Module { name: n.to_string(), target }).collect(),
    };
    use TableId::*;
    vec![
        app(
            "Incident",
            vec![
                ("Create New", new(Incident)),
                ("Open", list(Incident, vec![is(Incident, "state", Op::IsNot, "Closed")])),
                ("Assigned to me", list(Incident, vec![is(Incident, "assigned_to", Op::Is, user)])),
                ("Resolved", list(Incident, vec![is(Incident, "state", Op::Is, "Resolved")])),
                ("All", list(Incident, vec![])),
            ],
        ),
        app(
            "Problem",
            vec![("Create New", new(Problem)), ("Open", list(Problem, vec![is(Problem, "state", Op::IsNot, "Closed")])), ("All", list(Problem, vec![]))],
        ),
        app(
            "Change",
            vec![
                ("Create New", new(Change)),
                ("Open", list(Change, vec![is(Change, "state", Op::IsNot, "Closed")])),
                ("Emergency", list(Change, vec![is(Change, "type", Op::Is, "Emergency")])),
                ("All", list(Change, vec![])),
            ],
        ),
        app("Service Catalog", vec![("Catalog", Route::CatalogHome), ("My Cart", Route::Cart)]),
        app("Knowledge", vec![("Knowledge Home", Route::KbHome), ("All Articles", Route::KbSearch(String::new()))]),
        app(
            "Asset",
            vec![
                ("Hardware Assets", list(Hardware, vec![])),
                ("New Hardware Asset", new(Hardware)),
                ("In Stock", list(Hardware, vec![is(Hardware, "install_status", Op::Is, "In stock")])),
                ("Retired", list(Hardware, vec![is(Hardware, "install_status", Op::Is, "Retired")])),
            ],
        ),
        app(
            "User Administration",
            vec![("Users", list(User, vec![])), ("New User", new(User)), ("Locked Out Users", list(User, vec![is(User, "locked_out", Op::Is, "true")]))],
        ),
        app("Performance Analytics", vec![("Dashboards", Route::Dashboards)]),
        app(
            "Self-Service",
            vec![
                ("Homepage", Route::Home),
                ("Service Catalog", Route::CatalogHome),
                ("Knowledge", Route::KbHome),
                ("Incidents", list(Incident, vec![is(Incident, "caller_id", Op::Is, user)])),
            ],
        ),
    ]
}

/// A custom application called `name` with the given modules (indices into
/// [`CUSTOM_MODULES`]), placed at navigator position `app_index`.
pub fn custom_app(name: String, app_index: u8, modules: &[usize]) -> App {
    App {
        name,
        modules: modules
            .iter()
            .enumerate()
            .map(|(j, &m)| Module { name: CUSTOM_MODULES[m].to_string(), target: Route::Module { app: app_index, module: j as u8 } })
            .collect(),
    }
}

pub fn module_path(w: &World, app: u8, module: u8) -> String {
    let a = w.apps.get(app as usize);
    let m = a.and_then(|a| a.modules.get(module as usize));
    match (a, m) {
        (Some(a), Some(m)) => format!("/x_{}_{}.do", vocab::slug(&a.name), vocab::slug(&m.name)),
        _ => "/x_unknown.do".to_string(),
    }
}

pub fn module_from_path(w: &World, path: &str) -> Option<Route> {
    for (i, a) in w.apps.iter().enumerate() {
        for (j, m) in a.modules.iter().enumerate() {
            if let Route::Module { .. } = m.target {
                if module_path(w, i as u8, j as u8) == path {
                    return Some(Route::Module { app: i as u8, module: j as u8 });
                }
            }
        }
    }
    None
}

pub fn module_title(w: &World, app: u8, module: u8) -> String {
    let a = w.apps.get(app as usize);
    let m = a.and_then(|a| a.modules.get(module as usize));
    match (a, m) {
        (Some(a), Some(m)) => format!("{} - {}", a.name, m.name),
        _ => "Module".to_string(),
    }
}

/// Which modules of app `i` the navigator shows (all, or those matching the filter).
fn visible_modules<'a>(w: &'a World, ui: &'a ChromeUi, i: usize) -> impl Iterator<Item = usize> + 'a {
    let app = &w.apps[i];
    let filter = ui.nav_filter.trim().to_lowercase();
    let app_matches = filter.is_empty() || app.name.to_lowercase().contains(&filter);
    app.modules.iter().enumerate().filter(move |(_, m)| app_matches || m.name.to_lowercase().contains(&filter)).map(|(j, _)| j)
}

/// Whether the navigator shows app `i`, and whether it is expanded.
pub fn app_state(w: &World, ui: &ChromeUi, i: usize) -> (bool, bool) {
    if ui.nav_filter.trim().is_empty() {
        (true, ui.expanded & (1 << i) != 0)
    } else {
        let any = visible_modules(w, ui, i).next().is_some();
        (any, any)
    }
}

pub fn render_chrome(w: &World, s: &Session, page: &mut Page) {
    let ui = &s.chrome;
    page.region(b'a');
    page.open(Role::Banner, "MiniArena");
    page.add(Role::Button, "All").expanded(ui.nav_open).ctl(Ctl::NavToggle);
    page.add(Role::Link, "MiniArena home").ctl(Ctl::Go(Dest::Home));
    page.add_fmt(Role::Button, format_args!("User menu: {}", w.acting_user())).expanded(ui.user_menu).ctl(Ctl::UserMenu);
    if let Some(p) = &w.impersonating {
        page.text_fmt(format_args!("Impersonating {p}"));
    }
    if ui.user_menu {
        page.open(Role::Menu, "User menu");
        page.add(Role::MenuItem, "Impersonate user").ctl(Ctl::ImpersonateMenu);
        if w.impersonating.is_some() {
            page.add(Role::MenuItem, "End impersonation").ctl(Ctl::EndImpersonation);
        }
        page.close();
    }
    page.close();
    if ui.nav_open {
        page.region(b'n');
        page.open(Role::Navigation, "Application navigator");
        page.add(Role::Textbox, "Filter navigator").value(&ui.nav_filter).ctl(Ctl::NavFilter);
        for (i, app) in w.apps.iter().enumerate() {
            let (visible, expanded) = app_state(w, ui, i);
            if !visible {
                continue;
            }
            page.open(Role::Button, &app.name).expanded(expanded).ctl(Ctl::NavApp(i as u8));
            if expanded {
                for j in visible_modules(w, ui, i) {
                    page.add(Role::Link, &app.modules[j].name).ctl(Ctl::NavModule(i as u8, j as u8));
                }
            }
            page.close();
        }
        page.close();
    }
    if let Some(sel) = ui.dialog {
        page.region(b'g');
        page.open(Role::Dialog, "Impersonate user");
        let value = sel.and_then(|i| w.people.get(i)).map_or("-- Select a user --", |p| p.as_str());
        page.open(Role::Combobox, "User").value(value).ctl(Ctl::ImpersonateUser);
        page.add(Role::Option, "-- Select a user --").selected(sel.is_none());
        for (i, p) in w.people.iter().enumerate() {
            page.add(Role::Option, p).selected(sel == Some(i));
        }
        page.close();
        page.add(Role::Button, "Impersonate user").ctl(Ctl::ImpersonateConfirm);
        page.add(Role::Button, "Cancel").ctl(Ctl::ImpersonateCancel);
        page.close();
    }
}

pub fn click(w: &mut World, s: &mut Session, ctl: Ctl) -> Result<(), String> {
    let ui = &mut s.chrome;
    match ctl {
        Ctl::NavToggle => {
            ui.nav_open = !ui.nav_open;
            ui.user_menu = false;
        }
        Ctl::NavApp(i) if ui.nav_filter.trim().is_empty() => ui.expanded ^= 1 << i,
        Ctl::NavModule(i, j) => {
            let target = w.apps.get(i as usize).and_then(|a| a.modules.get(j as usize));
            if let Some(m) = target {
                let route = m.target.clone();
                navigate(w, s, route);
            }
        }
        Ctl::UserMenu => {
            ui.user_menu = !ui.user_menu;
            ui.nav_open = false;
        }
        Ctl::ImpersonateMenu => {
            ui.user_menu = false;
            ui.dialog = Some(None);
        }
        Ctl::EndImpersonation => {
            w.impersonating = None;
            navigate(w, s, Route::Home);
        }
        Ctl::ImpersonateCancel => ui.dialog = None,
        Ctl::ImpersonateConfirm => match ui.dialog {
            Some(Some(i)) => {
                w.impersonating = w.people.get(i).cloned();
                navigate(w, s, Route::Home);
            }
            _ => s.notice = Some("Select a user to impersonate.".to_string()),
        },
        _ => {}
    }
    Ok(())
}

pub fn set_text(_w: &mut World, s: &mut Session, _ctl: Ctl, value: &str) -> Result<(), String> {
    s.chrome.nav_filter.clear();
    s.chrome.nav_filter.push_str(value);
    Ok(())
}

pub fn select(w: &mut World, s: &mut Session, option: &str) -> Result<(), String> {
    if let Some(sel) = s.chrome.dialog.as_mut() {
        *sel = w.people.iter().position(|p| p == option);
    }
    Ok(())
}

pub fn render_home(w: &World, page: &mut Page) {
    page.open(Role::Main, "");
    page.add_fmt(Role::Heading, format_args!("Welcome, {}", w.acting_user()));
    if w.size.descriptions() {
        page.text("What would you like to do today?");
    }
    page.open(Role::List, "Quick links");
    let links = [
        ("Order something from the Service Catalog", Dest::CatalogHome),
        ("Search the Knowledge Base", Dest::KbHome),
        ("View dashboards", Dest::Dashboards),
        ("Report an incident", Dest::NewRecord(TableId::Incident)),
        ("View incidents", Dest::List(TableId::Incident)),
    ];
    for (name, dest) in links.into_iter().take(w.size.quick_links()) {
        page.open(Role::ListItem, "");
        page.add(Role::Link, name).ctl(Ctl::Go(dest));
        page.close();
    }
    page.close();
    if w.size.descriptions() {
        page.text("Tip: use the All menu to find any application module.");
    }
    page.close();
}

pub fn render_module(w: &World, app: u8, module: u8, page: &mut Page) {
    let (a, m) = match w.apps.get(app as usize) {
        Some(a) => (a.name.as_str(), a.modules.get(module as usize).map_or("", |m| m.name.as_str())),
        None => ("", ""),
    };
    page.open(Role::Main, "");
    page.add_fmt(Role::Heading, format_args!("{a}: {m}"));
    page.text_fmt(format_args!("This is the {m} page of the {a} application."));
    page.text("No records to display.");
    page.add(Role::Link, "Back to home").ctl(Ctl::Go(Dest::Home));
    page.close();
}

pub fn render_not_found(path: &str, page: &mut Page) {
    page.open(Role::Main, "");
    page.add(Role::Heading, "Page not found");
    page.text_fmt(format_args!("The page {path} does not exist on this instance."));
    page.add(Role::Link, "Back to home").ctl(Ctl::Go(Dest::Home));
    page.close();
}
