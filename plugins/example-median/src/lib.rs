//! An out-of-tree merge strategy: the element-wise median of the models, robust to one model
//! that went astray (a soup averages it in; the median ignores it). The SDK's engine does the
//! loading, dtypes, per-tensor parameters, parallelism and writing; `StrategyNode` makes it a
//! pipeline node with the same config as the built-in methods.

use agentmerge_merge::node::{StrategyKind, StrategyNode};
use agentmerge_merge::{ParamsView, Strategy, TensorJob};

pub struct Median;

impl Strategy for Median {
    fn name(&self) -> &str {
        "median"
    }

    // Output element i depends only on input elements i, so big tensors stream in chunks.
    fn elementwise(&self) -> bool {
        true
    }

    fn check(&self, p: &ParamsView<'_>) -> anyhow::Result<()> {
        anyhow::ensure!(p.models.len() >= 2, "median needs at least two models, got {}", p.models.len());
        Ok(())
    }

    fn merge(&self, job: &TensorJob<'_>) -> anyhow::Result<Vec<f32>> {
        let mut column = Vec::with_capacity(job.inputs.len());
        let median = |i: usize| {
            column.clear();
            column.extend(job.inputs.iter().map(|m| m.values[i]));
            column.sort_by(f32::total_cmp);
            let n = column.len();
            (column[(n - 1) / 2] + column[n / 2]) / 2.0 // the middle one, or the two middle ones' mean
        };
        Ok((0..job.len()).map(median).collect())
    }
}

impl StrategyKind for Median {
    const NAME: &'static str = "median";
    const DOC: &'static str = "Element-wise median of the models (an example out-of-tree strategy).";
    fn strategy() -> Box<dyn Strategy> {
        Box::new(Median)
    }
}

agentmerge_sdk::export_plugin! { name: "median", kinds: [StrategyNode<Median>] }
