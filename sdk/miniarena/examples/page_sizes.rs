//! Prints, per template, the mean AXTree lines and characters per step of the perfect expert's
//! episodes at every page size (the quick view; docs/traces.md, "Page size", has the prompt
//! tokens from pipelines/page_size.yaml).
//!
//! Usage: `cargo run --release -p agentmerge-miniarena --example page_sizes -- [SEEDS]`.

use agentmerge_miniarena::{rollout_env, templates, Env, Expert, ExpertConfig, PageSize, DEFAULT_MAX_STEPS};

fn main() -> anyhow::Result<()> {
    let seeds: u64 = std::env::args().nth(1).map_or(Ok(20), |s| s.parse())?;
    let mut expert = Expert::new(ExpertConfig::perfect().without_think())?;
    println!("| template | steps | full lines | small lines | full chars | small chars |");
    println!("|---|---|---|---|---|---|");
    for t in templates() {
        let mut row = Vec::new();
        let mut n_steps = 0;
        for size in PageSize::ALL {
            let (mut steps, mut lines, mut chars) = (0usize, 0usize, 0usize);
            for seed in 0..seeds {
                let ep = rollout_env(Env::with_size(t.name, seed, DEFAULT_MAX_STEPS, size)?, &mut expert)?;
                for s in ep.action_steps() {
                    steps += 1;
                    lines += s.obs.axtree_txt.lines().count();
                    chars += s.obs.axtree_txt.len();
                }
            }
            n_steps = steps;
            row.push((lines as f64 / steps as f64, chars as f64 / steps as f64));
        }
        println!(
            "| {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} |",
            t.name.trim_start_matches("miniarena."),
            n_steps as f64 / seeds as f64,
            row[0].0,
            row[1].0,
            row[0].1,
            row[1].1
        );
    }
    Ok(())
}
