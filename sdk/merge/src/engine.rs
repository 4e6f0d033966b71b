//! The streaming merge engine: checks that the models match, resolves every tensor's
//! parameters before reading any data, then merges tensors (element-wise strategies in
//! chunks) in parallel with rayon, writing each result straight into the output shards.
//!
//! Memory: each worker holds one unit in flight, its inputs mapped range by range
//! ([`TensorView::map`]) and unmapped when done: the inputs of one chunk of [`CHUNK_ELEMENTS`]
//! for element-wise strategies, a window of [`WINDOW_BYTES`] per input for strategies that
//! stream, or one whole tensor per input for the rest. The resident set stays a few chunks
//! (or tensors) per input, never the model size.

use std::{
    collections::BTreeSet,
    ops::Range,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use agentmerge_checkpoint::{
    cast_f32_into, cast_f64_into, layer_index, to_f32_into, to_f64_into, Checkpoint, CheckpointWriter, DType, DTypeExt, Mapped, TensorSpec, TensorView,
    WriteOptions,
};
use rayon::prelude::*;

use crate::{
    params::{ParamDef, Params, Settings},
    strategy::StoredPart,
    Chunk, Float, Input, MergeError, MergePlan, Operand, ParamsView, StoredChunk, Strategy, StreamInput, TensorJob, TensorStream, TokenizerSource, WeightedSum,
};

/// Element-wise strategies process big tensors in chunks of this many elements (4 MiB per
/// bf16 input), each input's part mapped at once: unmapping costs every other core a TLB
/// flush, so small ranges make mapping slower than copying the bytes out (see
/// [`TensorView::map`]).
pub const CHUNK_ELEMENTS: usize = 1 << 21;

/// Streamed tensors map each input this many bytes at a time (or one chunk, if bigger), for
/// the same reason.
const WINDOW_BYTES: usize = 4 << 20;

/// Streamed tensors are read in chunks of this many elements per pass (measured: TIES 10%
/// faster than with 2¹⁶, and no faster with 2¹⁸).
pub(crate) const STREAM_CHUNK_ELEMENTS: usize = 1 << 17;

/// Per-thread output buffers bigger than this (a whole tensor's, for methods that are not
/// element-wise) are freed after their unit rather than kept for the rest of the run.
const KEEP_BUFFER_BYTES: usize = 2 << 20;

/// Element-wise units are computed in blocks of this many elements, so the decoded inputs
/// and the output of a block stay in the core's cache.
const BLOCK_ELEMENTS: usize = 1 << 14;

/// Element-wise output is written every this many elements: large enough that the writes
/// cost few system calls, small enough that the bytes are still in cache when the kernel
/// copies them.
const WRITE_ELEMENTS: usize = 1 << 17;

thread_local! {
    /// Each worker's encoded output of [`Context::merge_fused`], waiting to be written;
    /// reused from unit to unit and only grown, so it is zeroed once.
    static OUTPUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What a finished merge did.
#[derive(Clone, Debug)]
pub struct MergeReport {
    pub out_dir: PathBuf,
    pub method: String,
    pub tensors: usize,
    /// Elements written.
    pub params: u64,
    /// Bytes of tensor data read from the inputs.
    pub bytes_read: u64,
    /// Bytes of tensor data written.
    pub bytes_written: u64,
    pub seconds: f64,
    /// Parameters no strategy reads, and other things worth knowing.
    pub warnings: Vec<String>,
}

/// One opened input.
struct Model {
    label: String,
    ck: Checkpoint,
    is_base: bool,
}

/// One tensor's plan.
struct TensorPlan {
    name: String,
    shape: Vec<u64>,
    layer: Option<usize>,
    t: f64,
    params: Params,
    model_params: Vec<Params>,
    out_dtype: DType,
    float: bool,
    wide: bool,
    /// The strategy's weighted sum for this tensor, when the engine can run it fused (BF16
    /// and F32 operands and output; see [`WeightedSum::fused`]).
    weighted: Option<WeightedSum>,
    chunks: AtomicUsize,
}

/// A tensor, or a chunk of one.
struct Unit {
    tensor: usize,
    range: Range<usize>,
    whole: bool,
    /// Merged in passes over chunks by [`Strategy::merge_stream`].
    streamed: bool,
}

/// Runs `plan` with `strategy`, writing a new checkpoint at `out_dir` (which must not
/// exist). `progress(done, total)` counts elements; `cancelled()` is polled between tensors.
pub fn run_merge(
    plan: &MergePlan,
    strategy: &dyn Strategy,
    out_dir: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<MergeReport, MergeError> {
    let started = Instant::now();
    steady_allocations();
    let method = strategy.name().to_string();
    if strategy.needs_base() && plan.base.is_none() {
        return Err(MergeError::Plan(format!("merge method `{method}` needs `base_model`; add it to the recipe")));
    }
    if plan.models.is_empty() {
        return Err(MergeError::Plan("the recipe lists no models under `models:`".into()));
    }
    if matches!(plan.tokenizer_source, Some(TokenizerSource::Base)) && plan.base.is_none() {
        return Err(MergeError::Plan("`tokenizer_source: base` but the recipe has no `base_model`; name one or take the tokenizer from a model".into()));
    }
    check_extra_files(plan)?;
    let base = match &plan.base {
        Some(p) => Some(Model { label: p.display().to_string(), ck: Checkpoint::open(p)?, is_base: true }),
        None => None,
    };
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    };
    let models = plan
        .models
        .iter()
        .map(|m| {
            Ok(Model { label: m.path.display().to_string(), ck: Checkpoint::open(&m.path)?, is_base: plan.base.as_deref().is_some_and(|b| same(b, &m.path)) })
        })
        .collect::<Result<Vec<_>, MergeError>>()?;
    let reference = base.as_ref().unwrap_or(&models[0]);
    let all: Vec<&Model> = base.iter().chain(&models).collect();
    check_models_match(reference, &all)?;

    let mut warnings = unknown_parameters(plan, &strategy.parameters());
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let tensors = plan_tensors(plan, strategy, reference, &models)?;

    // Lay out the output.
    let specs: Vec<TensorSpec> = tensors.iter().map(|t| TensorSpec { name: t.name.clone(), dtype: t.out_dtype, shape: t.shape.clone() }).collect();
    let recipe = plan.recipe.clone().unwrap_or_else(|| plan.to_yaml(&method));
    let mut opts = WriteOptions { max_shard_bytes: plan.max_shard_bytes, ..Default::default() };
    opts.metadata.insert("format".into(), "pt".into());
    opts.metadata.insert("merge_method".into(), method.clone());
    opts.metadata.insert("merge_recipe".into(), recipe.clone());
    let mut writer = CheckpointWriter::plan(out_dir, specs, opts)?;

    let mut units = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        let numel = t.shape.iter().product::<u64>() as usize;
        if t.float && strategy.streams(&t.shape) {
            units.push(Unit { tensor: i, range: 0..numel, whole: true, streamed: true });
        } else if t.float && strategy.elementwise() && numel > CHUNK_ELEMENTS {
            let starts: Vec<usize> = (0..numel).step_by(CHUNK_ELEMENTS).collect();
            t.chunks.store(starts.len(), Ordering::Relaxed);
            for s in starts {
                units.push(Unit { tensor: i, range: s..(s + CHUNK_ELEMENTS).min(numel), whole: false, streamed: false });
            }
        } else {
            units.push(Unit { tensor: i, range: 0..numel, whole: true, streamed: false });
        }
    }
    let total: u64 = tensors.iter().map(|t| t.shape.iter().product::<u64>()).sum();
    let done = AtomicU64::new(0);
    let read = AtomicU64::new(0);
    let written = AtomicU64::new(0);
    let ctx = Context { plan, strategy, base: base.as_ref(), models: &models, reference, writer: &writer };
    units.par_iter().try_for_each(|u| {
        if cancelled() {
            return Err(MergeError::Cancelled(out_dir.to_path_buf()));
        }
        let t = &tensors[u.tensor];
        let (r, w) = if !t.float {
            ctx.copy(t)?
        } else if u.streamed && t.wide {
            ctx.stream_tensor::<f64>(t)?
        } else if u.streamed {
            ctx.stream_tensor::<f32>(t)?
        } else if t.wide {
            ctx.merge_unit::<f64>(t, u)?
        } else {
            ctx.merge_unit::<f32>(t, u)?
        };
        if !t.float {
            for m in &all {
                m.ck.release(&t.name, u.range.clone());
            }
        }
        read.fetch_add(r, Ordering::Relaxed);
        written.fetch_add(w, Ordering::Relaxed);
        let d = done.fetch_add(u.range.len() as u64, Ordering::Relaxed) + u.range.len() as u64;
        progress(d, total);
        Ok(())
    })?;

    // Config, tokenizer and recipe.
    if let Some(cfg) = reference.ck.config() {
        writer.set_config(cfg.clone(), plan.out_dtype.or(plan.dtype));
    }
    let tokenizer_dir = match &plan.tokenizer_source {
        Some(TokenizerSource::Base) => match &plan.base {
            Some(b) => b.clone(),
            None => return Err(MergeError::Plan("`tokenizer_source: base` but the recipe has no `base_model`".into())),
        },
        Some(TokenizerSource::Model(p)) => p.clone(),
        None => reference.ck.dir().to_path_buf(),
    };
    let copied = writer.copy_tokenizer_from(&tokenizer_dir)?;
    if copied.is_empty() {
        warnings.push(format!("no tokenizer files in {}", tokenizer_dir.display()));
    }
    writer.write_extra_file("mergekit_config.yml", recipe.as_bytes())?;
    for f in &plan.extra_files {
        let bytes = std::fs::read(f).map_err(|e| MergeError::Plan(format!("{}: cannot read it to copy into the merged checkpoint: {e}", f.display())))?;
        writer.write_extra_file(&extra_file_name(f)?, &bytes)?;
    }
    let out = writer.finish()?;
    Ok(MergeReport {
        out_dir: out,
        method,
        tensors: tensors.len(),
        params: total,
        bytes_read: read.into_inner(),
        bytes_written: written.into_inner(),
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}

/// The name an extra file gets in the output: its own file name.
fn extra_file_name(f: &Path) -> Result<String, MergeError> {
    f.file_name().map(|n| n.to_string_lossy().into_owned()).ok_or_else(|| MergeError::Plan(format!("extra file {} has no file name", f.display())))
}

/// Extra files must exist and must not replace a file the engine writes (weights, index,
/// config.json, the recipe); checked before any tensor is read.
fn check_extra_files(plan: &MergePlan) -> Result<(), MergeError> {
    for f in &plan.extra_files {
        let name = extra_file_name(f)?;
        if name.ends_with(".safetensors") || ["config.json", "model.safetensors.index.json", "mergekit_config.yml"].contains(&name.as_str()) {
            return Err(MergeError::Plan(format!("extra file {}: `{name}` is written by the merge itself and cannot be replaced", f.display())));
        }
        if !f.is_file() {
            return Err(MergeError::Plan(format!("extra file {} does not exist or is not a file", f.display())));
        }
    }
    Ok(())
}

/// Fixes glibc's malloc thresholds, so that the buffers a strategy allocates for each tensor
/// (chunks of the inputs, samples: a few hundred KiB to a few MiB) come from its arenas and
/// are reused from tensor to tensor. By default glibc serves allocations above a threshold
/// that moves between 128 KiB and 32 MiB (raised by what was freed before) with fresh
/// mappings, whose pages fault in again for every tensor: after an unrelated change to a
/// buffer's size, a 1 B TIES merge took 324 000 page faults instead of 8 000 and ran 15%
/// slower. 32 MiB is the highest value glibc itself would move the threshold to; bigger
/// buffers (whole tensors) are still mapped and given back when freed.
fn steady_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes the allocator's tuning parameters; it is safe to call
        // at any time, from any thread.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        });
    }
}

/// Same architecture, same tensor names, same shapes.
fn check_models_match(reference: &Model, all: &[&Model]) -> Result<(), MergeError> {
    let arch = |m: &Model| m.ck.config().and_then(|c| c.get("architectures")).map(|a| a.to_string());
    let names: BTreeSet<&str> = reference.ck.names().collect();
    for m in all {
        if let (Some(a), Some(b)) = (arch(reference), arch(m)) {
            if a != b {
                return Err(MergeError::Plan(format!(
                    "{} has architectures {b} but {} has {a}; only models of one architecture can be merged",
                    m.label, reference.label
                )));
            }
        }
        let theirs: BTreeSet<&str> = m.ck.names().collect();
        if let Some(missing) = names.difference(&theirs).next() {
            return Err(MergeError::Tensor {
                tensor: missing.to_string(),
                models: format!("{} and {}", reference.label, m.label),
                message: format!(
                    "present in {} but missing from {}; the models must have the same tensors (same architecture and size)",
                    reference.label, m.label
                ),
            });
        }
        if let Some(extra) = theirs.difference(&names).next() {
            return Err(MergeError::Tensor {
                tensor: extra.to_string(),
                models: format!("{} and {}", reference.label, m.label),
                message: format!(
                    "present in {} but missing from {}; the models must have the same tensors (same architecture and size)",
                    m.label, reference.label
                ),
            });
        }
        for name in &names {
            let (a, b) = (reference.ck.info(name), m.ck.info(name));
            if let (Some(a), Some(b)) = (a, b) {
                if a.shape != b.shape {
                    return Err(MergeError::Tensor {
                        tensor: name.to_string(),
                        models: format!("{} and {}", reference.label, m.label),
                        message: format!("shape {:?} in {} but {:?} in {}; the models must have the same sizes", a.shape, reference.label, b.shape, m.label),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Parameters in the recipe that the strategy does not declare.
fn unknown_parameters(plan: &MergePlan, defs: &[ParamDef]) -> Vec<String> {
    let known: BTreeSet<&str> = defs.iter().map(|d| d.name).collect();
    let mut out = Vec::new();
    let mut check = |settings: &Settings, where_: &str| {
        for k in settings.keys() {
            if !known.contains(k.as_str()) {
                out.push(format!(
                    "parameter `{k}` ({where_}) is not used by this merge method (it uses: {})",
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    };
    check(&plan.params, "global");
    for m in &plan.models {
        check(&m.params, &m.path.display().to_string());
    }
    for m in &plan.models {
        for k in m.params.keys() {
            if defs.iter().any(|d| d.name == k && !d.per_model) {
                out.push(format!(
                    "parameter `{k}` of {} is global: it is read only under the recipe's top-level `parameters:`, so this one is ignored",
                    m.path.display()
                ));
            }
        }
    }
    out
}

/// Resolves every tensor's parameters and checks them, before any data is read.
fn plan_tensors(plan: &MergePlan, strategy: &dyn Strategy, reference: &Model, models: &[Model]) -> Result<Vec<TensorPlan>, MergeError> {
    let defs = strategy.parameters();
    let num_layers = reference.ck.num_layers();
    let mut out = Vec::new();
    for name in reference.ck.names() {
        let info = reference.ck.info(name).expect("listed tensor has info");
        let layer = layer_index(name);
        let t = layer_t(layer, num_layers);
        let tensor_err = |message: String| MergeError::Tensor {
            tensor: name.to_string(),
            models: models.iter().map(|m| m.label.as_str()).collect::<Vec<_>>().join(", "),
            message,
        };
        let mut params = Params::default();
        for (k, s) in &plan.params {
            if let Some(v) = s.evaluate(name, t) {
                params.set(k, v);
            }
        }
        for d in defs.iter().filter(|d| !d.per_model) {
            if params.get(d.name).is_none() {
                match &d.default {
                    Some(v) => params.set(d.name, v.clone()),
                    None => return Err(tensor_err(format!("required parameter `{}` is not set; add it under `parameters:`", d.name))),
                }
            }
        }
        let mut model_params = Vec::new();
        for (entry, m) in plan.models.iter().zip(models) {
            let mut p = Params::default();
            for (k, s) in &entry.params {
                if let Some(v) = s.evaluate(name, t) {
                    p.set(k, v);
                }
            }
            for d in defs.iter().filter(|d| d.per_model) {
                if p.get(d.name).is_some() {
                    continue;
                }
                if let Some(v) = plan.params.get(d.name).and_then(|s| s.evaluate(name, t)) {
                    p.set(d.name, v);
                } else if let Some(v) = &d.default {
                    p.set(d.name, v.clone());
                } else if !m.is_base {
                    return Err(tensor_err(format!(
                        "required parameter `{}` is not set for model {}; add it under that model's `parameters:` or the global `parameters:`",
                        d.name, m.label
                    )));
                }
            }
            model_params.push(p);
        }
        let numel = info.numel();
        let view_models: Vec<(&str, &Params, bool)> = models.iter().zip(&model_params).map(|(m, p)| (m.label.as_str(), p, m.is_base)).collect();
        strategy
            .check(&ParamsView { tensor: name, numel, has_base: plan.base.is_some(), params: &params, models: &view_models })
            .map_err(|e| tensor_err(format!("{e:#}")))?;
        let float = info.dtype.is_float();
        let wide = plan.dtype == Some(DType::F64)
            || reference.ck.info(name).is_some_and(|i| i.dtype == DType::F64)
            || models.iter().any(|m| m.ck.info(name).is_some_and(|i| i.dtype == DType::F64));
        let out_dtype = if float { plan.out_dtype.or(plan.dtype).unwrap_or(info.dtype) } else { info.dtype };
        let weighted = if float && !wide && strategy.elementwise() {
            let sum = strategy.weighted_sum(&params, &stream_inputs(models, &model_params)).map_err(|e| tensor_err(format!("{e:#}")))?;
            let dtype = |op: Operand| match op {
                Operand::Base if plan.base.is_some() => reference.ck.info(name).map(|i| i.dtype),
                Operand::Base => None,
                Operand::Model(i) => models.get(i).and_then(|m| m.ck.info(name)).map(|i| i.dtype),
            };
            sum.filter(|s| s.fusable(models.len(), dtype, out_dtype))
        } else {
            None
        };
        out.push(TensorPlan {
            name: name.to_string(),
            shape: info.shape.clone(),
            layer,
            t,
            params,
            model_params,
            out_dtype,
            float,
            wide,
            weighted,
            chunks: AtomicUsize::new(1),
        });
    }
    Ok(out)
}

/// The models as a strategy sees them before any values: label, resolved parameters, and
/// whether each is the base.
fn stream_inputs<'a>(models: &'a [Model], params: &'a [Params]) -> Vec<StreamInput<'a>> {
    models.iter().zip(params).map(|(m, p)| StreamInput { model: &m.label, params: p, is_base: m.is_base }).collect()
}

/// Where a tensor sits for layer gradients, as mergekit 0.1.5 plans it: `layer / (layers − 1)`
/// in the layers (1 when there is one); 0 outside them — the tensors before the layers
/// (embeddings) and after them (final norm, `lm_head`) are both planned by `plan_module` with
/// its `ConfigReader(t=0)`.
fn layer_t(layer: Option<usize>, num_layers: usize) -> f64 {
    match layer {
        Some(l) if num_layers > 1 => (l as f64 / (num_layers - 1) as f64).min(1.0),
        Some(_) => 1.0,
        None => 0.0,
    }
}

/// Decoding and encoding for the two compute types.
trait Elem: Float {
    /// Decodes `bytes` into `out`; false when a value is NaN or infinite.
    fn decode(dtype: DType, bytes: &[u8], out: &mut [Self]) -> bool;
    fn merge(strategy: &dyn Strategy, job: &TensorJob<'_, Self>) -> anyhow::Result<Vec<Self>>;
    fn merge_stream(strategy: &dyn Strategy, s: &TensorStream<'_, Self>) -> anyhow::Result<()>;
    /// Encodes `values` as `dtype` into `out` (exactly their size); false when a value (after
    /// the cast) is NaN or infinite.
    fn encode(values: &[Self], dtype: DType, out: &mut [u8]) -> bool;
}

impl Elem for f32 {
    fn decode(dtype: DType, bytes: &[u8], out: &mut [f32]) -> bool {
        to_f32_into(dtype, bytes, out)
    }
    fn merge(strategy: &dyn Strategy, job: &TensorJob<'_, f32>) -> anyhow::Result<Vec<f32>> {
        strategy.merge(job)
    }
    fn merge_stream(strategy: &dyn Strategy, s: &TensorStream<'_, f32>) -> anyhow::Result<()> {
        strategy.merge_stream(s)
    }
    fn encode(values: &[f32], dtype: DType, out: &mut [u8]) -> bool {
        cast_f32_into(values, dtype, out)
    }
}

impl Elem for f64 {
    fn decode(dtype: DType, bytes: &[u8], out: &mut [f64]) -> bool {
        to_f64_into(dtype, bytes, out)
    }
    fn merge(strategy: &dyn Strategy, job: &TensorJob<'_, f64>) -> anyhow::Result<Vec<f64>> {
        strategy.merge_f64(job)
    }
    fn merge_stream(strategy: &dyn Strategy, s: &TensorStream<'_, f64>) -> anyhow::Result<()> {
        strategy.merge_stream_f64(s)
    }
    fn encode(values: &[f64], dtype: DType, out: &mut [u8]) -> bool {
        cast_f64_into(values, dtype, out)
    }
}

/// Decodes `raw`, the bytes of `view` (a tensor of `m`) from element `start` on, into `out`
/// (resized to fit). NaN or Inf is an error naming the element.
fn decode<T: Elem>(m: &Model, view: &TensorView<'_>, raw: &[u8], start: usize, out: &mut Vec<T>) -> Result<(), MergeError> {
    // Resizing only when the length changes: the decode overwrites every element.
    out.resize(raw.len() / view.dtype.size(), T::zero());
    if T::decode(view.dtype, raw, out) {
        return Ok(());
    }
    let (i, x) = first_bad(out).unwrap_or((0, T::zero()));
    Err(MergeError::Tensor {
        tensor: view.name.to_string(),
        models: m.label.clone(),
        message: format!("element {} is {x:?} in {} ({}); fix or re-export that checkpoint", start + i, m.label, view.file.display()),
    })
}

/// The first element of `values` that is NaN or infinite, as (index, value).
fn first_bad<T: Float>(values: &[T]) -> Option<(usize, T)> {
    values.iter().position(|x| !x.is_finite()).map(|i| (i, values[i]))
}

/// Says what went wrong when merged values (starting at element `start`) failed to encode
/// as finite `dtype` values.
fn bad_output<T: Float>(values: &[T], start: usize, dtype: DType) -> String {
    let what = match first_bad(values) {
        Some((i, x)) => format!("the merge produced {x:?} at element {}", start + i),
        None => format!("the merge produced a value too large for {dtype} (it would be ±Inf)"),
    };
    format!("{what}; check the parameters (weights summing to zero, extreme lambda) or choose a wider `out_dtype`")
}

/// The bytes of each mapped input; empty for those not mapped.
fn mapped_bytes(maps: &[Option<Mapped>]) -> Vec<&[u8]> {
    maps.iter().map(|m| m.as_deref().unwrap_or(&[])).collect()
}

/// Elements of one input of a streamed tensor, mapped while the passes read chunks of them.
struct Window {
    elements: Range<usize>,
    map: Arc<Mapped>,
}

impl Window {
    /// The mapping that holds elements `range` of `view` and where their bytes are in it:
    /// `window`, or a new one of [`WINDOW_BYTES`] from `range` on (the old one is unmapped,
    /// unless a [`StoredChunk`] still holds it).
    fn over<'w>(window: &'w mut Option<Window>, view: &TensorView<'_>, range: Range<usize>) -> Result<(&'w Arc<Mapped>, Range<usize>), MergeError> {
        let size = view.dtype.size();
        if !window.as_ref().is_some_and(|w| w.elements.start <= range.start && range.end <= w.elements.end) {
            *window = None;
            let elements = range.start..(range.start + (WINDOW_BYTES / size).max(range.len())).min(view.numel());
            *window = Some(Window { map: Arc::new(view.map(elements.clone())?), elements });
        }
        let w = window.as_ref().expect("mapped above");
        let at = range.start - w.elements.start;
        Ok((&w.map, at * size..(at + range.len()) * size))
    }
}

struct Context<'a> {
    plan: &'a MergePlan,
    strategy: &'a dyn Strategy,
    base: Option<&'a Model>,
    models: &'a [Model],
    reference: &'a Model,
    writer: &'a CheckpointWriter,
}

impl Context<'_> {
    /// Copies a non-float tensor (integer buffers) from the reference model.
    fn copy(&self, t: &TensorPlan) -> Result<(u64, u64), MergeError> {
        let v = self.reference.ck.view(&t.name)?;
        self.writer.write_tensor(&t.name, v.bytes)?;
        Ok((v.bytes.len() as u64, v.bytes.len() as u64))
    }

    /// Decodes elements `range` of a tensor of `m` into `out` (resized to fit), straight from
    /// its `window`. NaN or Inf is an error naming the element.
    fn load<T: Elem>(&self, m: &Model, name: &str, range: Range<usize>, window: &mut Option<Window>, out: &mut Vec<T>) -> Result<(), MergeError> {
        let view = m.ck.view(name)?;
        let (map, bytes) = Window::over(window, &view, range.clone())?;
        decode(m, &view, &map[bytes], range.start, out)
    }

    /// Merges one tensor through [`Strategy::merge_stream`]: the strategy reads chunks of
    /// the inputs as often as it needs and writes the
    /// output chunk by chunk. Returns (input bytes, output bytes), counting each input once.
    fn stream_tensor<T: Elem>(&self, t: &TensorPlan) -> Result<(u64, u64), MergeError> {
        let numel = t.shape.iter().product::<u64>() as usize;
        let all: Vec<&Model> = self.base.into_iter().chain(self.models).collect();
        let read_bytes: u64 = all.iter().filter_map(|m| m.ck.info(&t.name)).map(|i| i.numel() as u64 * i.dtype.size() as u64).sum();
        let error = std::sync::Mutex::new(None::<MergeError>);
        let keep = |e: MergeError| {
            let msg = e.to_string();
            error.lock().unwrap().get_or_insert(e);
            anyhow::anyhow!(msg)
        };
        // Each input's mapped window, the base's last.
        let windows = std::sync::Mutex::new((0..=self.models.len()).map(|_| None).collect::<Vec<Option<Window>>>());
        let read = |r: Range<usize>, c: &mut Chunk<T>| -> anyhow::Result<()> {
            let mut windows = windows.lock().unwrap();
            let (windows, base_window) = windows.split_at_mut(self.models.len());
            match self.base {
                Some(b) => {
                    self.load(b, &t.name, r.clone(), &mut base_window[0], c.base.get_or_insert_with(Vec::new)).map_err(keep)?;
                }
                None => c.base = None,
            }
            c.values.resize_with(self.models.len(), Vec::new);
            for ((m, v), w) in self.models.iter().zip(&mut c.values).zip(windows) {
                self.load(m, &t.name, r.clone(), w, v).map_err(keep)?;
            }
            c.range = r;
            Ok(())
        };
        // The same windows, as stored: when every input is BF16, or every one F32, and aligned.
        let read_stored = |r: Range<usize>, c: &mut StoredChunk| -> anyhow::Result<bool> {
            let mut windows = windows.lock().unwrap();
            let views = self.models.iter().chain(self.base).map(|m| m.ck.view(&t.name)).collect::<Result<Vec<_>, _>>().map_err(|e| keep(e.into()))?;
            let dtype = views[0].dtype;
            if !matches!(dtype, DType::BF16 | DType::F32) || views.iter().any(|v| v.dtype != dtype) {
                return Ok(false);
            }
            let mut parts = Vec::with_capacity(views.len());
            for (view, w) in views.iter().zip(windows.iter_mut()) {
                let (map, bytes) = Window::over(w, view, r.clone()).map_err(keep)?;
                if !(map.as_ptr() as usize + bytes.start).is_multiple_of(dtype.size()) {
                    return Ok(false);
                }
                parts.push(StoredPart { map: map.clone(), bytes });
            }
            c.base = if self.base.is_some() { parts.pop() } else { None };
            c.values = parts;
            c.dtype = Some(dtype);
            c.range = r;
            Ok(true)
        };
        let written = AtomicU64::new(0);
        let write = |start: usize, v: &[T]| -> anyhow::Result<()> {
            thread_local!(static BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
            BYTES.with_borrow_mut(|bytes| {
                // Resized, not cleared: the cast overwrites every byte, so only growth is zeroed.
                bytes.resize(v.len() * t.out_dtype.size(), 0);
                if !T::encode(v, t.out_dtype, bytes) {
                    anyhow::bail!(bad_output(v, start, t.out_dtype));
                }
                self.writer.write_tensor_part(&t.name, start, bytes).map_err(|e| keep(e.into()))?;
                written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Ok(())
            })
        };
        let inputs = stream_inputs(self.models, &t.model_params);
        let stream = TensorStream::new(
            &t.name,
            &t.shape,
            t.layer,
            t.t,
            &t.params,
            &inputs,
            self.base.is_some(),
            self.plan.seed ^ fnv1a(&t.name),
            STREAM_CHUNK_ELEMENTS,
            &read,
            &write,
        )
        .with_stored(&read_stored);
        if let Err(e) = T::merge_stream(self.strategy, &stream) {
            // An input or output error keeps its own message; a strategy error names the
            // tensor and the models.
            return Err(error.lock().unwrap().take().unwrap_or_else(|| MergeError::Tensor {
                tensor: t.name.clone(),
                models: self.models.iter().map(|m| m.label.as_str()).collect::<Vec<_>>().join(", "),
                message: format!("{e:#}"),
            }));
        }
        let w = written.load(Ordering::Relaxed).saturating_sub((stream.rewritten() * t.out_dtype.size()) as u64);
        let want = numel as u64 * t.out_dtype.size() as u64;
        if w != want {
            return Err(MergeError::Tensor {
                tensor: t.name.clone(),
                models: self.models.iter().map(|m| m.label.as_str()).collect::<Vec<_>>().join(", "),
                message: format!("merge method `{}` wrote {w} of {want} bytes (a bug in the strategy)", self.strategy.name()),
            });
        }
        self.writer.mark_written(&t.name)?;
        Ok((read_bytes, w))
    }

    /// Merges one unit: element-wise strategies block by block, the others whole. Each
    /// input's part of the unit is mapped at once, then decoded a cache-sized block at a time;
    /// the output goes out every [`WRITE_ELEMENTS`], while it is still in cache. The
    /// mappings go when the unit is done, so nothing stays resident.
    fn merge_unit<T: Elem>(&self, t: &TensorPlan, u: &Unit) -> Result<(u64, u64), MergeError> {
        let block = if self.strategy.elementwise() { BLOCK_ELEMENTS } else { usize::MAX };
        let inputs: Vec<&Model> = self.base.into_iter().chain(self.models).collect();
        let views = inputs.iter().map(|m| m.ck.view(&t.name)).collect::<Result<Vec<_>, _>>()?;
        let mut maps: Vec<Option<Mapped>> = (0..inputs.len()).map(|_| None).collect();
        let mut read_bytes = 0;
        let mut map = |which: &mut dyn Iterator<Item = usize>, maps: &mut [Option<Mapped>]| -> Result<(), MergeError> {
            for i in which {
                if maps[i].is_none() {
                    let m = views[i].map(u.range.clone())?;
                    read_bytes += m.len() as u64;
                    maps[i] = Some(m);
                }
            }
            Ok(())
        };
        let mut written = None;
        if let Some(sum) = &t.weighted {
            // Only what the sum reads; the rest only if it falls back.
            let has_base = self.base.is_some();
            map(&mut (0..inputs.len()).filter(|i| sum.reads(Operand::at_slot(*i, has_base))), &mut maps)?;
            written = self.merge_fused(t, u, sum, &views, &mapped_bytes(&maps))?;
        }
        if written.is_none() {
            map(&mut (0..inputs.len()), &mut maps)?;
            written = Some(self.merge_read::<T>(t, u, &inputs, &views, &mapped_bytes(&maps), block)?);
        }
        let (read, written) = (read_bytes, written.expect("merged above"));
        if u.whole || t.chunks.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.writer.mark_written(&t.name)?;
        }
        Ok((read, written))
    }

    /// [`Context::merge_unit`]'s work for a strategy that is a weighted sum: decodes, sums and
    /// encodes the input bytes a tile at a time ([`WeightedSum::fused`]), writing every
    /// [`WRITE_ELEMENTS`]. Returns the bytes written, or None when the sum cannot take these
    /// buffers or an output is not finite: the caller then merges the unit the ordinary way
    /// (rewriting what was written), whose checks name the model and element at fault.
    fn merge_fused(&self, t: &TensorPlan, u: &Unit, sum: &WeightedSum, views: &[TensorView<'_>], raw: &[&[u8]]) -> Result<Option<u64>, MergeError> {
        let size = t.out_dtype.size();
        OUTPUT.with_borrow_mut(|bytes| {
            let mut written = 0;
            let mut start = u.range.start;
            while start < u.range.end {
                let end = (start + WRITE_ELEMENTS).min(u.range.end);
                let at = start - u.range.start..end - u.range.start;
                let parts: Vec<(DType, &[u8])> =
                    views.iter().zip(raw).map(|(v, r)| (v.dtype, r.get(at.start * v.dtype.size()..at.end * v.dtype.size()).unwrap_or(&[]))).collect();
                let len = (end - start) * size;
                if bytes.len() < len {
                    bytes.resize(len, 0);
                }
                if sum.fused(self.base.is_some(), &parts, t.out_dtype, &mut bytes[..len]) != Some(true) {
                    return Ok(None);
                }
                self.writer.write_tensor_part(&t.name, start, &bytes[..len])?;
                written += len as u64;
                start = end;
            }
            Ok(Some(written))
        })
    }

    /// [`Context::merge_unit`]'s work on the input bytes; returns the bytes written.
    fn merge_read<T: Elem>(
        &self,
        t: &TensorPlan,
        u: &Unit,
        inputs: &[&Model],
        views: &[TensorView<'_>],
        raw: &[&[u8]],
        block: usize,
    ) -> Result<u64, MergeError> {
        thread_local!(static BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
        let mut decoded: Vec<Vec<T>> = vec![Vec::new(); inputs.len()];
        // Taken out of the thread-local while in use, as in `merge_unit`.
        let mut bytes = BYTES.take();
        // Encoded output waiting to be written: `bytes[..filled]`, elements `pending..start`.
        // The buffer is reused from unit to unit and only grows, so it is zeroed once.
        let mut filled = 0;
        let mut written = 0;
        let size = t.out_dtype.size();
        let (mut start, mut pending) = (u.range.start, u.range.start);
        let result = (|| {
            while start < u.range.end {
                let end = start.saturating_add(block).min(u.range.end);
                for (((m, view), raw), out) in inputs.iter().zip(views).zip(raw).zip(decoded.iter_mut()) {
                    let size = view.dtype.size();
                    decode(m, view, &raw[(start - u.range.start) * size..(end - u.range.start) * size], start, out)?;
                }
                let need = filled + (end - start) * size;
                if bytes.len() < need {
                    bytes.resize(need, 0);
                }
                self.merge_block::<T>(t, start..end, &decoded, &mut bytes[filled..need])?;
                filled = need;
                start = end;
                if start - pending >= WRITE_ELEMENTS || start == u.range.end {
                    self.writer.write_tensor_part(&t.name, pending, &bytes[..filled])?;
                    written += filled as u64;
                    filled = 0;
                    pending = start;
                }
            }
            Ok(written)
        })();
        // A whole tensor's output (methods that are not element-wise) is not kept.
        if bytes.capacity() <= KEEP_BUFFER_BYTES {
            BYTES.set(bytes);
        }
        result
    }

    /// Merges elements `range` of a tensor from the decoded inputs (the base first, when
    /// there is one), encoding the output into `bytes` (exactly its size).
    fn merge_block<T: Elem>(&self, t: &TensorPlan, range: Range<usize>, decoded: &[Vec<T>], bytes: &mut [u8]) -> Result<(), MergeError> {
        let (base, values) = match self.base {
            Some(_) => (Some(decoded[0].as_slice()), &decoded[1..]),
            None => (None, decoded),
        };
        let inputs: Vec<Input<'_, T>> = self
            .models
            .iter()
            .zip(values.iter())
            .zip(&t.model_params)
            .map(|((m, v), p)| Input { model: &m.label, values: v, params: p, is_base: m.is_base })
            .collect();
        let job = TensorJob {
            name: &t.name,
            shape: &t.shape,
            layer: t.layer,
            t: t.t,
            base,
            inputs: &inputs,
            params: &t.params,
            seed: self.plan.seed ^ fnv1a(&t.name),
            range: range.clone(),
        };
        let models = || self.models.iter().map(|m| m.label.as_str()).collect::<Vec<_>>().join(", ");
        let out = T::merge(self.strategy, &job).map_err(|e| MergeError::Tensor { tensor: t.name.clone(), models: models(), message: format!("{e:#}") })?;
        if out.len() != range.len() {
            return Err(MergeError::Tensor {
                tensor: t.name.clone(),
                models: models(),
                message: format!("merge method `{}` returned {} values for {} elements (a bug in the strategy)", self.strategy.name(), out.len(), range.len()),
            });
        }
        if !T::encode(&out, t.out_dtype, bytes) {
            return Err(MergeError::Tensor { tensor: t.name.clone(), models: models(), message: bad_output(&out, range.start, t.out_dtype) });
        }
        Ok(())
    }
}

/// FNV-1a: a stable hash of tensor names for per-tensor seeds.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}
