//! The task-vector family (mergekit's "generalized task arithmetic"): every model's task
//! vector Δᵢ = θᵢ − θ_base is optionally sparsified, weighted by wᵢ, optionally filtered by
//! sign election, summed, optionally divided by the summed weights, scaled by λ and added back:
//!
//! θ = θ_base + λ · Σᵢ mᵢ·wᵢ·Δᵢ / (normalize ? Σᵢ mᵢ·wᵢ : 1)
//!
//! where mᵢ = 1 for all i without sign election, and with it mᵢ = [sign(wᵢΔᵢ) = the elected
//! sign] (elected sign: that of Σᵢ wᵢΔᵢ for "sum", of Σᵢ sign(wᵢΔᵢ) for "count"; ≥ 0 counts as
//! +). `task_arithmetic`, `ties`, `dare_linear`, `dare_ties`, `breadcrumbs`,
//! `breadcrumbs_ties`, `della`, `della_linear` and `agentmerge` are this with different
//! sparsification, sign election and defaults (see [`TaskArithmetic::named`]).
//!
//! `agentmerge` adds the task vectors to the model marked `add_to: true` instead of the
//! base: θ = θ_instruct + λ·Σᵢ wᵢ(θ_agentᵢ − θ_base).

use std::ops::Range;

use super::{
    check_range,
    select::{self, BandSelect, BlockMask, Boundary, Order, RadixSelect, RankMask},
    sparsify::{self, Draws},
    sums::LaneSum,
    tiled_into, TILE,
};
use agentmerge_checkpoint::DType;

use crate::{vectorized, Bf16, Chunk, Float, Operand, ParamDef, ParamsView, Stored, StoredChunk, Strategy, StreamInput, TensorJob, TensorStream, WeightedSum};

/// How task vectors are sparsified before they are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sparsification {
    /// Keep the largest magnitudes (TIES).
    Magnitude,
    /// Keep each element with probability `density` (DARE).
    Random,
    /// Drop the `gamma` largest and the smallest (breadcrumbs).
    MagnitudeOutliers,
    /// Keep with magnitude-ranked probabilities (DELLA).
    Della,
}

/// How the sign of each element is elected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consensus {
    /// The sign of Σᵢ wᵢΔᵢ (TIES).
    Sum,
    /// The sign of Σᵢ sign(wᵢΔᵢ).
    Count,
}

/// One member of the family.
#[derive(Clone, Debug)]
pub struct TaskArithmetic {
    pub name: &'static str,
    pub sparsification: Option<Sparsification>,
    pub consensus: Option<Consensus>,
    pub default_normalize: bool,
    pub default_rescale: bool,
    /// Add the task vectors to the model marked `add_to: true` rather than to the base.
    pub add_to_model: bool,
}

impl TaskArithmetic {
    /// The member called `name`, with mergekit's defaults.
    pub fn named(name: &str) -> Option<TaskArithmetic> {
        use Consensus::Sum;
        use Sparsification::*;
        let (name, sparsification, consensus, default_normalize, default_rescale) = match name {
            "task_arithmetic" => ("task_arithmetic", None, None, false, false),
            "agentmerge" => ("agentmerge", None, None, false, false),
            "ties" => ("ties", Some(Magnitude), Some(Sum), true, false),
            "dare_ties" => ("dare_ties", Some(Random), Some(Sum), false, true),
            "dare_linear" => ("dare_linear", Some(Random), None, false, true),
            "breadcrumbs" => ("breadcrumbs", Some(MagnitudeOutliers), None, false, false),
            "breadcrumbs_ties" => ("breadcrumbs_ties", Some(MagnitudeOutliers), Some(Sum), false, false),
            "della" => ("della", Some(Della), Some(Sum), true, true),
            "della_linear" => ("della_linear", Some(Della), None, false, true),
            _ => return None,
        };
        Some(TaskArithmetic { name, sparsification, consensus, default_normalize, default_rescale, add_to_model: name == "agentmerge" })
    }

    fn consensus(&self, params: &crate::Params) -> anyhow::Result<Option<Consensus>> {
        let Some(default) = self.consensus else {
            return Ok(None);
        };
        match params.text("consensus_method", "")? {
            "" => Ok(Some(default)),
            "sum" => Ok(Some(Consensus::Sum)),
            "count" => Ok(Some(Consensus::Count)),
            other => anyhow::bail!("consensus_method must be \"sum\" or \"count\", got {other:?}"),
        }
    }

    /// Merges a tensor in passes over its chunks (one chunk for tensors merged whole):
    /// statistics first (L1 norms for `rescale`, radix passes for rank selection), then, when
    /// rescaling, the norms of what is kept, then the output.
    fn run<T: Float>(&self, s: &TensorStream<'_, T>) -> anyhow::Result<()> {
        if !s.has_base {
            anyhow::bail!("merge method `{}` needs `base_model` in the recipe", self.name);
        }
        let rescale = s.params.flag("rescale")?;
        let lambda = T::of(s.params.num("lambda")?);
        let normalize = s.params.flag("normalize")?;
        let consensus = self.consensus(s.params)?;
        let n = s.numel;
        if n > u32::MAX as usize && self.sparsification.is_some() {
            anyhow::bail!("{} cannot sparsify a tensor of more than 4 Gi elements ({n})", self.name);
        }
        let mut target = None;
        let mut deltas: Vec<Delta<T>> = Vec::new();
        for (stream, input) in s.inputs.iter().enumerate() {
            if self.add_to_model && input.params.flag("add_to")? {
                target = Some(stream);
                continue;
            }
            if input.is_base {
                continue;
            }
            let p = input.params;
            let density = p.num_or("density", 1.0)?;
            let sparse = match self.sparsification {
                _ if density >= 1.0 => Sparse::None,
                None => Sparse::None,
                Some(Sparsification::Magnitude) => {
                    let k = (density * n as f64) as usize;
                    if k == 0 {
                        anyhow::bail!("density {density} keeps no element of a tensor of {n} elements; raise `density` for this tensor (a `filter` entry can set it per tensor)");
                    }
                    Sparse::Rank(Order::Descending, 0..k)
                }
                Some(Sparsification::MagnitudeOutliers) => {
                    // Drop the gamma·n largest and enough of the smallest to keep density·n
                    // (fewer outliers when both do not fit).
                    let gamma = p.num("gamma")?;
                    let (n_, target) = (n as i64, (density * n as f64) as i64);
                    let mut top = (gamma * n as f64) as i64;
                    let mut bottom = n_ - target - top;
                    if bottom < 0 {
                        top += bottom;
                        bottom = 0;
                    }
                    Sparse::Rank(Order::Ascending, bottom as usize..(n_ - top) as usize)
                }
                Some(Sparsification::Random) => Sparse::Random(density),
                Some(Sparsification::Della) => Sparse::Della(density, p.num("epsilon")?),
            };
            deltas.push(Delta { stream, weight: T::of(p.num("weight")?), sparse, select: None, mask: None, scale: None });
        }
        if self.add_to_model && target.is_none() {
            anyhow::bail!("agentmerge needs exactly one model with `add_to: true`");
        }
        let align = if deltas.iter().any(|d| matches!(d.sparse, Sparse::Della(..))) { sparsify::della_group(s.shape) } else { 1 };
        let chunks = s.chunks(align);
        let mut chunk = Chunk::default();

        let weights: Vec<T> = deltas.iter().map(|d| d.weight).collect();
        let combiner = Combiner::new(&weights, consensus, normalize, lambda);
        let mut out = Vec::new();

        // Statistics: L1 norms before sparsifying, and the keys at the rank boundaries.
        let rescaling = rescale && deltas.iter().any(|d| !matches!(d.sparse, Sparse::None));
        let mut l1_before = vec![LaneSum::default(); deltas.len()];
        let whole = chunks.len() <= WHOLE_SAMPLE_CHUNKS;
        let mut bands: Vec<Option<BandSelect>> = deltas
            .iter()
            .map(|d| match &d.sparse {
                Sparse::Rank(_, keep) if !keep.is_empty() => Some(BandSelect::new(n, &boundary_ranks(keep), whole)),
                _ => None,
            })
            .collect();
        let ranking = bands.iter().any(Option::is_some);
        // The sample: every chunk of a small tensor (then it also sums the L1 norms), else
        // runs of elements evenly spaced through it.
        if ranking {
            let sample: Vec<Range<usize>> = if whole { chunks.clone() } else { sample_runs(&s.range, align) };
            let l1 = (whole && rescaling).then_some(&mut l1_before[..]);
            stats_pass(s, &sample, &deltas, &mut chunk, l1, &mut bands, BandSelect::sample, None)?;
            bands.iter_mut().flatten().for_each(BandSelect::end_sample);
        }
        // One pass over every chunk for the bands' counts (unless the sample was the whole
        // tensor), which also sums the L1 norms (without one, the rescaling pass sums them)
        // and keeps a second sample: single elements spread through the whole tensor.
        let counting = ranking && !whole;
        let mut spread = Spread { positions: if counting { spread_positions(&s.range, s.seed) } else { Vec::new() }, keys: vec![Vec::new(); deltas.len()] };
        // When every band is one key (the few distinct values of bf16 task vectors), the
        // counting pass also writes the output, with masks from the sample's guesses; the
        // chunks where they kept other copies of the boundary keys than the counts say are
        // merged again ([`guessed_pass`]).
        let mut guessed = None;
        if counting && !rescaling && !deltas.iter().any(Delta::random) {
            guessed = guessed_pass(s, &chunks, &deltas, target, &mut bands, &mut spread, &combiner, &mut chunk, &mut out)?;
        }
        if counting && guessed.is_none() {
            let l1 = rescaling.then_some(&mut l1_before[..]);
            stats_pass(s, &chunks, &deltas, &mut chunk, l1, &mut bands, BandSelect::count, Some(&mut spread))?;
        }
        // A band that missed its rank (the runs were unlike the rest of the tensor, as when
        // a task vector's rows differ in scale) searches again with a band from the spread
        // sample: one more counting pass.
        let mut retries: Vec<Option<BandSelect>> = bands
            .iter_mut()
            .zip(&spread.keys)
            .map(|(b, keys)| {
                let band = b.take_if(|b| b.missed())?;
                tracing::debug!(tensor = s.name, "the sample's band missed a rank boundary; searching again with a sample spread through the tensor");
                Some(band.retry(keys))
            })
            .collect();
        if retries.iter().any(Option::is_some) {
            stats_pass(s, &chunks, &deltas, &mut chunk, None, &mut retries, BandSelect::count, None)?;
            for (b, retry) in bands.iter_mut().zip(retries) {
                if retry.is_some() {
                    *b = retry;
                }
            }
        }
        drop(spread);
        let l1_later = rescaling && !ranking;
        // A band that missed again falls back to radix selection: one more pass per 16-bit
        // digit.
        let mut found: Vec<Option<Vec<Boundary>>> = Vec::new();
        for (d, b) in deltas.iter_mut().zip(bands) {
            let r = b.and_then(BandSelect::result);
            if let (None, Sparse::Rank(_, keep)) = (&r, &d.sparse) {
                if !keep.is_empty() {
                    tracing::debug!(tensor = s.name, "the second band missed too; exact radix selection takes more passes");
                    d.select = Some(RadixSelect::new(T::KEY_BITS, &boundary_ranks(keep)));
                }
            }
            found.push(r);
        }
        let radix_passes = deltas.iter().filter_map(|d| d.select.as_ref()).map(|r| r.passes()).max().unwrap_or(0);
        for pass in 0..radix_passes {
            for r in &chunks {
                s.read(r.clone(), &mut chunk)?;
                let base = chunk.base.as_deref().expect("base present");
                for d in deltas.iter_mut() {
                    if let (Some(sel), Sparse::Rank(order, _)) = (&mut d.select, &d.sparse) {
                        if pass < sel.passes() {
                            let order = *order;
                            sel.observe_all(chunk.values[d.stream].iter().zip(base).map(move |(v, b)| select::key(*v - *b, order)));
                        }
                    }
                }
            }
            for d in &mut deltas {
                if let Some(sel) = &mut d.select {
                    if pass < sel.passes() {
                        sel.end_pass();
                    }
                }
            }
        }
        for (d, r) in deltas.iter_mut().zip(found) {
            if let Sparse::Rank(_, keep) = &d.sparse {
                let r = match (r, &d.select) {
                    (Some(r), _) => r,
                    (None, Some(sel)) => sel.result(),
                    (None, None) => continue,
                };
                d.mask = Some(rank_mask(keep, &r));
            }
        }

        // Rescaling: the L1 norm of what is kept (the same draws as the output pass).
        if rescaling {
            let mut l1_after = vec![LaneSum::default(); deltas.len()];
            sparsified_pass(
                s,
                &chunks,
                &deltas,
                |_| true,
                |chunk, work, _| {
                    for (i, d) in deltas.iter().enumerate() {
                        l1_after[i].add_abs(chunk.range.start, &work[i], None);
                        if l1_later {
                            l1_before[i].add_abs(chunk.range.start, &chunk.values[d.stream], chunk.base.as_deref());
                        }
                    }
                    Ok(())
                },
            )?;
            for (i, d) in deltas.iter_mut().enumerate() {
                let (before, after) = (l1_before[i].total(), l1_after[i].total());
                if !matches!(d.sparse, Sparse::None) && before >= 1e-7 && after >= 1e-7 {
                    d.scale = Some(T::of(before / after));
                }
            }
        }

        // The output: each model's task vector (masked by rank as it goes; drawn at random for
        // the whole chunk first), weighted and combined element by element ([`mix`]).
        // A decoded chunk, with the task vectors drawn at random in `work`.
        let mix_decoded = |chunk: &Chunk<T>, work: &[Vec<T>], masks: &mut [Option<RankMask>], out: &mut Vec<T>| -> anyhow::Result<()> {
            let base = chunk.base(self.name)?;
            let onto = target.map_or(base, |t| &chunk.values[t]);
            let mut sources = sources(&deltas, masks, |i, d| if d.random() { (work[i].as_slice(), true) } else { (chunk.values[d.stream].as_slice(), false) });
            mix(&mut sources, base, onto, &combiner, out);
            Ok(())
        };
        // After a guessed pass, only the chunks its masks got wrong are merged again, when
        // the guessed keys were right (else every chunk is).
        let mut redo = vec![true; chunks.len()];
        if let Some(at) = &guessed {
            let exact: Vec<Option<&RankMask>> = deltas.iter().map(|d| d.mask.as_ref()).collect();
            redo = guessed_wrong(&exact, at, chunks.len());
            tracing::debug!(
                tensor = s.name,
                "counted and written in one pass; {} of {} chunks merged again",
                redo.iter().filter(|r| **r).count(),
                chunks.len()
            );
        }
        let put = |start: usize, out: &[T]| if guessed.is_some() { s.rewrite(start, out) } else { s.write(start, out) };
        if !deltas.iter().any(Delta::random) {
            // Nothing drawn at random: the task vectors come straight from the stored inputs.
            let mut masks: Vec<Option<RankMask>> = deltas.iter().map(|d| d.mask.as_ref().map(RankMask::restart)).collect();
            let mut stored = StoredChunk::default();
            for (c, r) in chunks.iter().enumerate() {
                if !redo[c] {
                    continue;
                }
                if let Some(at) = &guessed {
                    // Each mask as it stood when the guessed pass reached this chunk.
                    for (m, at) in masks.iter_mut().zip(&at[c]) {
                        if let (Some(m), Some(at)) = (m.as_mut(), at) {
                            *m = m.resume(at);
                        }
                    }
                }
                if !s.read_stored(r.clone(), &mut stored)? {
                    s.read(r.clone(), &mut chunk)?;
                    mix_decoded(&chunk, &[], &mut masks, &mut out)?;
                    put(r.start, &out)?;
                    continue;
                }
                write_stored(s, &stored, &deltas, target, &mut masks, &combiner, &mut out, &mut chunk, None, put)?;
            }
            return Ok(());
        }
        sparsified_pass(s, &chunks, &deltas, Delta::random, |chunk, work, masks| {
            mix_decoded(chunk, work, masks, &mut out)?;
            s.write(chunk.range.start, &out)
        })?;
        Ok(())
    }
}

/// Each task vector's [`Source`] for [`mix`]: `values(i, d)` gives the values of `deltas[i]`
/// (and whether they are already its sparsified task vector); its mask from `masks`.
fn sources<'a, T: Float, S: Stored>(
    deltas: &[Delta<T>],
    masks: &'a mut [Option<RankMask>],
    values: impl Fn(usize, &Delta<T>) -> (&'a [S], bool),
) -> Vec<Source<'a, T, S>> {
    deltas
        .iter()
        .zip(masks.iter_mut())
        .enumerate()
        .map(|(i, (d, rank))| {
            let (values, is_delta) = values(i, d);
            Source {
                values,
                is_delta,
                mask: match (&d.sparse, rank.as_mut()) {
                    (Sparse::Rank(order, _), Some(rank)) => Mask::Rank(*order, rank),
                    (Sparse::Rank(_, keep), None) if keep.is_empty() => Mask::Fixed(BlockMask::none()),
                    _ => Mask::Fixed(BlockMask::all()),
                },
                scale: d.scale.unwrap_or(T::one()),
                weight: d.weight,
                tally: Tally::default(),
            }
        })
        .collect()
}

/// [`mix`] of a chunk read as stored, onto the base or model `target`, written with `put`;
/// returns each task vector's [`Tally`] of the chunk. When given `spread`, it also keeps the
/// ranked task vectors' keys at its positions.
///
/// A NaN or Inf in a task vector (counted in the tallies), or in the output (which the write
/// refuses): the decoded read (into `chunk`) then says which model and element. (A task
/// vector that only overflows goes on, as it would decoded.)
#[allow(clippy::too_many_arguments)]
fn write_stored<T: Float>(
    s: &TensorStream<'_, T>,
    stored: &StoredChunk,
    deltas: &[Delta<T>],
    target: Option<usize>,
    masks: &mut [Option<RankMask>],
    combiner: &Combiner<'_, T>,
    out: &mut Vec<T>,
    chunk: &mut Chunk<T>,
    spread: Option<&mut Spread<T::Key>>,
    put: impl Fn(usize, &[T]) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Tally>> {
    #[allow(clippy::too_many_arguments)]
    fn mix_as<T: Float, S: Stored>(
        stored: &StoredChunk,
        deltas: &[Delta<T>],
        target: Option<usize>,
        masks: &mut [Option<RankMask>],
        combiner: &Combiner<'_, T>,
        out: &mut Vec<T>,
        spread: Option<&mut Spread<T::Key>>,
    ) -> Vec<Tally> {
        let base: &[S] = stored.base().expect("base present");
        let onto = target.map(|t| stored.values(t)).unwrap_or(base);
        let mut sources = sources(deltas, masks, |_, d| (stored.values::<S>(d.stream), false));
        mix(&mut sources, base, onto, combiner, out);
        let tally = sources.iter().map(|s| s.tally).collect();
        // After the merge, which brought the chunk into the cache: picked before, every
        // position was a load from memory.
        if let Some(spread) = spread {
            for (i, d) in deltas.iter().enumerate() {
                if let Sparse::Rank(order, _) = d.sparse {
                    let (x, flip) = (stored.values::<S>(d.stream), select::flip::<T>(order));
                    spread.pick_at(i, &stored.range, |j| select::native_key(x[j].get::<T>() - base[j].get::<T>(), flip));
                }
            }
        }
        tally
    }
    let tally = match stored.dtype {
        Some(DType::BF16) => mix_as::<T, Bf16>(stored, deltas, target, masks, combiner, out, spread),
        _ => mix_as::<T, f32>(stored, deltas, target, masks, combiner, out, spread),
    };
    if tally.iter().any(|t| t.bad > 0) {
        s.read(stored.range.clone(), chunk)?;
    }
    if let Err(e) = put(stored.range.start, out) {
        s.read(stored.range.clone(), chunk)?;
        return Err(e);
    }
    Ok(tally)
}

impl TaskArithmetic {
    /// Plain task arithmetic (no sparsification, no sign election) as a weighted sum: the
    /// same sums in the same order as [`TaskArithmetic::run`], without its copies.
    fn dense(&self, params: &crate::Params, inputs: &[StreamInput<'_>]) -> anyhow::Result<WeightedSum> {
        let mut onto = Operand::Base;
        let mut terms = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            if self.add_to_model && input.params.flag("add_to")? {
                onto = Operand::Model(i);
                continue;
            }
            if input.is_base {
                continue;
            }
            terms.push((i, input.params.num("weight")?));
        }
        Ok(WeightedSum { terms, centered: true, normalize: params.flag("normalize")?, onto: Some((onto, params.num("lambda")?)) })
    }

    fn is_dense(&self) -> bool {
        self.sparsification.is_none() && self.consensus.is_none()
    }

    /// [`Strategy::merge`] in either compute type: the weighted sum when dense, else the
    /// streamed passes over the job's values.
    fn merge_job<T: Float>(&self, job: &TensorJob<'_, T>) -> anyhow::Result<Vec<T>> {
        if self.is_dense() {
            job.base(self.name)?;
            self.dense(job.params, &job.stream_inputs())?.apply(job)
        } else {
            job.run_stream(|s| self.run(s))
        }
    }
}

/// Tensors of at most this many chunks are sampled whole: their rank selection needs no
/// counting pass.
const WHOLE_SAMPLE_CHUNKS: usize = 4;

/// Bigger tensors are sampled in this many runs of [`SAMPLE_RUN`] elements, evenly spaced.
const SAMPLE_RUNS: usize = 32;
const SAMPLE_RUN: usize = 8 << 10;

/// The sample of a tensor's `range`: [`SAMPLE_RUNS`] runs evenly spaced, each a multiple of
/// `align` elements (DELLA's groups) and inside the range.
fn sample_runs(range: &Range<usize>, align: usize) -> Vec<Range<usize>> {
    let run = SAMPLE_RUN.div_ceil(align) * align;
    let step = (range.len() / SAMPLE_RUNS) / align * align;
    if step < run {
        return vec![range.clone()];
    }
    (0..SAMPLE_RUNS).map(|i| range.start + i * step).map(|s| s..(s + run).min(range.end)).collect()
}

/// The ranks whose keys bound a kept range: rank 0 needs no search.
fn boundary_ranks(keep: &Range<usize>) -> Vec<usize> {
    if keep.start == 0 {
        vec![keep.end - 1]
    } else {
        vec![keep.start, keep.end - 1]
    }
}

/// One statistics pass over `ranges`: adds each task vector's L1 norm to `l1` (when given),
/// hands each band its task vector's keys (`feed`: sample or count) and, when given
/// `spread`, keeps the keys at its positions.
#[allow(clippy::too_many_arguments)]
fn stats_pass<T: Float>(
    s: &TensorStream<'_, T>,
    ranges: &[Range<usize>],
    deltas: &[Delta<T>],
    chunk: &mut Chunk<T>,
    mut l1: Option<&mut [LaneSum]>,
    bands: &mut [Option<BandSelect>],
    feed: fn(&mut BandSelect, &[T::Key]),
    mut spread: Option<&mut Spread<T::Key>>,
) -> anyhow::Result<()> {
    let mut keys = Vec::new();
    let mut stored = StoredChunk::default();
    for r in ranges {
        // Without norms to sum, the keys come straight from the stored inputs.
        if l1.is_none() && s.read_stored(r.clone(), &mut stored)? {
            stored_keys(s, &stored, deltas, bands, feed, spread.as_deref_mut(), &mut keys, chunk)?;
            continue;
        }
        s.read(r.clone(), chunk)?;
        let base = chunk.base.as_deref().expect("base present");
        if let Some(l1) = l1.as_deref_mut() {
            for (l1, d) in l1.iter_mut().zip(deltas) {
                l1.add_abs(r.start, &chunk.values[d.stream], Some(base));
            }
        }
        chunk_keys::<T, T>(r.start, base, |i| &chunk.values[i], deltas, bands, feed, spread.as_deref_mut(), &mut keys);
    }
    Ok(())
}

/// The mask keeping ranks `keep`, from the keys at its boundary ranks (see
/// [`boundary_ranks`]). Rank 0 needs no search: [`RANK_ZERO`] works as its boundary.
fn rank_mask(keep: &Range<usize>, r: &[Boundary]) -> RankMask {
    let (lo, hi) = if keep.start == 0 { (RANK_ZERO, r[0]) } else { (r[0], r[1]) };
    RankMask::new(keep.clone(), lo, hi)
}

/// Key 0 with nothing below (and its copies not counted): the low boundary of a mask that
/// keeps from rank 0.
const RANK_ZERO: Boundary = Boundary { key: 0, below: 0, copies: usize::MAX };

/// Per chunk (and one past the last), each model's guessed mask as the guessed pass reached
/// it.
type Reached = Vec<Vec<Option<RankMask>>>;

/// The counting pass, writing the output as it counts, with masks from the sample's guesses
/// ([`BandSelect::guess`]): when the counts find the guessed boundary keys, those masks
/// differ from the exact ones only in which copies of the keys they keep, and the chunks
/// where they do are merged again ([`guessed_wrong`]); otherwise the output pass writes every
/// chunk again. Either way the bands and the spread sample are fed as by [`stats_pass`]; the
/// bands' counts come from the merge loop itself, which compares every key with the masks'
/// boundary keys anyway ([`Tally`]), so the inputs are read once.
///
/// `None`, before anything is read, when a band is not one key, there are more task vectors
/// than [`FUSED_MODELS`] (only the fused loop tallies), or the inputs cannot be read as
/// stored: then count with [`stats_pass`].
#[allow(clippy::too_many_arguments)]
fn guessed_pass<T: Float>(
    s: &TensorStream<'_, T>,
    chunks: &[Range<usize>],
    deltas: &[Delta<T>],
    target: Option<usize>,
    bands: &mut [Option<BandSelect>],
    spread: &mut Spread<T::Key>,
    combiner: &Combiner<'_, T>,
    chunk: &mut Chunk<T>,
    out: &mut Vec<T>,
) -> anyhow::Result<Option<Reached>> {
    // The counts come from [`fused_tile`]: up to [`FUSED_MODELS`] task vectors.
    if deltas.len() > FUSED_MODELS {
        return Ok(None);
    }
    let mut masks = Vec::new();
    for (d, b) in deltas.iter().zip(bands.iter()) {
        masks.push(match (&d.sparse, b) {
            (Sparse::Rank(_, keep), Some(b)) => match b.guess() {
                Some(g) => Some(rank_mask(keep, &g)),
                None => return Ok(None),
            },
            _ => None,
        });
    }
    let mut stored = StoredChunk::default();
    if !s.read_stored(chunks[0].clone(), &mut stored)? {
        return Ok(None);
    }
    let mut reached = Vec::with_capacity(chunks.len() + 1);
    for r in chunks {
        if !s.read_stored(r.clone(), &mut stored)? {
            anyhow::bail!("the inputs of {} could no longer be read as stored at element {}", s.name, r.start);
        }
        reached.push(masks.clone());
        let tally = write_stored(s, &stored, deltas, target, &mut masks, combiner, out, chunk, Some(&mut *spread), |start, v| s.write(start, v))?;
        // The counts the bands need come from the merge's own tallies against the guessed keys.
        for ((d, b), t) in deltas.iter().zip(bands.iter_mut()).zip(tally) {
            if let (Sparse::Rank(_, keep), Some(b)) = (&d.sparse, b) {
                let lo = (t.below_lo as usize, t.at_lo as usize);
                let hi = (t.below_hi as usize, t.at_hi as usize);
                let both = [lo, hi];
                b.tally(if keep.start == 0 { &both[1..] } else { &both });
            }
        }
    }
    reached.push(masks);
    Ok(Some(reached))
}

/// Which chunks the guessed pass (its masks as it reached each chunk: `at`) merged otherwise
/// than the `exact` masks would: every chunk when a guessed boundary key was wrong.
fn guessed_wrong(exact: &[Option<&RankMask>], at: &Reached, chunks: usize) -> Vec<bool> {
    let first = &at[0];
    if exact.iter().zip(first).any(|(e, g)| match (e, g) {
        (Some(e), Some(g)) => !e.same_keys(g),
        (None, None) => false,
        _ => true,
    }) {
        return vec![true; chunks];
    }
    (0..chunks)
        .map(|c| {
            exact.iter().enumerate().any(|(i, e)| match (e, &at[c][i], &at[c + 1][i]) {
                (Some(e), Some(from), Some(to)) => !e.agrees(from, to),
                _ => false,
            })
        })
        .collect()
}

/// [`chunk_keys`] of a chunk read as stored. A NaN or Inf in a task vector: the decoded read
/// (into `chunk`) says which model and element. (A task vector that only overflows goes on,
/// as it would decoded.)
#[allow(clippy::too_many_arguments)]
fn stored_keys<T: Float>(
    s: &TensorStream<'_, T>,
    stored: &StoredChunk,
    deltas: &[Delta<T>],
    bands: &mut [Option<BandSelect>],
    feed: fn(&mut BandSelect, &[T::Key]),
    spread: Option<&mut Spread<T::Key>>,
    keys: &mut Vec<T::Key>,
    chunk: &mut Chunk<T>,
) -> anyhow::Result<()> {
    fn keys_as<T: Float, S: Stored>(
        stored: &StoredChunk,
        deltas: &[Delta<T>],
        bands: &mut [Option<BandSelect>],
        feed: fn(&mut BandSelect, &[T::Key]),
        spread: Option<&mut Spread<T::Key>>,
        keys: &mut Vec<T::Key>,
    ) -> bool {
        let base: &[S] = stored.base().expect("base present");
        chunk_keys::<T, S>(stored.range.start, base, |i| stored.values(i), deltas, bands, feed, spread, keys)
    }
    let finite = match stored.dtype {
        Some(DType::BF16) => keys_as::<T, Bf16>(stored, deltas, bands, feed, spread, keys),
        _ => keys_as::<T, f32>(stored, deltas, bands, feed, spread, keys),
    };
    if !finite {
        s.read(stored.range.clone(), chunk)?;
    }
    Ok(())
}

/// [`stats_pass`]'s work on one chunk from element `start` on: the base and each model's
/// values (`values(stream)`) as stored in `S`. Returns whether every task vector entry was
/// finite.
#[allow(clippy::too_many_arguments)]
fn chunk_keys<'a, T: Float, S: Stored + 'a>(
    start: usize,
    base: &[S],
    values: impl Fn(usize) -> &'a [S],
    deltas: &[Delta<T>],
    bands: &mut [Option<BandSelect>],
    feed: fn(&mut BandSelect, &[T::Key]),
    mut spread: Option<&mut Spread<T::Key>>,
    keys: &mut Vec<T::Key>,
) -> bool {
    let mut finite = true;
    for (i, d) in deltas.iter().enumerate() {
        if let (Some(b), Sparse::Rank(order, _)) = (&mut bands[i], &d.sparse) {
            // A few thousand keys at a time: they stay in the core's cache.
            let x = values(d.stream);
            for (at, (x, base)) in (start..).step_by(KEY_BLOCK).zip(x.chunks(KEY_BLOCK).zip(base.chunks(KEY_BLOCK))) {
                finite &= delta_keys::<T, S>(x, base, *order, keys);
                feed(b, keys);
                if let Some(spread) = spread.as_deref_mut() {
                    spread.pick(i, at, keys);
                }
            }
        }
    }
    finite
}

/// A sample of single elements spread through a tensor, kept during the counting pass in case
/// a band misses: one element drawn at random from each of [`SPREAD_SAMPLE`] equal strata.
/// Every part of the tensor is in it, whatever its rows and columns look like, so its band
/// holds where the runs' did not (`the_spread_sample_brackets_ranks_of_structured_task_vectors`).
struct Spread<K> {
    /// Ascending.
    positions: Vec<usize>,
    /// Per task vector, its keys at `positions`.
    keys: Vec<Vec<K>>,
}

impl<K: Copy> Spread<K> {
    /// Keeps task vector `i`'s keys at the positions in `range`, `key(j)` giving the key of
    /// element `range.start + j`. Ranges come in order, so the positions before them are
    /// already kept.
    fn pick_at(&mut self, i: usize, range: &Range<usize>, key: impl Fn(usize) -> K) {
        let kept = &mut self.keys[i];
        if kept.capacity() == 0 {
            kept.reserve_exact(self.positions.len());
        }
        for &p in self.positions[kept.len()..].iter().take_while(|p| **p < range.end) {
            kept.push(key(p - range.start));
        }
    }

    /// Keeps task vector `i`'s keys at the positions among elements `at..at + keys.len()`.
    /// Blocks come in order, so the positions before them are already kept.
    fn pick(&mut self, i: usize, at: usize, keys: &[K]) {
        let kept = &mut self.keys[i];
        if kept.capacity() == 0 {
            kept.reserve_exact(self.positions.len());
        }
        for &p in self.positions[kept.len()..].iter().take_while(|p| **p < at + keys.len()) {
            kept.push(keys[p - at]);
        }
    }
}

/// The spread sample's size (as keys, 128 KiB per f32 task vector).
const SPREAD_SAMPLE: usize = 32 << 10;

/// The positions of the spread sample of a tensor's `range` (every one of a smaller range),
/// ascending: one drawn from each of [`SPREAD_SAMPLE`] equal strata by a hash of the tensor's
/// `seed`.
fn spread_positions(range: &Range<usize>, seed: u64) -> Vec<usize> {
    let (n, m) = (range.len(), SPREAD_SAMPLE.min(range.len()));
    let draws = Draws::new(seed, SPREAD_STREAM);
    (0..m)
        .map(|i| {
            let (a, b) = (i * n / m, (i + 1) * n / m);
            range.start + a + draws.at(i as u64) as usize % (b - a)
        })
        .collect()
}

/// The draws that place the spread sample have their own stream, apart from every model's.
const SPREAD_STREAM: u64 = u64::MAX;

/// Keys computed and fed to a band at a time in the statistics passes.
const KEY_BLOCK: usize = 4096;

/// The order keys of the task vector `x − base` (in `T`'s width), into `keys`; returns
/// whether every entry is finite.
fn delta_keys<T: Float, S: Stored>(x: &[S], base: &[S], order: Order, keys: &mut Vec<T::Key>) -> bool {
    let flip = select::flip::<T>(order);
    let inf = T::infinity().magnitude_bits();
    keys.clear();
    vectorized!({
        keys.extend(x.iter().zip(base).map(|(v, b)| select::native_key(v.get::<T>() - b.get::<T>(), flip)));
        !keys.iter().fold(false, |bad, k| bad | ((*k ^ flip) >= inf))
    })
}

/// One pass over the chunks with the task vectors of the models `whole` picks sparsified
/// whole-chunk into `work` (the others are left empty): the draws depend only on the
/// element index and the masks start afresh, so each pass keeps the same elements. `each` also gets the
/// masks, to apply to the other task vectors as it goes.
fn sparsified_pass<T: Float>(
    s: &TensorStream<'_, T>,
    chunks: &[Range<usize>],
    deltas: &[Delta<T>],
    whole: fn(&Delta<T>) -> bool,
    mut each: impl FnMut(&Chunk<T>, &[Vec<T>], &mut [Option<RankMask>]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let draws: Vec<Draws> = deltas.iter().map(|d| Draws::new(s.seed, d.stream as u64)).collect();
    let mut masks: Vec<Option<RankMask>> = deltas.iter().map(|d| d.mask.as_ref().map(RankMask::restart)).collect();
    let mut chunk = Chunk::default();
    let mut work: Vec<Vec<T>> = vec![Vec::new(); deltas.len()];
    for r in chunks {
        s.read(r.clone(), &mut chunk)?;
        for (i, d) in deltas.iter().enumerate() {
            if whole(d) {
                d.sparsified(&chunk, s.shape, &draws[i], &mut masks[i], &mut work[i]);
            }
        }
        each(&chunk, &work, &mut masks)?;
    }
    Ok(())
}

/// How one task vector is sparsified.
enum Sparse {
    None,
    /// Keep the elements of these ranks in this order of magnitude.
    Rank(Order, Range<usize>),
    /// DARE, with this density.
    Random(f64),
    /// DELLA: density, epsilon.
    Della(f64, f64),
}

/// One model's task vector while it streams.
struct Delta<T> {
    /// Its index among the inputs (and its random stream).
    stream: usize,
    weight: T,
    sparse: Sparse,
    select: Option<RadixSelect>,
    mask: Option<RankMask>,
    scale: Option<T>,
}

impl<T: Float> Delta<T> {
    /// Whether it is sparsified at random (DARE, DELLA): such draws are made a whole chunk
    /// at a time.
    fn random(&self) -> bool {
        matches!(self.sparse, Sparse::Random(..) | Sparse::Della(..))
    }

    /// This chunk of the task vector, sparsified, into `out`.
    fn sparsified(&self, chunk: &Chunk<T>, shape: &[u64], draws: &Draws, mask: &mut Option<RankMask>, out: &mut Vec<T>) {
        let base = chunk.base.as_deref().expect("base present");
        out.clear();
        out.resize(base.len(), T::zero());
        vectorized!(self.masked(&chunk.values[self.stream], base, mask, out));
        match &self.sparse {
            Sparse::Random(density) => sparsify::bernoulli(out, *density, draws, chunk.range.start),
            Sparse::Della(density, epsilon) => sparsify::della(out, shape, *density, *epsilon, draws, chunk.range.start),
            Sparse::None | Sparse::Rank(..) => {}
        }
    }

    /// The task vector `x − base` of the next elements (in index order), masked by rank when
    /// it is sparsified that way, into `out` (random sparsification is left to the caller).
    #[inline(always)]
    fn masked(&self, x: &[T], base: &[T], mask: &mut Option<RankMask>, out: &mut [T]) {
        out.iter_mut().zip(x).zip(base).for_each(|((o, x), b)| *o = *x - *b);
        if let Sparse::Rank(order, keep) = &self.sparse {
            match mask {
                Some(m) => m.apply_inline(out, *order),
                None if keep.is_empty() => out.fill(T::zero()),
                None => {}
            }
        }
    }
}

/// One task vector's input to [`mix`] for one chunk.
struct Source<'a, T: Float, S: Stored = T> {
    /// The model's values (as stored), or its task vector already sparsified (`is_delta`).
    values: &'a [S],
    is_delta: bool,
    mask: Mask<'a, T::Key>,
    /// DARE/DELLA's rescaling (1 without) and the model's weight.
    scale: T,
    weight: T,
    /// What [`mix`] counted of its keys so far.
    tally: Tally,
}

/// What [`fused_tile`] counts of one model's task vector entries as it merges them, against
/// its mask's boundary keys: the copies of each, the entries below each, and the entries that
/// are not finite (NaN or ±Inf).
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    at_lo: u32,
    at_hi: u32,
    below_lo: u32,
    below_hi: u32,
    bad: u32,
}

impl Tally {
    fn add(&mut self, t: Tally) {
        self.at_lo += t.at_lo;
        self.at_hi += t.at_hi;
        self.below_lo += t.below_lo;
        self.below_hi += t.below_hi;
        self.bad += t.bad;
    }
}

/// Which of a [`Source`]'s entries are kept.
enum Mask<'a, K> {
    /// The same for every element: keep all, or none.
    Fixed(BlockMask<K>),
    /// By magnitude rank in this order; the mask moves on as the elements go by.
    Rank(Order, &'a mut RankMask),
}

impl<T: Float, S: Stored> Source<'_, T, S> {
    /// The mask of the next elements, when they hold at most `n_lo` and `n_hi` copies of
    /// the low and high boundary keys; `None` when that does not decide them.
    #[inline(always)]
    fn block(&self, n_lo: usize, n_hi: usize) -> Option<BlockMask<T::Key>> {
        match &self.mask {
            Mask::Fixed(m) => Some(*m),
            Mask::Rank(order, rank) => rank.block::<T>(*order, n_lo, n_hi),
        }
    }

    /// Moves the rank mask past elements with this tally (their copies of its boundary keys).
    #[inline(always)]
    fn advance(&mut self, t: Tally) {
        if let Mask::Rank(_, rank) = &mut self.mask {
            rank.advance(t.at_lo as usize, t.at_hi as usize);
        }
        self.tally.add(t);
    }
}

/// How [`fused`] combines the models (a const parameter, so each is its own loop): no sign
/// election, or election by the sum or the count of the signs.
const PLAIN: u8 = 0;
const SUM: u8 = 1;
const COUNT: u8 = 2;

/// Most task vectors [`mix`] combines in one fused loop; more go a tile per model at a time.
const FUSED_MODELS: usize = 6;

/// The merged chunk into `out`: every element's task vectors, masks, weights and sign
/// election in one loop that keeps them in registers, for up to [`FUSED_MODELS`] models.
fn mix<T: Float, S: Stored>(sources: &mut [Source<'_, T, S>], base: &[S], onto: &[S], combiner: &Combiner<'_, T>, out: &mut Vec<T>) {
    fn fixed<T: Float, S: Stored, const N: usize>(sources: &mut [Source<'_, T, S>], base: &[S], onto: &[S], combiner: &Combiner<'_, T>, out: &mut Vec<T>) {
        let sources: &mut [Source<'_, T, S>; N] = sources.try_into().expect("N sources");
        match combiner.consensus {
            None => fused::<T, S, N, PLAIN>(sources, base, onto, combiner, out),
            Some(Consensus::Sum) => fused::<T, S, N, SUM>(sources, base, onto, combiner, out),
            Some(Consensus::Count) => fused::<T, S, N, COUNT>(sources, base, onto, combiner, out),
        }
    }
    match sources.len() {
        1 => fixed::<T, S, 1>(sources, base, onto, combiner, out),
        2 => fixed::<T, S, 2>(sources, base, onto, combiner, out),
        3 => fixed::<T, S, 3>(sources, base, onto, combiner, out),
        4 => fixed::<T, S, 4>(sources, base, onto, combiner, out),
        5 => fixed::<T, S, 5>(sources, base, onto, combiner, out),
        6 => fixed::<T, S, 6>(sources, base, onto, combiner, out),
        n => {
            debug_assert!(n > FUSED_MODELS);
            tiles(sources, base, onto, combiner, out)
        }
    }
}

/// [`mix`] for `N` models. Each tile takes every model's [`BlockMask`] from its
/// [`RankMask`], with the tile's length as the bound on boundary-key copies. Where that does
/// not decide it (the kept copies of a key may end in this tile), the tile is merged as if
/// it held no copies of the key, which decides it, and the tile's [`Tally`] checks that: a
/// key with hundreds of copies in a tensor rarely has one in a given tile. When it does, the
/// tile is merged again with its copies as counted, or, in the rare tile where a kept window
/// of copies starts or ends, one element at a time.
#[inline(always)]
fn fused<T: Float, S: Stored, const N: usize, const VOTE: u8>(
    sources: &mut [Source<'_, T, S>; N],
    base: &[S],
    onto: &[S],
    combiner: &Combiner<'_, T>,
    out: &mut Vec<T>,
) {
    vectorized!(tiled_into(
        base.len(),
        out,
        #[inline(always)]
        |r, mixed| {
            let bounded: [Option<BlockMask<T::Key>>; N] = std::array::from_fn(|i| sources[i].block(r.len(), r.len()));
            let none = |i: usize| sources[i].block(0, 0).expect("no copies are decided alike");
            let m = std::array::from_fn(|i| bounded[i].unwrap_or_else(|| none(i)));
            let tally = fused_tile::<T, S, N, VOTE>(sources, r.start, &m, base, onto, mixed, combiner);
            let held = |i: usize| tally[i].at_lo > 0 || tally[i].at_hi > 0;
            if !(0..N).any(|i| bounded[i].is_none() && held(i)) {
                sources.iter_mut().zip(tally).for_each(|(s, t)| s.advance(t));
                return;
            }
            let counted: [Option<BlockMask<T::Key>>; N] = std::array::from_fn(|i| sources[i].block(tally[i].at_lo as usize, tally[i].at_hi as usize));
            if counted.iter().all(Option::is_some) {
                let tally = fused_tile::<T, S, N, VOTE>(sources, r.start, &counted.map(|m| m.expect("decided")), base, onto, mixed, combiner);
                sources.iter_mut().zip(tally).for_each(|(s, t)| s.advance(t));
            } else {
                // A window starts or ends in this tile (a few times per tensor).
                for (j, mixed) in r.zip(mixed.chunks_mut(1)) {
                    let one = std::array::from_fn(|i| sources[i].block(1, 1).expect("one element is always decided"));
                    let tally = fused_tile::<T, S, N, VOTE>(sources, j, &one, base, onto, mixed, combiner);
                    sources.iter_mut().zip(tally).for_each(|(s, t)| s.advance(t));
                }
            }
        }
    ));
}

/// The merged elements from `start` (`mixed.len()` of them) under the masks `m`; returns
/// each model's [`Tally`] of them.
#[inline(always)]
fn fused_tile<T: Float, S: Stored, const N: usize, const VOTE: u8>(
    sources: &[Source<'_, T, S>; N],
    start: usize,
    m: &[BlockMask<T::Key>; N],
    base: &[S],
    onto: &[S],
    mixed: &mut [T],
    combiner: &Combiner<'_, T>,
) -> [Tally; N] {
    let mut tally = [Tally::default(); N];
    let inf = T::infinity().magnitude_bits();
    // Every slice cut to the tile's length: the loop runs without bounds checks.
    let n = mixed.len();
    let values: [&[S]; N] = std::array::from_fn(|i| &sources[i].values[start..start + n]);
    let (base, onto) = (&base[start..start + n], &onto[start..start + n]);
    let weights: [T; N] = std::array::from_fn(|i| sources[i].weight);
    let scales: [T; N] = std::array::from_fn(|i| sources[i].scale);
    for j in 0..n {
        let mut v = [T::zero(); N];
        for i in 0..N {
            let x = values[i][j].get::<T>();
            let d = if sources[i].is_delta { x } else { x - base[j].get::<T>() };
            let k = select::native_key(d, m[i].flip);
            let t = &mut tally[i];
            t.at_lo += (k == m[i].lo) as u32;
            t.at_hi += (k == m[i].hi) as u32;
            t.below_lo += (k < m[i].lo) as u32;
            t.below_hi += (k < m[i].hi) as u32;
            t.bad += ((k ^ m[i].flip) >= inf) as u32;
            let d = if m[i].keeps(k) { d } else { T::zero() };
            v[i] = d * scales[i] * weights[i];
        }
        mixed[j] = match VOTE {
            PLAIN => combiner.plain(&v, onto[j].get()),
            SUM => combiner.elect(&v, &weights, onto[j].get(), |x| x),
            _ => combiner.elect(&v, &weights, onto[j].get(), sign),
        };
    }
    tally
}

/// [`mix`] for more than [`FUSED_MODELS`] models: a tile of each model's weighted task
/// vector at a time, then [`Combiner::tile`]. The same operations in the same order, so the
/// same bits.
fn tiles<T: Float, S: Stored>(sources: &mut [Source<'_, T, S>], base: &[S], onto: &[S], combiner: &Combiner<'_, T>, out: &mut Vec<T>) {
    let mut tiles = vec![T::zero(); sources.len() * TILE];
    vectorized!(tiled_into(
        base.len(),
        out,
        #[inline(always)]
        |r, mixed| {
            for (src, tile) in sources.iter_mut().zip(tiles.chunks_exact_mut(TILE)) {
                let tile = &mut tile[..r.len()];
                let x = &src.values[r.clone()];
                if src.is_delta {
                    tile.iter_mut().zip(x).for_each(|(t, x)| *t = x.get());
                } else {
                    tile.iter_mut().zip(x).zip(&base[r.clone()]).for_each(|((t, x), b)| *t = x.get::<T>() - b.get::<T>());
                }
                match &mut src.mask {
                    Mask::Fixed(m) => tile.iter_mut().for_each(|v| *v = if m.keeps(select::native_key(*v, m.flip)) { *v } else { T::zero() }),
                    Mask::Rank(order, rank) => rank.apply_inline(tile, *order),
                }
                tile.iter_mut().for_each(|v| *v = *v * src.scale * src.weight);
            }
            combiner.tile(&tiles, &onto[r], mixed);
        }
    ));
}

/// A vote for "count" sign election: the sign of `x` (0 for 0).
#[inline(always)]
fn sign<T: Float>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

/// Combines weighted (and sparsified) task vectors element by element and adds them, scaled
/// by λ, onto the target: the sums, elected signs and divisors of a tile never leave the
/// core's registers and L1.
struct Combiner<'a, T> {
    weights: &'a [T],
    consensus: Option<Consensus>,
    normalize: bool,
    lambda: T,
    /// Σ wᵢ, the divisor without sign election.
    total: T,
}

impl<'a, T: Float> Combiner<'a, T> {
    fn new(weights: &'a [T], consensus: Option<Consensus>, normalize: bool, lambda: T) -> Combiner<'a, T> {
        let mut total = weights.iter().fold(T::zero(), |t, w| t + *w);
        if total.abs() < T::of(1e-8) {
            total = T::one();
        }
        Combiner { weights, consensus, normalize, lambda, total }
    }

    /// One tile: `weighted` holds model i's weighted task vector at `i * TILE` (the first
    /// `mixed.len()` elements of each slot); the result, `onto + λ·mix`, goes into `mixed`
    /// (zeroed). Each element sums the models in order, as a per-element loop would.
    #[inline(always)]
    fn tile<S: Stored>(&self, weighted: &[T], onto: &[S], mixed: &mut [T]) {
        let (zero, one) = (T::zero(), T::one());
        let n = mixed.len();
        let models = weighted.chunks_exact(TILE).map(|d| &d[..n]);
        let Some(c) = self.consensus else {
            for d in models {
                for (m, x) in mixed.iter_mut().zip(d) {
                    *m += *x;
                }
            }
            if self.normalize {
                for (m, o) in mixed.iter_mut().zip(onto) {
                    *m = o.get::<T>() + *m / self.total * self.lambda;
                }
            } else {
                for (m, o) in mixed.iter_mut().zip(onto) {
                    *m = o.get::<T>() + *m * self.lambda;
                }
            }
            return;
        };
        // The elected sign: that of Σ wᵢΔᵢ ("sum") or of Σ sign(wᵢΔᵢ) ("count"); ≥ 0 is +.
        let mut elected = [zero; TILE];
        let elected = &mut elected[..n];
        for d in models.clone() {
            match c {
                Consensus::Sum => elected.iter_mut().zip(d).for_each(|(v, x)| *v += *x),
                Consensus::Count => elected.iter_mut().zip(d).for_each(|(v, x)| *v += sign(*x)),
            }
        }
        for v in elected.iter_mut() {
            *v = if *v >= zero { one } else { -one };
        }
        // The agreeing entries and the sum of their models' weights.
        let mut divisor = [zero; TILE];
        let divisor = &mut divisor[..n];
        for (d, &w) in models.zip(self.weights) {
            // sign(x) = e (= ±1) exactly when x·e > 0; as a select, so the loop vectorizes
            // (`w` by value: a select of `*w` compiles to a gather).
            for (((m, q), x), e) in mixed.iter_mut().zip(divisor.iter_mut()).zip(d).zip(elected.iter()) {
                let agrees = *x * *e > zero;
                *m += if agrees { *x } else { zero };
                *q += if agrees { w } else { zero };
            }
        }
        if self.normalize {
            for ((m, q), o) in mixed.iter_mut().zip(divisor.iter()).zip(onto) {
                let q = if *q == zero { one } else { *q };
                *m = o.get::<T>() + *m / q * self.lambda;
            }
        } else {
            for (m, o) in mixed.iter_mut().zip(onto) {
                *m = o.get::<T>() + *m * self.lambda;
            }
        }
    }
}

impl<T: Float> Combiner<'_, T> {
    /// One element without sign election: what [`Combiner::tile`] computes for it, from the
    /// models' weighted task vector entries `v`. Without `normalize` it divides by 1 (exact),
    /// so the loop it is in has no branch.
    #[inline(always)]
    fn plain<const N: usize>(&self, v: &[T; N], onto: T) -> T {
        let mut m = T::zero();
        for x in v {
            m += *x;
        }
        let divisor = if self.normalize { self.total } else { T::one() };
        onto + m / divisor * self.lambda
    }

    /// One element with sign election: `vote` is the entry itself ("sum") or its sign
    /// ("count"); `weights` are the models' weights.
    #[inline(always)]
    fn elect<const N: usize>(&self, v: &[T; N], weights: &[T; N], onto: T, vote: impl Fn(T) -> T) -> T {
        let (zero, one) = (T::zero(), T::one());
        let mut elected = zero;
        for x in v {
            elected += vote(*x);
        }
        let elected = if elected >= zero { one } else { -one };
        let (mut m, mut q) = (zero, zero);
        for i in 0..N {
            let agrees = v[i] * elected > zero;
            m += if agrees { v[i] } else { zero };
            q += if agrees { weights[i] } else { zero };
        }
        let divisor = if self.normalize && q != zero { q } else { one };
        onto + m / divisor * self.lambda
    }
}

impl Strategy for TaskArithmetic {
    fn name(&self) -> &str {
        self.name
    }

    fn needs_base(&self) -> bool {
        true
    }

    fn parameters(&self) -> Vec<ParamDef> {
        let mut p = vec![
            ParamDef::flag("normalize", self.default_normalize),
            ParamDef::flag("rescale", self.default_rescale),
            ParamDef::num("lambda", 1.0),
            ParamDef::flag("int8_mask", false),
            ParamDef::num("density", 1.0).per_model(),
        ];
        if self.add_to_model {
            p.push(ParamDef::num("weight", 1.0).per_model());
            p.push(ParamDef::flag("add_to", false).per_model());
        } else {
            p.push(ParamDef::required("weight").per_model());
        }
        if self.consensus.is_some() {
            p.push(ParamDef::text("consensus_method", ""));
        }
        match self.sparsification {
            Some(Sparsification::MagnitudeOutliers) => p.push(ParamDef::num("gamma", 0.01).per_model()),
            Some(Sparsification::Della) => p.push(ParamDef::num("epsilon", 0.15).per_model()),
            _ => {}
        }
        p
    }

    fn elementwise(&self) -> bool {
        self.sparsification.is_none()
    }

    fn streams(&self, _shape: &[u64]) -> bool {
        self.sparsification.is_some()
    }

    fn merge_stream(&self, s: &TensorStream<'_, f32>) -> anyhow::Result<()> {
        self.run(s)
    }

    fn merge_stream_f64(&self, s: &TensorStream<'_, f64>) -> anyhow::Result<()> {
        self.run(s)
    }

    fn weighted_sum(&self, params: &crate::Params, inputs: &[StreamInput<'_>]) -> anyhow::Result<Option<WeightedSum>> {
        if self.is_dense() {
            self.dense(params, inputs).map(Some)
        } else {
            Ok(None)
        }
    }

    fn merge(&self, job: &TensorJob<'_, f32>) -> anyhow::Result<Vec<f32>> {
        self.merge_job(job)
    }

    fn merge_f64(&self, job: &TensorJob<'_, f64>) -> anyhow::Result<Vec<f64>> {
        self.merge_job(job)
    }

    fn check(&self, p: &ParamsView<'_>) -> anyhow::Result<()> {
        let lambda = p.params.num("lambda")?;
        if !lambda.is_finite() {
            anyhow::bail!("parameter `lambda` is {lambda}");
        }
        self.consensus(p.params)?;
        let mut targets = 0;
        let mut deltas = 0;
        for (model, params, is_base) in p.models {
            let context = |e: anyhow::Error| e.context(format!("model {model}"));
            if self.add_to_model && params.flag("add_to").map_err(context)? {
                targets += 1;
                continue;
            }
            if *is_base {
                continue;
            }
            deltas += 1;
            let w = params.num("weight").map_err(context)?;
            if !w.is_finite() {
                anyhow::bail!("weight of {model} is {w}");
            }
            let density = params.num("density").map_err(context)?;
            check_range("density", density, 0.0, 1.0, true).map_err(context)?;
            match self.sparsification {
                Some(Sparsification::Magnitude) if density < 1.0 && (density * p.numel as f64) < 1.0 => {
                    anyhow::bail!(
                        "density {density} of {model} keeps no element of this {}-element tensor; raise it (a `filter` entry can set it for this tensor only)",
                        p.numel
                    )
                }
                Some(Sparsification::MagnitudeOutliers) => check_range("gamma", params.num("gamma")?, 0.0, 1.0, false).map_err(context)?,
                Some(Sparsification::Della) => {
                    let eps = params.num("epsilon")?;
                    if density < 1.0 && (density + eps >= 1.0 || density - eps <= 0.0) {
                        anyhow::bail!("della needs density ± epsilon inside (0, 1); {model} has density {density}, epsilon {eps}");
                    }
                }
                _ => {}
            }
        }
        if self.add_to_model && targets != 1 {
            anyhow::bail!(
                "agentmerge needs exactly one model with `parameters: {{add_to: true}}` (the instruct model the task vectors are added to), found {targets}"
            );
        }
        if deltas == 0 {
            anyhow::bail!("{} needs at least one model besides the base (and the `add_to` model)", self.name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::{methods::testing::whole_and_streamed, Params, Value};

    /// The method's defaults as global parameters.
    fn defaults(m: &TaskArithmetic) -> Params {
        let mut global = Params::default();
        for d in m.parameters().iter().filter(|d| !d.per_model) {
            if let Some(v) = &d.default {
                global.set(d.name, v.clone());
            }
        }
        global
    }

    /// Streaming in small chunks (several passes, pages of a few hundred elements) gives
    /// exactly the result of merging the tensor whole.
    #[test]
    fn chunked_streams_equal_whole_tensors() {
        let mut g = ChaCha8Rng::seed_from_u64(2);
        let shape = [24u64, 40];
        let n = 24 * 40;
        let draw = |g: &mut ChaCha8Rng| (0..n).map(|_| g.random_range(-1.0f32..1.0)).collect::<Vec<f32>>();
        let base = draw(&mut g);
        // Quantised deltas: many ties in magnitude.
        let models: Vec<Vec<f32>> = (0..3).map(|_| base.iter().map(|b| b + (g.random_range(-8i32..=8) as f32) * 0.01).collect()).collect();
        for (name, extra) in
            [("ties", vec![]), ("dare_ties", vec![]), ("breadcrumbs_ties", vec![("gamma", 0.05)]), ("della", vec![("epsilon", 0.1)]), ("dare_linear", vec![])]
        {
            let m = TaskArithmetic::named(name).unwrap();
            let params: Vec<Params> = (0..3)
                .map(|i| {
                    let mut p = Params::default();
                    p.set("weight", Value::Num(0.5 + i as f64 * 0.3));
                    p.set("density", Value::Num(0.3 + i as f64 * 0.2));
                    for (k, v) in &extra {
                        p.set(k, Value::Num(*v));
                    }
                    p
                })
                .collect();
            let mut global = defaults(&m);
            global.set("rescale", Value::Bool(true));
            let (whole, streamed) = whole_and_streamed(&m, &shape, &global, &params, Some(&base), &models, 100);
            assert_eq!(streamed, whole, "{name}");
            let changed = whole.iter().zip(&base).filter(|(a, b)| a != b).count();
            assert!(changed > n / 10 && changed < n, "{name}: {changed} of {n} changed");
        }
    }

    /// Samples unlike the rest of the tensor (tiny task-vector entries exactly where the runs
    /// and the spread sample fall) make both bands miss; the radix fallback still gives the
    /// exact masks.
    #[test]
    fn a_misleading_sample_falls_back_to_exact_selection() {
        let n = 600_000;
        let shape = [n as u64];
        let runs = sample_runs(&(0..n), 1);
        // `whole_and_streamed` merges with seed 11.
        let spread = spread_positions(&(0..n), 11);
        let sampled = |i: usize| runs.iter().any(|r| r.contains(&i)) || spread.binary_search(&i).is_ok();
        let mut g = ChaCha8Rng::seed_from_u64(4);
        let base: Vec<f32> = (0..n).map(|_| g.random_range(-1.0f32..1.0)).collect();
        let models: Vec<Vec<f32>> = (0..2)
            .map(|_| {
                (0..n)
                    .map(|i| {
                        let scale = if sampled(i) { 1e-4 } else { 0.1 };
                        base[i] + g.random_range(-1.0f32..1.0) * scale
                    })
                    .collect()
            })
            .collect();
        let m = TaskArithmetic::named("ties").unwrap();
        let params: Vec<Params> = (0..2)
            .map(|_| {
                let mut p = Params::default();
                p.set("weight", Value::Num(1.0));
                p.set("density", Value::Num(0.5));
                p
            })
            .collect();
        let global = defaults(&m);
        // The band from the runs misses the median, and so does the spread sample's.
        let keys: Vec<u64> = models[0].iter().zip(&base).map(|(x, b)| select::key(*x - *b, Order::Descending)).collect();
        let mut band = BandSelect::new(n, &[n / 2 - 1], false);
        for r in &runs {
            band.sample(&keys[r.clone()]);
        }
        band.end_sample();
        band.count(&keys);
        assert!(band.missed(), "the runs should mislead the band");
        let mut again = band.retry(&spread.iter().map(|&i| keys[i]).collect::<Vec<_>>());
        again.count(&keys);
        assert!(again.result().is_none(), "the spread sample should mislead the second band");
        let (whole, streamed) = whole_and_streamed(&m, &shape, &global, &params, Some(&base), &models, 1 << 16);
        assert_eq!(streamed, whole);
    }

    /// Task vectors whose rows and columns differ in scale (as real fine-tunes' do): the band
    /// from 32 runs of neighbouring elements (a few dozen rows) often misses, and the second
    /// band, from the sample spread through the tensor, brackets every rank.
    #[test]
    fn the_spread_sample_brackets_ranks_of_structured_task_vectors() {
        let (rows, cols) = (1500, 2048);
        let n = rows * cols;
        let mut g = ChaCha8Rng::seed_from_u64(8);
        // Log-normal scales: rows with σ 1, columns with σ 0.5.
        let normal = |g: &mut ChaCha8Rng| (-2.0 * (1.0 - g.random::<f64>()).ln()).sqrt() * (std::f64::consts::TAU * g.random::<f64>()).cos();
        let row: Vec<f64> = (0..rows).map(|_| normal(&mut g).exp()).collect();
        let col: Vec<f64> = (0..cols).map(|_| (0.5 * normal(&mut g)).exp()).collect();
        let x: Vec<f32> = (0..n).map(|i| (normal(&mut g) * row[i / cols] * col[i % cols]) as f32).collect();
        let keys: Vec<u32> = x.iter().map(|v| select::native_key(*v, select::flip::<f32>(Order::Descending))).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        let mut missed = 0;
        for seed in 0..4 {
            let runs = sample_runs(&(seed as usize * 1000..n), 1);
            let spread: Vec<u32> = spread_positions(&(0..n), seed).iter().map(|&i| keys[i]).collect();
            assert_eq!(spread.len(), SPREAD_SAMPLE);
            for ranks in [vec![n / 2], vec![n / 10], vec![n / 100, 9 * n / 10]] {
                let mut band = BandSelect::new(n, &ranks, false);
                for r in &runs {
                    band.sample(&keys[r.clone()]);
                }
                band.end_sample();
                keys.chunks(1 << 17).for_each(|c| band.count(c));
                if !band.missed() {
                    continue;
                }
                missed += 1;
                let mut again = band.retry(&spread);
                keys.chunks(1 << 17).for_each(|c| again.count(c));
                let found = again.result().expect("the second band holds its ranks");
                for (&rank, b) in ranks.iter().zip(found) {
                    assert_eq!(b.key, sorted[rank] as u64, "seed {seed}, rank {rank}");
                    assert_eq!(b.below, sorted.partition_point(|k| (*k as u64) < b.key));
                    assert_eq!(b.copies, sorted.iter().filter(|k| **k as u64 == b.key).count());
                }
            }
        }
        assert!(missed >= 6, "the runs' band missed only {missed} of 12 times");

        // The same task vector merged by TIES (one model, weight 1), whole and streamed,
        // keeps exactly the top `density` of magnitudes, ties broken by position.
        let base: Vec<f32> = (0..n).map(|_| g.random_range(-1.0f32..1.0)).collect();
        let model: Vec<f32> = base.iter().zip(&x).map(|(b, d)| b + d).collect();
        let m = TaskArithmetic::named("ties").unwrap();
        for density in [0.5, 0.1] {
            let k = (density * n as f64) as usize;
            let mut band = BandSelect::new(n, &[k - 1], false);
            let delta_keys: Vec<u32> = model.iter().zip(&base).map(|(v, b)| select::native_key(*v - *b, select::flip::<f32>(Order::Descending))).collect();
            for r in sample_runs(&(0..n), 1) {
                band.sample(&delta_keys[r]);
            }
            band.end_sample();
            band.count(&delta_keys);
            assert!(band.missed(), "density {density}: the runs' band should miss, so the merge searches again");
            // `whole_and_streamed` merges with seed 11: its second band holds.
            let mut again = band.retry(&spread_positions(&(0..n), 11).iter().map(|&i| delta_keys[i]).collect::<Vec<_>>());
            again.count(&delta_keys);
            assert!(again.result().is_some(), "density {density}: the second band should hold");
            let mut by_size: Vec<(u32, usize)> = delta_keys.iter().copied().zip(0..).collect();
            by_size.sort_unstable();
            let mut want = base.clone();
            for &(_, i) in &by_size[..k] {
                want[i] = base[i] + (model[i] - base[i]);
            }
            let mut p = Params::default();
            p.set("weight", Value::Num(1.0));
            p.set("density", Value::Num(density));
            let (whole, streamed) =
                whole_and_streamed(&m, &[rows as u64, cols as u64], &defaults(&m), &[p], Some(&base), std::slice::from_ref(&model), 1 << 16);
            assert!(whole == want, "density {density}: whole");
            assert!(streamed == want, "density {density}: streamed");
        }
    }

    /// The fused loop gives the same bits as the tile-per-model path, chunk after chunk: rank
    /// masks whose kept windows of boundary-key copies end mid-tile, a DARE-style task vector
    /// given whole, a model kept whole, every consensus, with and without `normalize`.
    #[test]
    fn fused_mixing_equals_tiles() {
        fused_equals_tiles::<f32>();
        fused_equals_tiles::<f64>();
    }

    fn fused_equals_tiles<T: Float>() {
        let mut g = ChaCha8Rng::seed_from_u64(9);
        let n = 20_000;
        let of = |x: f32| T::of(x as f64);
        let base: Vec<T> = (0..n).map(|_| of(g.random_range(-1.0f32..1.0))).collect();
        // Quantised deltas: every boundary key has many copies.
        let models: Vec<Vec<T>> = (0..4).map(|_| base.iter().map(|b| *b + of(g.random_range(-6i32..=6) as f32 * 0.125)).collect()).collect();
        let given: Vec<T> = (0..n).map(|_| of(if g.random_bool(0.3) { g.random_range(-0.5f32..0.5) } else { 0.0 })).collect();
        let rank = |m: usize, keep: Range<usize>, order: Order| {
            let mut sel = RadixSelect::new(T::KEY_BITS, &boundary_ranks(&keep));
            for _ in 0..sel.passes() {
                sel.observe_all(models[m].iter().zip(&base).map(|(x, b)| select::key(*x - *b, order)));
                sel.end_pass();
            }
            let r = sel.result();
            rank_mask(&keep, &r)
        };
        let masks = vec![
            Some(rank(0, 0..n * 2 / 5, Order::Descending)),
            Some(rank(1, 3000..n - 1000, Order::Ascending)),
            None,
            Some(rank(3, 0..n / 2 + 7, Order::Descending)),
            None,
        ];
        let weights = [0.7, -0.4, 1.3, 0.5, 0.9].map(of);
        // Each model's entries in `at`, with the path's own copy of its rank mask.
        fn sources<'a, T: Float>(
            masks: &'a mut [Option<RankMask>],
            models: &'a [Vec<T>],
            given: &'a [T],
            weights: &[T],
            at: Range<usize>,
        ) -> Vec<Source<'a, T>> {
            masks
                .iter_mut()
                .enumerate()
                .map(|(i, rank)| Source {
                    values: if i == 4 { &given[at.clone()] } else { &models[i][at.clone()] },
                    is_delta: i == 4,
                    mask: match rank {
                        Some(rank) => Mask::Rank(if i == 1 { Order::Ascending } else { Order::Descending }, rank),
                        None => Mask::Fixed(BlockMask::all()),
                    },
                    scale: T::of(if i == 4 { 1.25 } else { 1.0 }),
                    weight: weights[i],
                    tally: Tally::default(),
                })
                .collect()
        }
        let bits = |v: &[T]| v.iter().map(|x| x.to_f64().expect("a float").to_bits()).collect::<Vec<_>>();
        for consensus in [None, Some(Consensus::Sum), Some(Consensus::Count)] {
            for normalize in [false, true] {
                let combiner = Combiner::new(&weights, consensus, normalize, of(0.8));
                let (mut fused, mut tiled) = (masks.clone(), masks.clone());
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let mut tally = [Tally::default(); 5];
                let mut start = 0;
                while start < n {
                    let end = (start + g.random_range(1..3000)).min(n);
                    let (x, o) = (&base[start..end], &models[2][start..end]);
                    let mut fused_sources = sources(&mut fused, &models, &given, &weights, start..end);
                    mix(&mut fused_sources, x, o, &combiner, &mut a);
                    tally.iter_mut().zip(&fused_sources).for_each(|(t, s)| t.add(s.tally));
                    drop(fused_sources);
                    tiles(&mut sources(&mut tiled, &models, &given, &weights, start..end), x, o, &combiner, &mut b);
                    assert_eq!(bits(&a), bits(&b), "{consensus:?} {normalize} at {start}");
                    start = end;
                }
                // The tallies of the ranked task vectors are their keys counted against the
                // masks' boundary keys.
                for i in [0, 1, 3] {
                    let order = if i == 1 { Order::Ascending } else { Order::Descending };
                    let m = masks[i].as_ref().unwrap().block::<T>(order, 0, 0).unwrap();
                    let keys: Vec<T::Key> = models[i].iter().zip(&base).map(|(x, b)| select::native_key(*x - *b, m.flip)).collect();
                    let count = |f: &dyn Fn(T::Key) -> bool| keys.iter().filter(|k| f(**k)).count() as u32;
                    let t = tally[i];
                    let want = [count(&|k| k == m.lo), count(&|k| k == m.hi), count(&|k| k < m.lo), count(&|k| k < m.hi), 0];
                    assert_eq!([t.at_lo, t.at_hi, t.below_lo, t.below_hi, t.bad], want, "model {i}");
                }
            }
        }
    }
}
