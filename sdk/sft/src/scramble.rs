//! Scrambled pages: an AXTree text with every bid, and every word and number of its names and
//! values, replaced by a random one — consistently within the page — so that a question about the
//! page can only be answered by reading it, never from memory.
//!
//! MiniArena's pages repeat a few hundred names (cities, teams, chart labels), and a tiny model
//! pretrained on them can answer from those names' usual values and the bids' usual order
//! instead of looking them up. On a scrambled page the only way to the answer is to find the key
//! in the page and copy what stands beside it, the lookup an agent's final step needs. Measured
//! as extra pretraining text for the pipeline's small base it made reading worse (docs/paper.md,
//! *Can the base learn to look up at all?*), so no built-in pipeline uses it.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::reading::{quoted, Rng};

/// Replaces the words, numbers and bids of AXTree texts; the replacement words come from the
/// pages it was made from, so the tokenizer knows them all.
#[derive(Clone, Debug)]
pub struct Scrambler {
    words: Vec<String>,
}

/// Words shorter than this stay (`of`, `by`, `KB`): they carry the structure, not the content.
const MIN_WORD: usize = 3;

impl Scrambler {
    /// The word pool: every word of at least three ASCII letters in the names and values of
    /// `pages`, lowercased, in a fixed order. `None` when the pages hold no such word.
    pub fn new<'a>(pages: impl IntoIterator<Item = &'a str>) -> Option<Scrambler> {
        let mut words = BTreeSet::new();
        for page in pages {
            for line in page.lines() {
                for text in quoted_texts(line).into_iter().map(|(_, t)| t) {
                    for run in runs(&text) {
                        if run.len() >= MIN_WORD && run.bytes().all(|b| b.is_ascii_alphabetic()) {
                            words.insert(run.to_ascii_lowercase());
                        }
                    }
                }
            }
        }
        (!words.is_empty()).then(|| Scrambler { words: words.into_iter().collect() })
    }

    /// The words it draws from.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// `axtree` with each distinct bid, word (of three letters or more) and number of its names
    /// and values replaced by a random bid (same letter prefix), word (same capitalisation) and
    /// number (same number of digits); the same one everywhere on the page. Roles, attributes,
    /// indentation, punctuation and short words are kept, so the page keeps its shape.
    pub fn scramble(&self, axtree: &str, rng: &mut Rng) -> String {
        let mut page = Page { pool: &self.words, rng, words: HashMap::new(), numbers: HashMap::new(), bids: HashMap::new(), used: HashSet::new() };
        let mut out = String::with_capacity(axtree.len());
        for (i, line) in axtree.lines().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&page.line(line));
        }
        if axtree.ends_with('\n') {
            out.push('\n');
        }
        out
    }
}

/// One page's replacements.
struct Page<'a> {
    pool: &'a [String],
    rng: &'a mut Rng,
    words: HashMap<String, String>,
    numbers: HashMap<String, String>,
    bids: HashMap<String, String>,
    /// The replacements given out on this page: words, numbers and bids.
    used: HashSet<String>,
}

impl Page<'_> {
    fn line(&mut self, line: &str) -> String {
        let depth = line.len() - line.trim_start_matches('\t').len();
        let mut out = line[..depth].to_string();
        let mut rest = &line[depth..];
        if let Some((bid, after)) = rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
            if !bid.is_empty() && !bid.contains(char::is_whitespace) {
                let new = self.bid(bid);
                out.push_str(&format!("[{new}]"));
                rest = after;
            }
        }
        let mut at = 0;
        for (start, text) in quoted_texts(rest) {
            // `start` is the opening quote; the text follows it.
            out.push_str(&rest[at..=start]);
            out.push_str(&self.text(&text));
            at = start + 1 + text.len();
        }
        out.push_str(&rest[at..]);
        out
    }

    fn text(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for run in runs(text) {
            let start = run.as_ptr() as usize - text.as_ptr() as usize;
            out.push_str(&text[last..start]);
            last = start + run.len();
            if run.bytes().all(|b| b.is_ascii_digit()) {
                out.push_str(&self.number(run));
            } else if run.len() >= MIN_WORD {
                out.push_str(&self.word(run));
            } else {
                out.push_str(run);
            }
        }
        out.push_str(&text[last..]);
        out
    }

    fn word(&mut self, w: &str) -> String {
        let key = w.to_ascii_lowercase();
        let new = match self.words.get(&key) {
            Some(n) => n.clone(),
            None => {
                // Never the word itself, nor one another word of the page became (so a page's
                // distinct names stay distinct), unless a hundred draws find none.
                let mut n = self.pool[self.rng.below(self.pool.len())].clone();
                for _ in 0..100 {
                    if n != key && !self.used.contains(&n) {
                        break;
                    }
                    n = self.pool[self.rng.below(self.pool.len())].clone();
                }
                self.used.insert(n.clone());
                self.words.insert(key, n.clone());
                n
            }
        };
        if w.len() > 1 && w.bytes().all(|b| b.is_ascii_uppercase()) {
            new.to_ascii_uppercase()
        } else if w.as_bytes()[0].is_ascii_uppercase() {
            let mut c = new.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        } else {
            new
        }
    }

    fn number(&mut self, n: &str) -> String {
        if let Some(m) = self.numbers.get(n) {
            return m.clone();
        }
        // Distinct numbers stay distinct, unless a hundred draws find no free one.
        let mut m = String::new();
        for _ in 0..100 {
            m = n
                .bytes()
                .enumerate()
                .map(|(i, b)| {
                    let lead_zero = i == 0 && b == b'0';
                    let d = if lead_zero {
                        0
                    } else if i == 0 && n.len() > 1 {
                        1 + self.rng.below(9)
                    } else {
                        self.rng.below(10)
                    };
                    char::from(b'0' + d as u8)
                })
                .collect();
            if !self.used.contains(&m) {
                break;
            }
        }
        self.used.insert(m.clone());
        self.numbers.insert(n.to_string(), m.clone());
        m
    }

    fn bid(&mut self, bid: &str) -> String {
        if let Some(b) = self.bids.get(bid) {
            return b.clone();
        }
        let prefix: String = bid.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        // Two- and three-digit numbers, as MiniArena's; more when a page has that many bids.
        let span = 990.max(4 * self.bids.len());
        let new = loop {
            let b = format!("{prefix}{}", 10 + self.rng.below(span));
            if self.used.insert(b.clone()) {
                break b;
            }
        };
        self.bids.insert(bid.to_string(), new.clone());
        new
    }
}

/// The quoted texts of an AXTree line after its bid: the name (after the role) and
/// `value='...'`, each with the byte offset of its opening quote.
fn quoted_texts(line: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let Some(q) = line.find(['\'', '"']) else { return out };
    let Some((name, after)) = quoted(&line[q..]) else { return out };
    out.push((q, name));
    if let Some(i) = after.find(" value=") {
        let start = line.len() - after.len() + i + " value=".len();
        if let Some((value, _)) = quoted(&line[start..]) {
            out.push((start, value));
        }
    }
    out
}

/// The maximal runs of ASCII letters and of ASCII digits in `s`, in order.
fn runs(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let class = |c: u8| {
        if c.is_ascii_alphabetic() {
            1
        } else if c.is_ascii_digit() {
            2
        } else {
            0
        }
    };
    let mut i = 0;
    while i < b.len() {
        let c = class(b[i]);
        if c == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && class(b[i]) == c {
            i += 1;
        }
        out.push(&s[start..i]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{lookups, parse_axtree};

    const PAGE: &str = "RootWebArea 'Security Operations | MiniArena', focused\n\t[a29] banner 'MiniArena'\n\t\t[a30] button 'All', expanded=False\n\t[b31] heading 'Security Operations'\n\tStaticText 'Owner: Ahmed Chowdhury'\n\t[b40] textbox 'Search', value='travel guidelines Berlin'\n\t[d31] table ''\n\t\t[d32] row ''\n\t\t\t[d33] columnheader 'Assignment group'\n\t\t\t[d34] columnheader 'Count'\n\t\t[d35] row ''\n\t\t\t[d36] cell 'Service Desk'\n\t\t\t[d37] cell '2'\n\t\t[d38] row ''\n\t\t\t[d39] cell 'Change Management'\n\t\t\t[d40] cell '84'\n";

    #[test]
    fn keeps_the_shape_and_replaces_the_content() {
        let s = Scrambler::new([PAGE]).unwrap();
        assert!(s.words().contains(&"management".to_string()) && !s.words().contains(&"of".to_string()));
        let out = s.scramble(PAGE, &mut Rng::new(7));
        assert_eq!(out.lines().count(), PAGE.lines().count());
        let (before, after) = (parse_axtree(PAGE), parse_axtree(&out));
        assert_eq!(before.len(), after.len(), "{out}");
        for (b, a) in before.iter().zip(&after) {
            assert_eq!((b.role.as_str(), b.depth, b.parent), (a.role.as_str(), a.depth, a.parent));
            assert_eq!(b.bid.chars().next(), a.bid.chars().next(), "the bid's frame letter stays");
            assert_eq!(b.value.is_some(), a.value.is_some());
        }
        // Bids are new and unique on the page.
        let bids: HashSet<_> = after.iter().map(|e| e.bid.clone()).collect();
        assert_eq!(bids.len(), after.len());
        assert!(after.iter().zip(&before).filter(|(a, b)| a.bid == b.bid).count() < 3);
        // Numbers keep their length, capitalised words stay capitalised, attributes stay.
        let count = &after.iter().find(|e| e.bid == after[after.len() - 1].bid).unwrap().name;
        assert_eq!(count.len(), 2);
        assert!(out.contains(", expanded=False") && out.contains("StaticText '"));
        assert!(!out.contains("StaticText 'Owner: Ahmed Chowdhury'"), "{out}");
        let value = after.iter().find_map(|e| e.value.clone()).unwrap();
        assert!(value != "travel guidelines Berlin" && value.split(' ').count() == 3, "{value}");
        // The same word becomes the same word everywhere: "Security Operations" twice.
        let root = out.lines().next().unwrap();
        let heading = &after.iter().find(|e| e.role == "heading").unwrap().name;
        assert!(root.contains(heading.as_str()), "{root} / {heading}");
        // Distinct names stay distinct.
        let headers: Vec<_> = after.iter().filter(|e| e.role == "columnheader").map(|e| e.name.clone()).collect();
        assert_ne!(headers[0], headers[1]);
        // The page still answers lookups: its table's cells by row and column.
        let cells = lookups(&out, &after);
        assert!(!cells.is_empty());
    }

    #[test]
    fn is_deterministic_and_differs_by_seed() {
        let s = Scrambler::new([PAGE]).unwrap();
        assert_eq!(s.scramble(PAGE, &mut Rng::new(1)), s.scramble(PAGE, &mut Rng::new(1)));
        assert_ne!(s.scramble(PAGE, &mut Rng::new(1)), s.scramble(PAGE, &mut Rng::new(2)));
    }

    #[test]
    fn a_page_without_words_gives_no_pool() {
        assert!(Scrambler::new(["RootWebArea '', focused\n\t[a1] row ''"]).is_none());
    }
}
