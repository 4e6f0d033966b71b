//! Prints one expert episode step by step: goal, page, think, action, error.
//!
//! Usage: `cargo run -p agentmerge-miniarena --example show_episode -- TASK [SEED] [PRESET] [PAGE_SIZE]`,
//! e.g. `... -- miniarena.form.create_incident 3 medium small`.

use agentmerge_miniarena::{rollout_env, templates, Env, Expert, PageSize, DEFAULT_MAX_STEPS};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(task) = args.next() else {
        println!("usage: show_episode TASK [SEED] [PRESET] [full|small]; tasks:");
        for t in templates() {
            println!("  {:<50} {}", t.name, t.description);
        }
        return Ok(());
    };
    let seed: u64 = args.next().map_or(Ok(0), |s| s.parse())?;
    let preset = args.next().unwrap_or_else(|| "perfect".to_string());
    let size: PageSize = args.next().map_or(Ok(PageSize::Full), |s| s.parse())?;
    let mut expert = Expert::preset(&preset)?;
    let ep = rollout_env(Env::with_size(&task, seed, DEFAULT_MAX_STEPS, size)?, &mut expert)?;
    println!("GOAL: {}\n", ep.goal);
    for s in &ep.steps {
        // As in AgentLab, a step's reward and end flags are those returned with its observation.
        println!("===== step {} | {} | reward {} terminated {} truncated {}", s.step, s.obs.url, s.reward, s.terminated, s.truncated);
        println!("{}", s.obs.axtree_txt);
        if !s.obs.last_action_error.is_empty() {
            println!("LAST ERROR: {}", s.obs.last_action_error);
        }
        if let Some(t) = &s.think {
            println!("THINK: {t}");
        }
        if let Some(a) = &s.action {
            println!("ACTION: {a}");
        }
    }
    println!("\nsuccess={} n_steps={} cum_reward={}", ep.success, ep.n_steps, ep.cum_reward);
    Ok(())
}
