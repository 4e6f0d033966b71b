//! Errors that point at pipeline text: `file:line:column: message`, the offending line with
//! a caret under it, and a hint saying what to do.

use std::{fmt, path::PathBuf};

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

/// All the errors found in one pipeline file, rendered together.
#[derive(Debug)]
pub struct Diagnostics {
    pub file: PathBuf,
    pub source: String,
    pub items: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{}:{}:{}: error: {}", self.file.display(), d.pos.line, d.pos.col, d.message)?;
            if let Some(line) = self.source.lines().nth(d.pos.line.saturating_sub(1)) {
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
            write!(f, "{} errors in {}", self.items.len(), self.file.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// "did you mean `x`?" for the candidate closest to `wanted`, if any is close.
pub fn did_you_mean<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(wanted, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}
