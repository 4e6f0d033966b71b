//! A YAML tree that remembers where every node came from (line and column), so that every
//! pipeline error can point at the offending text.

use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser},
    scanner::{Marker, TScalarStyle},
};

/// A position in a source file: 1-based line and column, and which file (0: the pipeline;
/// n ≥ 1: the n-th patch file, see [`crate::diag::Diagnostics::others`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
    pub file: u32,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Pos {
        Pos { line: m.line(), col: m.col() + 1, file: 0 }
    }
}

/// A YAML node with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in source order, each with its own position.
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries().iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// The key node for `key` (for pointing at a key rather than its value).
    pub fn key(&self, key: &str) -> Option<&Node> {
        self.entries().iter().find(|(k, _)| k.as_str() == Some(key)).map(|(k, _)| k)
    }

    pub fn entries(&self) -> &[(Node, Node)] {
        match &self.kind {
            Kind::Map(m) => m,
            _ => &[],
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// Plain JSON, dropping positions.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.kind {
            Kind::Null => J::Null,
            Kind::Bool(b) => J::Bool(*b),
            Kind::Int(i) => J::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
            Kind::Str(s) => J::String(s.clone()),
            Kind::Seq(v) => J::Array(v.iter().map(Node::to_json).collect()),
            Kind::Map(m) => J::Object(m.iter().map(|(k, v)| (k.scalar_text(), v.to_json())).collect()),
        }
    }

    /// A scalar's text (for keys and labels).
    pub fn scalar_text(&self) -> String {
        match &self.kind {
            Kind::Null => "null".into(),
            Kind::Bool(b) => b.to_string(),
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => f.to_string(),
            Kind::Str(s) => s.clone(),
            Kind::Seq(_) | Kind::Map(_) => self.to_json().to_string(),
        }
    }

    /// The same tree with every position (keys included) moved to source file `file`.
    pub fn in_file(mut self, file: u32) -> Node {
        self.pos.file = file;
        self.kind = match self.kind {
            Kind::Seq(items) => Kind::Seq(items.into_iter().map(|i| i.in_file(file)).collect()),
            Kind::Map(entries) => Kind::Map(entries.into_iter().map(|(k, v)| (k.in_file(file), v.in_file(file))).collect()),
            k => k,
        };
        self
    }

    /// Follows a dotted/indexed path (`a.b[2].c`) as far as it goes; returns the deepest node
    /// found, so an error about a field that does not exist still points near it.
    pub fn locate(&self, path: &str) -> &Node {
        let mut node = self;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            let (name, indices) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !name.is_empty() {
                // Prefer the key node: for an unknown field, that is the text to point at.
                match (node.get(name), node.key(name)) {
                    (Some(v), _) if !indices.is_empty() || matches!(v.kind, Kind::Map(_) | Kind::Seq(_)) => node = v,
                    (Some(v), Some(k)) => node = if path.ends_with(part) { k } else { v },
                    _ => return node,
                }
            }
            for idx in indices.split(['[', ']']).filter(|s| !s.is_empty()) {
                match (&node.kind, idx.parse::<usize>()) {
                    (Kind::Seq(items), Ok(i)) if i < items.len() => node = &items[i],
                    _ => return node,
                }
            }
        }
        node
    }
}

/// Builds [`Node`]s from parser events.
#[derive(Default)]
struct Builder {
    stack: Vec<(Node, Option<Node>)>, // open collection, pending map key
    anchors: Vec<(usize, Node)>,
    done: Option<Node>,
    anchor_stack: Vec<usize>,
}

impl Builder {
    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => self.done = Some(node),
            Some((parent, pending)) => match &mut parent.kind {
                Kind::Seq(items) => items.push(node),
                Kind::Map(entries) => match pending.take() {
                    None => *pending = Some(node),
                    Some(key) => entries.push((key, node)),
                },
                _ => unreachable!("only collections are pushed on the stack"),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from(mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let kind = if style == TScalarStyle::Plain { plain_scalar(&text) } else { Kind::Str(text) };
                self.push_value(Node { pos, kind }, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.anchor_stack.push(anchor);
                self.stack.push((Node { pos, kind: Kind::Seq(Vec::new()) }, None));
            }
            Event::MappingStart(anchor, _) => {
                self.anchor_stack.push(anchor);
                self.stack.push((Node { pos, kind: Kind::Map(Vec::new()) }, None));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, _) = self.stack.pop().expect("balanced events");
                let anchor = self.anchor_stack.pop().unwrap_or(0);
                self.push_value(node, anchor);
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, n)| Node { pos, kind: n.kind.clone() })
                    .unwrap_or(Node { pos, kind: Kind::Null });
                self.push_value(node, 0);
            }
            _ => {}
        }
    }
}

/// YAML 1.2 core-schema resolution of a plain scalar.
fn plain_scalar(text: &str) -> Kind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        ".inf" | ".Inf" | "+.inf" => return Kind::Float(f64::INFINITY),
        "-.inf" | "-.Inf" => return Kind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" => return Kind::Float(f64::NAN),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Kind::Int(i);
    }
    let looks_numeric = text.chars().next().is_some_and(|c| c.is_ascii_digit() || "+-.".contains(c));
    if looks_numeric {
        if let Ok(f) = text.parse::<f64>() {
            return Kind::Float(f);
        }
    }
    Kind::Str(text.to_string())
}

/// A YAML syntax error with its position.
#[derive(Debug)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut b, false).map_err(|e| SyntaxError { pos: Pos::from(*e.marker()), message: e.info().to_string() })?;
    Ok(b.done.unwrap_or(Node { pos: Pos { line: 1, col: 1, file: 0 }, kind: Kind::Null }))
}

/// Parses one YAML document of source file number `file` (positions carry it; see [`Pos`]).
pub fn parse_in(text: &str, file: u32) -> Result<Node, SyntaxError> {
    match parse(text) {
        Ok(n) => Ok(n.in_file(file)),
        Err(e) => Err(SyntaxError { pos: Pos { file, ..e.pos }, message: e.message }),
    }
}

/// Parses a `--set` value or a scalar given on the command line, as YAML would.
pub fn parse_scalar(text: &str) -> Node {
    match parse(text) {
        Ok(n) => n,
        Err(_) => Node { pos: Pos::default(), kind: Kind::Str(text.to_string()) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_types() {
        let doc = parse("a: 1\nb:\n  - x\n  - 2.5\n  - true\nc: \"7\"\nd: null\n").unwrap();
        assert_eq!(doc.get("a").unwrap().kind, Kind::Int(1));
        let b = doc.get("b").unwrap();
        let Kind::Seq(items) = &b.kind else { panic!() };
        assert_eq!(items[0].pos, Pos { line: 3, col: 5, file: 0 });
        assert_eq!(items[1].kind, Kind::Float(2.5));
        assert_eq!(items[2].kind, Kind::Bool(true));
        assert_eq!(doc.get("c").unwrap().kind, Kind::Str("7".into()));
        assert_eq!(doc.key("c").unwrap().pos, Pos { line: 6, col: 1, file: 0 });
        assert_eq!(doc.get("d").unwrap().kind, Kind::Null);
        assert_eq!(doc.locate("b[1]").kind, Kind::Float(2.5));
        assert_eq!(doc.locate("zz").pos, doc.pos);
    }

    #[test]
    fn positions_know_their_file() {
        let doc = parse_in("a: {b: [1]}\n", 2).unwrap();
        assert_eq!(doc.locate("a.b[0]").pos, Pos { line: 1, col: 9, file: 2 });
        assert_eq!(doc.key("a").unwrap().pos.file, 2);
        assert_eq!(parse_in("a: [1\n", 3).unwrap_err().pos.file, 3);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
    }

    #[test]
    fn anchors_and_aliases() {
        let doc = parse("x: &v [1, 2]\ny: *v\n").unwrap();
        assert_eq!(doc.get("x").unwrap().to_json(), doc.get("y").unwrap().to_json());
    }
}
