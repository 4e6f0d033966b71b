//! `menu` tasks: open a module of an application through the All menu (application
//! navigator), and impersonate a user through the user menu. Validators check the page
//! reached and the impersonated user.

use rand::Rng as _;

use super::{base_world, build_apps, keep_first, q, random_custom_apps, CustomApp, Instance, Target};
use crate::app::chrome::{self, CUSTOM_DOMAINS, CUSTOM_MODULES, CUSTOM_PREFIXES};
use crate::app::{Ctl, Route, Session, World};
use crate::expert::{Plan, PlanCx};
use crate::pick::{self, Pick};
use crate::size::PageSize;
use crate::vocab;

/// The browser must show module `module` of application `app` (navigator indices).
#[derive(Clone, Debug)]
pub(crate) struct PageTarget {
    pub app: u8,
    pub module: u8,
    pub app_name: String,
    pub module_name: String,
    pub route: Route,
}

impl PageTarget {
    pub fn satisfied(&self, s: &Session) -> bool {
        s.route == self.route
    }

    pub fn plan(&self, cx: &mut PlanCx<'_>) -> Plan {
        let ui = &cx.session.chrome;
        let (app, module) = (&self.app_name, &self.module_name);
        if !ui.nav_open {
            return cx.click(Ctl::NavToggle, format!("modules are listed in the All menu, which is closed, and I need \"{module}\" of \"{app}\""));
        }
        let use_filter = cx.memory.strategy & 1 == 1 && !cx.overlooks(Ctl::NavFilter);
        let link = Ctl::NavModule(self.app, self.module);
        if cx.node(link).is_some() {
            return cx.click(link, format!("the \"{module}\" module of the \"{app}\" application is the page the goal asks for")).finishing();
        }
        if use_filter {
            if ui.nav_filter != *app {
                return cx.fill(Ctl::NavFilter, app, format!("typing the application name \"{app}\" filters the menu down to its modules"));
            }
        } else if !ui.nav_filter.is_empty() {
            return cx.fill(Ctl::NavFilter, "", "the menu filter hides the application I need");
        }
        let (_, expanded) = chrome::app_state(cx.world, ui, self.app as usize);
        if !expanded {
            return cx.click(Ctl::NavApp(self.app), format!("the \"{app}\" application is collapsed, and its modules appear when it is expanded"));
        }
        cx.recover(link)
    }
}

/// The user `name` must be impersonated.
#[derive(Clone, Debug)]
pub(crate) struct ImpersonateTarget {
    pub name: String,
}

impl ImpersonateTarget {
    pub fn satisfied(&self, w: &World) -> bool {
        w.impersonating.as_deref() == Some(self.name.as_str())
    }

    pub fn plan(&self, cx: &mut PlanCx<'_>) -> Plan {
        let name = &self.name;
        let ui = &cx.session.chrome;
        match ui.dialog {
            Some(sel) if sel.and_then(|i| cx.world.people.get(i)) == Some(name) => {
                cx.click(Ctl::ImpersonateConfirm, format!("\"{name}\" is selected in the impersonation dialog")).finishing()
            }
            Some(_) => cx.select(Ctl::ImpersonateUser, name, format!("the goal is to impersonate \"{name}\", who must be chosen in the dialog")),
            None if ui.user_menu => cx.click(Ctl::ImpersonateMenu, "the user menu is open and offers impersonation"),
            None => cx.click(Ctl::UserMenu, format!("impersonating \"{name}\" starts from the user menu")),
        }
    }
}

pub(crate) fn navigate_to_module(name: &'static str, seed: u64, size: PageSize) -> Instance {
    let mut rng = pick::rng(name, seed);
    let mut world = base_world(&mut rng, size);
    let standard: Vec<(String, String)> = chrome::standard_apps(&world.user)
        .into_iter()
        .flat_map(|a| a.modules.into_iter().filter(|m| m.target != Route::Home).map(move |m| (a.name.clone(), m.name)))
        .collect();
    let n_custom = (CUSTOM_PREFIXES.len() * CUSTOM_DOMAINS.len() * CUSTOM_MODULES.len()) as u64;
    let mut pick = Pick::new(name, seed, standard.len() as u64 + n_custom);
    let (app_name, module_name, custom) = if pick.branch(&[standard.len() as u64, n_custom]) == 0 {
        let (a, m) = standard[pick.digit(standard.len())].clone();
        (a, m, None)
    } else {
        let app = format!("{} {}", CUSTOM_PREFIXES[pick.digit(CUSTOM_PREFIXES.len())], CUSTOM_DOMAINS[pick.digit(CUSTOM_DOMAINS.len())]);
        let m = pick.digit(CUSTOM_MODULES.len());
        let mut modules: Vec<usize> = vec![m];
        let n_modules = rng.random_range(3..=6);
        while modules.len() < n_modules {
            let o = rng.random_range(0..CUSTOM_MODULES.len());
            if !modules.contains(&o) {
                modules.push(o);
            }
        }
        modules.sort_unstable();
        (app.clone(), CUSTOM_MODULES[m].to_string(), Some(CustomApp { name: app, modules }))
    };
    let n_custom_apps = rng.random_range(3..=5);
    let mut customs = random_custom_apps(&mut rng, n_custom_apps, Some(&app_name));
    customs.truncate(size.custom_apps());
    customs.extend(custom);
    world.apps = build_apps(&world.user, customs);
    let app = world.apps.iter().position(|a| a.name == app_name).unwrap_or(0);
    let module = world.apps[app].modules.iter().position(|m| m.name == module_name).unwrap_or(0);
    let route = world.apps[app].modules[module].target.clone();
    let goal = format!("Navigate to the {} module of the {} application.", q(&module_name), q(&app_name));
    Instance { goal, world, start: Route::Home, target: Target::Page(PageTarget { app: app as u8, module: module as u8, app_name, module_name, route }) }
}

pub(crate) fn impersonate_user(name: &'static str, seed: u64, size: PageSize) -> Instance {
    let mut rng = pick::rng(name, seed);
    let mut world = base_world(&mut rng, size);
    let mut pick = Pick::new(name, seed, vocab::person_count() as u64);
    let person = vocab::person(pick.digit(vocab::person_count()));
    if !world.people.contains(&person) {
        let i = rng.random_range(0..world.people.len());
        world.people[i] = person.clone();
    }
    keep_first(&mut world.people, size.people(), |p| *p == person);
    world.people.sort();
    let goal = format!("Impersonate the user {}.", q(&person));
    Instance { goal, world, start: Route::Home, target: Target::Impersonate(ImpersonateTarget { name: person }) }
}
