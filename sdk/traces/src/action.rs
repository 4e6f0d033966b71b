//! BrowserGym's high-level action syntax: [`parse_action`] reads exactly one call such as
//! `fill('b3', "Printer jam")` into an [`Action`], whose `Display` writes it back canonically.
//!
//! The grammar is the subset of Python that BrowserGym agents write: a function name, then
//! positional and keyword arguments that are string literals (single or double quotes, with
//! `\\ \' \" \n \t \r` escapes), numbers, or lists of strings.

use std::fmt;

/// The names of all actions, in the order BrowserGym lists them.
pub const ACTION_NAMES: &[&str] = &[
    "click",
    "dblclick",
    "fill",
    "select_option",
    "check",
    "uncheck",
    "hover",
    "press",
    "focus",
    "clear",
    "scroll",
    "goto",
    "go_back",
    "go_forward",
    "send_msg_to_user",
    "report_infeasible",
    "noop",
];

/// One BrowserGym high-level action.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Click {
        bid: String,
    },
    Dblclick {
        bid: String,
    },
    Fill {
        bid: String,
        value: String,
    },
    SelectOption {
        bid: String,
        options: Selection,
    },
    Check {
        bid: String,
    },
    Uncheck {
        bid: String,
    },
    Hover {
        bid: String,
    },
    /// `press(bid, key_comb)`, e.g. `press('a5', 'Enter')` or `press('a5', 'Control+a')`.
    Press {
        bid: String,
        key: String,
    },
    Focus {
        bid: String,
    },
    Clear {
        bid: String,
    },
    Scroll {
        dx: f64,
        dy: f64,
    },
    Goto {
        url: String,
    },
    GoBack,
    GoForward,
    SendMsgToUser {
        text: String,
    },
    ReportInfeasible {
        reason: String,
    },
    /// `noop()` or `noop(wait_ms)`.
    Noop {
        wait_ms: Option<f64>,
    },
}

/// The `options` argument of `select_option`: one string or a list of strings.
#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    One(String),
    Many(Vec<String>),
}

impl Selection {
    /// The chosen options, whichever way they were written.
    pub fn as_slice(&self) -> &[String] {
        match self {
            Selection::One(s) => std::slice::from_ref(s),
            Selection::Many(v) => v,
        }
    }
}

/// `$body` with `$bid` bound to the target element of the actions that have one; `None`
/// for the others.
macro_rules! on_target {
    ($action:expr, $bid:ident => $body:expr) => {
        match $action {
            Action::Click { $bid }
            | Action::Dblclick { $bid }
            | Action::Fill { $bid, .. }
            | Action::SelectOption { $bid, .. }
            | Action::Check { $bid }
            | Action::Uncheck { $bid }
            | Action::Hover { $bid }
            | Action::Press { $bid, .. }
            | Action::Focus { $bid }
            | Action::Clear { $bid } => $body,
            _ => None,
        }
    };
}

impl Action {
    /// The function name, e.g. `select_option`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Click { .. } => "click",
            Action::Dblclick { .. } => "dblclick",
            Action::Fill { .. } => "fill",
            Action::SelectOption { .. } => "select_option",
            Action::Check { .. } => "check",
            Action::Uncheck { .. } => "uncheck",
            Action::Hover { .. } => "hover",
            Action::Press { .. } => "press",
            Action::Focus { .. } => "focus",
            Action::Clear { .. } => "clear",
            Action::Scroll { .. } => "scroll",
            Action::Goto { .. } => "goto",
            Action::GoBack => "go_back",
            Action::GoForward => "go_forward",
            Action::SendMsgToUser { .. } => "send_msg_to_user",
            Action::ReportInfeasible { .. } => "report_infeasible",
            Action::Noop { .. } => "noop",
        }
    }

    /// The element the action acts on, if it acts on one.
    pub fn target_bid(&self) -> Option<&str> {
        on_target!(self, bid => Some(bid.as_str()))
    }

    /// The element the action acts on, to change it.
    pub fn target_bid_mut(&mut self) -> Option<&mut String> {
        on_target!(self, bid => Some(bid))
    }
}

impl std::str::FromStr for Action {
    type Err = ActionError;
    fn from_str(s: &str) -> Result<Action, ActionError> {
        parse_action(s)
    }
}

/// What kind of mistake an action text has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionErrorKind {
    /// Not a well-formed call (bad token, unterminated string, trailing text...).
    Syntax,
    /// A well-formed call of a function that is not an action.
    UnknownFunction,
    /// The right function with missing, extra or mistyped arguments.
    Arguments,
}

/// Why an action text could not be parsed; `message` reads like BrowserGym's error text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionError {
    pub kind: ActionErrorKind,
    pub message: String,
}

impl ActionError {
    fn syntax(message: String) -> ActionError {
        ActionError { kind: ActionErrorKind::Syntax, message }
    }
    fn args(message: String) -> ActionError {
        ActionError { kind: ActionErrorKind::Arguments, message }
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ActionError {}

/// Parses exactly one BrowserGym action call (surrounding whitespace allowed).
pub fn parse_action(text: &str) -> Result<Action, ActionError> {
    let call = Parser { src: text, pos: 0 }.call()?;
    bind(call)
}

// ---------------------------------------------------------------------------------------
// Lexing and parsing into a generic call.

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Str(String),
    Num(f64),
    List(Vec<Value>),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Num(_) => "a number",
            Value::List(_) => "a list",
        }
    }
}

struct Call {
    name: String,
    positional: Vec<Value>,
    keywords: Vec<(String, Value)>,
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.src.len() - trimmed.len();
    }

    /// A short quote of the text at the cursor, for error messages.
    fn here(&self) -> String {
        let rest = self.rest();
        let end = rest.char_indices().nth(20).map_or(rest.len(), |(i, _)| i);
        if end < rest.len() {
            format!("`{}…`", &rest[..end])
        } else {
            format!("`{rest}`")
        }
    }

    fn expect(&mut self, c: char, what: &str) -> Result<(), ActionError> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            Ok(())
        } else if self.pos >= self.src.len() {
            Err(ActionError::syntax(format!("Invalid action syntax: expected {what} but the text ended")))
        } else {
            Err(ActionError::syntax(format!("Invalid action syntax: expected {what} at {}", self.here())))
        }
    }

    fn ident(&mut self) -> Option<String> {
        let rest = self.rest();
        let mut chars = rest.char_indices();
        match chars.next() {
            Some((_, c)) if c.is_ascii_alphabetic() || c == '_' => {}
            _ => return None,
        }
        let end = chars.find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_')).map_or(rest.len(), |(i, _)| i);
        let name = rest[..end].to_string();
        self.pos += end;
        Some(name)
    }

    fn call(mut self) -> Result<Call, ActionError> {
        self.skip_ws();
        if self.pos >= self.src.len() {
            return Err(ActionError::syntax(format!("Empty action; write one action call, e.g. click('a12'). Valid actions: {}", ACTION_NAMES.join(", "))));
        }
        let name = self.ident().ok_or_else(|| ActionError::syntax(format!("Invalid action syntax: expected an action name at {}", self.here())))?;
        self.skip_ws();
        if self.peek() != Some('(') {
            // A bare unknown name reads better as an unknown function than as a syntax slip.
            if !ACTION_NAMES.contains(&name.as_str()) {
                return Err(unknown_function(&name));
            }
        }
        self.expect('(', &format!("`(` after `{name}`"))?;
        let mut positional = Vec::new();
        let mut keywords: Vec<(String, Value)> = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(')') {
                self.pos += 1;
                break;
            }
            // keyword argument?
            let save = self.pos;
            if let Some(key) = self.ident() {
                self.skip_ws();
                if self.peek() == Some('=') && !self.rest().starts_with("==") {
                    self.pos += 1;
                    let value = self.value()?;
                    if keywords.iter().any(|(k, _)| *k == key) {
                        return Err(ActionError::syntax(format!("Invalid action syntax: keyword argument `{key}` repeated")));
                    }
                    keywords.push((key, value));
                } else {
                    self.pos = save;
                    return Err(ActionError::syntax(format!("Invalid action syntax: unquoted text {}; strings need quotes, e.g. '{key}'", self.here())));
                }
            } else {
                let value = self.value()?;
                if !keywords.is_empty() {
                    return Err(ActionError::syntax("Invalid action syntax: positional argument follows keyword argument".to_string()));
                }
                positional.push(value);
            }
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {}
                None => return Err(ActionError::syntax(format!("Invalid action syntax: missing `)` to close `{name}(`"))),
                Some(_) => return Err(ActionError::syntax(format!("Invalid action syntax: expected `,` or `)` at {}", self.here()))),
            }
        }
        self.skip_ws();
        if self.pos < self.src.len() {
            return Err(ActionError::syntax(format!("Invalid action syntax: unexpected text {} after the action; write exactly one action call", self.here())));
        }
        Ok(Call { name, positional, keywords })
    }

    fn value(&mut self) -> Result<Value, ActionError> {
        self.skip_ws();
        match self.peek() {
            Some(q @ ('\'' | '"')) => self.string(q).map(Value::Str),
            Some('[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.peek() == Some(']') {
                        self.pos += 1;
                        return Ok(Value::List(items));
                    }
                    items.push(self.value()?);
                    self.skip_ws();
                    match self.peek() {
                        Some(',') => self.pos += 1,
                        Some(']') => {}
                        None => return Err(ActionError::syntax("Invalid action syntax: missing `]` to close a list".to_string())),
                        Some(_) => return Err(ActionError::syntax(format!("Invalid action syntax: expected `,` or `]` at {}", self.here()))),
                    }
                }
            }
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => self.number(),
            None => Err(ActionError::syntax("Invalid action syntax: expected an argument but the text ended".to_string())),
            Some(_) => Err(ActionError::syntax(format!("Invalid action syntax: expected a quoted string, a number or a list at {}", self.here()))),
        }
    }

    fn number(&mut self) -> Result<Value, ActionError> {
        let rest = self.rest();
        let bytes = rest.as_bytes();
        let mut i = 0;
        if i < bytes.len() && (bytes[i] == b'-' || bytes[i] == b'+') {
            i += 1;
        }
        let digits_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let mut n_digits = i - digits_start;
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let frac_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            n_digits += i - frac_start;
        }
        if n_digits > 0 && i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
            let mut j = i + 1;
            if j < bytes.len() && (bytes[j] == b'-' || bytes[j] == b'+') {
                j += 1;
            }
            let exp_start = j;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            if j > exp_start {
                i = j;
            }
        }
        let text = &rest[..i];
        let value: Option<f64> = if n_digits == 0 { None } else { text.parse().ok() };
        match value {
            Some(v) if v.is_finite() => {
                self.pos += i;
                Ok(Value::Num(v))
            }
            _ => Err(ActionError::syntax(format!("Invalid action syntax: bad number at {}", self.here()))),
        }
    }

    /// A Python string literal; the cursor is on the opening quote.
    fn string(&mut self, quote: char) -> Result<String, ActionError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.src[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos += i + 1;
                return Ok(out);
            }
            match c {
                '\n' => break,
                '\\' => match chars.next() {
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '\'')) => out.push('\''),
                    Some((_, '"')) => out.push('"'),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, '\n')) => {} // line continuation, as in Python
                    // Python keeps the backslash of an unknown escape.
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                _ => out.push(c),
            }
        }
        self.pos = start;
        Err(ActionError::syntax(format!("Invalid action syntax: unterminated string literal starting at {}", self.here())))
    }
}

// ---------------------------------------------------------------------------------------
// Binding a generic call to an action signature.

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Str,
    Num,
    StrOrList,
}

struct Param {
    /// The BrowserGym name first, then accepted aliases.
    names: &'static [&'static str],
    kind: Kind,
    required: bool,
}

const BID: Param = Param { names: &["bid"], kind: Kind::Str, required: true };

const fn req(names: &'static [&'static str], kind: Kind) -> Param {
    Param { names, kind, required: true }
}

fn signature(name: &str) -> Option<&'static [Param]> {
    const ONE_BID: &[Param] = &[BID];
    const FILL: &[Param] = &[BID, req(&["value"], Kind::Str)];
    const SELECT: &[Param] = &[BID, req(&["options"], Kind::StrOrList)];
    const PRESS: &[Param] = &[BID, req(&["key_comb", "key"], Kind::Str)];
    const SCROLL: &[Param] = &[req(&["delta_x", "dx"], Kind::Num), req(&["delta_y", "dy"], Kind::Num)];
    const GOTO: &[Param] = &[req(&["url"], Kind::Str)];
    const MSG: &[Param] = &[req(&["text"], Kind::Str)];
    const INFEASIBLE: &[Param] = &[req(&["reason"], Kind::Str)];
    const NOOP: &[Param] = &[Param { names: &["wait_ms"], kind: Kind::Num, required: false }];
    Some(match name {
        "click" | "dblclick" | "check" | "uncheck" | "hover" | "focus" | "clear" => ONE_BID,
        "fill" => FILL,
        "select_option" => SELECT,
        "press" => PRESS,
        "scroll" => SCROLL,
        "goto" => GOTO,
        "go_back" | "go_forward" => &[],
        "send_msg_to_user" => MSG,
        "report_infeasible" => INFEASIBLE,
        "noop" => NOOP,
        _ => return None,
    })
}

fn unknown_function(name: &str) -> ActionError {
    let near: Vec<&str> = ACTION_NAMES.iter().copied().filter(|a| edit_distance(a, name) <= 2 || (a.contains(name) && name.len() >= 3)).collect();
    let hint = if near.is_empty() { String::new() } else { format!(" (did you mean `{}`?)", near.join("` or `")) };
    ActionError { kind: ActionErrorKind::UnknownFunction, message: format!("Unknown function `{name}`{hint}; valid actions: {}", ACTION_NAMES.join(", ")) }
}

fn bind(call: Call) -> Result<Action, ActionError> {
    let name = call.name.as_str();
    let params = signature(name).ok_or_else(|| unknown_function(name))?;
    let n_required = params.iter().filter(|p| p.required).count();
    if call.positional.len() > params.len() {
        let takes = if n_required == params.len() { format!("{}", params.len()) } else { format!("from {n_required} to {}", params.len()) };
        let plural = if params.len() == 1 && n_required == 1 { "" } else { "s" };
        return Err(ActionError::args(format!("{name}() takes {takes} positional argument{plural} but {} were given", call.positional.len())));
    }
    let mut slots: Vec<Option<Value>> = vec![None; params.len()];
    for (slot, value) in slots.iter_mut().zip(call.positional) {
        *slot = Some(value);
    }
    for (key, value) in call.keywords {
        let idx = params
            .iter()
            .position(|p| p.names.contains(&key.as_str()))
            .ok_or_else(|| ActionError::args(format!("{name}() got an unexpected keyword argument '{key}'")))?;
        if slots[idx].is_some() {
            return Err(ActionError::args(format!("{name}() got multiple values for argument '{}'", params[idx].names[0])));
        }
        slots[idx] = Some(value);
    }
    let missing: Vec<String> = params.iter().zip(&slots).filter(|(p, s)| p.required && s.is_none()).map(|(p, _)| format!("'{}'", p.names[0])).collect();
    if !missing.is_empty() {
        let plural = if missing.len() == 1 { "" } else { "s" };
        return Err(ActionError::args(format!("{name}() missing {} required positional argument{plural}: {}", missing.len(), missing.join(" and "))));
    }
    for (p, slot) in params.iter().zip(&slots) {
        let Some(v) = slot else { continue };
        let ok = match (p.kind, v) {
            (Kind::Str, Value::Str(_)) | (Kind::Num, Value::Num(_)) => true,
            (Kind::StrOrList, Value::Str(_)) => true,
            (Kind::StrOrList, Value::List(items)) => items.iter().all(|i| matches!(i, Value::Str(_))),
            _ => false,
        };
        if !ok {
            let want = match p.kind {
                Kind::Str => "a string",
                Kind::Num => "a number",
                Kind::StrOrList => "a string or a list of strings",
            };
            return Err(ActionError::args(format!("{name}() argument '{}' must be {want}, not {}", p.names[0], v.type_name())));
        }
    }
    let mut args = slots.into_iter();
    let mut next = || args.next().flatten();
    let mut s = || match next() {
        Some(Value::Str(s)) => s,
        _ => String::new(), // unreachable after the checks above
    };
    let action = match name {
        "click" => Action::Click { bid: s() },
        "dblclick" => Action::Dblclick { bid: s() },
        "check" => Action::Check { bid: s() },
        "uncheck" => Action::Uncheck { bid: s() },
        "hover" => Action::Hover { bid: s() },
        "focus" => Action::Focus { bid: s() },
        "clear" => Action::Clear { bid: s() },
        "fill" => Action::Fill { bid: s(), value: s() },
        "press" => Action::Press { bid: s(), key: s() },
        "goto" => Action::Goto { url: s() },
        "send_msg_to_user" => Action::SendMsgToUser { text: s() },
        "report_infeasible" => Action::ReportInfeasible { reason: s() },
        "go_back" => Action::GoBack,
        "go_forward" => Action::GoForward,
        "select_option" => {
            let bid = s();
            let options = match next() {
                Some(Value::List(items)) => Selection::Many(
                    items
                        .into_iter()
                        .filter_map(|v| match v {
                            Value::Str(s) => Some(s),
                            _ => None,
                        })
                        .collect(),
                ),
                Some(Value::Str(one)) => Selection::One(one),
                _ => Selection::Many(Vec::new()),
            };
            Action::SelectOption { bid, options }
        }
        "scroll" | "noop" => {
            let mut num = || match next() {
                Some(Value::Num(n)) => Some(n),
                _ => None,
            };
            if name == "scroll" {
                Action::Scroll { dx: num().unwrap_or(0.0), dy: num().unwrap_or(0.0) }
            } else {
                Action::Noop { wait_ms: num() }
            }
        }
        _ => return Err(unknown_function(name)),
    };
    Ok(action)
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diag + usize::from(ca != cb)).min(above + 1).min(row[j] + 1);
            diag = above;
        }
    }
    row[b.len()]
}

// ---------------------------------------------------------------------------------------
// Canonical writing.

/// Writes `s` as a Python literal, choosing quotes as Python's `repr` does.
fn write_str_literal(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    f.write_fmt(format_args!("{quote}"))?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c if c == quote => f.write_fmt(format_args!("\\{c}"))?,
            c => f.write_fmt(format_args!("{c}"))?,
        }
    }
    f.write_fmt(format_args!("{quote}"))
}

fn write_num(f: &mut fmt::Formatter<'_>, v: f64) -> fmt::Result {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        write!(f, "{}", v as i64)
    } else {
        write!(f, "{v}")
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name())?;
        match self {
            Action::Click { bid }
            | Action::Dblclick { bid }
            | Action::Check { bid }
            | Action::Uncheck { bid }
            | Action::Hover { bid }
            | Action::Focus { bid }
            | Action::Clear { bid } => write_str_literal(f, bid)?,
            Action::Fill { bid, value: second } | Action::Press { bid, key: second } => {
                write_str_literal(f, bid)?;
                f.write_str(", ")?;
                write_str_literal(f, second)?;
            }
            Action::SelectOption { bid, options } => {
                write_str_literal(f, bid)?;
                f.write_str(", ")?;
                match options {
                    Selection::One(s) => write_str_literal(f, s)?,
                    Selection::Many(items) => {
                        f.write_str("[")?;
                        for (i, s) in items.iter().enumerate() {
                            if i > 0 {
                                f.write_str(", ")?;
                            }
                            write_str_literal(f, s)?;
                        }
                        f.write_str("]")?;
                    }
                }
            }
            Action::Scroll { dx, dy } => {
                write_num(f, *dx)?;
                f.write_str(", ")?;
                write_num(f, *dy)?;
            }
            Action::Goto { url: s } | Action::SendMsgToUser { text: s } | Action::ReportInfeasible { reason: s } => write_str_literal(f, s)?,
            Action::GoBack | Action::GoForward | Action::Noop { wait_ms: None } => {}
            Action::Noop { wait_ms: Some(ms) } => write_num(f, *ms)?,
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Action {
        parse_action(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn err(text: &str) -> ActionError {
        match parse_action(text) {
            Ok(a) => panic!("{text:?} should not parse, got {a:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_every_action() {
        assert_eq!(ok("click('a12')"), Action::Click { bid: "a12".into() });
        assert_eq!(ok("dblclick(\"b3\")"), Action::Dblclick { bid: "b3".into() });
        assert_eq!(ok("fill('b3', 'Printer jam')"), Action::Fill { bid: "b3".into(), value: "Printer jam".into() });
        assert_eq!(ok("select_option('c4', '2 - Medium')"), Action::SelectOption { bid: "c4".into(), options: Selection::One("2 - Medium".into()) });
        assert_eq!(
            ok("select_option('c4', ['Red', \"Blue\"])"),
            Action::SelectOption { bid: "c4".into(), options: Selection::Many(vec!["Red".into(), "Blue".into()]) }
        );
        assert_eq!(ok("check('d1')"), Action::Check { bid: "d1".into() });
        assert_eq!(ok("uncheck('d1')"), Action::Uncheck { bid: "d1".into() });
        assert_eq!(ok("hover('d1')"), Action::Hover { bid: "d1".into() });
        assert_eq!(ok("press('a5', 'Enter')"), Action::Press { bid: "a5".into(), key: "Enter".into() });
        assert_eq!(ok("focus('a5')"), Action::Focus { bid: "a5".into() });
        assert_eq!(ok("clear('a5')"), Action::Clear { bid: "a5".into() });
        assert_eq!(ok("scroll(0, 200)"), Action::Scroll { dx: 0.0, dy: 200.0 });
        assert_eq!(ok("scroll(-10.5, 3e2)"), Action::Scroll { dx: -10.5, dy: 300.0 });
        assert_eq!(ok("goto('http://miniarena.local/home.do')"), Action::Goto { url: "http://miniarena.local/home.do".into() });
        assert_eq!(ok("go_back()"), Action::GoBack);
        assert_eq!(ok("go_forward( )"), Action::GoForward);
        assert_eq!(ok("send_msg_to_user('The answer is 42.')"), Action::SendMsgToUser { text: "The answer is 42.".into() });
        assert_eq!(ok("report_infeasible('No such item')"), Action::ReportInfeasible { reason: "No such item".into() });
        assert_eq!(ok("noop()"), Action::Noop { wait_ms: None });
        assert_eq!(ok("noop(500)"), Action::Noop { wait_ms: Some(500.0) });
    }

    #[test]
    fn keyword_arguments_and_whitespace() {
        let want = Action::Fill { bid: "a1".into(), value: "x".into() };
        assert_eq!(ok("fill(bid='a1', value='x')"), want);
        assert_eq!(ok("fill('a1', value='x')"), want);
        assert_eq!(ok("fill(value='x', bid='a1')"), want);
        assert_eq!(ok("  \n fill( 'a1' ,\n 'x' , )  \n"), want);
        assert_eq!(ok("press(bid='a1', key_comb='Control+a')"), Action::Press { bid: "a1".into(), key: "Control+a".into() });
        assert_eq!(ok("press('a1', key='Enter')"), Action::Press { bid: "a1".into(), key: "Enter".into() });
        assert_eq!(ok("scroll(delta_x=0, delta_y=-100)"), Action::Scroll { dx: 0.0, dy: -100.0 });
        assert_eq!(ok("noop(wait_ms=1000)"), Action::Noop { wait_ms: Some(1000.0) });
    }

    #[test]
    fn quotes_and_escapes() {
        let fill = |v: &str| Action::Fill { bid: "a1".into(), value: v.into() };
        assert_eq!(ok(r#"fill('a1', "It's fine")"#), fill("It's fine"));
        assert_eq!(ok(r"fill('a1', 'It\'s fine')"), fill("It's fine"));
        assert_eq!(ok(r#"fill('a1', "say \"hi\"")"#), fill("say \"hi\""));
        assert_eq!(ok(r"fill('a1', 'line1\nline2\ttab')"), fill("line1\nline2\ttab"));
        assert_eq!(ok(r"fill('a1', 'back\\slash')"), fill("back\\slash"));
        assert_eq!(ok(r"fill('a1', 'C:\dir')"), fill("C:\\dir"));
        assert_eq!(ok("fill('a1', 'ünïcödé ✓')"), fill("ünïcödé ✓"));
        assert_eq!(ok("fill('a1', '')"), fill(""));
    }

    #[test]
    fn display_round_trips() {
        let actions = [
            Action::Click { bid: "a12".into() },
            Action::Fill { bid: "b3".into(), value: "It's \"quoted\"\\ \n\t end".into() },
            Action::Fill { bid: "b3".into(), value: "It's".into() },
            Action::SelectOption { bid: "c4".into(), options: Selection::One("x".into()) },
            Action::SelectOption { bid: "c4".into(), options: Selection::Many(vec!["a".into(), "b'".into()]) },
            Action::SelectOption { bid: "c4".into(), options: Selection::Many(vec![]) },
            Action::Press { bid: "a1".into(), key: "Enter".into() },
            Action::Scroll { dx: 0.0, dy: -250.0 },
            Action::Scroll { dx: 0.25, dy: 1e20 },
            Action::Goto { url: "http://x/y?q=a b".into() },
            Action::GoBack,
            Action::GoForward,
            Action::SendMsgToUser { text: "Done.".into() },
            Action::ReportInfeasible { reason: "no".into() },
            Action::Noop { wait_ms: None },
            Action::Noop { wait_ms: Some(1000.0) },
        ];
        for a in actions {
            let text = a.to_string();
            assert_eq!(parse_action(&text), Ok(a.clone()), "{text}");
        }
        assert_eq!(ok("fill(bid='a1', value=\"x\")").to_string(), "fill('a1', 'x')");
        assert_eq!(ok("noop()").to_string(), "noop()");
        assert_eq!(ok("scroll(0.0, 200)").to_string(), "scroll(0, 200)");
    }

    #[test]
    fn target_bid() {
        assert_eq!(ok("fill('b3', 'x')").target_bid(), Some("b3"));
        assert_eq!(ok("select_option('c4', ['a'])").target_bid(), Some("c4"));
        assert_eq!(ok("scroll(0, 1)").target_bid(), None);
        assert_eq!(ok("send_msg_to_user('hi')").target_bid(), None);
    }

    #[test]
    fn unknown_functions_are_named_with_suggestions() {
        let e = err("clik('a1')");
        assert_eq!(e.kind, ActionErrorKind::UnknownFunction);
        assert!(e.message.starts_with("Unknown function `clik` (did you mean `click`?)"), "{e}");
        assert!(e.message.contains("valid actions: click, dblclick, fill"), "{e}");
        let e = err("type('a1', 'x')");
        assert_eq!(e.kind, ActionErrorKind::UnknownFunction);
        assert!(e.message.starts_with("Unknown function `type`;"), "{e}");
        assert_eq!(err("submit").kind, ActionErrorKind::UnknownFunction);
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        for (text, needle) in [
            ("", "Empty action"),
            ("   ", "Empty action"),
            ("click('a1'", "missing `)`"),
            ("click('a1)", "unterminated string"),
            ("fill('a1', \"x)", "unterminated string"),
            ("fill('a1', 'two\nlines')", "unterminated string"),
            ("click(a1)", "unquoted text"),
            ("click('a1') click('a2')", "unexpected text"),
            ("click('a1'); noop()", "unexpected text"),
            ("click('a1')\nfill('a2', 'x')", "unexpected text"),
            ("```click('a1')```", "expected an action name"),
            ("click 'a1'", "expected `(`"),
            ("click('a1' 'a2')", "expected `,` or `)`"),
            ("scroll(1.2.3, 0)", "expected `,` or `)`"),
            ("scroll(-, 0)", "bad number"),
            ("fill(bid='a1', bid='a2')", "repeated"),
            ("fill(bid='a1', 'x')", "positional argument follows keyword argument"),
            ("select_option('a1', ['x'", "missing `]`"),
        ] {
            let e = err(text);
            assert_eq!(e.kind, ActionErrorKind::Syntax, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn wrong_arguments_are_rejected() {
        for (text, needle) in [
            ("click()", "click() missing 1 required positional argument: 'bid'"),
            ("fill('a1')", "fill() missing 1 required positional argument: 'value'"),
            ("fill()", "missing 2 required positional arguments: 'bid' and 'value'"),
            ("click('a1', 'a2')", "click() takes 1 positional argument but 2 were given"),
            ("go_back('x')", "go_back() takes 0 positional arguments but 1 were given"),
            ("noop(1, 2)", "noop() takes from 0 to 1 positional arguments but 2 were given"),
            ("fill('a1', value='x', text='y')", "unexpected keyword argument 'text'"),
            ("fill('a1', 'x', value='y')", "multiple values for argument 'value'"),
            ("click(12)", "argument 'bid' must be a string, not a number"),
            ("scroll('0', 100)", "argument 'delta_x' must be a number, not a string"),
            ("select_option('a1', [1])", "must be a string or a list of strings"),
            ("fill('a1', ['x'])", "argument 'value' must be a string, not a list"),
        ] {
            let e = err(text);
            assert_eq!(e.kind, ActionErrorKind::Arguments, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }
}
