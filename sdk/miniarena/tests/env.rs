//! The environment: BrowserGym-style action errors leave the state unchanged; episodes end on
//! success, on a final message or `report_infeasible`, or on the step limit; navigation,
//! URLs, bids and long pages behave as on the real site.

mod common;

use agentmerge_miniarena::{rollout, Env, Expert, DEFAULT_MAX_STEPS};
use common::{bid_of, bids};

fn form_env() -> Env {
    Env::new("miniarena.form.create_incident", 0, DEFAULT_MAX_STEPS).unwrap()
}

/// Steps with an action that must fail, and checks that nothing changed.
fn assert_rejected(env: &mut Env, action: &str, needle: &str) {
    let before = env.observation();
    let out = env.step(action).unwrap();
    assert!(out.obs.last_action_error.contains(needle), "{action}: {:?}", out.obs.last_action_error);
    assert_eq!(out.obs.last_action, action);
    assert_eq!(out.obs.axtree_txt, before.axtree_txt, "{action} changed the page");
    assert_eq!(out.obs.url, before.url);
    assert_eq!(out.reward, 0.0);
    assert!(!out.terminated && !out.truncated);
}

#[test]
fn bad_actions_leave_the_state_unchanged() {
    let mut env = form_env();
    let obs = env.reset();
    let tree = &obs.axtree_txt;
    let submit = bid_of(tree, "button", "Submit").unwrap();
    let impact = bid_of(tree, "combobox", "Impact").unwrap();
    let option = bid_of(tree, "option", "1 - High").unwrap();
    let caller = bid_of(tree, "textbox", "Caller").unwrap();
    let number = bid_of(tree, "textbox", "Number").unwrap();
    assert_rejected(&mut env, "click('zz999')", "Could not find element with bid \"zz999\"");
    assert_rejected(&mut env, &format!("fill('{submit}', 'x')"), "is not an <input>");
    assert_rejected(&mut env, &format!("fill('{number}', 'INC1')"), "not editable");
    assert_rejected(&mut env, &format!("select_option('{impact}', '4 - None')"), "available options: '1 - High', '2 - Medium', '3 - Low'");
    assert_rejected(&mut env, &format!("select_option('{caller}', '1 - High')"), "not a <select>");
    assert_rejected(&mut env, &format!("select_option('{impact}', ['1 - High', '2 - Medium'])"), "exactly one option");
    assert_rejected(&mut env, &format!("click('{option}')"), &format!("select_option('{impact}', ...)"));
    assert_rejected(&mut env, &format!("check('{submit}')"), "Not a checkbox");
    assert_rejected(&mut env, &format!("press('{caller}', 'Entr')"), "Unknown key: \"Entr\"");
    assert_rejected(&mut env, &format!("fill('{caller}', 'Ann"), "unterminated string");
    assert_rejected(&mut env, &format!("clik('{submit}')"), "Unknown function `clik`");
    assert_rejected(&mut env, &format!("fill('{caller}')"), "missing 1 required positional argument: 'value'");
    assert_rejected(&mut env, &format!("click('{submit}') click('{submit}')"), "exactly one action");
    assert_eq!(env.n_steps(), 13);
    // A good action works after all that.
    let out = env.step(&format!("fill('{caller}', 'Ann Lee')")).unwrap();
    assert!(out.obs.last_action_error.is_empty());
    assert!(out.obs.axtree_txt.contains("textbox 'Caller' value='Ann Lee', required, focused"));
    assert_eq!(out.obs.focused_element_bid.as_deref(), Some(caller.as_str()));
}

#[test]
fn episodes_end_on_limit_and_final_messages() {
    let mut env = Env::new("miniarena.menu.impersonate_user", 5, 3).unwrap();
    env.reset();
    for i in 0..3 {
        let out = env.step("noop()").unwrap();
        assert_eq!(out.truncated, i == 2);
        assert!(!out.terminated);
    }
    assert!(env.step("noop()").is_err(), "stepping a finished episode is an error");
    env.reset();
    assert_eq!(env.n_steps(), 0);
    let out = env.step("report_infeasible('cannot do it')").unwrap();
    assert!(out.terminated && out.reward == 0.0 && !env.success());
    env.reset();
    let out = env.step("send_msg_to_user('done')").unwrap();
    assert!(out.terminated && out.reward == 0.0);
}

#[test]
fn answers_are_judged_on_the_final_message() {
    for task in ["miniarena.knowledge_base.support_contact", "miniarena.dashboard.read_value"] {
        let mut env = Env::new(task, 9, 15).unwrap();
        env.reset();
        let answer = env.expected_answer().unwrap().to_string();
        let out = env.step(&format!("send_msg_to_user('The answer is {answer}0.')")).unwrap();
        assert!(out.terminated && out.reward == 0.0, "{task}");
        env.reset();
        let out = env.step(&format!("send_msg_to_user('  the ANSWER is {answer} ')")).unwrap();
        assert!(out.terminated && out.reward == 1.0, "{task}");
        assert!(env.success());
    }
}

#[test]
fn reset_replays_the_same_episode() {
    let mut env = Env::new("miniarena.list_filter.filter_incidents", 4, 15).unwrap();
    let first = env.reset();
    let t = first.axtree_txt.clone();
    let toggle = bid_of(&t, "button", "Show / hide filter").unwrap();
    let a = env.step(&format!("click('{toggle}')")).unwrap();
    assert!(a.obs.axtree_txt.contains("region 'Condition builder'"));
    let again = env.reset();
    assert_eq!(again, first);
    let b = env.step(&format!("click('{toggle}')")).unwrap();
    assert_eq!(a, b);
}

#[test]
fn navigation_urls_and_history() {
    let mut env = form_env();
    env.reset();
    let start = env.url().to_string();
    assert_eq!(start, "http://miniarena.local/incident.do?sys_id=-1");
    let out = env.step("goto('https://example.com/')").unwrap();
    assert!(out.obs.last_action_error.contains("ERR_NAME_NOT_RESOLVED"));
    let out = env.step("goto('http://miniarena.local/nowhere.do')").unwrap();
    assert!(out.obs.axtree_txt.contains("heading 'Page not found'"));
    let out = env.step("go_back()").unwrap();
    assert_eq!(out.obs.url, start);
    let out = env.step("go_forward()").unwrap();
    assert!(out.obs.url.ends_with("/nowhere.do"));
    // An encoded query in the URL is applied, as on ServiceNow.
    let out = env.step("goto('/incident_list.do?sysparm_query=state%3DNew%5EORDERBYDESCnumber')").unwrap();
    assert!(out.obs.axtree_txt.contains("StaticText 'Filter: All > State = New'"), "{}", out.obs.axtree_txt);
    assert!(out.obs.axtree_txt.contains("columnheader 'Number', sort='descending'"));
    assert!(out.obs.url.ends_with("incident_list.do?sysparm_query=state%3DNew%5EORDERBYDESCnumber"));
}

#[test]
fn a_filter_url_solves_a_filter_task() {
    // Agents may also type the list URL: the validator looks at the applied query.
    let mut expert = Expert::preset("perfect").unwrap();
    let ep = rollout("miniarena.list_filter.filter_change_requests", 11, &mut expert, 15).unwrap();
    let solved_url = ep.steps.last().unwrap().obs.url.clone();
    let mut env = Env::new("miniarena.list_filter.filter_change_requests", 11, 15).unwrap();
    env.reset();
    let out = env.step(&format!("goto('{solved_url}')")).unwrap();
    assert_eq!(out.reward, 1.0, "{solved_url}");
}

#[test]
fn bids_are_unique_letters_and_digits() {
    let mut expert = Expert::preset("medium").unwrap();
    for t in agentmerge_miniarena::templates() {
        let ep = rollout(t.name, 2, &mut expert, 15).unwrap();
        for s in &ep.steps {
            let b = bids(&s.obs.axtree_txt);
            let unique: std::collections::HashSet<_> = b.iter().collect();
            assert_eq!(unique.len(), b.len(), "{}: repeated bids", t.name);
            for bid in b {
                let (head, tail) = bid.split_at(1);
                assert!(head.chars().all(|c| c.is_ascii_lowercase()), "{bid}");
                assert!(!tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()), "{bid}");
            }
        }
    }
}

#[test]
fn lists_page_and_articles_are_long() {
    let mut env = Env::new("miniarena.list_sort.sort_incidents", 1, 15).unwrap();
    let obs = env.reset();
    let rows = obs.axtree_txt.lines().filter(|l| l.trim_start().contains("] row ''")).count();
    assert_eq!(rows, 21, "a header row and 20 records");
    assert!(obs.axtree_txt.contains("StaticText 'Rows 1 to 20 of "));
    let next = bid_of(&obs.axtree_txt, "button", "Next page").unwrap();
    let out = env.step(&format!("click('{next}')")).unwrap();
    assert!(out.obs.axtree_txt.contains("StaticText 'Rows 21 to "), "{}", out.obs.axtree_txt);

    let mut expert = Expert::preset("perfect").unwrap();
    let ep = rollout("miniarena.knowledge_base.travel_policy", 3, &mut expert, 15).unwrap();
    let article = &ep.steps[ep.n_steps - 1].obs.axtree_txt;
    assert!(article.lines().count() > 20, "{article}");
}

#[test]
fn unknown_tasks_name_near_templates() {
    let err = Env::new("miniarena.menu.impersonate", 0, 15).err().unwrap().to_string();
    assert!(err.contains("did you mean `miniarena.menu.impersonate_user`"), "{err}");
    assert!(Env::new("miniarena.form.create_incident", 0, 0).is_err());
}

#[test]
fn environments_and_experts_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Env>();
    assert_send::<Expert>();
    let handle = std::thread::spawn(|| {
        let mut expert = Expert::preset("strong").unwrap();
        rollout("miniarena.menu.navigate_to_module", 1, &mut expert, 15).unwrap().n_steps
    });
    assert!(handle.join().unwrap() > 0);
}
