//! Measures MiniArena's speed: expert rollouts over every template, single-threaded,
//! reporting environment steps per second and episodes per second.
//!
//! Usage: `cargo run --release -p agentmerge-miniarena --bin miniarena-bench -- [SEEDS] [PRESET]`
//! (default 200 seeds per template, preset `medium`).

use std::time::Instant;

use agentmerge_miniarena::{rollout, templates, Expert, DEFAULT_MAX_STEPS};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seeds: u64 = match args.next() {
        Some(s) => s.parse().map_err(|e| anyhow::anyhow!("SEEDS must be a number, got `{s}`: {e}"))?,
        None => 200,
    };
    let preset = args.next().unwrap_or_else(|| "medium".to_string());
    let mut expert = Expert::preset(&preset)?;
    let (mut steps, mut episodes, mut successes) = (0usize, 0usize, 0usize);
    let start = Instant::now();
    for t in templates() {
        let t0 = Instant::now();
        let (mut s, mut ok) = (0usize, 0usize);
        for seed in 0..seeds {
            let ep = rollout(t.name, seed, &mut expert, DEFAULT_MAX_STEPS)?;
            s += ep.n_steps;
            ok += usize::from(ep.success);
        }
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "{:<50} {:>8.0} steps/s  {:>7.0} episodes/s  success {:>5.1}%  mean steps {:.1}",
            t.name,
            s as f64 / dt,
            seeds as f64 / dt,
            100.0 * ok as f64 / seeds as f64,
            s as f64 / seeds as f64
        );
        steps += s;
        episodes += seeds as usize;
        successes += ok;
    }
    let dt = start.elapsed().as_secs_f64();
    println!(
        "TOTAL ({preset} expert, {episodes} episodes, {steps} steps): {:.0} steps/s, {:.0} episodes/s, success {:.1}%",
        steps as f64 / dt,
        episodes as f64 / dt,
        100.0 * successes as f64 / episodes as f64
    );
    Ok(())
}
