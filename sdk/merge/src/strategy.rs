//! The [`Strategy`] trait: a merge method is one function from the input tensors (and their
//! resolved parameters) to the merged tensor. The engine does everything else.

use std::{
    ops::{AddAssign, Range},
    sync::Arc,
};

use agentmerge_checkpoint::{DType, Mapped};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{
    params::{ParamDef, Params},
    WeightedSum,
};

/// The element types merges are computed in: f32, or f64 when an input is f64.
pub trait Float: num_traits::Float + AddAssign + Stored + std::fmt::Debug + Default + 'static {
    /// The unsigned integer of the same width: order keys of magnitudes compare in it (16
    /// to a 512-bit vector for f32).
    type Key: num_traits::PrimInt + Into<u64> + Send + Sync + std::fmt::Debug + 'static;
    /// Width of [`Float::Key`].
    const KEY_BITS: u32;
    fn of(x: f64) -> Self;
    fn of_f32(x: f32) -> Self;
    /// The bits of a non-negative value: their order is the values' order.
    fn magnitude_bits(self) -> Self::Key;
}

impl Float for f32 {
    type Key = u32;
    const KEY_BITS: u32 = 32;
    fn of(x: f64) -> f32 {
        x as f32
    }
    #[inline(always)]
    fn of_f32(x: f32) -> f32 {
        x
    }
    fn magnitude_bits(self) -> u32 {
        self.to_bits()
    }
}

impl Float for f64 {
    type Key = u64;
    const KEY_BITS: u32 = 64;
    fn of(x: f64) -> f64 {
        x
    }
    #[inline(always)]
    fn of_f32(x: f32) -> f64 {
        x as f64
    }
    fn magnitude_bits(self) -> u64 {
        self.to_bits()
    }
}

/// An element as a checkpoint stores it, for loops that decode their inputs as they go
/// ([`TensorStream::read_stored`]): f32 and f64 are themselves, [`Bf16`] a shift away.
pub trait Stored: bytemuck::Pod + Send + Sync {
    fn get<T: Float>(self) -> T;
}

impl Stored for f32 {
    #[inline(always)]
    fn get<T: Float>(self) -> T {
        T::of_f32(self)
    }
}

impl Stored for f64 {
    #[inline(always)]
    fn get<T: Float>(self) -> T {
        T::of(self)
    }
}

/// A bfloat16 as stored: the high half of an f32's bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct Bf16(pub u16);

// SAFETY: a transparent wrapper of u16, which is Pod.
unsafe impl bytemuck::Zeroable for Bf16 {}
unsafe impl bytemuck::Pod for Bf16 {}

impl Stored for Bf16 {
    #[inline(always)]
    fn get<T: Float>(self) -> T {
        T::of_f32(f32::from_bits((self.0 as u32) << 16))
    }
}

/// One input model's values for the tensor being merged.
pub struct Input<'a, T = f32> {
    /// The model's path, for messages.
    pub model: &'a str,
    pub values: &'a [T],
    /// This model's resolved per-model parameters (`weight`, `density`, ...).
    pub params: &'a Params,
    /// This entry of `models:` is the base model itself (mergekit lets the base be listed).
    pub is_base: bool,
}

/// Everything a strategy sees for one tensor (or one chunk of it, for element-wise
/// strategies).
pub struct TensorJob<'a, T = f32> {
    pub name: &'a str,
    pub shape: &'a [u64],
    /// The layer index in the tensor name, if any.
    pub layer: Option<usize>,
    /// The layer fraction gradients were evaluated at: `layer / (num_layers - 1)` in the
    /// layers, 0 before them (embeddings), 1 after them (final norm, `lm_head`).
    pub t: f64,
    /// The base model's values (when the recipe names a `base_model`).
    pub base: Option<&'a [T]>,
    /// The `models:` entries, in recipe order (the base among them if it is listed).
    pub inputs: &'a [Input<'a, T>],
    /// Resolved global parameters.
    pub params: &'a Params,
    /// Deterministic per-tensor seed: the recipe's seed mixed with a hash of the name.
    pub seed: u64,
    /// The elements of the tensor these values cover (`0..numel` unless the strategy is
    /// element-wise and the tensor was cut into chunks).
    pub range: Range<usize>,
}

impl<'a, T> TensorJob<'a, T> {
    /// Number of elements in this job.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The inputs that are not the base model.
    pub fn others(&self) -> impl Iterator<Item = &Input<'a, T>> {
        self.inputs.iter().filter(|i| !i.is_base)
    }

    /// The inputs without their values: what [`Strategy::weighted_sum`] is given.
    pub fn stream_inputs(&self) -> Vec<StreamInput<'a>> {
        self.inputs.iter().map(|i| StreamInput { model: i.model, params: i.params, is_base: i.is_base }).collect()
    }

    /// The base values, or an error saying the method needs `base_model`.
    pub fn base(&self, method: &str) -> anyhow::Result<&'a [T]> {
        self.base.ok_or_else(|| anyhow::anyhow!("merge method `{method}` needs `base_model` in the recipe"))
    }

    /// A deterministic random generator for stream `stream` (e.g. the input index).
    pub fn rng(&self, stream: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream);
        rng
    }
}

/// One input of a [`TensorStream`]: who it is and its resolved parameters (the values are read
/// chunk by chunk with [`TensorStream::read`]).
pub struct StreamInput<'a> {
    pub model: &'a str,
    pub params: &'a Params,
    pub is_base: bool,
}

/// One chunk of every input: `values[i]` is model `i`'s (in `models:` order).
#[derive(Default)]
pub struct Chunk<T> {
    pub range: Range<usize>,
    pub base: Option<Vec<T>>,
    pub values: Vec<Vec<T>>,
}

impl<T> Chunk<T> {
    /// The base values, or an error saying the method needs `base_model` (as
    /// [`TensorJob::base`]).
    pub fn base(&self, method: &str) -> anyhow::Result<&[T]> {
        self.base.as_deref().ok_or_else(|| anyhow::anyhow!("merge method `{method}` needs `base_model` in the recipe"))
    }
}

/// One chunk of every input as stored in the checkpoints, not decoded (see
/// [`TensorStream::read_stored`]). The bytes are the engine's mappings of the files, kept
/// alive until the chunk is read again or dropped.
#[derive(Default)]
pub struct StoredChunk {
    pub range: Range<usize>,
    /// The dtype of every input: BF16 or F32.
    pub dtype: Option<DType>,
    pub(crate) base: Option<StoredPart>,
    pub(crate) values: Vec<StoredPart>,
}

/// One input's bytes in a [`StoredChunk`]: aligned for its dtype.
pub(crate) struct StoredPart {
    pub(crate) map: Arc<Mapped>,
    pub(crate) bytes: Range<usize>,
}

impl StoredChunk {
    /// The base's elements, as `S` (which must match [`StoredChunk::dtype`]: [`Bf16`] for
    /// BF16, f32 for F32).
    pub fn base<S: bytemuck::Pod>(&self) -> Option<&[S]> {
        self.base.as_ref().map(StoredPart::elements)
    }

    /// Model `i`'s elements (in `models:` order), as `S`.
    pub fn values<S: bytemuck::Pod>(&self, i: usize) -> &[S] {
        self.values[i].elements()
    }
}

impl StoredPart {
    fn elements<S: bytemuck::Pod>(&self) -> &[S] {
        bytemuck::cast_slice(&self.map[self.bytes.clone()])
    }
}

/// Reads a range of every input into a chunk.
pub type ReadFn<'a, T> = dyn Fn(Range<usize>, &mut Chunk<T>) -> anyhow::Result<()> + Sync + 'a;
/// Reads a range of every input as stored; false when the inputs are not all BF16 or all F32
/// (or not aligned).
pub type ReadStoredFn<'a> = dyn Fn(Range<usize>, &mut StoredChunk) -> anyhow::Result<bool> + Sync + 'a;
/// Writes merged values starting at an element offset.
pub type WriteFn<'a, T> = dyn Fn(usize, &[T]) -> anyhow::Result<()> + Sync + 'a;

/// A tensor a strategy merges in several passes over chunks, for methods that need
/// whole-tensor statistics (top-k thresholds, norms) but not the whole tensor in memory. Each
/// pass re-reads the inputs from the memory-mapped files; only a chunk per input is resident.
pub struct TensorStream<'a, T = f32> {
    pub name: &'a str,
    pub shape: &'a [u64],
    pub layer: Option<usize>,
    pub t: f64,
    pub params: &'a Params,
    pub inputs: &'a [StreamInput<'a>],
    pub has_base: bool,
    /// Deterministic per-tensor seed, as [`TensorJob::seed`].
    pub seed: u64,
    pub numel: usize,
    /// The elements to merge: `0..numel`, unless the engine cut an element-wise tensor.
    pub range: Range<usize>,
    /// The engine's preferred chunk size, in elements.
    pub chunk_elements: usize,
    read: &'a ReadFn<'a, T>,
    read_stored: Option<&'a ReadStoredFn<'a>>,
    write: &'a WriteFn<'a, T>,
    /// Elements written again ([`TensorStream::rewrite`]).
    rewritten: std::sync::atomic::AtomicUsize,
}

impl<'a, T: Float> TensorStream<'a, T> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &'a str,
        shape: &'a [u64],
        layer: Option<usize>,
        t: f64,
        params: &'a Params,
        inputs: &'a [StreamInput<'a>],
        has_base: bool,
        seed: u64,
        chunk_elements: usize,
        read: &'a ReadFn<'a, T>,
        write: &'a WriteFn<'a, T>,
    ) -> TensorStream<'a, T> {
        let numel = shape.iter().product::<u64>() as usize;
        TensorStream {
            name,
            shape,
            layer,
            t,
            params,
            inputs,
            has_base,
            seed,
            numel,
            range: 0..numel,
            chunk_elements,
            read,
            read_stored: None,
            write,
            rewritten: Default::default(),
        }
    }

    /// Lets the strategy read the inputs as stored too ([`TensorStream::read_stored`]).
    pub fn with_stored(mut self, read_stored: &'a ReadStoredFn<'a>) -> TensorStream<'a, T> {
        self.read_stored = Some(read_stored);
        self
    }

    /// The indices (into [`TensorStream::inputs`] and [`Chunk::values`]) of the inputs that
    /// are not the base model, as [`TensorJob::others`].
    pub fn others(&self) -> Vec<usize> {
        self.inputs.iter().enumerate().filter(|(_, i)| !i.is_base).map(|(k, _)| k).collect()
    }

    /// The chunks of one pass, in order; each a multiple of `align` elements (the last may be
    /// shorter).
    pub fn chunks(&self, align: usize) -> Vec<Range<usize>> {
        let align = align.max(1);
        let size = (self.chunk_elements / align).max(1) * align;
        let end = self.range.end;
        self.range.clone().step_by(size).map(|s| s..(s + size).min(end)).collect()
    }

    /// Reads `range` of the base (if any) and of every input into `chunk`.
    pub fn read(&self, range: Range<usize>, chunk: &mut Chunk<T>) -> anyhow::Result<()> {
        (self.read)(range, chunk)
    }

    /// Reads `range` of every input without decoding it, for loops that decode as they
    /// compute (the inputs come straight from the page cache: no decoded copy is written and
    /// read back). Returns false, reading nothing, when that is not possible (inputs in
    /// memory, mixed dtypes, F16 or F64): use [`TensorStream::read`] instead.
    ///
    /// Nothing is checked: a NaN or Inf in an input must be caught by the strategy (a
    /// non-finite result), which then calls [`TensorStream::read`] on the same range to get
    /// the error naming the model and element.
    pub fn read_stored(&self, range: Range<usize>, chunk: &mut StoredChunk) -> anyhow::Result<bool> {
        match self.read_stored {
            Some(read) => read(range, chunk),
            None => Ok(false),
        }
    }

    /// Writes merged values for the elements from `start` on; every element must be written
    /// exactly once.
    pub fn write(&self, start: usize, values: &[T]) -> anyhow::Result<()> {
        (self.write)(start, values)
    }

    /// Writes again elements already written with [`TensorStream::write`] (the last write
    /// wins), for a strategy that corrects part of what it wrote.
    pub fn rewrite(&self, start: usize, values: &[T]) -> anyhow::Result<()> {
        self.rewritten.fetch_add(values.len(), std::sync::atomic::Ordering::Relaxed);
        (self.write)(start, values)
    }

    /// How many elements were written again.
    pub fn rewritten(&self) -> usize {
        self.rewritten.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A deterministic random generator for stream `stream`, the same as [`TensorJob::rng`].
    pub fn rng(&self, stream: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream);
        rng
    }

    /// Passes over this tensor in chunks of a multiple of `align` elements: call
    /// [`Passes::each`] once per pass (measure, then write). A tensor that fits in one chunk
    /// is read only once.
    pub fn passes(&self, align: usize) -> Passes<'_, 'a, T> {
        Passes { stream: self, chunks: self.chunks(align), chunk: Chunk::default(), loaded: false }
    }
}

/// Repeated passes over a [`TensorStream`]'s chunks (see [`TensorStream::passes`]).
/// `slerp` is a short example: one pass sums the norms and the dot product, the second
/// writes the interpolation.
pub struct Passes<'s, 'a, T> {
    stream: &'s TensorStream<'a, T>,
    chunks: Vec<Range<usize>>,
    chunk: Chunk<T>,
    /// The single chunk is already in `chunk`.
    loaded: bool,
}

impl<T: Float> Passes<'_, '_, T> {
    /// One pass: reads each chunk of every input in order and hands it to `f`.
    pub fn each(&mut self, mut f: impl FnMut(&Chunk<T>) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let single = self.chunks.len() == 1;
        for r in &self.chunks {
            if !(single && self.loaded) {
                self.stream.read(r.clone(), &mut self.chunk)?;
                self.loaded = single;
            }
            f(&self.chunk)?;
        }
        Ok(())
    }
}

impl<'a, T: Float> TensorJob<'a, T> {
    /// Runs a streaming merge on this in-memory job, in the engine's chunks, and returns its
    /// output; lets a strategy implement [`Strategy::merge`] with its
    /// [`Strategy::merge_stream`]. (As one chunk, a big tensor's rank selection would sample
    /// every key: TIES took 43 ns per element on an 11.5 M-element tensor, against 6 in chunks.)
    pub fn run_stream(&self, f: impl FnOnce(&TensorStream<'_, T>) -> anyhow::Result<()>) -> anyhow::Result<Vec<T>> {
        let offset = self.range.start;
        let inputs = self.stream_inputs();
        let read = |r: Range<usize>, c: &mut Chunk<T>| -> anyhow::Result<()> {
            let local = r.start - offset..r.end - offset;
            c.base = self.base.map(|b| b[local.clone()].to_vec());
            c.values = self.inputs.iter().map(|i| i.values[local.clone()].to_vec()).collect();
            c.range = r;
            Ok(())
        };
        let out = std::sync::Mutex::new(vec![T::zero(); self.len()]);
        let write = |start: usize, v: &[T]| -> anyhow::Result<()> {
            let s = start - offset;
            out.lock().unwrap()[s..s + v.len()].copy_from_slice(v);
            Ok(())
        };
        let mut stream = TensorStream::new(
            self.name,
            self.shape,
            self.layer,
            self.t,
            self.params,
            &inputs,
            self.base.is_some(),
            self.seed,
            crate::engine::STREAM_CHUNK_ELEMENTS,
            &read,
            &write,
        );
        stream.range = self.range.clone();
        f(&stream)?;
        Ok(out.into_inner().unwrap())
    }
}

/// A resolved view of the parameters of one tensor, for [`Strategy::check`].
pub struct ParamsView<'a> {
    pub tensor: &'a str,
    pub numel: usize,
    pub has_base: bool,
    pub params: &'a Params,
    /// Per `models:` entry: (model path, resolved parameters, is the base).
    pub models: &'a [(&'a str, &'a Params, bool)],
}

/// A merge method. Implement [`Strategy::merge`]; everything else has a default.
///
/// ```
/// use agentmerge_merge::{Strategy, TensorJob};
///
/// /// Element-wise median of the models.
/// struct Median;
///
/// impl Strategy for Median {
///     fn name(&self) -> &str { "median" }
///     fn elementwise(&self) -> bool { true }
///     fn merge(&self, job: &TensorJob<'_>) -> anyhow::Result<Vec<f32>> {
///         let mut column = Vec::with_capacity(job.inputs.len());
///         Ok((0..job.len())
///             .map(|i| {
///                 column.clear();
///                 column.extend(job.inputs.iter().map(|m| m.values[i]));
///                 column.sort_by(f32::total_cmp);
///                 let n = column.len();
///                 if n % 2 == 1 { column[n / 2] } else { (column[n / 2 - 1] + column[n / 2]) / 2.0 }
///             })
///             .collect())
///     }
/// }
/// ```
pub trait Strategy: Send + Sync {
    /// The method's name (`merge_method:` in a recipe).
    fn name(&self) -> &str;

    /// Whether the recipe must name a `base_model`.
    fn needs_base(&self) -> bool {
        false
    }

    /// The parameters it reads, with defaults; the engine resolves them for every tensor
    /// before any data is read, and warns about parameters no strategy reads.
    fn parameters(&self) -> Vec<ParamDef> {
        Vec::new()
    }

    /// True when output element `i` depends only on input elements `i`: the engine then
    /// streams big tensors in chunks (see [`TensorJob::range`]).
    fn elementwise(&self) -> bool {
        false
    }

    /// Checks the resolved parameters of one tensor (ranges, the number of models); called
    /// for every tensor before any data is read, so a bad recipe fails at once.
    fn check(&self, _params: &ParamsView<'_>) -> anyhow::Result<()> {
        Ok(())
    }

    /// Whether tensors of this shape go through [`Strategy::merge_stream`] (in chunks, over
    /// several passes) rather than [`Strategy::merge`] (whole). Default: no.
    fn streams(&self, _shape: &[u64]) -> bool {
        false
    }

    /// Merges one tensor chunk by chunk (see [`TensorStream`]); called for the tensors
    /// [`Strategy::streams`] accepts.
    fn merge_stream(&self, s: &TensorStream<'_, f32>) -> anyhow::Result<()> {
        anyhow::bail!("merge method `{}` cannot stream tensor `{}`", self.name(), s.name)
    }

    /// [`Strategy::merge_stream`] for f64 inputs.
    fn merge_stream_f64(&self, s: &TensorStream<'_, f64>) -> anyhow::Result<()> {
        anyhow::bail!("merge method `{}` cannot stream tensor `{}`", self.name(), s.name)
    }

    /// For strategies whose output is a weighted sum of the inputs: that sum for one tensor,
    /// from its resolved parameters (`params`, and each input's). The engine then merges
    /// chunks of BF16 and F32 tensors with [`WeightedSum::fused`], decoding, summing and
    /// encoding in one pass, instead of calling [`Strategy::merge`]; `merge` must give the
    /// same values ([`WeightedSum::apply`] does). Default: None.
    fn weighted_sum(&self, _params: &Params, _inputs: &[StreamInput<'_>]) -> anyhow::Result<Option<WeightedSum>> {
        Ok(None)
    }

    /// Merges one tensor in f32; returns `job.len()` values.
    fn merge(&self, job: &TensorJob<'_, f32>) -> anyhow::Result<Vec<f32>>;

    /// Merges one tensor in f64 (when an input is f64). The default rounds the inputs to
    /// f32 and calls [`Strategy::merge`]; the built-in methods compute in f64.
    fn merge_f64(&self, job: &TensorJob<'_, f64>) -> anyhow::Result<Vec<f64>> {
        let narrow = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<f32>>();
        let base = job.base.map(narrow);
        let values: Vec<Vec<f32>> = job.inputs.iter().map(|i| narrow(i.values)).collect();
        let inputs: Vec<Input<'_, f32>> =
            job.inputs.iter().zip(&values).map(|(i, v)| Input { model: i.model, values: v, params: i.params, is_base: i.is_base }).collect();
        let narrow_job = TensorJob {
            name: job.name,
            shape: job.shape,
            layer: job.layer,
            t: job.t,
            base: base.as_deref(),
            inputs: &inputs,
            params: job.params,
            seed: job.seed,
            range: job.range.clone(),
        };
        Ok(self.merge(&narrow_job)?.into_iter().map(f64::from).collect())
    }
}
