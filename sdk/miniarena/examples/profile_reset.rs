//! Times instance generation (Env::new) and observation rendering per template.
use agentmerge_miniarena::{templates, Env};
use std::time::Instant;
fn main() -> anyhow::Result<()> {
    for t in templates() {
        let t0 = Instant::now();
        let mut envs = Vec::new();
        for seed in 0..200 {
            envs.push(Env::new(t.name, seed, 15)?);
        }
        let gen = t0.elapsed().as_secs_f64() / 200.0 * 1e6;
        let t1 = Instant::now();
        let mut n = 0;
        for e in &envs {
            for _ in 0..5 {
                n += e.observation().axtree_txt.len();
            }
        }
        let obs = t1.elapsed().as_secs_f64() / 1000.0 * 1e6;
        println!("{:<50} new {:>7.1} us   obs {:>6.1} us  ({} bytes)", t.name, gen, obs, n / 1000);
    }
    Ok(())
}
