//! Pipeline files: YAML → [`PipelineSpec`], with patch files, `--set` overrides and presets
//! applied, variables substituted, and every node remembering where (which file, line and
//! column) it was written.
//!
//! ```yaml
//! name: quickstart
//! seed: 7                       # the run's seed (default 0)
//! vars: { hidden: 64, scale: default }  # referenced as ${hidden}; overridable with --set hidden=128
//!                               # (in `with:`, `inputs:`, `sweep:` and `uses:`)
//! presets:                      # a variable's value → the variables it sets
//!   scale: { smoke: { hidden: 8 }, default: {} }
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
//!
//! Variables take, from weakest to strongest: the pipeline's `vars:`, the preset their
//! selecting variable names, a patch's `vars:` (patches in order), `--set`. A patch file
//! (`--patch`) has `vars:`, `nodes:` (each replaces the node with its id, or is added) and
//! `remove:` (node ids), applied in order after the pipeline's nodes are read.

use std::{
    collections::{BTreeMap, BTreeSet},
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
    /// The patch files applied, in order, as (path, text): positions with `file: n ≥ 1` point
    /// into `patches[n - 1]`.
    pub patches: Vec<(PathBuf, String)>,
    pub name: String,
    pub seed: u64,
    pub store: Option<PathBuf>,
    pub plugin_path: Vec<PathBuf>,
    pub jobs: Option<usize>,
    /// The `executor:` section (which executor, and its cluster settings).
    pub executor: crate::executor::Settings,
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
    /// The node's `resources:` block, overriding what its kind declares.
    pub resources: crate::resources::Override,
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

const TOP_KEYS: &[&str] = &["name", "description", "seed", "vars", "presets", "plugin_path", "store", "jobs", "executor", "nodes"];
const PATCH_KEYS: &[&str] = &["name", "extends", "description", "vars", "nodes", "remove"];
const NODE_KEYS: &[&str] = &["id", "uses", "with", "inputs", "sweep", "resources", "description"];

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

/// Reads and parses a pipeline file with its patch files (applied in order). Errors are
/// [`Diagnostics`] (or an I/O error).
///
/// A pipeline file with `extends: OTHER.yaml` (relative to it) is a patch over that pipeline:
/// OTHER is parsed with this file applied as its first patch, and this file's `name:` names the
/// run. One level only: the extended pipeline may not extend another.
pub fn load(file: &Path, patches: &[PathBuf], overrides: &[Override]) -> anyhow::Result<PipelineSpec> {
    let source = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read pipeline {}: {e}", file.display()))?;
    let mut texts = Vec::new();
    for p in patches {
        let text = std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("cannot read patch {}: {e}", p.display()))?;
        if extended(&text).is_some() {
            anyhow::bail!("patch {}: `extends:` belongs in a pipeline file given to `run`, not in a --patch file; remove it", p.display());
        }
        texts.push((p.clone(), text));
    }
    let Some(base) = extended(&source) else {
        return parse(file, source, texts, overrides).map_err(anyhow::Error::new);
    };
    let base = file.parent().unwrap_or(Path::new(".")).join(base);
    let base_source = std::fs::read_to_string(&base).map_err(|e| anyhow::anyhow!("{}: `extends:` cannot read {}: {e}", file.display(), base.display()))?;
    if extended(&base_source).is_some() {
        anyhow::bail!("{}: extends {}, which extends another pipeline; only one level of `extends:` is supported", file.display(), base.display());
    }
    texts.insert(0, (file.to_path_buf(), source));
    parse(&base, base_source, texts, overrides).map_err(anyhow::Error::new)
}

/// The file named by a top-level `extends:` key, if the text is YAML that has one.
fn extended(source: &str) -> Option<String> {
    yaml::parse(source).ok()?.get("extends").map(|n| n.scalar_text())
}

/// Parses a pipeline's text with its patch files' (path, text), applied in order.
pub fn parse(file: &Path, source: String, patches: Vec<(PathBuf, String)>, overrides: &[Override]) -> Result<PipelineSpec, Diagnostics> {
    let mut errs = Vec::new();
    let spec = parse_inner(file, &source, &patches, overrides, &mut errs);
    match spec {
        Some(s) if errs.is_empty() => Ok(s),
        _ => Err(Diagnostics { file: file.to_path_buf(), source, others: patches, items: errs }),
    }
}

fn parse_inner(file: &Path, source: &str, patches: &[(PathBuf, String)], overrides: &[Override], errs: &mut Vec<Diagnostic>) -> Option<PipelineSpec> {
    let doc = match yaml::parse(source) {
        Ok(d) => d,
        Err(e) => {
            errs.push(Diagnostic::new(e.pos, format!("YAML syntax error: {}", e.message)).hint("check indentation and brackets around this point"));
            return None;
        }
    };
    if !matches!(doc.kind, Kind::Map(_)) {
        errs.push(Diagnostic::new(doc.pos, "a pipeline must be a mapping with a `nodes:` list").hint("see pipelines/paper.yaml for the shape"));
        return None;
    }
    check_keys(&doc, TOP_KEYS, "top-level key", errs);
    let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut patch_docs = Vec::new();
    for (i, (_, text)) in patches.iter().enumerate() {
        match yaml::parse_in(text, i as u32 + 1) {
            Ok(d) if matches!(d.kind, Kind::Map(_)) => {
                check_keys(&d, PATCH_KEYS, "patch key", errs);
                patch_docs.push(d);
            }
            Ok(d) => errs.push(
                Diagnostic::new(d.pos, format!("a patch must be a mapping, found {}", d.type_name()))
                    .hint("give it `vars:`, `nodes:` and/or `remove:`; see README.md, Pipeline YAML"),
            ),
            Err(e) => errs.push(Diagnostic::new(e.pos, format!("YAML syntax error: {}", e.message)).hint("check indentation and brackets around this point")),
        }
    }
    if patch_docs.len() < patches.len() {
        return None;
    }

    // Variables: declared in the pipeline, then each patch's `vars:`, then --set; presets fill
    // in the variables neither a patch nor --set gave (`fixed`).
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
    let mut fixed = BTreeSet::new();
    for p in &patch_docs {
        match p.get("vars").map(|v| &v.kind) {
            None | Some(Kind::Null) => {}
            Some(Kind::Map(entries)) => {
                for (k, val) in entries {
                    let name = k.scalar_text();
                    if vars.contains_key(&name) {
                        vars.insert(name.clone(), val.clone());
                        fixed.insert(name);
                    } else {
                        errs.push(undeclared(
                            k.pos,
                            format!("a patch sets `{name}`, which this pipeline does not declare"),
                            &name,
                            &vars,
                            "a patch may set only the pipeline's `vars:`",
                        ));
                    }
                }
            }
            Some(_) => {
                let v = p.get("vars").expect("present");
                errs.push(Diagnostic::new(v.pos, format!("`vars` must be a mapping, found {}", v.type_name())).hint("e.g. `vars: {n: 100}`"));
            }
        }
    }
    let mut node_overrides = Vec::new();
    for o in overrides {
        if vars.contains_key(&o.key) {
            vars.insert(o.key.clone(), yaml::parse_scalar(&o.value));
            fixed.insert(o.key.clone());
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
    let notes = match doc.get("presets") {
        Some(p) => apply_presets(p, &mut vars, &fixed, errs),
        None => Vec::new(),
    };

    let name = patch_docs
        .iter()
        .rev()
        .find_map(|d| d.get("name"))
        .or(doc.get("name"))
        .map(|n| n.scalar_text())
        .unwrap_or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
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
    let executor = doc.get("executor").map(|n| crate::executor::Settings::parse(&substitute(n, &vars, errs), errs)).unwrap_or_default();
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

    let warnings = apply_patches(&mut nodes, &patch_docs, patches, &vars, errs);

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

    if errs.is_empty() {
        notes.iter().for_each(|n| tracing::info!("{n}"));
        warnings.iter().for_each(|w| tracing::warn!("{w}"));
    }
    Some(PipelineSpec {
        file: file.to_path_buf(),
        source: source.to_string(),
        patches: patches.to_vec(),
        name,
        seed,
        store,
        plugin_path,
        jobs,
        executor,
        nodes,
    })
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

/// An error for a variable name that `vars:` does not declare: the near miss if there is
/// one, and the declared names.
fn undeclared(pos: Pos, message: String, name: &str, vars: &BTreeMap<String, Node>, rule: &str) -> Diagnostic {
    let names: Vec<&str> = vars.keys().map(String::as_str).collect();
    let declared = if names.is_empty() { "none".to_string() } else { names.join(", ") };
    Diagnostic::new(pos, message).hint(match did_you_mean(name, names.iter().copied()) {
        Some(m) => format!("{m} (declared: {declared})"),
        None => format!("{rule} (declared: {declared})"),
    })
}

/// Where a `${...}` first appears inside `n`, if anywhere.
fn find_ref(n: &Node) -> Option<Pos> {
    match &n.kind {
        Kind::Str(s) if s.contains("${") => Some(n.pos),
        Kind::Seq(items) => items.iter().find_map(find_ref),
        Kind::Map(entries) => entries.iter().find_map(|(_, v)| find_ref(v)),
        _ => None,
    }
}

/// `presets:` maps a variable to its presets: value → the variables that value sets. For each
/// variable, in the order written, the preset its current value names sets its variables
/// (so one preset may select another's value), except those in `fixed` (given by a patch or
/// `--set`). Every preset is checked, chosen or not, so `check` finds a typo in `smoke` while
/// the pipeline runs `default`. Returns a line per preset applied, for the log.
fn apply_presets(presets: &Node, vars: &mut BTreeMap<String, Node>, fixed: &BTreeSet<String>, errs: &mut Vec<Diagnostic>) -> Vec<String> {
    let mut notes = Vec::new();
    let entries = match &presets.kind {
        Kind::Map(e) => e,
        Kind::Null => return notes,
        _ => {
            errs.push(
                Diagnostic::new(presets.pos, format!("`presets` must be a mapping, found {}", presets.type_name()))
                    .hint("e.g. `presets: {scale: {smoke: {n: 20}, default: {}}}`"),
            );
            return notes;
        }
    };
    for (key, table) in entries {
        let var = key.scalar_text();
        if !vars.contains_key(&var) {
            let msg = format!("presets for `{var}`, which this pipeline does not declare");
            errs.push(undeclared(key.pos, msg, &var, vars, "presets are keyed by a variable declared under `vars:`"));
            continue;
        }
        let Kind::Map(choices) = &table.kind else {
            errs.push(
                Diagnostic::new(table.pos, format!("the presets of `{var}` must map its values to the variables each sets, found {}", table.type_name()))
                    .hint(format!("e.g. `{var}: {{smoke: {{n: 20}}, default: {{}}}}`")),
            );
            continue;
        };
        for (choice, sets) in choices {
            let which = format!("{var}: {}", choice.scalar_text());
            match &sets.kind {
                Kind::Null => {}
                Kind::Map(m) => {
                    for (k, v) in m {
                        let name = k.scalar_text();
                        if name == var {
                            errs.push(
                                Diagnostic::new(k.pos, format!("preset `{which}` sets `{var}`, the variable that selects it"))
                                    .hint("a preset sets other variables; remove this entry"),
                            );
                        } else if !vars.contains_key(&name) {
                            let msg = format!("preset `{which}` sets `{name}`, which this pipeline does not declare");
                            errs.push(undeclared(k.pos, msg, &name, vars, "a preset may set only variables declared under `vars:`"));
                        } else if let Some(pos) = find_ref(v) {
                            errs.push(
                                Diagnostic::new(pos, format!("preset `{which}` sets `{name}` to a `${{...}}` reference; presets hold plain values"))
                                    .hint("write the value itself; variables are substituted in `with:`, `inputs:`, `sweep:` and `uses:`"),
                            );
                        }
                    }
                }
                _ => errs.push(
                    Diagnostic::new(sets.pos, format!("preset `{which}` must map variables to values, found {}", sets.type_name()))
                        .hint("e.g. `smoke: {n: 20, steps: 5}`; `{}` sets nothing"),
                ),
            }
        }
        let value = &vars[&var];
        if matches!(value.kind, Kind::Seq(_) | Kind::Map(_)) {
            errs.push(
                Diagnostic::new(key.pos, format!("`{var}` selects a preset, so its value must be a scalar, found {}", value.type_name()))
                    .hint(format!("give `{var}` the name of one of its presets")),
            );
            continue;
        }
        let text = value.scalar_text();
        let names: Vec<String> = choices.iter().map(|(c, _)| c.scalar_text()).collect();
        let Some((_, sets)) = choices.iter().find(|(c, _)| c.scalar_text() == text) else {
            let listed = if names.is_empty() { "none".to_string() } else { names.join(", ") };
            let hint = match (did_you_mean(&text, names.iter().map(String::as_str)), names.first()) {
                (Some(m), _) => m,
                (None, Some(first)) => format!("set `{var}` to one of them (e.g. --set {var}={first}), or add `{text}: {{...}}` under `presets: {var}:`"),
                (None, None) => format!("add `{text}: {{...}}` under `presets: {var}:`"),
            };
            errs.push(Diagnostic::new(key.pos, format!("{var}={text} has no preset; presets: {listed}")).hint(hint));
            continue;
        };
        let (mut set, mut kept) = (Vec::new(), Vec::new());
        for (k, v) in sets.entries() {
            let name = k.scalar_text();
            if name == var || !vars.contains_key(&name) || find_ref(v).is_some() {
                continue; // reported above
            }
            if fixed.contains(&name) {
                kept.push(name);
            } else {
                set.push(format!("{name}={}", v.scalar_text()));
                vars.insert(name, v.clone());
            }
        }
        if !set.is_empty() || !kept.is_empty() {
            let kept = if kept.is_empty() { String::new() } else { format!(" (kept as given: {})", kept.join(", ")) };
            notes.push(format!("preset {var}={text}: {}{kept}", set.join(", ")));
        }
    }
    notes
}

/// Applies the patch files' `remove:` and `nodes:` in order. In each patch, the `remove:` ids
/// are deleted first; then each patch node replaces the node with its id, in place, or is
/// appended. A removed node that some node still consumes (after every patch) is an error at
/// its `remove:` entry. Returns warnings for nodes that a replacement left feeding nothing
/// (they still run).
fn apply_patches(
    nodes: &mut Vec<NodeSpec>,
    docs: &[Node],
    patches: &[(PathBuf, String)],
    vars: &BTreeMap<String, Node>,
    errs: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let mut removed: Vec<(String, Pos)> = Vec::new();
    let mut replaced: Vec<(NodeSpec, usize)> = Vec::new(); // the former node, the patch's index
    for (pi, doc) in docs.iter().enumerate() {
        let mut mine: Vec<NodeSpec> = Vec::new();
        if let Some(n) = doc.get("nodes") {
            match &n.kind {
                Kind::Seq(items) => mine.extend(items.iter().filter_map(|item| parse_node(item, vars, errs))),
                Kind::Null => {}
                _ => errs.push(
                    Diagnostic::new(n.pos, format!("`nodes` must be a list, found {}", n.type_name()))
                        .hint("each entry is a whole node (`id`, `uses`, ...): it replaces the node with its id, or is added"),
                ),
            }
        }
        for (i, n) in mine.iter().enumerate() {
            if let Some(first) = mine[..i].iter().find(|m| m.id == n.id) {
                errs.push(
                    Diagnostic::new(n.pos, format!("duplicate node id `{}` in this patch", n.id))
                        .hint(format!("first defined at line {}; a patch defines each node once", first.pos.line)),
                );
            }
        }
        let mut ids: Vec<(String, Pos)> = Vec::new();
        if let Some(r) = doc.get("remove") {
            let items = match &r.kind {
                Kind::Seq(items) => items.as_slice(),
                Kind::Null => &[],
                _ => std::slice::from_ref(r),
            };
            for it in items {
                match it.as_str() {
                    Some(id) => ids.push((id.to_string(), it.pos)),
                    None => errs
                        .push(Diagnostic::new(it.pos, format!("`remove` takes node ids, found {}", it.type_name())).hint("e.g. `remove: [corpus, tokenizer]`")),
                }
            }
        }
        for (id, pos) in ids {
            if mine.iter().any(|n| n.id == id) {
                errs.push(
                    Diagnostic::new(pos, format!("`{id}` is both removed and defined by this patch"))
                        .hint("drop it from `remove:`: a patch node replaces the node with its id"),
                );
                continue;
            }
            match nodes.iter().position(|n| n.id == id) {
                Some(i) => {
                    nodes.remove(i);
                    removed.push((id, pos));
                }
                None => {
                    let d = Diagnostic::new(pos, format!("cannot remove `{id}`: no node `{id}` in this pipeline"));
                    errs.push(match did_you_mean(&id, nodes.iter().map(|n| n.id.as_str())) {
                        Some(m) => d.hint(m),
                        None => d.hint(format!("node ids: {}", nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>().join(", "))),
                    });
                }
            }
        }
        for n in mine {
            match nodes.iter().position(|m| m.id == n.id) {
                Some(i) => replaced.push((std::mem::replace(&mut nodes[i], n), pi)),
                None => nodes.push(n),
            }
        }
    }
    let consumes = |n: &NodeSpec, id: &str| n.inputs.iter().find(|i| i.refs.iter().any(|r| r.node == id)).map(|i| i.port.clone());
    for (id, pos) in &removed {
        if nodes.iter().any(|n| &n.id == id) {
            continue; // a later patch defined it again
        }
        let users: Vec<(String, String)> = nodes.iter().filter_map(|n| consumes(n, id).map(|port| (n.id.clone(), port))).collect();
        if users.is_empty() {
            continue;
        }
        let named: Vec<String> = users.iter().map(|(n, port)| format!("`{n}` (input `{port}`)")).collect();
        let ids: Vec<String> = users.iter().map(|(n, _)| format!("`{n}`")).collect();
        let (verb, them) = if users.len() == 1 { ("consumes", "it") } else { ("consume", "them") };
        errs.push(
            Diagnostic::new(*pos, format!("cannot remove `{id}`: {} still {verb} it", named.join(", ")))
                .hint(format!("remove {} too, or replace {them} in the patch's `nodes:` with inputs that do not name `{id}`", ids.join(", "))),
        );
    }
    let mut warnings = Vec::new();
    let mut seen = BTreeSet::new();
    for (former, pi) in &replaced {
        for r in former.inputs.iter().flat_map(|i| &i.refs) {
            if seen.insert(r.node.clone()) && nodes.iter().any(|n| n.id == r.node) && !nodes.iter().any(|n| consumes(n, &r.node).is_some()) {
                warnings.push(format!(
                    "{}: with `{}` replaced, node `{}` feeds no node; it still runs (add it to the patch's `remove:` to skip it)",
                    patches[*pi].0.display(),
                    former.id,
                    r.node
                ));
            }
        }
    }
    warnings
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
    let resources = item.get("resources").map(|r| crate::resources::Override::parse(&substitute(r, vars, errs), errs)).unwrap_or_default();
    Some(NodeSpec { id, pos: item.pos, uses, uses_pos, with, inputs, sweep, resources })
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
        parse(Path::new("p.yaml"), s.to_string(), Vec::new(), o)
    }

    /// Parses `s` as p.yaml with `patches` as patch1.yaml, patch2.yaml, ...
    fn parse_patched(s: &str, patches: &[&str], o: &[Override]) -> Result<PipelineSpec, Diagnostics> {
        let patches = patches.iter().enumerate().map(|(i, t)| (PathBuf::from(format!("patch{}.yaml", i + 1)), t.to_string())).collect();
        parse(Path::new("p.yaml"), s.to_string(), patches, o)
    }

    fn sets(o: &[&str]) -> Vec<Override> {
        o.iter().map(|s| s.parse().unwrap()).collect()
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
        assert_eq!(p.nodes[0].uses_pos, Pos { line: 4, col: 11, file: 0 });
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

    const SCALED: &str = "vars:\n  scale: default\n  n: 2000\n  steps: 400\n  lrs: [1e-3, 3e-4]\npresets:\n  scale:\n    smoke: {n: 20, steps: 5, lrs: [1e-3]}\n    default: {}\nnodes:\n  - id: a\n    uses: m/k\n    with: {n: \"${n}\", steps: \"${steps}\", tag: \"s${steps}\"}\n    sweep: {lr: \"${lrs}\"}\n";

    #[test]
    fn presets_set_variables_and_the_command_line_wins() {
        let p = parse_str(SCALED, &[]).unwrap();
        assert_eq!(p.nodes[0].with.to_json(), serde_json::json!({"n": 2000, "steps": 400, "tag": "s400"}));
        assert_eq!(p.nodes[0].sweep[0].values.len(), 2);
        let p = parse_str(SCALED, &sets(&["scale=smoke"])).unwrap();
        assert_eq!(p.nodes[0].with.to_json(), serde_json::json!({"n": 20, "steps": 5, "tag": "s5"}));
        assert_eq!(p.nodes[0].sweep[0].values.iter().map(Node::to_json).collect::<Vec<_>>(), vec![serde_json::json!(1e-3)]);
        // --set beats the preset whatever the order on the command line.
        for o in [["scale=smoke", "steps=50"], ["steps=50", "scale=smoke"]] {
            let p = parse_str(SCALED, &sets(&o)).unwrap();
            assert_eq!(p.nodes[0].with.to_json(), serde_json::json!({"n": 20, "steps": 50, "tag": "s50"}));
        }
        // A preset may select another preset's value: they apply in the order written.
        let src = "vars: {scale: a, size: big, n: 0}\npresets:\n  scale: {a: {size: small}}\n  size: {small: {n: 1}, big: {n: 9}}\nnodes:\n  - id: x\n    uses: m/k\n    with: {n: \"${n}\"}\n";
        assert_eq!(parse_str(src, &[]).unwrap().nodes[0].with.to_json(), serde_json::json!({"n": 1}));
        // Numbers select by their text.
        let src = "vars: {v: 2, n: 0}\npresets:\n  v: {1: {n: 10}, 2: {n: 20}}\nnodes:\n  - id: x\n    uses: m/k\n    with: {n: \"${n}\"}\n";
        assert_eq!(parse_str(src, &[]).unwrap().nodes[0].with.to_json(), serde_json::json!({"n": 20}));
    }

    #[test]
    fn preset_errors_are_located_with_hints() {
        let e = parse_str(SCALED, &sets(&["scale=huge"])).unwrap_err().to_string();
        assert!(e.contains("p.yaml:7:3: error: scale=huge has no preset; presets: smoke, default"), "{e}");
        assert!(e.contains("hint: set `scale` to one of them (e.g. --set scale=smoke), or add `huge: {...}` under `presets: scale:`"), "{e}");
        let e = parse_str(SCALED, &sets(&["scale=smok"])).unwrap_err().to_string();
        assert!(e.contains("hint: did you mean `smoke`?"), "{e}");
        let src = "vars: {scale: a, steps: 1}\npresets:\n  scael: {a: {}}\n  scale:\n    a: {stesp: 2, scale: b, steps: \"${steps}\"}\n    b: [1]\nnodes:\n  - id: x\n    uses: m/k\n";
        let e = parse_str(src, &[]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("p.yaml:3:3: error: presets for `scael`, which this pipeline does not declare"), "{text}");
        assert!(text.contains("hint: did you mean `scale`? (declared: scale, steps)"), "{text}");
        assert!(text.contains("p.yaml:5:9: error: preset `scale: a` sets `stesp`, which this pipeline does not declare"), "{text}");
        assert!(text.contains("hint: did you mean `steps`? (declared: scale, steps)"), "{text}");
        assert!(text.contains("p.yaml:5:19: error: preset `scale: a` sets `scale`, the variable that selects it"), "{text}");
        assert!(text.contains("p.yaml:5:36: error: preset `scale: a` sets `steps` to a `${...}` reference"), "{text}");
        assert!(text.contains("p.yaml:6:8: error: preset `scale: b` must map variables to values, found a list"), "{text}");
        assert_eq!(e.items.len(), 5, "{text}");
        let e = parse_str("vars: {n: 1}\npresets:\n  zzz: {}\nnodes: []\n", &[]).unwrap_err().to_string();
        assert!(e.contains("hint: presets are keyed by a variable declared under `vars:` (declared: n)"), "{e}");
        let e = parse_str("vars: {s: [1]}\npresets:\n  s: {a: {}}\nnodes: []\n", &[]).unwrap_err().to_string();
        assert!(e.contains("p.yaml:3:3: error: `s` selects a preset, so its value must be a scalar, found a list"), "{e}");
    }

    const BASE: &str = "vars: {v: 1, scale: default}\npresets:\n  scale: {smoke: {v: 2}, default: {}}\nnodes:\n  - id: a\n    uses: debug/constant\n    with: {value: \"${v}\"}\n  - id: b\n    uses: debug/constant\n  - id: s\n    uses: debug/sum\n    inputs: {values: [a.value, b.value]}\n";

    #[test]
    fn patches_replace_add_and_remove_nodes() {
        let patch = "vars: {v: 5}\nnodes:\n  - id: a\n    uses: other/kind\n    with: {x: \"${v}\"}\n  - id: c\n    uses: debug/constant\n  - id: t\n    uses: debug/sum\n    inputs: {values: [s.sum, c.value]}\n";
        let p = parse_patched(BASE, &[patch], &[]).unwrap();
        let ids: Vec<&str> = p.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "s", "c", "t"]); // replaced in place, added at the end
        assert_eq!(p.nodes[0].uses, "other/kind");
        assert_eq!(p.nodes[0].with.to_json(), serde_json::json!({"x": 5}));
        assert_eq!(p.nodes[0].pos, Pos { line: 3, col: 7, file: 1 });
        assert_eq!(p.nodes[2].pos.file, 0);
        // --set wins over a patch's vars; a patch's vars win over presets.
        let p = parse_patched(BASE, &[patch], &sets(&["v=7"])).unwrap();
        assert_eq!(p.nodes[0].with.to_json(), serde_json::json!({"x": 7}));
        let p = parse_patched(BASE, &[patch], &sets(&["scale=smoke"])).unwrap();
        assert_eq!(p.nodes[0].with.to_json(), serde_json::json!({"x": 5}));
        // A patch may select a preset.
        let p = parse_patched(BASE, &["vars: {scale: smoke}\n"], &[]).unwrap();
        assert_eq!(p.nodes[0].with.to_json(), serde_json::json!({"value": 2}));
        // Removal, then later patches in order; --set NODE.FIELD reaches patch nodes.
        let remove = "remove: [b]\nnodes:\n  - id: s\n    uses: debug/sum\n    inputs: {values: [a.value]}\n";
        let again = "nodes:\n  - id: s\n    uses: debug/sum\n    with: {scale: 2}\n    inputs: {values: [a.value]}\n";
        let p = parse_patched(BASE, &[remove, again], &sets(&["s.scale=3"])).unwrap();
        let ids: Vec<&str> = p.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["a", "s"]);
        assert_eq!(p.nodes[1].pos.file, 2);
        assert_eq!(p.nodes[1].with.to_json(), serde_json::json!({"scale": 3}));
    }

    #[test]
    fn patch_errors_name_the_patch_file() {
        let patch = "vars: {vv: 2}\nremove: [a, bb]\nnodes:\n  - id: c\n    uses: debug/constant\n    wiht: {}\n  - id: c\n    uses: debug/constant\n    with: {value: \"${nope}\"}\n";
        let e = parse_patched(BASE, &[patch], &[]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("patch1.yaml:1:8: error: a patch sets `vv`, which this pipeline does not declare"), "{text}");
        assert!(text.contains("hint: did you mean `v`? (declared: scale, v)"), "{text}");
        assert!(text.contains("patch1.yaml:6:5: error: unknown node key `wiht`"), "{text}");
        assert!(text.contains("patch1.yaml:9:19: error: unknown variable `${nope}`"), "{text}");
        assert!(text.contains("patch1.yaml:7:7: error: duplicate node id `c` in this patch"), "{text}");
        assert!(text.contains("patch1.yaml:2:13: error: cannot remove `bb`: no node `bb` in this pipeline"), "{text}");
        assert!(text.contains("patch1.yaml:2:10: error: cannot remove `a`: `s` (input `values`) still consumes it"), "{text}");
        assert!(text.contains("hint: remove `s` too, or replace it in the patch's `nodes:`"), "{text}");
        assert!(text.contains("2 | remove: [a, bb]"), "{text}");
        assert!(text.ends_with("6 errors in patch1.yaml"), "{text}");
        // Errors in both files are counted against both; a patch's syntax error is located.
        let e =
            parse_patched(BASE, &["nodes: {}\nremove: [s]\n", "nodes:\n  - id: s\n    uses: debug/sum\n    inputs: {values: [zz.value]}\n"], &sets(&["w=1"]))
                .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("p.yaml:1:5: error: --set w: no variable `w`"), "{text}");
        assert!(text.contains("patch1.yaml:1:8: error: `nodes` must be a list, found a mapping"), "{text}");
        assert!(text.ends_with("2 errors in p.yaml, patch1.yaml"), "{text}");
        let e = parse_patched(BASE, &["nodes: [\n"], &[]).unwrap_err().to_string();
        assert!(e.starts_with("patch1.yaml:2:1: error: YAML syntax error"), "{e}");
        let e = parse_patched(BASE, &["remove: [s]\nnodes:\n  - id: s\n    uses: a/b\n"], &[]).unwrap_err().to_string();
        assert!(e.contains("patch1.yaml:1:10: error: `s` is both removed and defined by this patch"), "{e}");
    }

    #[test]
    fn replacing_a_node_warns_about_inputs_left_feeding_nothing() {
        let mut nodes = parse_str(BASE, &[]).unwrap().nodes;
        let doc = yaml::parse_in("nodes:\n  - id: s\n    uses: debug/sum\n    inputs: {values: [a.value]}\n", 1).unwrap();
        let mut errs = Vec::new();
        let w = apply_patches(&mut nodes, &[doc], &[(PathBuf::from("patch1.yaml"), String::new())], &BTreeMap::new(), &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(w, ["patch1.yaml: with `s` replaced, node `b` feeds no node; it still runs (add it to the patch's `remove:` to skip it)"]);
    }
}
