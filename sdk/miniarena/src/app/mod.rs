//! The simulated ServiceNow instance: its data ([`World`]), the browser session on it
//! ([`Session`]: current page, history, what is typed but not saved), the pages built from
//! them, and what each element does when acted on.
//!
//! Screens live in their own modules (forms, lists, catalog, knowledge, dashboards, and the
//! chrome around every page); this module routes URLs and actions to them.

pub mod catalog;
pub mod chrome;
pub mod dashboard;
pub mod form;
pub mod kb;
pub mod list;
pub mod tables;

use std::cell::OnceCell;

use crate::page::Page;
use crate::size::PageSize;
use tables::{Table, TableId};

pub const BASE_URL: &str = "http://miniarena.local";

/// Where the browser is.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    Home,
    List {
        table: TableId,
        query: list::Query,
    },
    /// A record form; `None` is a new record.
    Form {
        table: TableId,
        record: Option<u32>,
    },
    CatalogHome,
    CatalogCategory(u8),
    CatalogItem(u16),
    Cart,
    /// The confirmation page of an order (index into `World::orders`).
    Order(u32),
    KbHome,
    KbSearch(String),
    KbArticle(u16),
    Dashboards,
    Dashboard(u8),
    /// A page of an application module without a list or form of its own.
    Module {
        app: u8,
        module: u8,
    },
    NotFound(String),
}

/// A destination of a plain link (kept small so [`Ctl`] stays `Copy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    Home,
    List(TableId),
    NewRecord(TableId),
    CatalogHome,
    Cart,
    KbHome,
    Dashboards,
}

impl Dest {
    pub fn route(self) -> Route {
        match self {
            Dest::Home => Route::Home,
            Dest::List(table) => Route::List { table, query: list::Query::default() },
            Dest::NewRecord(table) => Route::Form { table, record: None },
            Dest::CatalogHome => Route::CatalogHome,
            Dest::Cart => Route::Cart,
            Dest::KbHome => Route::KbHome,
            Dest::Dashboards => Route::Dashboards,
        }
    }
}

/// What an element is bound to: the key by which the application (and the experts) know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctl {
    /// Structure or text: acting on it does nothing.
    None,
    Go(Dest),
    // chrome
    NavToggle,
    NavFilter,
    NavApp(u8),
    NavModule(u8, u8),
    UserMenu,
    ImpersonateMenu,
    EndImpersonation,
    ImpersonateUser,
    ImpersonateConfirm,
    ImpersonateCancel,
    // forms
    FormField(u8),
    FormTab(u8),
    FormSubmit,
    FormUpdate,
    // lists
    ListNew,
    FilterToggle,
    CondField(u8),
    CondOp(u8),
    CondValue(u8),
    CondRemove(u8),
    CondAdd,
    SortAdd,
    SortField(u8),
    SortDir(u8),
    SortRemove(u8),
    RunFilter,
    ClearFilter,
    Column(u8),
    OpenRecord(u32),
    PrevPage,
    NextPage,
    // service catalog
    Category(u8),
    Item(u16),
    ItemSelect(u8),
    ItemRadio(u8, u8),
    ItemCheck(u8, u8),
    ItemText(u8),
    Quantity,
    OrderNow,
    AddToCart,
    CartRemove(u8),
    Checkout,
    // knowledge base
    KbSearchBox,
    KbSearchButton,
    Article(u16),
    // dashboards
    Dashboard(u8),
    DashTab(u8),
}

/// Generators of the parts of a world that are made on first use (see [`World`]).
#[derive(Clone, Copy, Debug)]
pub struct Filler {
    pub seed: u64,
    pub articles: fn(&mut crate::pick::Rng) -> Vec<kb::Article>,
    pub dashboards: fn(&mut crate::pick::Rng) -> Vec<dashboard::Dashboard>,
}

/// Everything stored in the instance.
///
/// Tables, articles and dashboards that a task does not set are generated on first use
/// (from their own seeds, so the result does not depend on when that happens): most
/// episodes never look at most of them, and resets stay cheap.
#[derive(Clone, Debug)]
pub struct World {
    /// The logged-in user's name.
    pub user: String,
    pub impersonating: Option<String>,
    /// The people of the instance (impersonation candidates, callers...).
    pub people: Vec<String>,
    pub apps: Vec<chrome::App>,
    pub orders: Vec<catalog::Order>,
    pub cart: Vec<catalog::OrderLine>,
    /// Offset of element ids, so bids differ between instances.
    pub bid_base: u32,
    /// How much the pages show.
    pub size: PageSize,
    /// Per table, the fields (bit i: field i) a small form shows besides the record's number and
    /// the mandatory fields: those the goal names.
    pub form_fields: [u64; 5],
    tables: [OnceCell<Table>; 5],
    articles: OnceCell<Vec<kb::Article>>,
    dashboards: OnceCell<Vec<dashboard::Dashboard>>,
    filler: Filler,
}

/// Rows of tables that a task does not fill itself.
const DEFAULT_ROWS: [usize; 5] = [25, 15, 12, 24, 20];

impl World {
    pub fn new(user: String, people: Vec<String>, apps: Vec<chrome::App>, bid_base: u32, filler: Filler, size: PageSize) -> World {
        World {
            user,
            impersonating: None,
            people,
            apps,
            orders: Vec::new(),
            cart: Vec::new(),
            bid_base,
            size,
            form_fields: [0; 5],
            tables: Default::default(),
            articles: OnceCell::new(),
            dashboards: OnceCell::new(),
            filler,
        }
    }

    fn filler_rng(&self, part: u64) -> crate::pick::Rng {
        crate::pick::rng("world-filler", self.filler.seed ^ crate::pick::mix(part))
    }

    pub fn table(&self, t: TableId) -> &Table {
        self.tables[t.index()].get_or_init(|| {
            let mut rng = self.filler_rng(t.index() as u64);
            tables::random_table(t, DEFAULT_ROWS[t.index()], &mut rng, &self.people)
        })
    }

    pub fn table_mut(&mut self, t: TableId) -> &mut Table {
        self.table(t);
        match self.tables[t.index()].get_mut() {
            Some(table) => table,
            None => unreachable!("table {t:?} was just initialised"),
        }
    }

    pub fn set_table(&mut self, table: Table) {
        let i = table.id.index();
        self.tables[i] = OnceCell::from(table);
    }

    pub fn articles(&self) -> &[kb::Article] {
        self.articles.get_or_init(|| (self.filler.articles)(&mut self.filler_rng(100)))
    }

    pub fn set_articles(&mut self, articles: Vec<kb::Article>) {
        self.articles = OnceCell::from(articles);
    }

    pub fn dashboards(&self) -> &[dashboard::Dashboard] {
        self.dashboards.get_or_init(|| (self.filler.dashboards)(&mut self.filler_rng(101)))
    }

    pub fn set_dashboards(&mut self, dashboards: Vec<dashboard::Dashboard>) {
        self.dashboards = OnceCell::from(dashboards);
    }

    /// Who the pages are shown as.
    pub fn acting_user(&self) -> &str {
        self.impersonating.as_deref().unwrap_or(&self.user)
    }
}

/// The transient state of the current page (lost when navigating away).
#[derive(Clone, Debug, Default)]
pub enum Ui {
    #[default]
    Plain,
    Form(form::FormDraft),
    List(list::ListUi),
    Item(catalog::ItemDraft),
    Kb(kb::KbUi),
    Dashboard {
        tab: u8,
    },
}

/// The browser: where it is, where it has been, and what is typed on the page.
#[derive(Clone, Debug)]
pub struct Session {
    pub route: Route,
    pub back: Vec<Route>,
    pub forward: Vec<Route>,
    pub chrome: chrome::ChromeUi,
    pub ui: Ui,
    pub focus: Option<Ctl>,
    /// A message shown at the top of the current page (e.g. "Incident ... created").
    pub notice: Option<String>,
}

impl Session {
    pub fn new(w: &World, route: Route) -> Session {
        let mut s = Session { route, back: Vec::new(), forward: Vec::new(), chrome: chrome::ChromeUi::default(), ui: Ui::Plain, focus: None, notice: None };
        enter(w, &mut s);
        s
    }
}

/// Sets up the page state of `s.route`.
fn enter(w: &World, s: &mut Session) {
    s.ui = match &s.route {
        Route::Form { table, record } => Ui::Form(form::FormDraft::new(w, *table, *record)),
        Route::List { table, query } => Ui::List(list::ListUi::new(w, *table, query.clone())),
        Route::CatalogItem(item) => Ui::Item(catalog::ItemDraft::new(*item)),
        Route::KbHome => Ui::Kb(kb::KbUi::default()),
        Route::KbSearch(q) => Ui::Kb(kb::KbUi::search(w, q)),
        Route::Dashboard(_) => Ui::Dashboard { tab: 0 },
        _ => Ui::Plain,
    };
    s.chrome.close_menus();
    s.focus = None;
    s.notice = None;
}

/// Goes to `route`, as clicking a link does.
pub fn navigate(w: &World, s: &mut Session, route: Route) {
    let prev = std::mem::replace(&mut s.route, route);
    s.back.push(prev);
    s.forward.clear();
    enter(w, s);
}

pub fn go_back(w: &World, s: &mut Session) {
    if let Some(prev) = s.back.pop() {
        let cur = std::mem::replace(&mut s.route, prev);
        s.forward.push(cur);
        enter(w, s);
    }
}

pub fn go_forward(w: &World, s: &mut Session) {
    if let Some(next) = s.forward.pop() {
        let cur = std::mem::replace(&mut s.route, next);
        s.back.push(cur);
        enter(w, s);
    }
}

/// Navigates to a typed URL; unknown paths on the instance show a "not found" page.
pub fn goto(w: &World, s: &mut Session, url: &str) -> Result<(), String> {
    let route = parse_url(w, url)?;
    navigate(w, s, route);
    Ok(())
}

/// The page's URL.
pub fn url(w: &World, route: &Route) -> String {
    let path = match route {
        Route::Home => "/now/nav/ui/home".to_string(),
        Route::List { table, query } => {
            let mut p = format!("/{}_list.do", table.spec().name);
            if !query.is_empty() {
                p.push_str("?sysparm_query=");
                p.push_str(&percent_encode(&query.encode(table.spec())));
            }
            p
        }
        Route::Form { table, record } => match record {
            None => format!("/{}.do?sys_id=-1", table.spec().name),
            Some(id) => format!("/{}.do?sys_id={id}", table.spec().name),
        },
        Route::CatalogHome => "/catalog_home.do".to_string(),
        Route::CatalogCategory(c) => format!("/sc_category.do?sysparm_category={c}"),
        Route::CatalogItem(i) => format!("/sc_cat_item.do?sysparm_id={i}"),
        Route::Cart => "/sc_cart.do".to_string(),
        Route::Order(o) => format!("/sc_request.do?sysparm_order={o}"),
        Route::KbHome => "/kb_home.do".to_string(),
        Route::KbSearch(q) => format!("/kb_find.do?sysparm_search={}", percent_encode(q)),
        Route::KbArticle(a) => {
            let number = w.articles().get(*a as usize).map_or("", |a| a.number.as_str());
            format!("/kb_view.do?sysparm_article={number}")
        }
        Route::Dashboards => "/pa_dashboards.do".to_string(),
        Route::Dashboard(d) => format!("/pa_dashboard.do?sysparm_dashboard={d}"),
        Route::Module { app, module } => chrome::module_path(w, *app, *module),
        Route::NotFound(path) => path.clone(),
    };
    format!("{BASE_URL}{path}")
}

/// The route a URL leads to.
pub fn parse_url(w: &World, url: &str) -> Result<Route, String> {
    let url = url.trim();
    let rest = if let Some(r) = url.strip_prefix(BASE_URL) {
        r
    } else if url.starts_with('/') {
        url
    } else if url.contains("://") {
        return Err(format!("Error: net::ERR_NAME_NOT_RESOLVED at {url}"));
    } else {
        return Err(format!("Error: Cannot navigate to invalid URL \"{url}\""));
    };
    let rest = if rest.is_empty() { "/" } else { rest };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let param = |key: &str| -> Option<String> {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then(|| percent_decode(v))
        })
    };
    let num = |key: &str| param(key).and_then(|v| v.parse::<u32>().ok());
    let not_found = || Route::NotFound(rest.to_string());
    let route = match path {
        "/" | "/now/nav/ui/home" | "/home.do" => Route::Home,
        "/catalog_home.do" => Route::CatalogHome,
        "/sc_category.do" => match num("sysparm_category") {
            Some(c) if (c as usize) < catalog::CATEGORIES.len() => Route::CatalogCategory(c as u8),
            _ => not_found(),
        },
        "/sc_cat_item.do" => match num("sysparm_id") {
            Some(i) if (i as usize) < catalog::ITEMS.len() => Route::CatalogItem(i as u16),
            _ => not_found(),
        },
        "/sc_cart.do" => Route::Cart,
        "/sc_request.do" => match num("sysparm_order") {
            Some(o) if (o as usize) < w.orders.len() => Route::Order(o),
            _ => not_found(),
        },
        "/kb_home.do" => Route::KbHome,
        "/kb_find.do" => Route::KbSearch(param("sysparm_search").unwrap_or_default()),
        "/kb_view.do" => {
            let number = param("sysparm_article").unwrap_or_default();
            match w.articles().iter().position(|a| a.number == number) {
                Some(a) => Route::KbArticle(a as u16),
                None => not_found(),
            }
        }
        "/pa_dashboards.do" => Route::Dashboards,
        "/pa_dashboard.do" => match num("sysparm_dashboard") {
            Some(d) if (d as usize) < w.dashboards().len() => Route::Dashboard(d as u8),
            _ => not_found(),
        },
        _ => {
            let file = path.trim_start_matches('/');
            if let Some(name) = file.strip_suffix("_list.do") {
                match TableId::from_name(name) {
                    Some(table) => {
                        let q = param("sysparm_query").unwrap_or_default();
                        match list::Query::decode(table.spec(), &q) {
                            Some(query) => Route::List { table, query },
                            None => not_found(),
                        }
                    }
                    None => not_found(),
                }
            } else if let Some(name) = file.strip_suffix(".do") {
                if let Some(table) = TableId::from_name(name) {
                    match param("sys_id").as_deref() {
                        Some("-1") => Route::Form { table, record: None },
                        Some(id) => match id.parse::<u32>() {
                            Ok(id) if w.table(table).record(id).is_some() => Route::Form { table, record: Some(id) },
                            _ => not_found(),
                        },
                        None => Route::List { table, query: list::Query::default() },
                    }
                } else {
                    chrome::module_from_path(w, path).unwrap_or_else(not_found)
                }
            } else {
                not_found()
            }
        }
    };
    Ok(route)
}

/// Percent-encodes everything but unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The page title of a route.
fn title(w: &World, s: &Session) -> String {
    match &s.route {
        Route::Home => "Home".into(),
        Route::List { table, .. } => table.spec().plural.into(),
        Route::Form { table, .. } => table.spec().label.into(),
        Route::CatalogHome | Route::CatalogCategory(_) | Route::CatalogItem(_) => "Service Catalog".into(),
        Route::Cart => "Shopping Cart".into(),
        Route::Order(_) => "Order Status".into(),
        Route::KbHome | Route::KbSearch(_) => "Knowledge".into(),
        Route::KbArticle(a) => w.articles().get(*a as usize).map_or("Knowledge".into(), |a| a.title.clone()),
        Route::Dashboards => "Dashboards".into(),
        Route::Dashboard(d) => w.dashboards().get(*d as usize).map_or("Dashboard".into(), |d| d.name.clone()),
        Route::Module { app, module } => chrome::module_title(w, *app, *module),
        Route::NotFound(_) => "Page not found".into(),
    }
}

/// Builds the current page into `page`.
pub fn render(w: &World, s: &Session, page: &mut Page) {
    page.start(&url(w, &s.route), &title(w, s), w.bid_base);
    chrome::render_chrome(w, s, page);
    page.region(b'b');
    if let Some(n) = &s.notice {
        page.add(crate::page::Role::Alert, n);
    }
    match (&s.route, &s.ui) {
        (Route::Form { .. }, Ui::Form(d)) => form::render(w, d, page),
        (Route::List { .. }, Ui::List(l)) => list::render(w, l, page),
        (Route::CatalogHome, _) => catalog::render_home(w, page),
        (Route::CatalogCategory(c), _) => catalog::render_category(w, *c, page),
        (Route::CatalogItem(_), Ui::Item(d)) => catalog::render_item(w, d, page),
        (Route::Cart, _) => catalog::render_cart(w, page),
        (Route::Order(o), _) => catalog::render_order(w, *o, page),
        (Route::KbHome | Route::KbSearch(_), Ui::Kb(k)) => kb::render_search(w, k, page),
        (Route::KbArticle(a), _) => kb::render_article(w, *a, page),
        (Route::Dashboards, _) => dashboard::render_list(w, page),
        (Route::Dashboard(d), Ui::Dashboard { tab }) => dashboard::render(w, *d, *tab, page),
        (Route::Module { app, module }, _) => chrome::render_module(w, *app, *module, page),
        (Route::NotFound(path), _) => chrome::render_not_found(path, page),
        _ => chrome::render_home(w, page),
    }
    page.set_focus(s.focus);
}

/// A click on an element bound to `ctl` (buttons, links, tabs...).
pub fn click(w: &mut World, s: &mut Session, ctl: Ctl) -> Result<(), String> {
    use Ctl::*;
    match ctl {
        None => Ok(()),
        Go(dest) => {
            navigate(w, s, dest.route());
            Ok(())
        }
        NavToggle | NavApp(_) | NavModule(..) | UserMenu | ImpersonateMenu | EndImpersonation | ImpersonateConfirm | ImpersonateCancel => {
            chrome::click(w, s, ctl)
        }
        FormTab(_) | FormSubmit | FormUpdate => form::click(w, s, ctl),
        ListNew | FilterToggle | CondRemove(_) | CondAdd | SortAdd | SortRemove(_) | RunFilter | ClearFilter | Column(_) | OpenRecord(_) | PrevPage
        | NextPage => list::click(w, s, ctl),
        Category(_) | Item(_) | OrderNow | AddToCart | CartRemove(_) | Checkout => catalog::click(w, s, ctl),
        KbSearchButton | Article(_) => kb::click(w, s, ctl),
        Dashboard(_) | DashTab(_) => dashboard::click(w, s, ctl),
        // Inputs: clicking only focuses them.
        NavFilter | ImpersonateUser | FormField(_) | CondField(_) | CondOp(_) | CondValue(_) | SortField(_) | SortDir(_) | ItemSelect(_) | ItemRadio(..)
        | ItemCheck(..) | ItemText(_) | Quantity | KbSearchBox => {
            s.focus = Some(ctl);
            Ok(())
        }
    }
}

/// Typing into a text input bound to `ctl`.
pub fn set_text(w: &mut World, s: &mut Session, ctl: Ctl, value: &str) -> Result<(), String> {
    s.focus = Some(ctl);
    match ctl {
        Ctl::NavFilter => chrome::set_text(w, s, ctl, value),
        Ctl::FormField(_) => form::set_value(s, ctl, value),
        Ctl::CondValue(_) => list::set_text(s, ctl, value),
        Ctl::ItemText(_) => catalog::set_text(s, ctl, value),
        Ctl::KbSearchBox => kb::set_text(s, value),
        _ => Err("Error: Element is not an <input>, <textarea> or [contenteditable] element".into()),
    }
}

/// Choosing `option` (already checked to be one of the element's options) in a combobox.
pub fn select(w: &mut World, s: &mut Session, ctl: Ctl, option: &str) -> Result<(), String> {
    s.focus = Some(ctl);
    match ctl {
        Ctl::ImpersonateUser => chrome::select(w, s, option),
        Ctl::FormField(_) => form::set_value(s, ctl, option),
        Ctl::CondField(_) | Ctl::CondOp(_) | Ctl::CondValue(_) | Ctl::SortField(_) | Ctl::SortDir(_) => list::select(s, ctl, option),
        Ctl::ItemSelect(_) | Ctl::Quantity => catalog::select(s, ctl, option),
        _ => Err("Error: Element is not a <select> element".into()),
    }
}

/// Checking or unchecking a checkbox or radio bound to `ctl`.
pub fn set_checked(w: &mut World, s: &mut Session, ctl: Ctl, on: bool) -> Result<(), String> {
    let _ = w;
    s.focus = Some(ctl);
    match ctl {
        Ctl::FormField(_) => form::set_value(s, ctl, if on { "true" } else { "false" }),
        Ctl::ItemRadio(..) | Ctl::ItemCheck(..) => catalog::set_checked(s, ctl, on),
        _ => Err("Error: Not a checkbox or radio button".into()),
    }
}

/// Pressing Enter in the element bound to `ctl`.
pub fn press_enter(w: &mut World, s: &mut Session, ctl: Ctl) -> Result<(), String> {
    match ctl {
        Ctl::KbSearchBox => kb::click(w, s, Ctl::KbSearchButton),
        Ctl::CondValue(_) => list::click(w, s, Ctl::RunFilter),
        // Enter on buttons and links activates them, as in a browser.
        c if !matches!(c, Ctl::None | Ctl::NavFilter | Ctl::FormField(_) | Ctl::ItemText(_) | Ctl::ImpersonateUser) => click(w, s, c),
        _ => Ok(()),
    }
}
