//! `sft/reading` through the real host: page-reading documents from the pages of real episodes,
//! with goal documents (numbered instructions before the page, their actions after it; quoted
//! or worded plainly), with the `text`/`cell` kinds and documents filled to `fill_chars`, and
//! the config errors when goal documents or filling are asked of chat output; and on scrambled
//! pages, whose names, values and bids are random but whose answers still stand on the page.

mod common;

use common::*;

/// A pipeline that collects two perfect-expert episodes of each of `templates` (small pages) and
/// runs `sft/reading` on them `with` the given config.
fn reading_pipeline(templates: &str, with: &str) -> String {
    format!(
        "name: reading\nnodes:\n  - id: collect\n    uses: miniarena/collect\n    with: {{templates: {templates}, seeds: {{start: 0, count: 2}}, experts: [{{preset: perfect, think: false}}], page_size: small}}\n  - id: reading\n    uses: sft/reading\n    with: {with}\n    inputs: {{traces: collect.traces}}\n"
    )
}

#[test]
fn reading_writes_page_and_goal_documents() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "p.yaml", &reading_pipeline("[miniarena.menu.impersonate_user]", "{questions_per_page: 4, goal_documents: 2, goals_per_document: 3}"));
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

#[test]
fn reading_asks_about_texts_and_tables_and_fills_documents() {
    let t = tempfile::tempdir().unwrap();
    // Knowledge-base articles (static texts) and dashboards (tables, charts as `label: value`).
    let pipeline = |fill: usize| {
        format!(
            r#"name: reading
nodes:
  - id: collect
    uses: miniarena/collect
    with: {{templates: [miniarena.knowledge_base.support_contact, miniarena.dashboard.read_value], seeds: {{start: 0, count: 3}}, experts: [{{preset: perfect, think: false}}], page_size: small}}
  - id: reading
    uses: sft/reading
    with: {{questions_per_page: 6, fill_chars: {fill}, kinds: [find, text, cell]}}
    inputs: {{traces: collect.traces}}
"#
        )
    };
    let docs = |fill: usize| -> (serde_json::Value, Vec<String>) {
        write(t.path(), "p.yaml", &pipeline(fill));
        ok(t.path(), &["run", "p.yaml"]);
        let report = latest_report(&t.path().join(".agentmerge"));
        let node = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "reading").unwrap().clone();
        let text = std::fs::read_to_string(node["outputs"]["text"].as_str().unwrap()).unwrap();
        let docs = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string()).collect();
        (node["outputs"]["report"].clone(), docs)
    };
    let (r, plain) = docs(0);
    // Only the kinds asked for; the article's sentences and the charts' values are asked about.
    let kinds: Vec<&String> = r["exercises"].as_object().unwrap().keys().collect();
    assert_eq!(kinds, ["cell", "find", "text"], "{r}");
    let all = plain.concat();
    assert!(all.contains("Q: Which text on the page mentions '") && all.contains("can be reached on ext."), "no article sentence asked about");
    assert!(all.contains("Q: What does the list say for '") || all.contains("Q: What is the Count of '"), "no chart value asked about");
    // Every answer to a text question is a static text of that document's page holding the word.
    for d in &plain {
        let (page, questions) = d.split_once("\n\n# Questions\n").unwrap();
        for qa in questions.split("Q: ").skip(1) {
            let (q, a) = qa.split_once("\nA: ").unwrap();
            if let Some(w) = q.strip_prefix("Which text on the page mentions '").and_then(|x| x.strip_suffix("'?")) {
                let a = a.trim_end();
                assert!(a.contains(w) && page.contains(&format!("StaticText '{a}'")), "{q} → {a}");
            }
        }
        assert_eq!(questions.matches("Q: ").count(), 6, "without fill_chars, questions_per_page questions");
    }

    // Filled: as many questions as fit within 1,500 characters (never fewer than 6).
    let (_, filled) = docs(1500);
    assert_eq!(filled.len(), plain.len());
    for (f, p) in filled.iter().zip(&plain) {
        let n = f.matches("\nQ: ").count();
        assert!(n >= 6 && (f.len() <= 1500 || n == 6), "{} chars, {n} questions", f.len());
        assert!(f.len() > 1250 || n == 6 || p.len() > 1500, "a document stops short of the limit: {} chars", f.len());
    }

    // Filling is for pretraining text, and kinds cannot be empty: errors at the field.
    for (with, words) in [("{format: chat, fill_chars: 2000}", "fill_chars"), ("{kinds: []}", "kinds")] {
        write(
            t.path(),
            "bad.yaml",
            &format!("name: bad\nnodes:\n  - id: reading\n    uses: sft/reading\n    with: {with}\n    inputs: {{traces: collect.traces}}\n  - id: collect\n    uses: miniarena/collect\n    with: {{templates: [miniarena.menu.impersonate_user], seeds: {{start: 0, count: 1}}}}\n"),
        );
        let o = agentmerge(t.path(), &["check", "bad.yaml"]);
        assert!(!o.status.success() && stderr(&o).contains(words), "{}", stderr(&o));
    }
}

/// The (instruction, action call) pairs of the goal documents `sft/reading` makes with `with`
/// from a knowledge-base and a dashboard template, through the real plugin.
fn goal_pairs(with: &str) -> Vec<(String, String)> {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "p.yaml", &reading_pipeline("[miniarena.knowledge_base.travel_policy, miniarena.dashboard.read_value]", with));
    ok(t.path(), &["run", "p.yaml"]);
    let report = latest_report(&t.path().join(".agentmerge"));
    let node = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "reading").unwrap();
    let text = std::fs::read_to_string(node["outputs"]["text"].as_str().unwrap()).unwrap();
    let docs: Vec<String> = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string()).collect();
    let goal_docs: Vec<&String> = docs.iter().filter(|d| d.starts_with("# Goals\n1. ")).collect();
    assert!(!goal_docs.is_empty());
    let mut pairs = Vec::new();
    for d in goal_docs {
        let (goals, rest) = d.split_once("\n\n# Current page\n").unwrap();
        let actions: Vec<&str> = rest.split_once("\n\n# Actions\n").unwrap().1.lines().collect();
        for (g, a) in goals.lines().skip(1).zip(&actions) {
            let (g, a) = (g.split_once(". ").unwrap().1, a.split_once(". ").unwrap().1);
            let call = a.strip_prefix("<action>").and_then(|x| x.strip_suffix("</action>")).unwrap_or_else(|| panic!("{a}"));
            pairs.push((g.to_string(), call.to_string()));
        }
    }
    pairs
}

#[test]
fn plain_goal_documents_word_instructions_as_a_user_does() {
    let pairs =
        goal_pairs("{questions_per_page: 2, kinds: [click, fill, select, value, text, cell], goal_documents: 1, goals_per_document: 8, goal_wording: plain}");
    let (mut fills, mut messages) = (0, 0);
    for (g, call) in &pairs {
        // Every action parses; what a fill types is said in the instruction, without quotes.
        match agentmerge_traces::parse_action(call).unwrap_or_else(|e| panic!("{call}: {e}")) {
            agentmerge_traces::Action::Fill { value, .. } => {
                fills += 1;
                assert!(g.contains(value.as_str()) && !g.contains(&format!("'{value}'")) && !g.contains('"'), "{g} → {call}");
            }
            agentmerge_traces::Action::SendMsgToUser { .. } => messages += 1,
            _ => {}
        }
    }
    // Knowledge-base search pages have a searchbox; articles and charts answer questions.
    assert!(fills > 0 && messages > 0, "fills {fills}, messages {messages}");
}

#[test]
fn styled_goal_documents_quote_names_and_answer_in_sentences() {
    let pairs = goal_pairs(
        "{questions_per_page: 2, kinds: [click, fill, select, value, text, cell], goal_documents: 1, goals_per_document: 8, goal_wording: plain, goal_answers: sentence, goal_quotes: true}",
    );
    let (mut quoted, mut fills, mut cells) = (0, 0, 0);
    for (g, call) in &pairs {
        quoted += g.contains('"') as usize;
        match agentmerge_traces::parse_action(call).unwrap_or_else(|e| panic!("{call}: {e}")) {
            // Typed without the quotes the instruction may put around the value.
            agentmerge_traces::Action::Fill { value, .. } => {
                fills += 1;
                assert!(g.contains(value.as_str()) && !value.contains('"'), "{g} → {call}");
            }
            // "What is the Count of Network?" → a sentence naming the key before the value.
            agentmerge_traces::Action::SendMsgToUser { text } => {
                if let Some(key) = g.strip_prefix("What is the ").and_then(|r| r.split_once(" of ")).map(|(_, k)| k.trim_end_matches('?').trim_matches('"')) {
                    cells += 1;
                    assert!(text.contains(key) && text.ends_with('.') && text.len() > key.len() + 6, "{g} → {text}");
                }
            }
            _ => {}
        }
    }
    assert!(quoted > 0 && quoted < pairs.len() && fills > 0 && cells > 0, "quoted {quoted} of {}, fills {fills}, cells {cells}", pairs.len());

    // The styles are of the plain wording: asked of the quoted one, an error at the field.
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        "bad.yaml",
        "name: bad\nnodes:\n  - id: reading\n    uses: sft/reading\n    with: {goal_documents: 1, goal_answers: sentence}\n    inputs: {traces: collect.traces}\n  - id: collect\n    uses: miniarena/collect\n    with: {templates: [miniarena.menu.impersonate_user], seeds: {start: 0, count: 1}}\n",
    );
    let o = agentmerge(t.path(), &["check", "bad.yaml"]);
    assert!(!o.status.success() && stderr(&o).contains("goal_answers") && stderr(&o).contains("goal_wording: plain"), "{}", stderr(&o));
}

#[test]
fn scrambled_pages_hide_every_name_and_still_answer_from_the_page() {
    let t = tempfile::tempdir().unwrap();
    let with = "{questions_per_page: 8, kinds: [find, click, cell], rounds: 2, scramble: true}";
    write(t.path(), "p.yaml", &reading_pipeline("[miniarena.knowledge_base.travel_policy, miniarena.dashboard.read_value]", with));
    ok(t.path(), &["run", "p.yaml"]);
    let report = latest_report(&t.path().join(".agentmerge"));
    let node = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "reading").unwrap();
    let r = &node["outputs"]["report"];
    assert_eq!(r["documents"].as_u64().unwrap(), 2 * r["pages"].as_u64().unwrap(), "{r}");
    let text = std::fs::read_to_string(node["outputs"]["text"].as_str().unwrap()).unwrap();
    let docs: Vec<String> = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string()).collect();
    let (mut finds, mut cells) = (0, 0);
    for pair in docs.chunks(2) {
        // The two rounds of a page are two different scrambles of it.
        assert_ne!(pair[0].split("\n# Questions").next(), pair[1].split("\n# Questions").next());
        for d in pair {
            let (page, qa) = d.split_once("\n\n# Questions\n").expect("questions after the page");
            // MiniArena's own name, on every page's banner, is gone.
            assert!(!page.contains("banner 'MiniArena'"), "{page}");
            let lines: Vec<&str> = qa.lines().collect();
            for q in lines.chunks(2) {
                let (q, a) = (q[0].strip_prefix("Q: ").unwrap(), q[1].strip_prefix("A: ").unwrap());
                // "Which element is the cell 'Oslo'?" → the bid on the page's line for it.
                if let Some(what) = q.strip_prefix("Which element is the ").and_then(|x| x.strip_suffix('?')) {
                    finds += 1;
                    assert!(page.contains(&format!("[{a}] {what}")), "{q} → {a} not on the page:\n{page}");
                }
                // "What is the Count of 'Oslo'?" → a cell of the row that holds 'Oslo' (a cell, a link).
                if let Some(key) = q.strip_prefix("What is the ").and_then(|x| x.split_once(" of '")).map(|x| x.1.trim_end_matches("'?")) {
                    cells += 1;
                    let row = page.split("row ''").find(|row| row.contains(&format!(" '{key}'\n"))).unwrap_or_else(|| panic!("{q}: no row holds {key}"));
                    assert!(row.contains(&format!(" '{a}'")), "{q} → {a}, row: {row}");
                }
            }
        }
    }
    assert!(finds > 10 && cells > 0, "finds {finds}, cells {cells}");
}
