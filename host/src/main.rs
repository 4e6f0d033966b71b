//! The `agentmerge` command line: run, check and draw pipelines, and list plugins.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use agentmerge::{exec, pipeline::Override, plugins, report, store::Store};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "agentmerge",
    version,
    about = "Compose, run and cache pipelines of plugins that collect agent traces, fine-tune, merge and evaluate LLM checkpoints.",
    after_help = "Examples:\n  agentmerge run pipelines/quickstart.yaml\n  agentmerge run pipelines/paper.yaml --set scale=smoke --force report\n  agentmerge check pipelines/quickstart.yaml\n  agentmerge graph pipelines/quickstart.yaml > quickstart.mmd\n  agentmerge plugins models/random_llama\n\nLogs: RUST_LOG=agentmerge=debug, or -v / -q."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Extra plugin directories, searched before the defaults (also: AGENTMERGE_PLUGIN_PATH).
    #[arg(long = "plugin-path", global = true, value_name = "DIR")]
    plugin_path: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline; nodes whose inputs and config are unchanged come from the store.
    #[command(
        after_help = "Examples:\n  agentmerge run pipelines/quickstart.yaml\n  agentmerge run pipelines/quickstart.yaml --set hidden=128 --jobs 1\n  agentmerge run pipelines/quickstart.yaml --force report --no-cache\n  agentmerge run pipelines/paper.yaml --patch pipelines/own-data.yaml"
    )]
    Run {
        #[command(flatten)]
        p: PipelineArgs,
        /// Re-run this node even when cached, reusing none of its per-item results from the
        /// store's memo/ either (repeatable; a node id, or an instance id like `merge[lambda=0.5]`).
        #[arg(long, value_name = "NODE")]
        force: Vec<String>,
        /// Ignore the cache for every node, and the per-item memo (results are still stored).
        #[arg(long)]
        no_cache: bool,
        /// Most nodes running at once (default: the pipeline's `jobs:`, else the number of cores).
        #[arg(short, long)]
        jobs: Option<usize>,
        /// The artifact store (default: the pipeline's `store:`, else .agentmerge/ beside it).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Where nodes run: `local` (this process) or `slurm` (one batch job per node that is
        /// not light; this process is the driver). Default: the pipeline's `executor.type`,
        /// else local. See docs/cluster.md.
        #[arg(long, value_name = "NAME")]
        executor: Option<String>,
    },
    /// Show the state of the runs using a store: each node waiting, pending (queued as a job),
    /// running, done, cached, failed or skipped, with its job id — from another terminal while
    /// a run goes on, or after it ended.
    #[command(after_help = "Examples:\n  agentmerge status pipelines/.agentmerge\n  agentmerge status pipelines/.agentmerge --all")]
    Status {
        /// The artifact store.
        store: PathBuf,
        /// Every run recorded in the store, not only those alive and the last one.
        #[arg(long)]
        all: bool,
    },
    /// Run one node of a planned run (what a cluster job executes; the driver writes the task
    /// into the store and submits a script that calls this).
    #[command(hide = true)]
    RunNode {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        key: String,
        #[arg(long)]
        attempt: String,
    },
    /// Validate a pipeline (plugins, ports, types, cycles, configs) without running anything.
    #[command(after_help = "Example:\n  agentmerge check pipelines/quickstart.yaml --set hidden=96")]
    Check {
        #[command(flatten)]
        p: PipelineArgs,
    },
    /// Print the expanded pipeline graph as Mermaid (default) or Graphviz DOT.
    #[command(
        after_help = "Examples:\n  agentmerge graph pipelines/quickstart.yaml\n  agentmerge graph pipelines/quickstart.yaml --dot | dot -Tsvg > graph.svg"
    )]
    Graph {
        #[command(flatten)]
        p: PipelineArgs,
        /// Graphviz DOT instead of Mermaid.
        #[arg(long)]
        dot: bool,
    },
    /// Merge checkpoints with a mergekit YAML config, unchanged (a one-node pipeline running
    /// the `merge/mergekit` node kind).
    #[command(
        after_help = "Examples:\n  agentmerge merge ties.yml -o merged/\n  agentmerge merge agentmerge.yml -o out/ --overwrite\n\nModel paths in the config are relative to the current directory, as with mergekit."
    )]
    Merge {
        /// The mergekit config (merge_method, base_model, models, parameters, dtype, ...).
        config: PathBuf,
        /// The output checkpoint directory.
        #[arg(short = 'o', long = "out", value_name = "OUT_DIR")]
        out: PathBuf,
        /// Replace OUT_DIR if it exists.
        #[arg(long)]
        overwrite: bool,
    },
    /// Re-hash every stored node's outputs against the digests recorded when it was committed,
    /// and list the entries that do not match (or are incomplete). With `--repair`, remove
    /// them, so the next run computes them again instead of trusting them.
    #[command(after_help = "Examples:\n  agentmerge verify pipelines/.agentmerge\n  agentmerge verify pipelines/.agentmerge --repair")]
    Verify {
        /// The artifact store (e.g. `pipelines/.agentmerge`).
        store: PathBuf,
        /// Remove the corrupt entries.
        #[arg(long)]
        repair: bool,
    },
    /// List plugin libraries with their node kinds, ports and config fields.
    #[command(
        after_help = "Examples:\n  agentmerge plugins\n  agentmerge plugins merge\n  agentmerge plugins models/random_llama\n  agentmerge plugins --json"
    )]
    Plugins {
        /// Only this plugin or `plugin/kind`.
        filter: Option<String>,
        /// The raw manifests as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct PipelineArgs {
    /// The pipeline YAML file.
    pipeline: PathBuf,
    /// Override a variable (`--set lr=1e-5`) or a node's config field (`--set merge.lambda=0.5`);
    /// wins over presets and patches.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<Override>,
    /// A patch file: `vars:` to set, `nodes:` that replace the nodes with their ids (or are
    /// added), `remove:` node ids (repeatable, applied in order).
    #[arg(long = "patch", value_name = "FILE")]
    patch: Vec<PathBuf>,
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn,agentmerge=info",
        (_, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).with_target(false).init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            match e.downcast_ref::<agentmerge::diag::Diagnostics>() {
                Some(d) => eprintln!("{d}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plugins { filter, json } => {
            let reg = plugins::Registry::discover(&plugins::search_path(&cli.plugin_path));
            if json {
                let manifests: Vec<_> = reg.plugins.iter().map(|p| serde_json::json!({"path": p.path, "digest": p.digest, "manifest": p.manifest})).collect();
                println!("{}", serde_json::to_string_pretty(&manifests)?);
            } else {
                print!("{}", report::plugins(&reg, filter.as_deref()));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Merge { config, out, overwrite } => merge(&config, &out, overwrite, &cli.plugin_path, cli.quiet),
        Command::Verify { store, repair } => {
            if !store.join("nodes").is_dir() {
                anyhow::bail!("{} is not an artifact store (no nodes/ in it); name the store directory, e.g. pipelines/.agentmerge", store.display());
            }
            let store = Store::open(&store)?;
            let v = store.verify(repair)?;
            for (key, node, why) in &v.corrupt {
                println!("corrupt  {key}  {node}: {why}{}", if repair { "  (removed)" } else { "" });
            }
            println!("{} entries checked: {} intact, {} corrupt", v.checked, v.checked - v.corrupt.len(), v.corrupt.len());
            if v.corrupt.is_empty() || repair {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("run `agentmerge verify {} --repair` to remove them; the next run computes them again", store.root.display());
                Ok(ExitCode::from(1))
            }
        }
        Command::Check { p } => {
            let (_, plan) = agentmerge::load(&p.pipeline, &p.patch, &p.set, &cli.plugin_path)?;
            println!("{}: ok ({} nodes, {} instances after sweeps)", p.pipeline.display(), plan.spec.nodes.len(), plan.instances.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Graph { p, dot } => {
            let (_, plan) = agentmerge::load(&p.pipeline, &p.patch, &p.set, &cli.plugin_path)?;
            print!("{}", report::graph(&plan, dot));
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { store, all } => {
            print!("{}", agentmerge::status::show(&store, all)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::RunNode { store, key, attempt } => {
            ctrlc_handler();
            let ok = agentmerge::node_task::run_node(&store, &key, &attempt, &cli.plugin_path)?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Run { p, force, no_cache, jobs, store, executor } => {
            let (reg, plan) = agentmerge::load(&p.pipeline, &p.patch, &p.set, &cli.plugin_path)?;
            for f in &force {
                if !plan.spec.nodes.iter().any(|n| &n.id == f) && !plan.instances.iter().any(|i| &i.id == f) {
                    anyhow::bail!("--force {f}: no node or instance `{f}` in {}", p.pipeline.display());
                }
            }
            let store = Store::open(&agentmerge::store_dir(&plan, store.as_deref()))?;
            ctrlc_handler();
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            let mut settings = plan.spec.executor.clone();
            if let Some(e) = executor {
                if !agentmerge::executor::KINDS.contains(&e.as_str()) {
                    anyhow::bail!("--executor {e}: unknown executor; executors are: {}", agentmerge::executor::KINDS.join(", "));
                }
                settings.kind = Some(e);
            }
            if let Some(e) = settings.executor() {
                e.ready()?;
            }
            let opts = exec::RunOptions {
                jobs: jobs.or(plan.spec.jobs).unwrap_or(cores),
                force,
                no_cache,
                progress: std::io::stderr().is_terminal() && !cli.quiet,
                executor: settings,
            };
            let rep = exec::run(&plan, &reg, &store, &opts);
            let path = store.write_report(&plan.spec.name, &rep.to_json(&store))?;
            println!("{}", report::table(&rep, &store.root));
            println!("report: {}", path.display());
            print!("{}", report::final_outputs(&plan, &rep, &store.root));
            if rep.failed().is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprint!("{}", report::failures(&rep));
                Ok(ExitCode::from(1))
            }
        }
    }
}

/// `agentmerge merge`: runs the `merge/mergekit` kind in a throwaway store, then moves the
/// merged checkpoint to `out` (which appears whole or not at all).
fn merge(config: &std::path::Path, out: &std::path::Path, overwrite: bool, plugin_path: &[PathBuf], quiet: bool) -> anyhow::Result<ExitCode> {
    if out.exists() && !overwrite {
        anyhow::bail!("{} already exists; pass --overwrite to replace it", out.display());
    }
    let config = config.canonicalize().map_err(|e| anyhow::anyhow!("cannot read {}: {e}", config.display()))?;
    let work = std::env::temp_dir().join(format!("agentmerge-merge-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let pipeline = work.join("merge.yaml");
    let text = format!(
        "name: merge\nnodes:\n  - id: merge\n    uses: merge/mergekit\n    with:\n      recipe_file: {}\n",
        serde_json::to_string(&config.to_string_lossy())?
    );
    std::fs::write(&pipeline, text)?;
    let result = (|| -> anyhow::Result<ExitCode> {
        // Report config errors against the user's file, not the one-node pipeline made here.
        let (reg, plan) = agentmerge::load(&pipeline, &[], &[], plugin_path).map_err(|e| match e.downcast::<agentmerge::diag::Diagnostics>() {
            Ok(d) => anyhow::anyhow!(
                "{}",
                d.items
                    .iter()
                    .map(|i| format!("{}{}", i.message, i.hint.as_ref().map(|h| format!("\n  = hint: {h}")).unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            Err(e) => e,
        })?;
        let store = Store::open(&work.join("store"))?;
        ctrlc_handler();
        let opts = exec::RunOptions { jobs: 1, force: Vec::new(), no_cache: true, progress: std::io::stderr().is_terminal() && !quiet, ..Default::default() };
        let rep = exec::run(&plan, &reg, &store, &opts);
        if !rep.failed().is_empty() {
            eprint!("{}", report::failures(&rep));
            return Ok(ExitCode::from(1));
        }
        let model = rep.results[0].outputs.as_ref().and_then(|o| o.ports.get("model")).and_then(|r| r.first()).and_then(|r| match r {
            agentmerge::store::Record::Model { path, .. } => Some(store.root.join(path)),
            _ => None,
        });
        let model = model.ok_or_else(|| anyhow::anyhow!("merge/mergekit returned no model"))?;
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(parent)?;
        let staged = parent.join(format!(".{}.tmp-{}", out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), std::process::id()));
        // Same filesystem: a rename; otherwise copy into a staging directory first.
        if std::fs::rename(&model, &staged).is_err() {
            copy_dir(&model, &staged)?;
        }
        if out.exists() {
            std::fs::remove_dir_all(out)?;
        }
        std::fs::rename(&staged, out)?;
        println!("merged {} in {:.2}s → {}", config.display(), rep.wall.as_secs_f64(), out.display());
        Ok(ExitCode::SUCCESS)
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// First Ctrl-C (or SIGTERM) asks nodes to stop (they see `ctx.is_cancelled()`) and cancels the
/// run's cluster jobs; the second exits at once.
/// Either way no half-written artifact is trusted later: unfinished nodes live in store/tmp.
fn ctrlc_handler() {
    let _ = ctrlc::set_handler(|| {
        if exec::CANCELLED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting now");
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: asking running nodes to stop (Ctrl-C again to exit now)");
    });
}
