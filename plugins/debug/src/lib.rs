//! The `debug` plugin: tiny node kinds for trying out pipelines and testing the host —
//! constants, sums, a node that fails, one that panics, a slow one that honours
//! cancellation, a flaky one that resumes from its work directory, and one that holds memory
//! (for testing resource limits).

use std::time::{Duration, Instant};

use agentmerge_sdk::{prelude::*, Resources};

/// Emits a constant scalar.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Constant {
    /// The value to emit.
    pub value: f64,
}

impl NodeKind for Constant {
    const NAME: &'static str = "constant";
    const DOC: &'static str = "Emits `value` as a scalar.";
    fn resources() -> Resources {
        Resources::light()
    }
    fn ports() -> Ports {
        Ports::new().output("value", PortType::Scalar, "the constant")
    }
    fn run(&self, _ctx: &Ctx, _inputs: Inputs) -> anyhow::Result<Outputs> {
        tracing::info!(value = self.value, "emitting constant");
        Ok(Outputs::new().with("value", self.value))
    }
}

/// Sums scalars, times a factor.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sum {
    /// Multiplies the sum.
    #[serde(default = "one")]
    pub scale: f64,
}

fn one() -> f64 {
    1.0
}

impl NodeKind for Sum {
    const NAME: &'static str = "sum";
    const DOC: &'static str = "Adds the scalars on `values` and multiplies by `scale`; also writes the result to sum.txt.";
    fn resources() -> Resources {
        Resources::light()
    }
    fn ports() -> Ports {
        Ports::new().list_input("values", PortType::Scalar, "numbers to add").output("sum", PortType::Scalar, "scale × Σ values").output(
            "report",
            PortType::Metrics,
            "the inputs and the result",
        )
    }
    fn run(&self, ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let values: Vec<f64> = inputs
            .get("values")
            .iter()
            .map(|v| match v {
                Value::Scalar(x) => Ok(*x),
                v => Err(anyhow!("expected scalars, got {}", v.port_type())),
            })
            .collect::<anyhow::Result<_>>()?;
        let sum = self.scale * values.iter().sum::<f64>();
        std::fs::write(ctx.out_path("sum.txt")?, format!("{sum}\n"))?;
        let mut report = serde_json::Map::new();
        report.insert("inputs".into(), serde_json::json!(values));
        report.insert("sum".into(), serde_json::json!(sum));
        Ok(Outputs::new().with("sum", sum).with("report", report))
    }
}

/// Always fails with an error.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fail {
    /// The error message.
    #[serde(default = "default_fail")]
    pub message: String,
}

fn default_fail() -> String {
    "this node always fails".into()
}

impl NodeKind for Fail {
    const NAME: &'static str = "fail";
    const DOC: &'static str = "Fails with `message` (for testing failure handling).";
    fn ports() -> Ports {
        Ports::new().optional_input("after", PortType::Json, "anything, to order it after another node").output("value", PortType::Scalar, "never produced")
    }
    fn run(&self, _ctx: &Ctx, _inputs: Inputs) -> anyhow::Result<Outputs> {
        bail!("{}", self.message)
    }
}

/// Panics.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Panic {
    /// The panic message.
    #[serde(default = "default_panic")]
    pub message: String,
}

fn default_panic() -> String {
    "deliberate panic".into()
}

impl NodeKind for Panic {
    const NAME: &'static str = "panic";
    const DOC: &'static str = "Panics with `message` (for testing that a plugin panic becomes a node error).";
    fn ports() -> Ports {
        Ports::new().output("value", PortType::Scalar, "never produced")
    }
    fn run(&self, _ctx: &Ctx, _inputs: Inputs) -> anyhow::Result<Outputs> {
        panic!("{}", self.message)
    }
}

/// Works slowly, writing a file as it goes.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slow {
    /// How long to work, in milliseconds.
    pub millis: u64,
    /// A value to pass through.
    #[serde(default)]
    pub value: f64,
}

impl NodeKind for Slow {
    const NAME: &'static str = "slow";
    const DOC: &'static str = "Spends `millis` ms writing progress.txt (checking for cancellation), then emits `value`.";
    fn ports() -> Ports {
        Ports::new().output("value", PortType::Scalar, "`value`, once done")
    }
    fn run(&self, ctx: &Ctx, _inputs: Inputs) -> anyhow::Result<Outputs> {
        use std::io::Write;
        let mut f = std::fs::File::create(ctx.out_path("progress.txt")?)?;
        let start = Instant::now();
        let total = self.millis.max(1);
        while start.elapsed() < Duration::from_millis(self.millis) {
            ctx.check()?;
            let done = start.elapsed().as_millis() as u64;
            writeln!(f, "{done}")?;
            f.flush()?;
            ctx.progress(done.min(total), total, "working");
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Outputs::new().with("value", self.value))
    }
}

/// Fails on its first attempts, keeping count in its work directory.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Flaky {
    /// How many runs of the same node (same cache key) fail before one succeeds.
    #[serde(default = "one_u32")]
    pub failures: u32,
}

fn one_u32() -> u32 {
    1
}

impl NodeKind for Flaky {
    const NAME: &'static str = "flaky";
    const DOC: &'static str =
        "Counts its runs in work_dir/attempts and fails on the first `failures` of them, then emits the count (for testing resumable nodes).";
    fn ports() -> Ports {
        Ports::new().output("attempts", PortType::Scalar, "how many runs it took, this one included")
    }
    fn run(&self, ctx: &Ctx, _inputs: Inputs) -> anyhow::Result<Outputs> {
        let work = ctx.work_dir();
        if !work.is_dir() {
            bail!("the work directory {} does not exist", work.display());
        }
        let file = work.join("attempts");
        let before: u32 = match std::fs::read_to_string(&file) {
            Ok(text) => text.trim().parse().with_context(|| format!("reading {}", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        let attempt = before + 1;
        std::fs::write(&file, format!("{attempt}\n"))?;
        if attempt <= self.failures {
            bail!("attempt {attempt} fails on purpose ({} of {} planned failures)", attempt, self.failures);
        }
        tracing::info!(attempt, "succeeding");
        Ok(Outputs::new().with("attempts", attempt as f64))
    }
}

/// Emits a tensor of counting numbers.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// The tensor's shape.
    pub shape: Vec<u64>,
    /// First value; each next element adds `step`.
    #[serde(default)]
    pub start: f32,
    #[serde(default = "one_f32")]
    pub step: f32,
}

fn one_f32() -> f32 {
    1.0
}

impl NodeKind for Range {
    const NAME: &'static str = "range";
    const DOC: &'static str = "Emits an f32 tensor of `shape` holding start, start+step, ... (row-major).";
    fn resources() -> Resources {
        Resources::light()
    }
    fn ports() -> Ports {
        Ports::new().output("tensor", PortType::Tensor, "the tensor")
    }
    fn run(&self, _ctx: &Ctx, _inputs: Inputs) -> anyhow::Result<Outputs> {
        let n: u64 = self.shape.iter().product();
        let values: Vec<f32> = (0..n).map(|i| self.start + self.step * i as f32).collect();
        Ok(Outputs::new().with("tensor", Tensor::from_vec(self.shape.clone(), values)?))
    }
}

/// Statistics of a tensor.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TensorStats {}

impl NodeKind for TensorStats {
    const NAME: &'static str = "tensor_stats";
    const DOC: &'static str = "Reports a tensor's dtype, shape, element count, sum and mean.";
    fn resources() -> Resources {
        Resources::light()
    }
    fn ports() -> Ports {
        Ports::new().input("tensor", PortType::Tensor, "any tensor").output("stats", PortType::Metrics, "dtype, shape, numel, sum, mean")
    }
    fn run(&self, _ctx: &Ctx, inputs: Inputs) -> anyhow::Result<Outputs> {
        let t = inputs.tensor("tensor")?;
        let v = t.to_f64_vec();
        let sum: f64 = v.iter().sum();
        let mut m = serde_json::Map::new();
        m.insert("dtype".into(), serde_json::json!(t.dtype()));
        m.insert("shape".into(), serde_json::json!(t.shape()));
        m.insert("numel".into(), serde_json::json!(t.numel()));
        m.insert("sum".into(), serde_json::json!(sum));
        m.insert("mean".into(), serde_json::json!(sum / v.len().max(1) as f64));
        Ok(Outputs::new().with("stats", m))
    }
}

/// Holds memory for a while.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alloc {
    /// MiB to allocate and touch.
    pub mib: u64,
    /// How long to hold it, in ms.
    #[serde(default)]
    pub millis: u64,
}

impl NodeKind for Alloc {
    const NAME: &'static str = "alloc";
    const DOC: &'static str = "Allocates and touches `mib` MiB, holds it `millis` ms (checking for cancellation), then emits the MiB held.";
    fn ports() -> Ports {
        Ports::new().output("mib", PortType::Scalar, "the MiB held")
    }
    fn run(&self, ctx: &Ctx, _inputs: Inputs) -> anyhow::Result<Outputs> {
        let mut held: Vec<Vec<u8>> = Vec::new();
        for i in 0..self.mib {
            // Every page written, so the memory is resident, not just reserved.
            held.push(vec![(i % 251) as u8 + 1; 1 << 20]);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(self.millis) {
            ctx.check()?;
            std::thread::sleep(Duration::from_millis(10));
        }
        let sum: u64 = held.iter().map(|b| b[b.len() / 2] as u64).sum();
        tracing::info!(mib = self.mib, checksum = sum, "held");
        Ok(Outputs::new().with("mib", held.len() as f64))
    }
}

/// Reports what the host gave it: threads, GPU devices, and when it ran.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// How long to run, in ms.
    #[serde(default)]
    pub millis: u64,
    /// A label, so several probes differ in their cache keys.
    #[serde(default)]
    pub label: String,
}

impl NodeKind for Probe {
    const NAME: &'static str = "probe";
    const DOC: &'static str = "Runs `millis` ms and reports the threads (`Ctx::threads`, and the rayon pool it runs in) and GPU devices the host gave it, with its start and end (Unix ms).";
    fn ports() -> Ports {
        Ports::new().output("report", PortType::Metrics, "threads, rayon_threads, devices, start_ms, end_ms")
    }
    fn run(&self, ctx: &Ctx, _inputs: Inputs) -> anyhow::Result<Outputs> {
        let ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let start = ms();
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(self.millis) {
            ctx.check()?;
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut m = serde_json::Map::new();
        m.insert("threads".into(), ctx.threads().into());
        m.insert("rayon_threads".into(), rayon::current_num_threads().into());
        m.insert("devices".into(), ctx.devices().into());
        m.insert("start_ms".into(), start.into());
        m.insert("end_ms".into(), ms().into());
        Ok(Outputs::new().with("report", Value::Metrics(m)))
    }
}

export_plugin! { name: "debug", kinds: [Constant, Sum, Fail, Panic, Slow, Flaky, Range, TensorStats, Alloc, Probe] }
