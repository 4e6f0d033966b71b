//! From a parsed pipeline to an executable plan: kinds looked up, ports and types checked,
//! cycles found, sweeps expanded into one node instance per grid point, and every instance's
//! config validated by its plugin — all before anything runs.
//!
//! Sweeps: a node with `sweep:` becomes one instance per point of the grid of its axes. A node
//! downstream of a swept node is expanded too, one instance per upstream variant (variants
//! of different upstream nodes that share a sweep are matched by their labels, not crossed).
//! A reference `node[*].port` instead gathers every variant of `node` into a list port.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::{algo::tarjan_scc, graph::DiGraph};
use serde_json::Value as Json;

use crate::{
    diag::{did_you_mean, Diagnostic, Diagnostics},
    pipeline::{NodeSpec, PipelineSpec},
    plugins::Registry,
    yaml::{Node, Pos},
};
use agentmerge_sdk::KindManifest;

/// A sweep label: (origin node, field) → value text. Ordered, so labels print stably.
pub type Labels = BTreeMap<(String, String), String>;

/// One node instance to run.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `node` or `node[field=value,...]`.
    pub id: String,
    /// Index of the pipeline node this instance comes from.
    pub node: usize,
    pub labels: Labels,
    pub uses: String,
    /// The config after the plugin resolved it (defaults filled in).
    pub config: Json,
    /// Port → (instance index, output port), in order.
    pub inputs: BTreeMap<String, Vec<(usize, String)>>,
}

impl Instance {
    /// Instance indices this one depends on.
    pub fn deps(&self) -> BTreeSet<usize> {
        self.inputs.values().flatten().map(|(i, _)| *i).collect()
    }
}

/// An executable pipeline: instances in dependency order.
#[derive(Debug)]
pub struct Plan {
    pub spec: PipelineSpec,
    pub instances: Vec<Instance>,
}

/// Builds the plan, or every error found, located in the pipeline file.
pub fn build(spec: PipelineSpec, registry: &Registry) -> Result<Plan, Diagnostics> {
    let mut errs = Vec::new();
    let kinds = resolve_kinds(&spec, registry, &mut errs);
    check_ports(&spec, &kinds, &mut errs);
    let order = match topo_order(&spec, &mut errs) {
        Some(o) if errs.is_empty() => o,
        _ => return Err(diags(spec, errs)),
    };
    let instances = expand(&spec, &order, registry, &mut errs);
    if errs.is_empty() {
        Ok(Plan { spec, instances })
    } else {
        Err(diags(spec, errs))
    }
}

fn diags(spec: PipelineSpec, mut items: Vec<Diagnostic>) -> Diagnostics {
    let mut seen = BTreeSet::new();
    items.retain(|d| seen.insert((d.pos, d.message.clone())));
    Diagnostics { file: spec.file, source: spec.source, others: spec.patches, items }
}

fn resolve_kinds<'r>(spec: &PipelineSpec, reg: &'r Registry, errs: &mut Vec<Diagnostic>) -> Vec<Option<&'r KindManifest>> {
    let all = reg.kind_names();
    spec.nodes
        .iter()
        .map(|n| match reg.kind(&n.uses) {
            Some((_, k)) => Some(k),
            None => {
                let (plugin, kind) = n.uses.split_once('/').unwrap_or((&n.uses, ""));
                let msg = if reg.plugin(plugin).is_some() {
                    format!("plugin `{plugin}` has no node kind `{kind}`")
                } else {
                    format!("unknown plugin `{plugin}` (in `uses: {}`)", n.uses)
                };
                let mut hint = did_you_mean(&n.uses, all.iter().map(String::as_str)).unwrap_or_else(|| {
                    if all.is_empty() {
                        "no plugins were found; build them with `cargo build --workspace`".to_string()
                    } else {
                        format!("available kinds: {}", all.join(", "))
                    }
                });
                hint.push_str("; `agentmerge plugins` lists every kind");
                if !reg.refused.is_empty() {
                    let refused: Vec<String> = reg.refused.iter().map(|r| r.reason.clone()).collect();
                    hint.push_str(&format!("; some libraries were refused: {}", refused.join("; ")));
                }
                errs.push(Diagnostic::new(n.uses_pos, msg).hint(hint));
                None
            }
        })
        .collect()
}

fn check_ports(spec: &PipelineSpec, kinds: &[Option<&KindManifest>], errs: &mut Vec<Diagnostic>) {
    let ids: Vec<&str> = spec.nodes.iter().map(|n| n.id.as_str()).collect();
    for (n, kind) in spec.nodes.iter().zip(kinds) {
        let Some(kind) = kind else { continue };
        for input in &n.inputs {
            let Some(port) = kind.input(&input.port) else {
                let names: Vec<&str> = kind.inputs.iter().map(|p| p.name.as_str()).collect();
                let d = Diagnostic::new(input.pos, format!("`{}` has no input port `{}`", n.uses, input.port));
                errs.push(d.hint(match did_you_mean(&input.port, names.iter().copied()) {
                    Some(m) => m,
                    None if names.is_empty() => format!("`{}` takes no inputs", n.uses),
                    None => format!("its inputs are: {}", names.join(", ")),
                }));
                continue;
            };
            if !port.list && (input.is_list || input.refs.iter().any(|r| r.gather)) {
                errs.push(
                    Diagnostic::new(input.pos, format!("input `{}` of `{}` takes one {}, not a list", input.port, n.uses, port.ty))
                        .hint("connect a single `node.port`"),
                );
            }
            for r in &input.refs {
                let Some(src_idx) = spec.nodes.iter().position(|m| m.id == r.node) else {
                    let d = Diagnostic::new(r.pos, format!("no node `{}` in this pipeline", r.node));
                    errs.push(match did_you_mean(&r.node, ids.iter().copied()) {
                        Some(m) => d.hint(m),
                        None => d.hint(format!("node ids: {}", ids.join(", "))),
                    });
                    continue;
                };
                let src = &spec.nodes[src_idx];
                if r.gather && src.sweep.is_empty() && !swept_upstream(spec, src_idx) {
                    errs.push(
                        Diagnostic::new(r.pos, format!("`{}[*]` gathers sweep variants, but `{}` is not swept", r.node, r.node))
                            .hint(format!("write `{}.{}`", r.node, r.port)),
                    );
                }
                let Some(src_kind) = kinds[src_idx] else {
                    continue;
                };
                let Some(out) = src_kind.output(&r.port) else {
                    let names: Vec<&str> = src_kind.outputs.iter().map(|p| p.name.as_str()).collect();
                    let d = Diagnostic::new(r.pos, format!("`{}` ({}) has no output port `{}`", r.node, src.uses, r.port));
                    errs.push(d.hint(match did_you_mean(&r.port, names.iter().copied()) {
                        Some(m) => m,
                        None => format!("its outputs are: {}", names.join(", ")),
                    }));
                    continue;
                };
                if !out.ty.feeds(&port.ty) {
                    errs.push(
                        Diagnostic::new(
                            r.pos,
                            format!("type mismatch: `{}.{}` is {} but input `{}` of `{}` takes {}", r.node, r.port, out.ty, input.port, n.uses, port.ty),
                        )
                        .hint(format!("connect an output of type {}", port.ty)),
                    );
                }
                if out.list && !port.list {
                    errs.push(Diagnostic::new(r.pos, format!("`{}.{}` is a list but input `{}` takes a single {}", r.node, r.port, input.port, port.ty)));
                }
            }
        }
        for port in kind.inputs.iter().filter(|p| !p.optional) {
            if !n.inputs.iter().any(|i| i.port == port.name) {
                errs.push(
                    Diagnostic::new(
                        n.pos,
                        format!("node `{}` does not connect required input `{}` ({}{})", n.id, port.name, port.ty, if port.list { " list" } else { "" }),
                    )
                    .hint(format!(
                        "add `inputs: {{ {}: NODE.PORT }}`{}",
                        port.name,
                        if port.doc.is_empty() { String::new() } else { format!(" — {}", port.doc) }
                    )),
                );
            }
        }
    }
}

fn swept_upstream(spec: &PipelineSpec, idx: usize) -> bool {
    let mut stack = vec![idx];
    let mut seen = BTreeSet::new();
    while let Some(i) = stack.pop() {
        if !seen.insert(i) {
            continue;
        }
        let n = &spec.nodes[i];
        if !n.sweep.is_empty() {
            return true;
        }
        for r in n.inputs.iter().flat_map(|i| &i.refs).filter(|r| !r.gather) {
            if let Some(j) = spec.nodes.iter().position(|m| m.id == r.node) {
                stack.push(j);
            }
        }
    }
    false
}

/// Node indices in dependency order, or a cycle error naming the nodes on it.
fn topo_order(spec: &PipelineSpec, errs: &mut Vec<Diagnostic>) -> Option<Vec<usize>> {
    let mut g = DiGraph::<usize, Pos>::new();
    let idx: Vec<_> = (0..spec.nodes.len()).map(|i| g.add_node(i)).collect();
    for (i, n) in spec.nodes.iter().enumerate() {
        for r in n.inputs.iter().flat_map(|inp| &inp.refs) {
            if let Some(j) = spec.nodes.iter().position(|m| m.id == r.node) {
                g.add_edge(idx[j], idx[i], r.pos);
            }
        }
    }
    match petgraph::algo::toposort(&g, None) {
        // Stable order: among the nodes that are ready, the one written first runs first.
        Ok(_) => {
            let mut placed = vec![false; spec.nodes.len()];
            let mut order = Vec::new();
            while order.len() < spec.nodes.len() {
                let next = (0..spec.nodes.len())
                    .find(|&i| !placed[i] && g.neighbors_directed(idx[i], petgraph::Direction::Incoming).all(|p| placed[g[p]]))
                    .expect("acyclic");
                placed[next] = true;
                order.push(next);
            }
            Some(order)
        }
        Err(_) => {
            for scc in tarjan_scc(&g) {
                let cyclic = scc.len() > 1 || g.find_edge(scc[0], scc[0]).is_some();
                if !cyclic {
                    continue;
                }
                let mut members: Vec<usize> = scc.iter().map(|ni| g[*ni]).collect();
                members.sort();
                let first = members[0];
                let names: Vec<&str> = members.iter().map(|&m| spec.nodes[m].id.as_str()).collect();
                // Walk the cycle from the first node so the message reads as a path.
                let path = cycle_path(spec, &members);
                errs.push(
                    Diagnostic::new(spec.nodes[first].pos, format!("cycle between nodes {}: {path}", names.join(", ")))
                        .hint("a pipeline is a DAG: remove one of these inputs"),
                );
            }
            None
        }
    }
}

fn cycle_path(spec: &PipelineSpec, members: &[usize]) -> String {
    let start = members[0];
    let mut path = vec![spec.nodes[start].id.clone()];
    let mut cur = start;
    for _ in 0..members.len() {
        // next = a member that takes input from `cur`
        let next = members.iter().copied().find(|&m| spec.nodes[m].inputs.iter().flat_map(|i| &i.refs).any(|r| r.node == spec.nodes[cur].id));
        match next {
            Some(n) => {
                path.push(spec.nodes[n].id.clone());
                if n == start {
                    break;
                }
                cur = n;
            }
            None => break,
        }
    }
    path.join(" → ")
}

fn label_text(labels: &Labels) -> String {
    // Show the field alone unless two origins share a field name.
    let fields: Vec<&String> = labels.keys().map(|(_, f)| f).collect();
    labels
        .iter()
        .map(|((origin, field), v)| if fields.iter().filter(|f| **f == field).count() > 1 { format!("{origin}.{field}={v}") } else { format!("{field}={v}") })
        .collect::<Vec<_>>()
        .join(",")
}

fn consistent(a: &Labels, b: &Labels) -> bool {
    a.iter().all(|(k, v)| b.get(k).is_none_or(|w| w == v))
}

fn expand(spec: &PipelineSpec, order: &[usize], reg: &Registry, errs: &mut Vec<Diagnostic>) -> Vec<Instance> {
    let mut instances: Vec<Instance> = Vec::new();
    let mut variants: BTreeMap<usize, Vec<usize>> = BTreeMap::new(); // node → its instances
    for &ni in order {
        let n = &spec.nodes[ni];
        let node_of = |id: &str| spec.nodes.iter().position(|m| m.id == id).expect("checked");
        // Combinations of upstream variants (non-gather refs), kept when their labels agree.
        let mut combos: Vec<(Labels, BTreeMap<usize, usize>)> = vec![(Labels::new(), BTreeMap::new())];
        let upstream: BTreeSet<usize> = n.inputs.iter().flat_map(|i| &i.refs).filter(|r| !r.gather).map(|r| node_of(&r.node)).collect();
        for up in upstream {
            let mut next = Vec::new();
            for (labels, chosen) in &combos {
                for &inst in &variants[&up] {
                    let l = &instances[inst].labels;
                    if consistent(labels, l) {
                        let mut merged = labels.clone();
                        merged.extend(l.clone());
                        let mut c = chosen.clone();
                        c.insert(up, inst);
                        next.push((merged, c));
                    }
                }
            }
            combos = next;
        }
        // The node's own sweep grid.
        let mut grid: Vec<Vec<(usize, usize)>> = vec![Vec::new()]; // (axis, value index)
        for (a, axis) in n.sweep.iter().enumerate() {
            grid = grid
                .into_iter()
                .flat_map(|g| {
                    (0..axis.values.len()).map(move |v| {
                        let mut g = g.clone();
                        g.push((a, v));
                        g
                    })
                })
                .collect();
        }
        let mut mine = Vec::new();
        for (labels, chosen) in &combos {
            for point in &grid {
                let mut labels = labels.clone();
                let mut with = n.with.clone();
                let mut swept = Vec::new();
                for &(a, v) in point {
                    swept.push((n.sweep[a].field.clone(), n.sweep[a].values[v].pos));
                    let axis = &n.sweep[a];
                    labels.insert((n.id.clone(), axis.field.clone()), axis.values[v].scalar_text());
                    crate::pipeline::set_path(&mut with, &axis.field, axis.values[v].clone());
                }
                let id = if labels.is_empty() { n.id.clone() } else { format!("{}[{}]", n.id, label_text(&labels)) };
                let mut inputs = BTreeMap::new();
                for inp in &n.inputs {
                    let mut srcs = Vec::new();
                    for r in &inp.refs {
                        let up = node_of(&r.node);
                        if r.gather {
                            for &inst in &variants[&up] {
                                if consistent(&labels, &instances[inst].labels) {
                                    srcs.push((inst, r.port.clone()));
                                }
                            }
                        } else {
                            srcs.push((chosen[&up], r.port.clone()));
                        }
                    }
                    inputs.insert(inp.port.clone(), srcs);
                }
                let config = validate_config(n, &with, &swept, reg, errs);
                mine.push(instances.len());
                instances.push(Instance { id, node: ni, labels, uses: n.uses.clone(), config, inputs });
            }
        }
        variants.insert(ni, mine);
    }
    instances
}

/// Validates one instance's config; `swept` gives, per swept field, where its value was written.
fn validate_config(n: &NodeSpec, with: &Node, swept: &[(String, Pos)], reg: &Registry, errs: &mut Vec<Diagnostic>) -> Json {
    let Some((plugin, _)) = reg.kind(&n.uses) else {
        return Json::Null;
    };
    let kind = n.uses.split_once('/').map(|(_, k)| k).unwrap_or("");
    match plugin.validate(kind, &with.to_json()) {
        Ok(c) => c,
        Err(e) => {
            let top = e.field.split(['.', '[']).next().unwrap_or("");
            let pos = match swept.iter().find(|(f, _)| *f == e.field || (!top.is_empty() && *f == top)) {
                Some((_, pos)) => *pos,
                None if e.field.is_empty() => n.with.pos,
                None => n.with.locate(&e.field).pos,
            };
            let field = if e.field.is_empty() { String::new() } else { format!(" field `{}`", e.field) };
            errs.push(
                Diagnostic::new(pos, format!("bad config for `{}` ({}){field}: {}", n.id, n.uses, e.message))
                    .hint(format!("`agentmerge plugins {}` lists its config fields", n.uses)),
            );
            Json::Null
        }
    }
}
