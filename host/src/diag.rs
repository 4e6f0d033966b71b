//! Errors that point at pipeline text: `file:line:column: message`, the offending line with
//! a caret under it, and a hint saying what to do.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use crate::yaml::Pos;

/// One error located in a source file.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub pos: Pos,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic { pos, message: message.into(), hint: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }
}

/// All the errors found in one pipeline file and the patch files applied to it, rendered
/// together. A position's `file` says which file it points into: 0 is `file`, n ≥ 1 is
/// `others[n - 1]`.
#[derive(Debug)]
pub struct Diagnostics {
    pub file: PathBuf,
    pub source: String,
    /// Further files (path, text), such as `--patch` files, in order.
    pub others: Vec<(PathBuf, String)>,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// The path and text that position `pos` points into.
    fn file_of(&self, pos: Pos) -> (&Path, &str) {
        match pos.file.checked_sub(1).and_then(|i| self.others.get(i as usize)) {
            Some((path, text)) => (path, text),
            None => (&self.file, &self.source),
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut files: Vec<&Path> = Vec::new();
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let (file, source) = self.file_of(d.pos);
            if !files.contains(&file) {
                files.push(file);
            }
            writeln!(f, "{}:{}:{}: error: {}", file.display(), d.pos.line, d.pos.col, d.message)?;
            if let Some(line) = source.lines().nth(d.pos.line.saturating_sub(1)) {
                let n = d.pos.line.to_string();
                writeln!(f, "{:w$} |", "", w = n.len())?;
                writeln!(f, "{n} | {line}")?;
                writeln!(f, "{:w$} | {:c$}^", "", "", w = n.len(), c = d.pos.col.saturating_sub(1))?;
            }
            if let Some(h) = &d.hint {
                writeln!(f, "  = hint: {h}")?;
            }
        }
        if self.items.len() > 1 {
            let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
            write!(f, "{} errors in {}", self.items.len(), names.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// An unknown key of a mapping (`what`: "resource", "executor setting"), pointing at it, with
/// the closest known key and the whole list as the hint.
pub fn unknown_key(key: &crate::yaml::Node, what: &str, known: &[&str]) -> Diagnostic {
    let name = key.scalar_text();
    let all = format!("{what}s are: {}", known.join(", "));
    Diagnostic::new(key.pos, format!("unknown {what} `{name}`")).hint(match did_you_mean(&name, known.iter().copied()) {
        Some(d) => format!("{d} ({all})"),
        None => all,
    })
}

/// "did you mean `x`?" for the candidate closest to `wanted`, if any is close.
pub fn did_you_mean<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(wanted, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}
