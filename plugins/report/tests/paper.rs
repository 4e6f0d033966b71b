//! `report/paper` end to end on hand-made metrics (tests/fixtures/results.json: evaluate,
//! likelihood and forgetting metrics in the shapes the cpu nodes write): the numbers in
//! report.md (Table 2 split into inter- and cross-task where a row has per-task step counts),
//! the λ chosen on validation, report.json's nulls, and figures that decode.

use agentmerge_plugin_report::{config::Method, labels::Label, Paper, Report};
use serde_json::{json, Value as Json};

fn results() -> Vec<Json> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/results.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The pipeline's `with:` block, as the host hands it over.
fn config(with: Json) -> Paper {
    let p: Paper = serde_json::from_value(with).unwrap();
    p.check().unwrap();
    p
}

fn full_config() -> Paper {
    config(json!({
        "cross_task": ["dashboard"],
        "methods": {"instruct": "ev_instruct", "agent": "ev_agent", "instruct_ft": "ev_ift", "soup": "ev_soup", "soup_uniform": "ev_soup_all", "agentmerge": "ev_am"},
        "validation": {"agentmerge": "ev_am_val"},
        "likelihood": {
            "instruct_ft": {"inter": "ll_ift_inter", "cross": "ll_ift_cross"},
            "agent": {"inter": "ll_agent_inter", "cross": "ll_agent_cross"},
            "agentmerge": {"inter": "ll_am_inter", "cross": "ll_am_cross"},
        },
        "forgetting": {"instruct_ft": "fg_ift", "agentmerge": "fg_am"},
        "title": "AgentMerge on MiniArena (fixture)",
    }))
}

fn lr(text: &str) -> Option<Label> {
    Some(Label::new(text))
}

#[test]
fn lambda_comes_from_validation_not_test() {
    let r = Report::build(&full_config(), &results()).unwrap();
    // lr = 1e-05: on test λ = 1.0 does better (29/80 inter-task against 22/80), but validation
    // prefers λ = 0.5 (9/30 against 5/30): the report must use 0.5.
    assert_eq!(r.lambda_at(lr("1e-05").as_ref()).unwrap().text, "0.5");
    // lr = 0.0001: validation ties at 7/30; the higher exact step accuracy (0.64) picks λ = 1.0.
    assert_eq!(r.lambda_at(lr("0.0001").as_ref()).unwrap().text, "1.0");
    assert!(r.choices.iter().all(|c| c.validated));
    let am = r.pick(Method::AgentMerge, lr("1e-05").as_ref()).unwrap();
    assert_eq!(am.key.node, "ev_am[lambda=0.5,lr=1e-05]");
    assert_eq!((am.last().step, am.last().inter.n, am.last().inter.successes), (400, 80, 22));
}

#[test]
fn report_md_holds_table1_with_final_checkpoints() {
    let r = Report::build(&full_config(), &results()).unwrap();
    let md = agentmerge_plugin_report::tables::markdown(&r);
    // AgentMerge, lr = 1e-05, λ = 0.5, step 400: inter 22/80, cross 4/20.
    assert!(md.contains("0.275 ± 0.050 (λ = 0.5)"), "{md}");
    assert!(md.contains("0.200 ± 0.089 (λ = 0.5)"), "{md}");
    // Never the test-best λ = 1.0 (29/80 inter-task) at this learning rate.
    for row in md.lines().filter(|l| l.starts_with("| 1e-05 |") && l.contains("(λ =")) {
        assert!(row.contains("(λ = 0.5)") && !row.contains("(λ = 1.0)"), "{row}");
    }
    // Instruct-FT lr = 1e-05 final (step 400): 20/80 inter, 2/20 cross; soup 12/80.
    let row = md.lines().find(|l| l.starts_with("| 1e-05 |")).unwrap();
    assert!(row.contains("0.250 ± 0.048") && row.contains("0.150 ± 0.040"), "{row}");
    // Rows are learning rates, highest first.
    assert!(md.find("| 0.0001 |").unwrap() < md.find("| 1e-05 |").unwrap());
    // Reference rows: the instruct model alone (8/80, 1/20) and the uniform soup.
    assert!(md.contains("| Instruct | — | 0.100 ± 0.034 | 0.050 ± 0.049 |"), "{md}");
    assert!(md.contains("| Uniform soup |"), "{md}");
    assert!(md.contains("| Agent | 0.0001 |"), "{md}");
    // Step accuracy, likelihood and forgetting tables; the λ choice with its validation rates.
    assert!(md.contains("## Table 2: teacher-forced step accuracy"), "{md}");
    // Table 2 split by the cross-task rule from the per-task step counts of the fixture's
    // AgentMerge row (dashboard 15/24/17 of 32 steps, 24 targeting; menu and form 90/114/79 of
    // 128, 96 targeting), the pooled figures first; rows without per-task counts show `—`.
    let t2 = "| AgentMerge | 1e-05 | 0.5 | 0.656 | 0.863 | 0.800 | 160 | 0.703 / 0.891 / 0.823 | 128 | 0.469 / 0.750 / 0.708 | 32 |";
    assert!(md.contains(t2), "{md}");
    assert!(md.contains("| Instruct-FT | 1e-05 | — | 0.630 | 0.830 | 0.770 | 160 | — | — | — | — |"), "{md}");
    assert!(md.contains("| inter-task exact / verb / element | inter steps | cross-task exact / verb / element | cross steps |"), "{md}");
    assert!(md.contains("| Instruct-FT | 1e-05 | — | -1.180 | -1.530 |"), "{md}");
    assert!(md.contains("| AgentMerge | 1e-05 | 0.5 | -1.873 | -1.951 | 0.078 |"), "{md}");
    assert!(md.contains("| 1e-05 | 0.5 | 0.300 ± 0.084 | 0.610 | ev_am_val[lambda=0.5,lr=1e-05] | **yes** |"), "{md}");
    assert!(md.contains("final checkpoint") && md.contains("sqrt(rate (1 − rate) / n)"), "{md}");
    assert!(md.contains("80 inter-task episodes") && md.contains("20 cross-task episodes"), "{md}");
    // The unconfigured node is named in the notes.
    assert!(md.contains("ev_other"), "{md}");
}

#[test]
fn table3_traces_each_pooled_rate_to_its_tasks() {
    let r = Report::build(&full_config(), &results()).unwrap();
    let md = agentmerge_plugin_report::tables::markdown(&r);
    let t3 = &md[md.find("## Table 3: test success per task").expect("Table 3 is missing")..];
    let header = t3.lines().find(|l| l.starts_with("| Task | split |")).unwrap();
    // One column per shown model; AgentMerge only at its chosen λ (0.5 at lr 1e-05).
    assert!(header.contains("| AgentMerge (1e-05, λ = 0.5) |") && !header.contains("AgentMerge (1e-05, λ = 1.0)"), "{header}");
    let cells_of = |line: &str| -> Vec<String> { line.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect() };
    let col = cells_of(header).iter().position(|c| c == "AgentMerge (1e-05, λ = 0.5)").unwrap();
    let row = |task: &str| t3.lines().find(|l| l.starts_with(&format!("| {task} |"))).unwrap_or_else(|| panic!("no row for {task}\n{t3}")).to_string();
    // The fixture's final AgentMerge row at lr 1e-05, λ = 0.5: 9/40 menu, 13/40 form (inter), 4/20 dashboard (cross),
    // the 22/80 and 4/20 of Table 1.
    for (task, split, cell) in [
        ("miniarena.menu.impersonate_user", "inter-task", "9/40"),
        ("miniarena.form.create_user", "inter-task", "13/40"),
        ("miniarena.dashboard.read_value", "cross-task", "4/20"),
    ] {
        let r = row(task);
        let cells = cells_of(&r);
        assert_eq!(cells[1], split, "{r}");
        assert_eq!(cells[col], cell, "{r}");
    }
    // Seen tasks come before held-out ones.
    assert!(t3.find("| miniarena.form.create_user |").unwrap() < t3.find("| miniarena.dashboard.read_value |").unwrap());
    // report.json keeps the same counts per point.
    let json = agentmerge_plugin_report::tables::json(&r);
    let am = json["series"].as_array().unwrap().iter().find(|s| s["node"] == "ev_am[lambda=0.5,lr=1e-05]").unwrap();
    let last = am["points"].as_array().unwrap().last().unwrap();
    let dash = last["per_task"].as_array().unwrap().iter().find(|t| t["category"] == "dashboard").unwrap();
    assert_eq!((dash["n"].as_u64(), dash["successes"].as_u64()), (Some(20), Some(4)));
}

#[test]
fn writes_every_file_and_the_figures_decode() {
    let r = Report::build(&full_config(), &results()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let metrics = agentmerge_plugin_report::write(&r, &out).unwrap();
    for name in ["report.md", "table1.csv", "report.json", "figure2.png", "figure3.png"] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    for (name, (w, h)) in [("figure2.png", agentmerge_plugin_report::figures::FIGURE2_SIZE), ("figure3.png", agentmerge_plugin_report::figures::FIGURE3_SIZE)] {
        let bytes = std::fs::read(out.join(name)).unwrap();
        assert!(bytes.len() > 20_000, "{name}: only {} bytes", bytes.len());
        let (info, pixels) = decode(&bytes);
        assert_eq!((info.0, info.1), (w, h), "{name}");
        // Lines, axes and text: a fair share of the pixels is not white, and the title strip
        // (text drawn with the bundled font) has dark pixels.
        let inked = pixels.chunks(3).filter(|p| p.iter().any(|c| *c < 200)).count();
        assert!(inked > (w * h / 100) as usize, "{name}: {inked} inked pixels");
        let title_dark = pixels[..(w * 30 * 3) as usize].chunks(3).filter(|p| p.iter().all(|c| *c < 100)).count();
        assert!(title_dark > 200, "{name}: title has {title_dark} dark pixels");
    }
    let json: Json = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(Json::Object(metrics), json);
    assert_eq!(json["lambda_choice"][0]["lambda"], "1.0");
    let csv = std::fs::read_to_string(out.join("table1.csv")).unwrap();
    let header = "method,lr,lambda,split,step,checkpoint,n,successes,rate,std_err,exact,verb,element,split_steps,split_exact,split_verb,split_element,split_element_steps,node\n";
    assert!(csv.starts_with(header), "{csv}");
    assert!(csv.contains("agentmerge,1e-05,0.5,inter,400,step-0000400,80,22,0.275,"), "{csv}");
    // The pooled step accuracy on both lines, each line's split after it; empty without
    // per-task counts.
    assert!(csv.contains(",0.65625,0.8625,0.8,128,0.703125,0.890625,0.8229166666666666,96,\"ev_am[lambda=0.5,lr=1e-05]\"\n"), "{csv}");
    assert!(csv.contains(",0.65625,0.8625,0.8,32,0.46875,0.75,0.7083333333333334,24,\"ev_am[lambda=0.5,lr=1e-05]\"\n"), "{csv}");
    assert!(csv.contains(",0.77,,,,,,ev_ift[lr=1e-05]\n"), "{csv}");
    let am = json["series"].as_array().unwrap().iter().find(|s| s["node"] == "ev_am[lambda=0.5,lr=1e-05]").unwrap();
    let last = &am["points"][1]["split_accuracy"];
    assert_eq!(
        last["cross"],
        json!({"steps": 32, "exact": 15, "verb": 24, "element": 17, "element_steps": 24, "exact_rate": 0.46875, "verb_rate": 0.75, "element_rate": 17.0 / 24.0})
    );
    assert_eq!(last["inter"]["steps"], 128);
    assert_eq!(am["points"][0]["split_accuracy"], json!({"inter": null, "cross": null}));
}

/// (width, height) and RGB pixels of a PNG.
fn decode(bytes: &[u8]) -> ((u32, u32), Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    ((info.width, info.height), buf)
}

#[test]
fn without_cross_task_the_cross_numbers_are_null_not_nan() {
    let mut cfg = full_config();
    cfg.cross_task.clear();
    let r = Report::build(&cfg, &results()).unwrap();
    let json = agentmerge_plugin_report::tables::json(&r);
    let cross: Vec<&Json> = json["table1"].as_array().unwrap().iter().filter(|t| t["split"] == "cross").collect();
    assert!(!cross.is_empty());
    assert!(cross.iter().all(|t| t["n"] == 0 && t["rate"].is_null() && t["std_err"].is_null()));
    // Step accuracy too: every step is inter-task, the cross split has none.
    let am =
        |split: &str| json["table1"].as_array().unwrap().iter().find(|t| t["node"] == "ev_am[lambda=0.5,lr=1e-05]" && t["split"] == split).unwrap().clone();
    assert_eq!((am("inter")["split_steps"].clone(), am("inter")["split_exact"].clone()), (json!(160), json!(0.65625)));
    assert_eq!((am("cross")["split_steps"].clone(), am("cross")["split_exact"].clone()), (json!(0), Json::Null));
    let md = agentmerge_plugin_report::tables::markdown(&r);
    assert!(md.contains("`cross_task` is empty"), "{md}");
    assert!(md.contains("| AgentMerge | 1e-05 | 0.5 | 0.656 | 0.863 | 0.800 | 160 | 0.656 / 0.863 / 0.800 | 160 | — | 0 |"), "{md}");
    // The figures still draw (cross panels say why they are empty).
    let dir = tempfile::tempdir().unwrap();
    agentmerge_plugin_report::write(&r, dir.path()).unwrap();
}

#[test]
fn without_validation_lambda_is_one_and_marked_not_validated() {
    let cfg = config(json!({"cross_task": ["dashboard"], "methods": {"instruct_ft": "ev_ift", "agentmerge": "ev_am"}}));
    let r = Report::build(&cfg, &results()).unwrap();
    assert!(r.choices.iter().all(|c| !c.validated && c.lambda().text == "1.0"));
    let md = agentmerge_plugin_report::tables::markdown(&r);
    assert!(md.contains("NOT validated") && md.contains("**yes** (not validated)"), "{md}");
    // Methods not configured leave their columns out.
    let header = md.lines().find(|l| l.starts_with("| LR |")).unwrap();
    assert_eq!(header, "| LR | Instruct-FT | AgentMerge (λ*) |");
    // No likelihood configured: figure 2 still draws, with a note in those panels.
    let dir = tempfile::tempdir().unwrap();
    agentmerge_plugin_report::write(&r, dir.path()).unwrap();
}

#[test]
fn a_configured_node_without_results_is_an_error_listing_what_came() {
    let cfg = config(json!({"methods": {"instruct_ft": "ev_ift", "agentmerge": "ev_merged"}}));
    let e = Report::build(&cfg, &results()).unwrap_err().to_string();
    assert!(e.contains("`methods.agentmerge` names node `ev_merged`"), "{e}");
    assert!(e.contains("ev_instruct") && e.contains("ev_am_val") && e.contains("ll_ift_inter"), "{e}");
}

#[test]
fn a_result_of_the_wrong_kind_is_an_error() {
    let cfg = config(json!({"methods": {"instruct_ft": "ll_ift_inter"}}));
    let e = Report::build(&cfg, &results()).unwrap_err().to_string();
    assert!(e.contains("ll_ift_inter") && e.contains("likelihood metrics") && e.contains("evaluate"), "{e}");
}

#[test]
fn bad_results_are_errors_not_panics() {
    let cfg = config(json!({"methods": {"instruct_ft": "ev"}}));
    for (bad, words) in [
        (json!([{"overall": {}}]), "results[0] has no `node`"),
        (json!([{"node": "ev", "overall": {}, "per_task": "x"}]), "per_task"),
        (json!([{"node": "ev", "overall": {}, "per_task": [{"task": "t", "category": "c", "n": -1, "successes": 0}]}]), "`n`"),
        (json!([{"node": "ev", "overall": {}, "rows": []}]), "`rows`"),
        (json!([3]), "results[0] has no `node`"),
    ] {
        let e = Report::build(&cfg, bad.as_array().unwrap()).unwrap_err().to_string();
        assert!(e.contains(words), "{e}");
    }
}
