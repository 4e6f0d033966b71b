//! Pipeline files: YAML → [`PipelineSpec`], with variables substituted, `--set` overrides
//! applied, and every node remembering where it was written.
//!
//! ```yaml
//! name: quickstart
//! seed: 7                       # the run's seed (default 0)
//! vars: { hidden: 64 }          # referenced as ${hidden}; overridable with --set hidden=128
//!                               # (in `with:`, `inputs:`, `sweep:` and `uses:`)
//! plugin_path: [../my-plugins]  # extra plugin directories, relative to this file
//! store: .agentmerge            # artifact store, relative to this file (the default)
//! nodes:
//!   - id: base
//!     uses: models/random_llama
//!     with: { hidden_size: "${hidden}" }
//!   - id: soup
//!     uses: merge/linear
//!     inputs: { models: [a.model, b.model] }   # or `train[*].model` to gather a sweep
//!     sweep: { weights: [[0.5, 0.5], [0.2, 0.8]] }
//! ```

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use crate::{
    diag::{did_you_mean, Diagnostic, Diagnostics},
    yaml::{self, Kind, Node, Pos},
};

/// A parsed pipeline file.
#[derive(Debug)]
pub struct PipelineSpec {
    pub file: PathBuf,
    pub source: String,
    pub name: String,
    pub seed: u64,
    pub store: Option<PathBuf>,
    pub plugin_path: Vec<PathBuf>,
    pub jobs: Option<usize>,
    pub nodes: Vec<NodeSpec>,
}

/// One `nodes:` entry.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: String,
    pub pos: Pos,
    pub uses: String,
    pub uses_pos: Pos,
    /// The `with:` block after variable substitution (a mapping; empty when absent).
    pub with: Node,
    /// Port → references, in the order written.
    pub inputs: Vec<InputSpec>,
    /// Config field (dotted path) → values to sweep over.
    pub sweep: Vec<SweepAxis>,
}

#[derive(Debug, Clone)]
pub struct InputSpec {
    pub port: String,
    pub pos: Pos,
    /// True when written as a list (`[a.x, b.x]`).
    pub is_list: bool,
    pub refs: Vec<PortRef>,
}

/// `node.port`, or `node[*].port` to gather every sweep variant of `node`.
#[derive(Debug, Clone)]
pub struct PortRef {
    pub node: String,
    pub port: String,
    pub gather: bool,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct SweepAxis {
    pub field: String,
    pub pos: Pos,
    pub values: Vec<Node>,
}

const TOP_KEYS: &[&str] = &["name", "description", "seed", "vars", "plugin_path", "store", "jobs", "nodes"];
const NODE_KEYS: &[&str] = &["id", "uses", "with", "inputs", "sweep", "description"];

/// A `--set key=value` override: a variable, or `node_id.field.path` for a node's config.
#[derive(Debug, Clone)]
pub struct Override {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for Override {
    type Err = String;
    fn from_str(s: &str) -> Result<Override, String> {
        let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected KEY=VALUE, e.g. --set lr=1e-5"))?;
        if k.trim().is_empty() {
            return Err(format!("`{s}`: the key before `=` is empty"));
        }
        Ok(Override { key: k.trim().to_string(), value: v.to_string() })
    }
}

/// Reads and parses a pipeline file. Errors are [`Diagnostics`] (or an I/O error).
pub fn load(file: &Path, overrides: &[Override]) -> anyhow::Result<PipelineSpec> {
    let source = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read pipeline {}: {e}", file.display()))?;
    parse(file, source, overrides).map_err(anyhow::Error::new)
}

pub fn parse(file: &Path, source: String, overrides: &[Override]) -> Result<PipelineSpec, Diagnostics> {
    let mut errs = Vec::new();
    let spec = parse_inner(file, &source, overrides, &mut errs);
    match spec {
        Some(s) if errs.is_empty() => Ok(s),
        _ => Err(Diagnostics { file: file.to_path_buf(), source, items: errs }),
    }
}

fn parse_inner(file: &Path, source: &str, overrides: &[Override], errs: &mut Vec<Diagnostic>) -> Option<PipelineSpec> {
    let doc = match yaml::parse(source) {
        Ok(d) => d,
        Err(e) => {
            errs.push(Diagnostic::new(e.pos, format!("YAML syntax error: {}", e.message)).hint("check indentation and brackets around this point"));
            return None;
        }
    };
    if !matches!(doc.kind, Kind::Map(_)) {
        errs.push(Diagnostic::new(doc.pos, "a pipeline must be a mapping with a `nodes:` list").hint("see pipelines/quickstart.yaml for the shape"));
        return None;
    }
    check_keys(&doc, TOP_KEYS, "top-level key", errs);
    let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();

    // Variables, with --set overrides of declared variables.
    let mut vars: BTreeMap<String, Node> = BTreeMap::new();
    if let Some(v) = doc.get("vars") {
        match &v.kind {
            Kind::Map(entries) => {
                for (k, val) in entries {
                    vars.insert(k.scalar_text(), val.clone());
                }
            }
            Kind::Null => {}
            _ => errs.push(Diagnostic::new(v.pos, format!("`vars` must be a mapping, found {}", v.type_name()))),
        }
    }
    let mut node_overrides = Vec::new();
    for o in overrides {
        if vars.contains_key(&o.key) {
            vars.insert(o.key.clone(), yaml::parse_scalar(&o.value));
        } else if o.key.contains('.') {
            node_overrides.push(o.clone());
        } else {
            let names: Vec<&str> = vars.keys().map(String::as_str).collect();
            let mut d = Diagnostic::new(doc.pos, format!("--set {}: no variable `{}` in this pipeline", o.key, o.key));
            d = d.hint(match did_you_mean(&o.key, names.iter().copied()) {
                Some(m) => m,
                None if names.is_empty() => "this pipeline declares no `vars:`; to set a node's config use --set NODE.FIELD=VALUE".into(),
                None => format!("declared variables: {}; to set a node's config use --set NODE.FIELD=VALUE", names.join(", ")),
            });
            errs.push(d);
        }
    }

    let name = doc.get("name").map(|n| n.scalar_text()).unwrap_or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
    let seed = match doc.get("seed").map(|n| (n, substitute(n, &vars, errs))) {
        None => 0,
        Some((_, n)) => match n.kind {
            Kind::Int(i) if i >= 0 => i as u64,
            _ => {
                errs.push(Diagnostic::new(n.pos, format!("`seed` must be a non-negative integer, found {}", n.type_name())));
                0
            }
        },
    };
    let jobs = match doc.get("jobs").map(|n| substitute(n, &vars, errs)) {
        None => None,
        Some(n) => match n.kind {
            Kind::Int(i) if i >= 1 => Some(i as usize),
            _ => {
                errs.push(Diagnostic::new(n.pos, "`jobs` must be an integer ≥ 1"));
                None
            }
        },
    };
    let store = doc.get("store").and_then(|n| match n.as_str() {
        Some(s) => Some(dir.join(s)),
        None => {
            errs.push(Diagnostic::new(n.pos, "`store` must be a path"));
            None
        }
    });
    let plugin_path = match doc.get("plugin_path") {
        None => Vec::new(),
        Some(n) => match &n.kind {
            Kind::Str(s) => vec![dir.join(s)],
            Kind::Seq(items) => items
                .iter()
                .filter_map(|i| match i.as_str() {
                    Some(s) => Some(dir.join(s)),
                    None => {
                        errs.push(Diagnostic::new(i.pos, "`plugin_path` entries must be paths"));
                        None
                    }
                })
                .collect(),
            _ => {
                errs.push(Diagnostic::new(n.pos, "`plugin_path` must be a path or a list of paths"));
                Vec::new()
            }
        },
    };

    let mut nodes = Vec::new();
    match doc.get("nodes") {
        None => {
            errs.push(Diagnostic::new(doc.pos, "the pipeline has no `nodes:` list").hint("add `nodes:` with at least one `- id: ... uses: plugin/kind` entry"))
        }
        Some(n) => match &n.kind {
            Kind::Seq(items) => {
                for item in items {
                    if let Some(node) = parse_node(item, &vars, errs) {
                        nodes.push(node);
                    }
                }
            }
            _ => errs.push(Diagnostic::new(n.pos, format!("`nodes` must be a list, found {}", n.type_name()))),
        },
    }

    // Duplicate ids.
    for (i, n) in nodes.iter().enumerate() {
        if let Some(first) = nodes[..i].iter().find(|m| m.id == n.id) {
            errs.push(
                Diagnostic::new(n.pos, format!("duplicate node id `{}`", n.id)).hint(format!("first defined at line {}; ids must be unique", first.pos.line)),
            );
        }
    }

    // --set NODE.FIELD=VALUE
    for o in node_overrides {
        let (id, field) = o.key.split_once('.').expect("contains a dot");
        match nodes.iter_mut().find(|n| n.id == id) {
            Some(n) => set_path(&mut n.with, field, yaml::parse_scalar(&o.value)),
            None => {
                let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
                let d = Diagnostic::new(doc.pos, format!("--set {}: no variable or node `{id}`", o.key));
                errs.push(match did_you_mean(id, ids.iter().copied()) {
                    Some(m) => d.hint(m),
                    None => d.hint(format!("node ids: {}", ids.join(", "))),
                });
            }
        }
    }

    Some(PipelineSpec { file: file.to_path_buf(), source: source.to_string(), name, seed, store, plugin_path, jobs, nodes })
}

fn check_keys(map: &Node, valid: &[&str], what: &str, errs: &mut Vec<Diagnostic>) {
    for (k, _) in map.entries() {
        let key = k.scalar_text();
        if !valid.contains(&key.as_str()) {
            let d = Diagnostic::new(k.pos, format!("unknown {what} `{key}`"));
            errs.push(match did_you_mean(&key, valid.iter().copied()) {
                Some(m) => d.hint(format!("{m} (valid: {})", valid.join(", "))),
                None => d.hint(format!("valid keys: {}", valid.join(", "))),
            });
        }
    }
}

fn parse_node(item: &Node, vars: &BTreeMap<String, Node>, errs: &mut Vec<Diagnostic>) -> Option<NodeSpec> {
    if !matches!(item.kind, Kind::Map(_)) {
        errs.push(Diagnostic::new(item.pos, format!("a node must be a mapping with `id` and `uses`, found {}", item.type_name())));
        return None;
    }
    check_keys(item, NODE_KEYS, "node key", errs);
    let id = match item.get("id") {
        Some(n) => match n.as_str() {
            Some(s) if valid_id(s) => s.to_string(),
            _ => {
                errs.push(
                    Diagnostic::new(n.pos, format!("invalid node id `{}`", n.scalar_text()))
                        .hint("ids use letters, digits, `_` and `-`, and start with a letter"),
                );
                return None;
            }
        },
        None => {
            errs.push(Diagnostic::new(item.pos, "node without an `id`").hint("add `id: some_name`"));
            return None;
        }
    };
    let (uses, uses_pos) = match item.get("uses") {
        // Variables splice their text into `uses:` (`"${backend}/sft"`), so one `--set` swaps
        // the plugin; the result must still be PLUGIN/KIND.
        Some(n) => match substitute_text(n, vars, errs) {
            // An unknown variable, already reported: go on to find the node's other errors.
            Err(()) => (n.scalar_text(), n.pos),
            Ok(s) if !matches!(n.kind, Kind::Seq(_) | Kind::Map(_)) && s.split_once('/').is_some_and(|(p, k)| !p.is_empty() && !k.is_empty()) => (s, n.pos),
            Ok(s) => {
                let from = match n.as_str() {
                    Some(raw) if raw != s => format!(" (from `{raw}`)"),
                    _ => String::new(),
                };
                errs.push(
                    Diagnostic::new(n.pos, format!("`uses: {s}`{from} is not of the form PLUGIN/KIND"))
                        .hint("e.g. `uses: models/random_llama`; `agentmerge plugins` lists them"),
                );
                return None;
            }
        },
        None => {
            errs.push(Diagnostic::new(item.pos, format!("node `{id}` has no `uses:`")).hint("add `uses: PLUGIN/KIND`; `agentmerge plugins` lists them"));
            return None;
        }
    };
    let with = match item.get("with") {
        None => Node { pos: item.pos, kind: Kind::Map(Vec::new()) },
        Some(w) => match &w.kind {
            Kind::Map(_) => substitute(w, vars, errs),
            Kind::Null => Node { pos: w.pos, kind: Kind::Map(Vec::new()) },
            _ => {
                errs.push(Diagnostic::new(w.pos, format!("`with` must be a mapping of config fields, found {}", w.type_name())));
                return None;
            }
        },
    };
    let mut inputs = Vec::new();
    if let Some(inp) = item.get("inputs") {
        match &inp.kind {
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let v = substitute(v, vars, errs);
                    let (is_list, refs) = match &v.kind {
                        Kind::Seq(items) => (true, items.iter().filter_map(|r| parse_ref(r, errs)).collect()),
                        _ => (false, parse_ref(&v, errs).into_iter().collect()),
                    };
                    inputs.push(InputSpec { port: k.scalar_text(), pos: k.pos, is_list, refs });
                }
            }
            Kind::Null => {}
            _ => errs.push(Diagnostic::new(inp.pos, "`inputs` must map each port to `node.port` or a list of them")),
        }
    }
    let mut sweep = Vec::new();
    if let Some(sw) = item.get("sweep") {
        match &sw.kind {
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let v = substitute(v, vars, errs);
                    match v.kind {
                        Kind::Seq(values) if !values.is_empty() => sweep.push(SweepAxis { field: k.scalar_text(), pos: k.pos, values }),
                        _ => errs.push(
                            Diagnostic::new(v.pos, format!("sweep `{}` needs a non-empty list of values", k.scalar_text()))
                                .hint("e.g. `sweep: { lambda: [0.5, 1.0] }`"),
                        ),
                    }
                }
            }
            _ => errs.push(Diagnostic::new(sw.pos, "`sweep` must map config fields to lists of values")),
        }
    }
    Some(NodeSpec { id, pos: item.pos, uses, uses_pos, with, inputs, sweep })
}

fn valid_id(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_ref(n: &Node, errs: &mut Vec<Diagnostic>) -> Option<PortRef> {
    let bad = |errs: &mut Vec<Diagnostic>| {
        errs.push(
            Diagnostic::new(n.pos, format!("`{}` is not a port reference", n.scalar_text()))
                .hint("write NODE.PORT (e.g. `base.model`), or NODE[*].PORT to gather every sweep variant of NODE"),
        );
        None
    };
    let Some(s) = n.as_str() else {
        return bad(errs);
    };
    let Some((node, port)) = s.rsplit_once('.') else {
        return bad(errs);
    };
    let (node, gather) = match node.strip_suffix("[*]") {
        Some(base) => (base, true),
        None => (node, false),
    };
    if !valid_id(node) || port.is_empty() {
        return bad(errs);
    }
    Some(PortRef { node: node.to_string(), port: port.to_string(), gather, pos: n.pos })
}

/// Replaces `${var}` in strings: a string that is exactly `${var}` takes the variable's value
/// (with its type); otherwise the variable's text is spliced in.
fn substitute(n: &Node, vars: &BTreeMap<String, Node>, errs: &mut Vec<Diagnostic>) -> Node {
    match &n.kind {
        Kind::Str(s) if s.contains("${") => {
            if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')).filter(|v| !v.contains("${")) {
                return match vars.get(name) {
                    Some(v) => Node { pos: n.pos, kind: v.kind.clone() },
                    None => {
                        unknown_var(n.pos, name, vars, errs);
                        n.clone()
                    }
                };
            }
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let Some(end) = rest[start..].find('}') else {
                    errs.push(Diagnostic::new(n.pos, format!("unclosed `${{` in `{s}`")).hint("write ${name}"));
                    return n.clone();
                };
                let name = &rest[start + 2..start + end];
                match vars.get(name) {
                    Some(v) => out.push_str(&v.scalar_text()),
                    None => unknown_var(n.pos, name, vars, errs),
                }
                rest = &rest[start + end + 1..];
            }
            out.push_str(rest);
            Node { pos: n.pos, kind: Kind::Str(out) }
        }
        Kind::Seq(items) => Node { pos: n.pos, kind: Kind::Seq(items.iter().map(|i| substitute(i, vars, errs)).collect()) },
        Kind::Map(entries) => Node { pos: n.pos, kind: Kind::Map(entries.iter().map(|(k, v)| (k.clone(), substitute(v, vars, errs))).collect()) },
        _ => n.clone(),
    }
}

/// A scalar's text with `${var}` spliced in (never typed: `"${backend}"` gives the variable's
/// text). `Err` when a variable is unknown or a `${` unclosed; the error is already in `errs`.
fn substitute_text(n: &Node, vars: &BTreeMap<String, Node>, errs: &mut Vec<Diagnostic>) -> Result<String, ()> {
    let before = errs.len();
    let out = substitute(n, vars, errs);
    if errs.len() > before {
        return Err(());
    }
    Ok(out.scalar_text())
}

fn unknown_var(pos: Pos, name: &str, vars: &BTreeMap<String, Node>, errs: &mut Vec<Diagnostic>) {
    let names: Vec<&str> = vars.keys().map(String::as_str).collect();
    let d = Diagnostic::new(pos, format!("unknown variable `${{{name}}}`"));
    errs.push(match did_you_mean(name, names.iter().copied()) {
        Some(m) => d.hint(m),
        None => d.hint(format!("declare it under `vars:` (declared: {})", if names.is_empty() { "none".into() } else { names.join(", ") })),
    });
}

/// Sets `a.b.c` inside a mapping node, creating intermediate mappings.
pub fn set_path(root: &mut Node, path: &str, value: Node) {
    let mut node = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !matches!(node.kind, Kind::Map(_)) {
            node.kind = Kind::Map(Vec::new());
        }
        let Kind::Map(entries) = &mut node.kind else { unreachable!() };
        let idx = match entries.iter().position(|(k, _)| k.scalar_text() == *part) {
            Some(i) => i,
            None => {
                let key = Node { pos: value.pos, kind: Kind::Str(part.to_string()) };
                entries.push((key, Node { pos: value.pos, kind: Kind::Null }));
                entries.len() - 1
            }
        };
        if i + 1 == parts.len() {
            entries[idx].1 = Node { pos: if value.pos == Pos::default() { entries[idx].1.pos } else { value.pos }, kind: value.kind.clone() };
            return;
        }
        node = &mut entries[idx].1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str, o: &[Override]) -> Result<PipelineSpec, Diagnostics> {
        parse(Path::new("p.yaml"), s.to_string(), o)
    }

    #[test]
    fn variables_and_overrides() {
        let src = "vars: {h: 64, name: x}\nnodes:\n  - id: a\n    uses: m/k\n    with: {hidden: \"${h}\", tag: \"run-${name}\"}\n";
        let p = parse_str(src, &["h=128".parse().unwrap(), "a.extra.deep=true".parse().unwrap()]).unwrap();
        let with = p.nodes[0].with.to_json();
        assert_eq!(with, serde_json::json!({"hidden": 128, "tag": "run-x", "extra": {"deep": true}}));
    }

    #[test]
    fn errors_carry_positions_and_hints() {
        let src = "nodes:\n  - id: a\n    uses: m/k\n    wiht: {}\n  - id: a\n    uses: m/k\n    with: {x: \"${nope}\"}\n";
        let e = parse_str(src, &[]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("p.yaml:4:5: error: unknown node key `wiht`"), "{text}");
        assert!(text.contains("did you mean `with`?"), "{text}");
        assert!(text.contains("p.yaml:5:7: error: duplicate node id `a`"), "{text}");
        assert!(text.contains("p.yaml:7:15: error: unknown variable `${nope}`"), "{text}");
    }

    #[test]
    fn variables_in_uses_swap_the_plugin() {
        let src = "vars: {backend: cpu, kind: sft}\nnodes:\n  - id: t\n    uses: \"${backend}/${kind}\"\n  - id: u\n    uses: \"${backend}/x\"\n";
        let p = parse_str(src, &[]).unwrap();
        assert_eq!((p.nodes[0].uses.as_str(), p.nodes[1].uses.as_str()), ("cpu/sft", "cpu/x"));
        assert_eq!(p.nodes[0].uses_pos, Pos { line: 4, col: 11 });
        let p = parse_str(src, &["backend=wgpu".parse().unwrap()]).unwrap();
        assert_eq!((p.nodes[0].uses.as_str(), p.nodes[1].uses.as_str()), ("wgpu/sft", "wgpu/x"));
        // A variable may hold the whole PLUGIN/KIND; whatever it holds, the result is checked.
        let p = parse_str("vars: {k: debug/constant, n: 7}\nnodes:\n  - id: a\n    uses: \"${k}\"\n", &[]).unwrap();
        assert_eq!(p.nodes[0].uses, "debug/constant");
        let e = parse_str("vars: {n: 7}\nnodes:\n  - id: a\n    uses: \"${n}\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("p.yaml:4:11: error: `uses: 7` (from `${n}`) is not of the form PLUGIN/KIND"), "{e}");
        let e = parse_str("nodes:\n  - id: a\n    uses: {a: b/c}\n", &[]).unwrap_err().to_string();
        assert!(e.contains("p.yaml:3:11: error: `uses: {\"a\":\"b/c\"}` is not of the form PLUGIN/KIND"), "{e}");
    }

    #[test]
    fn unknown_variable_in_uses_is_located_at_uses() {
        let src = "vars: {backend: cpu}\nnodes:\n  - id: t\n    uses: \"${backnd}/sft\"\n    with: {x: \"${nope}\"}\n";
        let e = parse_str(src, &[]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("p.yaml:4:11: error: unknown variable `${backnd}`"), "{text}");
        assert!(text.contains("did you mean `backend`?"), "{text}");
        // Reported once, not also as a malformed `uses:`; the node's other errors still show.
        assert!(!text.contains("PLUGIN/KIND"), "{text}");
        assert!(text.contains("p.yaml:5:15: error: unknown variable `${nope}`"), "{text}");
        assert_eq!(e.items.len(), 2, "{text}");
        // An undeclared --set is still refused, even when `uses:` mentions the name.
        let e = parse_str("nodes:\n  - id: t\n    uses: \"${backend}/sft\"\n", &["backend=cpu".parse().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("--set backend: no variable `backend`"), "{e}");
    }

    #[test]
    fn refs_and_sweeps() {
        let src = "nodes:\n  - id: s\n    uses: m/k\n    inputs: {models: [a.model, \"t[*].model\"], one: b.x}\n    sweep: {lr: [1, 2]}\n";
        let p = parse_str(src, &[]).unwrap();
        let n = &p.nodes[0];
        assert!(n.inputs[0].is_list && n.inputs[0].refs[1].gather);
        assert!(!n.inputs[1].is_list);
        assert_eq!(n.sweep[0].values.len(), 2);
        let e = parse_str("nodes:\n  - id: s\n    uses: m/k\n    inputs: {x: nodot}\n", &[]).unwrap_err();
        assert!(e.to_string().contains("p.yaml:4:17"), "{e}");
    }
}
