//! `sft/reading` through the real host: page-reading documents from the pages of real episodes,
//! with goal documents (numbered instructions before the page, their actions after it), and
//! the config error when goal documents are asked of chat output.

mod common;

use common::*;

#[test]
fn reading_writes_page_and_goal_documents() {
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        "p.yaml",
        r#"name: reading
nodes:
  - id: collect
    uses: miniarena/collect
    with: {templates: [miniarena.menu.impersonate_user], seeds: {start: 0, count: 2}, experts: [{preset: perfect, think: false}], page_size: small}
  - id: reading
    uses: sft/reading
    with: {questions_per_page: 4, goal_documents: 2, goals_per_document: 3}
    inputs: {traces: collect.traces}
"#,
    );
    ok(t.path(), &["run", "p.yaml"]);
    let report = latest_report(&t.path().join(".agentmerge"));
    let node = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "reading").unwrap();
    let r = &node["outputs"]["report"];
    let pages = r["pages"].as_u64().unwrap();
    assert!(pages >= 4, "{r}");
    // One page document and two goal documents per page, three instructions in each.
    assert_eq!(r["documents"].as_u64().unwrap(), pages * 3, "{r}");
    assert_eq!(r["exercises"]["goal"].as_u64().unwrap(), pages * 6, "{r}");
    let text = std::fs::read_to_string(node["outputs"]["text"].as_str().unwrap()).unwrap();
    let docs: Vec<String> = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string()).collect();
    let goal_docs: Vec<&String> = docs.iter().filter(|d| d.starts_with("# Goals\n1. ")).collect();
    assert_eq!(goal_docs.len() as u64, pages * 2);
    for d in goal_docs {
        let (goals, rest) = d.split_once("\n\n# Current page\n").expect("the page after the goals");
        let actions = rest.split_once("\n\n# Actions\n").expect("the actions after the page").1;
        let goals: Vec<&str> = goals.lines().skip(1).collect();
        let actions: Vec<&str> = actions.lines().collect();
        assert_eq!((goals.len(), actions.len()), (3, 3), "{d}");
        for (i, (g, a)) in goals.iter().zip(&actions).enumerate() {
            let n = format!("{}. ", i + 1);
            assert!(g.starts_with(&n) && a.starts_with(&format!("{n}<action>")) && a.ends_with("</action>"), "{d}");
            // A select or fill carries the instruction's value into the action.
            if let Some(v) = g.strip_prefix(&format!("{n}Select '")).and_then(|x| x.split_once("' in the ")).map(|x| x.0) {
                assert!(a.ends_with(&format!(", '{v}')</action>")), "{g} → {a}");
            }
        }
    }

    // Goal documents are pretraining text: asked of chat data, an error at the field.
    write(
        t.path(),
        "bad.yaml",
        "name: bad\nnodes:\n  - id: reading\n    uses: sft/reading\n    with: {format: chat, goal_documents: 1}\n    inputs: {traces: collect.traces}\n  - id: collect\n    uses: miniarena/collect\n    with: {templates: [miniarena.menu.impersonate_user], seeds: {start: 0, count: 1}}\n",
    );
    let o = agentmerge(t.path(), &["check", "bad.yaml"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("goal_documents") && stderr(&o).contains("format: text"), "{}", stderr(&o));
}
