//! The `report/paper` node kind: metrics in, the paper's tables and figures out.

use agentmerge_sdk::prelude::*;
use serde_json::Value as Json;

use crate::config::Paper;
use crate::report::Report;

/// The schema of the `report` output: a directory holding report.md, table1.csv,
/// report.json, figure2.png and figure3.png.
pub const SCHEMA: &str = "report";

impl NodeKind for Paper {
    const NAME: &'static str = "paper";
    const DOC: &'static str = "The paper's Table 1 (test success ± std err per fine-tuning learning rate: Instruct-FT, model soup, AgentMerge at the λ chosen on validation; inter- and cross-task), step accuracy, likelihood and forgetting tables, and Figures 2–3 (success and likelihood over fine-tuning steps) from evaluate, likelihood and forgetting metrics; every cell uses a run's final checkpoint.";

    fn resources() -> agentmerge_sdk::Resources {
        agentmerge_sdk::Resources::light()
    }

    fn ports() -> Ports {
        Ports::new()
            .list_input(
                "results",
                PortType::Json,
                "metrics of the evaluate, likelihood and forgetting nodes the config names (e.g. `ev_am[*].metrics`); each carries its `node` id with sweep labels",
            )
            .output("report", PortType::Dataset(Some(SCHEMA.into())), "a directory: report.md, table1.csv, report.json, figure2.png, figure3.png")
            .output("metrics", PortType::Metrics, "report.json's content: table1 records, lambda_choice, every series (steps, n, successes, rate, std_err, exact, ...), likelihood, forgetting, notes")
    }

    fn check(&self) -> Result<(), ConfigError> {
        Paper::check(self)
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let results = inputs
            .get("results")
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_json().ok_or_else(|| anyhow!("results[{i}]: expected metrics or JSON, got {}", v.port_type())))
            .collect::<anyhow::Result<Vec<Json>>>()?;
        let report = Report::build(self, &results)?;
        let dir = ctx.out_dir().join("report");
        let metrics = crate::write(&report, &dir)?;
        tracing::info!("wrote the report: {} (the `report` output; the run table shows its place in the store)", dir.join("report.md").display());
        Ok(Outputs::new().with("report", Value::Dataset { schema: SCHEMA.into(), path: dir }).with("metrics", metrics))
    }
}
