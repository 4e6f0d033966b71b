//! Dashboards: a list of dashboards, each with tabs of widgets (bar and pie charts, single
//! scores, tables) whose data points are shown as accessible text.

use super::{navigate, Ctl, Dest, Route, Session, Ui, World};
use crate::page::{Page, Role};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WidgetKind {
    Bar,
    Pie,
    Score,
    Table,
}

#[derive(Clone, Debug)]
pub struct Widget {
    pub title: String,
    pub kind: WidgetKind,
    /// (label, value) points; a score has one point.
    pub data: Vec<(String, u32)>,
}

#[derive(Clone, Debug)]
pub struct DashTab {
    pub name: String,
    pub widgets: Vec<Widget>,
}

#[derive(Clone, Debug)]
pub struct Dashboard {
    pub name: String,
    pub owner: String,
    pub tabs: Vec<DashTab>,
}

pub fn render_list(w: &World, page: &mut Page) {
    page.open(Role::Main, "");
    page.add(Role::Heading, "Dashboards");
    page.open(Role::Table, "Dashboards");
    page.open(Role::Row, "");
    for h in ["Name", "Owner", "Tabs"] {
        page.add(Role::ColumnHeader, h);
    }
    page.close();
    for (i, d) in w.dashboards().iter().enumerate() {
        page.open(Role::Row, "");
        page.add(Role::Link, &d.name).ctl(Ctl::Dashboard(i as u8));
        page.add(Role::Gridcell, &d.owner);
        page.add_fmt(Role::Gridcell, format_args!("{}", d.tabs.len()));
        page.close();
    }
    page.close();
    page.close();
}

pub fn render(w: &World, d: u8, tab: u8, page: &mut Page) {
    let Some(dash) = w.dashboards().get(d as usize) else {
        return;
    };
    page.open(Role::Main, "");
    page.add(Role::Link, "Dashboards").ctl(Ctl::Go(Dest::Dashboards));
    page.add(Role::Heading, &dash.name);
    page.text_fmt(format_args!("Owner: {}", dash.owner));
    page.open(Role::TabList, "Dashboard tabs");
    for (i, t) in dash.tabs.iter().enumerate() {
        page.add(Role::Tab, &t.name).selected(i == tab as usize).ctl(Ctl::DashTab(i as u8));
    }
    page.close();
    page.region(b'd');
    if let Some(t) = dash.tabs.get(tab as usize) {
        page.open(Role::TabPanel, &t.name);
        for wd in &t.widgets {
            page.open(Role::Figure, &wd.title);
            match wd.kind {
                WidgetKind::Bar | WidgetKind::Pie => {
                    page.text(if wd.kind == WidgetKind::Bar { "Bar chart" } else { "Pie chart" });
                    let total: u32 = wd.data.iter().map(|p| p.1).sum::<u32>().max(1);
                    page.open(Role::List, "");
                    for (label, v) in &wd.data {
                        if wd.kind == WidgetKind::Pie {
                            let pct = f64::from(*v) * 100.0 / f64::from(total);
                            page.add_fmt(Role::ListItem, format_args!("{label}: {v} ({pct:.1}%)"));
                        } else {
                            page.add_fmt(Role::ListItem, format_args!("{label}: {v}"));
                        }
                    }
                    page.close();
                }
                WidgetKind::Score => {
                    let v = wd.data.first().map_or(0, |p| p.1);
                    page.text_fmt(format_args!("{v}"));
                }
                WidgetKind::Table => {
                    page.open(Role::Table, "");
                    page.open(Role::Row, "");
                    let dim = wd.title.rsplit_once(" by ").map_or("Group", |(_, d)| d);
                    page.add(Role::ColumnHeader, dim);
                    page.add(Role::ColumnHeader, "Count");
                    page.close();
                    for (label, v) in &wd.data {
                        page.open(Role::Row, "");
                        page.add(Role::Cell, label);
                        page.add_fmt(Role::Cell, format_args!("{v}"));
                        page.close();
                    }
                    page.close();
                }
            }
            page.close();
        }
        page.close();
    }
    page.close();
}

pub fn click(w: &mut World, s: &mut Session, ctl: Ctl) -> Result<(), String> {
    match ctl {
        Ctl::Dashboard(d) => navigate(w, s, Route::Dashboard(d)),
        Ctl::DashTab(t) => {
            if let Ui::Dashboard { tab } = &mut s.ui {
                *tab = t;
            }
        }
        _ => {}
    }
    Ok(())
}
