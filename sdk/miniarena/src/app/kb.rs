//! The knowledge base: articles (headings, paragraphs, tables), full-text search, and the
//! article page.

use super::{navigate, Ctl, Dest, Route, Session, Ui, World};
use crate::page::{Page, Role};

#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    Heading(String),
    Para(String),
    Table { header: Vec<String>, rows: Vec<Vec<String>> },
}

#[derive(Clone, Debug)]
pub struct Article {
    /// `KB0010023`.
    pub number: String,
    pub title: String,
    pub category: String,
    pub author: String,
    pub updated: String,
    pub views: u32,
    pub body: Vec<Block>,
}

impl Article {
    /// All the article's words, lower-cased, for search.
    fn words(&self) -> impl Iterator<Item = String> + '_ {
        let blocks = self.body.iter().flat_map(|b| match b {
            Block::Heading(t) | Block::Para(t) => vec![t.as_str()],
            Block::Table { header, rows } => header.iter().chain(rows.iter().flatten()).map(|s| s.as_str()).collect(),
        });
        std::iter::once(self.title.as_str()).chain(std::iter::once(self.category.as_str())).chain(blocks).flat_map(tokens)
    }

    fn snippet(&self) -> &str {
        self.body
            .iter()
            .find_map(|b| match b {
                Block::Para(t) => Some(t.as_str()),
                _ => None,
            })
            .unwrap_or("")
    }
}

/// Lower-cased words of at least two characters.
pub fn tokens(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric()).filter(|t| t.len() >= 2).map(|t| t.to_lowercase())
}

const STOP: &[&str] = &[
    "the", "a", "an", "of", "to", "in", "for", "on", "and", "or", "is", "what", "how", "which", "who", "are", "with", "by", "at", "do", "does", "i", "my", "me",
];

/// Articles matching the query, best first (title words count triple).
pub fn search(w: &World, query: &str) -> Vec<u16> {
    let q: Vec<String> = tokens(query).filter(|t| !STOP.contains(&t.as_str())).collect();
    if q.is_empty() {
        return (0..w.articles().len() as u16).collect();
    }
    let mut scored: Vec<(u32, u16)> = Vec::new();
    for (i, a) in w.articles().iter().enumerate() {
        let title: Vec<String> = tokens(&a.title).collect();
        let mut hits = vec![false; q.len()];
        let mut score = 0;
        for (k, t) in q.iter().enumerate() {
            if title.contains(t) {
                score += 3;
                hits[k] = true;
            }
        }
        for word in a.words() {
            for (k, t) in q.iter().enumerate() {
                if !hits[k] && word == *t {
                    hits[k] = true;
                    score += 1;
                }
            }
        }
        if score > 0 {
            scored.push((score, i as u16));
        }
    }
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// The search page: what is typed in the box, and the last search's results.
#[derive(Clone, Debug, Default)]
pub struct KbUi {
    pub typed: String,
    pub searched: Option<String>,
    pub results: Vec<u16>,
}

impl KbUi {
    pub fn search(w: &World, q: &str) -> KbUi {
        KbUi { typed: q.to_string(), searched: Some(q.to_string()), results: search(w, q) }
    }
}

pub fn render_search(w: &World, k: &KbUi, page: &mut Page) {
    page.open(Role::Main, "");
    page.add(Role::Heading, "Knowledge");
    page.add(Role::Searchbox, "Search Knowledge").value(&k.typed).ctl(Ctl::KbSearchBox);
    page.add(Role::Button, "Search").ctl(Ctl::KbSearchButton);
    page.region(b'd');
    match &k.searched {
        Some(q) => {
            page.text_fmt(format_args!("{} results for \"{}\"", k.results.len(), q));
            page.open(Role::List, "Search results");
            for &i in &k.results {
                let a = &w.articles()[i as usize];
                page.open(Role::ListItem, "");
                page.add(Role::Link, &a.title).ctl(Ctl::Article(i));
                if w.size.descriptions() {
                    page.text_fmt(format_args!("{} · {} · {}", a.number, a.category, a.snippet()));
                } else {
                    page.text_fmt(format_args!("{} · {}", a.number, a.category));
                }
                page.close();
            }
            page.close();
        }
        None => {
            page.add(Role::Heading, "Featured articles");
            page.open(Role::List, "Featured articles");
            let mut featured: Vec<usize> = (0..w.articles().len()).collect();
            featured.sort_by_key(|&i| std::cmp::Reverse(w.articles()[i].views));
            for &i in featured.iter().take(w.size.featured_articles()) {
                page.open(Role::ListItem, "");
                page.add(Role::Link, &w.articles()[i].title).ctl(Ctl::Article(i as u16));
                page.close();
            }
            page.close();
        }
    }
    page.close();
}

pub fn render_article(w: &World, a: u16, page: &mut Page) {
    let Some(a) = w.articles().get(a as usize) else {
        return;
    };
    page.open(Role::Main, "");
    page.add(Role::Link, "Knowledge").ctl(Ctl::Go(Dest::KbHome));
    page.add(Role::Heading, &a.title);
    if w.size.descriptions() {
        page.text_fmt(format_args!("{} · {} · Authored by {} · Last updated {} · {} views", a.number, a.category, a.author, a.updated, a.views));
    } else {
        page.text_fmt(format_args!("{} · {}", a.number, a.category));
    }
    page.region(b'd');
    page.open(Role::Region, "Article body");
    for b in &a.body {
        match b {
            Block::Heading(t) => {
                page.add(Role::Heading, t);
            }
            Block::Para(t) => page.text(t),
            Block::Table { header, rows } => {
                page.open(Role::Table, "");
                page.open(Role::Row, "");
                for h in header {
                    page.add(Role::ColumnHeader, h);
                }
                page.close();
                for r in rows {
                    page.open(Role::Row, "");
                    for c in r {
                        page.add(Role::Cell, c);
                    }
                    page.close();
                }
                page.close();
            }
        }
    }
    page.close();
    page.close();
}

pub fn set_text(s: &mut Session, value: &str) -> Result<(), String> {
    match &mut s.ui {
        Ui::Kb(k) => {
            k.typed = value.to_string();
            Ok(())
        }
        _ => Err("Error: element is not on the knowledge page".to_string()),
    }
}

pub fn click(w: &mut World, s: &mut Session, ctl: Ctl) -> Result<(), String> {
    match ctl {
        Ctl::KbSearchButton => {
            let q = match &s.ui {
                Ui::Kb(k) => k.typed.trim().to_string(),
                _ => String::new(),
            };
            navigate(w, s, Route::KbSearch(q));
        }
        Ctl::Article(i) => navigate(w, s, Route::KbArticle(i)),
        _ => {}
    }
    Ok(())
}
