//! Node instance ids and their sweep labels: `ev_am[lambda=0.5,lr=1e-05]` is the node `ev_am`
//! with the labels `lambda = 0.5` and `lr = 1e-05`.
//!
//! The host writes a swept instance as `ID[field=value,...]`, and `origin.field=value` when two
//! sweeps share a field name; a swept config field may itself be dotted (`method.lambda`). The
//! label's name here is the part after the last `.` before the `=`. Values are the text YAML
//! gave (`1e-05`, `0.00001`, `0.5`, or JSON such as `{"preset":"strong"}`), so commas inside
//! brackets, braces or quotes do not split labels.

use std::collections::BTreeMap;

/// A node instance id split into its node id and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeId {
    /// The whole instance id, as the host wrote it.
    pub full: String,
    /// The node id without labels (`ev_am`).
    pub base: String,
    /// Label name → value text.
    pub labels: BTreeMap<String, String>,
}

impl NodeId {
    /// Parses `base[name=value,...]` (or a plain `base`). Never fails: text that does not look
    /// like labels is kept in the base id, which then matches no configured node. Two labels
    /// that shorten to the same name (`a.lr`, `b.lr`) keep the later one.
    pub fn parse(id: &str) -> NodeId {
        let id = id.trim();
        let full = id.to_string();
        let (base, inner) = match (id.find('['), id.ends_with(']')) {
            (Some(open), true) => (&id[..open], &id[open + 1..id.len() - 1]),
            _ => return NodeId { full, base: id.to_string(), labels: BTreeMap::new() },
        };
        let mut labels = BTreeMap::new();
        for part in split_top_level(inner) {
            if let Some((name, value)) = part.split_once('=') {
                let name = name.rsplit('.').next().unwrap_or(name).trim();
                labels.insert(name.to_string(), value.trim().to_string());
            }
        }
        NodeId { full, base: base.to_string(), labels }
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Splits on the commas that are outside brackets, braces and double quotes.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut quoted, mut start, mut escaped) = (Vec::new(), 0i32, false, 0, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '[' | '{' if !quoted => depth += 1,
            ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// A label value: its text as written, and its number when it is one. Two values are the
/// same label when their numbers are equal (`1e-05` and `0.00001`), else when their texts are.
#[derive(Clone, Debug)]
pub struct Label {
    pub text: String,
    pub value: Option<f64>,
}

impl Label {
    pub fn new(text: &str) -> Label {
        Label { text: text.to_string(), value: text.trim().parse::<f64>().ok().filter(|v| v.is_finite()) }
    }

    /// A total order: numbers numerically, then texts alphabetically.
    pub fn order(&self, other: &Label) -> std::cmp::Ordering {
        use std::cmp::Ordering::*;
        match (self.value, other.value) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            (Some(_), None) => Less,
            (None, Some(_)) => Greater,
            (None, None) => self.text.cmp(&other.text),
        }
    }
}

impl PartialEq for Label {
    fn eq(&self, other: &Label) -> bool {
        match (self.value, other.value) {
            (Some(a), Some(b)) => a == b,
            _ => self.text == other.text,
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The text of an optional label, `—` when absent.
pub fn show(label: Option<&Label>) -> String {
    label.map_or_else(|| "—".to_string(), |l| l.text.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_labelled_ids() {
        let id = NodeId::parse("ev_am[lambda=0.5,lr=1e-05]");
        assert_eq!(id.base, "ev_am");
        assert_eq!(id.label("lambda"), Some("0.5"));
        assert_eq!(id.label("lr"), Some("1e-05"));
        let id = NodeId::parse("ev_instruct");
        assert_eq!((id.base.as_str(), id.labels.len()), ("ev_instruct", 0));
        assert_eq!(NodeId::parse("ev_ift[lr=0.001]").label("lr"), Some("0.001"));
    }

    #[test]
    fn origin_and_dotted_fields_keep_the_last_part() {
        let id = NodeId::parse("ev[train_agent.lr=2e-5,train_ift.lr=3e-5,merge.method.lambda=0.7]");
        // Two origins share `lr`: the later one wins in the map; the name is the last part.
        assert_eq!(id.label("lambda"), Some("0.7"));
        assert!(id.label("lr").is_some());
        assert!(id.labels.keys().all(|k| !k.contains('.')));
    }

    #[test]
    fn commas_inside_json_values_do_not_split() {
        let id = NodeId::parse(r#"collect[agent={"preset":"strong","n":2},lr=0.01]"#);
        assert_eq!(id.label("agent"), Some(r#"{"preset":"strong","n":2}"#));
        assert_eq!(id.label("lr"), Some("0.01"));
    }

    #[test]
    fn odd_text_never_panics() {
        for s in ["", "[", "]", "a[", "a[]", "a[=]", "a[x]", "a[,,]", "a[b=c", "[x=1]", "a[\"=,]"] {
            let _ = NodeId::parse(s);
        }
        assert_eq!(NodeId::parse("a[x]").labels.len(), 0);
        assert_eq!(NodeId::parse("a[b=c").base, "a[b=c");
    }

    #[test]
    fn labels_compare_numerically() {
        assert_eq!(Label::new("1e-05"), Label::new("0.00001"));
        assert_ne!(Label::new("1e-05"), Label::new("1e-04"));
        assert_eq!(Label::new("big"), Label::new("big"));
        assert_eq!(Label::new("0.5").order(&Label::new("1")), std::cmp::Ordering::Less);
    }
}
