//! Checkpoint statistics as metrics: sizes, per-tensor L2 norms, and distances to a reference.

use agentmerge_checkpoint::Checkpoint;
use agentmerge_sdk::prelude::*;
use rayon::prelude::*;
use serde_json::json;

/// Summarises a checkpoint.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Summarize {
    /// Include one entry per tensor (norm, and distance to the reference when connected).
    #[serde(default = "yes")]
    pub per_tensor: bool,
}

fn yes() -> bool {
    true
}

impl NodeKind for Summarize {
    const NAME: &'static str = "summarize";
    const DOC: &'static str = "Reports a checkpoint's parameter count, dtypes and L2 norms, and its distance and cosine similarity to an optional reference.";

    fn resources() -> agentmerge_sdk::Resources {
        agentmerge_sdk::Resources::all_threads()
    }

    fn ports() -> Ports {
        Ports::new()
            .input("model", PortType::Model, "the checkpoint to summarise")
            .optional_input("reference", PortType::Model, "compare against this checkpoint (same tensors)")
            .output("metrics", PortType::Metrics, "num_params, num_tensors, dtypes, norm, per-tensor norms; with a reference: distance and cosine")
    }

    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let ck = Checkpoint::open(&inputs.model("model")?)?;
        let reference = match inputs.is_connected("reference") {
            true => Some(Checkpoint::open(&inputs.model("reference")?)?),
            false => None,
        };
        let names: Vec<&str> = ck.names().collect();
        // (name, ‖x‖², ‖x − ref‖², ⟨x, ref⟩, ‖ref‖²)
        let rows: Vec<(String, f64, f64, f64, f64)> = names
            .par_iter()
            .map(|name| -> anyhow::Result<_> {
                ctx.check()?;
                let x = ck.view(name)?.to_f64_vec();
                let sq = x.iter().map(|v| v * v).sum::<f64>();
                let (mut d2, mut dot, mut r2) = (0.0, 0.0, 0.0);
                if let Some(r) = &reference {
                    let rv =
                        r.view(name).map_err(|_| anyhow!("tensor `{name}` of {} is missing from the reference {}", ck.dir().display(), r.dir().display()))?;
                    anyhow::ensure!(
                        rv.shape == ck.info(name).unwrap().shape.as_slice(),
                        "tensor `{name}`: shape {:?} differs from the reference's {:?}",
                        ck.info(name).unwrap().shape,
                        rv.shape
                    );
                    for (a, b) in x.iter().zip(rv.to_f64_vec()) {
                        d2 += (a - b) * (a - b);
                        dot += a * b;
                        r2 += b * b;
                    }
                }
                Ok((name.to_string(), sq, d2, dot, r2))
            })
            .collect::<anyhow::Result<_>>()?;
        let mut m = serde_json::Map::new();
        m.insert("num_params".into(), json!(ck.num_params()));
        m.insert("num_tensors".into(), json!(ck.len()));
        m.insert("num_bytes".into(), json!(ck.num_bytes()));
        m.insert("num_layers".into(), json!(ck.num_layers()));
        if let Some(a) = ck.architecture() {
            m.insert("architecture".into(), json!(a));
        }
        let mut dtypes: Vec<String> = names.iter().map(|n| ck.info(n).unwrap().dtype.to_string()).collect();
        dtypes.sort();
        dtypes.dedup();
        m.insert("dtypes".into(), json!(dtypes));
        m.insert("norm".into(), json!(rows.iter().map(|r| r.1).sum::<f64>().sqrt()));
        if reference.is_some() {
            let (d2, dot, x2, r2) = rows.iter().fold((0.0, 0.0, 0.0, 0.0), |a, r| (a.0 + r.2, a.1 + r.3, a.2 + r.1, a.3 + r.4));
            m.insert("distance".into(), json!(d2.sqrt()));
            m.insert("cosine".into(), json!(dot / (x2.sqrt() * r2.sqrt()).max(f64::MIN_POSITIVE)));
        }
        if self.per_tensor {
            let per: serde_json::Map<String, serde_json::Value> = rows
                .iter()
                .map(|(n, sq, d2, _, _)| {
                    let v = if reference.is_some() { json!({"norm": sq.sqrt(), "distance": d2.sqrt()}) } else { json!({"norm": sq.sqrt()}) };
                    (n.clone(), v)
                })
                .collect();
            m.insert("tensors".into(), serde_json::Value::Object(per));
        }
        Ok(Outputs::new().with("metrics", m))
    }
}
