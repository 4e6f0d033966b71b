//! Conformance checks for any [`Backend`], op by op, on fresh seeded random inputs:
//!
//! - [`finite_differences`]: every backward against central differences of its forward.
//! - [`forward_references`]: every op (forwards, backwards, optimizer, memory) against naive f64
//!   loops written here from the formulas in the `Backend` docs.
//! - [`parity`]: a candidate backend against a reference backend (the CPU one), same inputs.
//! - [`transcript`]: every op's outputs, for comparisons of one backend with itself (the CPU
//!   backend's thread-count determinism test).
//!
//! Inputs live in spans a few elements apart, with NaN guards around them (`arena.rs`), in the
//! buffers a model would use (weights in `Params`, activations in `Acts`, ...), so several spans
//! of one op often share a buffer. Every check reports all its failures: op, shape, output and
//! worst element. `AGENTMERGE_CONFORMANCE_VERBOSE=1` prints every comparison's worst element, to
//! show the margin each tolerance leaves.

mod arena;
mod cases;
mod compare;
mod diff;
mod naive;

use agentmerge_model::backend::{Backend, Mem, Span};
use anyhow::{bail, ensure, Result};
use cases::Kind;
use compare::worst;

/// The seed of every check's inputs.
const SEED: u64 = 0x5eed_0fa1;

/// Tolerances of [`parity`].
pub const PARITY_VALUE_TOL: f64 = 1e-4;
pub const PARITY_GRAD_TOL: f64 = 1e-3;

/// Sizes of the cases [`transcript`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shapes {
    /// The shapes [`forward_references`] and [`parity`] use: a few thousand elements per op,
    /// just large enough to cross the CPU backend's block boundaries.
    Small,
    /// Large enough that the CPU backend splits every op over threads (gemm included): for
    /// determinism tests.
    Large,
}

/// Whether to print every comparison's worst element (`AGENTMERGE_CONFORMANCE_VERBOSE=1`), to
/// see how much margin each tolerance leaves.
pub(crate) fn verbose() -> bool {
    std::env::var_os("AGENTMERGE_CONFORMANCE_VERBOSE").is_some_and(|v| v != "0")
}

/// Fails with every message, one per line, when there are any.
fn report(what: &str, failures: Vec<String>) -> Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    bail!("{what}: {} failure(s)\n{}", failures.len(), failures.join("\n"))
}

/// Every backward op's gradient against central finite differences of its forward (matmul with
/// each transpose combination, accumulating; embedding; rmsnorm; rope; attention with GQA, MQA,
/// several documents per row and two rows; swiglu; cross-entropy with an ignored target). Also
/// checks that gradients documented to add do add, and that no op writes outside its spans.
pub fn finite_differences(b: &mut dyn Backend) -> Result<()> {
    let mut failures = Vec::new();
    for d in diff::cases(SEED) {
        if let Err(e) = d.check(b) {
            failures.push(format!("{e:#}"));
        }
    }
    report(&format!("finite differences on {}", b.name()), failures)
}

/// Every op against naive f64 loops: matmul (all transposes, with and without accumulation),
/// embedding, rmsnorm, rope, attention (document masks, GQA, MQA, more tokens than one query
/// block), kv_store then attention_decode (GQA and MQA, a full cache slot, a first position,
/// sequences in other slots than their rows), swiglu, cross-entropy (ignored rows), AdamW
/// (torch's formula, three steps), sum_squares, add (with each aliasing the trait allows),
/// scale, copy, zero; and the memory calls (round trips, errors for bad spans). Relative error
/// at most 1e-5 for values, 1e-4 for gradients and attention outputs; the cache exactly.
pub fn forward_references(b: &mut dyn Backend) -> Result<()> {
    forward_references_with(b, Sums::F64)
}

/// How a backend computes [`Backend::sum_squares`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sums {
    /// In f64, as the trait documents (the CPU backend): checked to 1e-10 relative.
    F64,
    /// In f32 partial sums added in f64 (a GPU backend without f64 arithmetic): checked to
    /// [`F32_SUM_TOL`].
    F32,
}

/// The relative error allowed to a backend that sums squares in f32 ([`Sums::F32`]): a fixed
/// tree of f32 additions over a few thousand elements stays far below it.
pub const F32_SUM_TOL: f64 = 1e-6;

/// [`forward_references`] for a backend whose `sum_squares` is as accurate as `sums` says.
pub fn forward_references_with(b: &mut dyn Backend, sums: Sums) -> Result<()> {
    let mut failures = Vec::new();
    if let Err(e) = memory(b) {
        failures.push(format!("memory: {e:#}"));
    }
    for mut case in cases::cases(Shapes::Small, SEED, true) {
        if sums == Sums::F32 && case.name.starts_with("sum_squares") {
            case.outputs.iter_mut().for_each(|o| o.tol = o.tol.max(F32_SUM_TOL));
        }
        let got = match case.execute(b) {
            Ok(got) => got,
            Err(e) => {
                failures.push(format!("{}: {e:#}", case.name));
                continue;
            }
        };
        for (o, got) in case.outputs.iter().zip(got) {
            let w = worst(&got, o.expected.as_ref().expect("cases built with naive values"));
            if verbose() {
                eprintln!("reference {}: {}: {w}", case.name, o.name);
            }
            if w.err > o.tol {
                failures.push(format!("{}: {} (len {}): {w} (tolerance {:e})", case.name, o.name, got.len(), o.tol));
            }
        }
    }
    report(&format!("forward references on {}", b.name()), failures)
}

/// Every op, forward and backward, on `candidate` and `reference` from the same inputs: relative
/// error at most [`PARITY_VALUE_TOL`] for values and [`PARITY_GRAD_TOL`] for gradients.
pub fn parity(candidate: &mut dyn Backend, reference: &mut dyn Backend) -> Result<()> {
    let mut failures = Vec::new();
    for case in cases::cases(Shapes::Small, SEED, false) {
        let (got, want) = match (case.execute(candidate), case.execute(reference)) {
            (Ok(g), Ok(w)) => (g, w),
            (Err(e), _) => {
                failures.push(format!("{}: candidate: {e:#}", case.name));
                continue;
            }
            (_, Err(e)) => {
                failures.push(format!("{}: reference: {e:#}", case.name));
                continue;
            }
        };
        for ((o, got), want) in case.outputs.iter().zip(got).zip(want) {
            let tol = if o.kind == Kind::Value { PARITY_VALUE_TOL } else { PARITY_GRAD_TOL };
            let w = worst(&got, &want);
            if verbose() {
                eprintln!("parity {}: {}: {w}", case.name, o.name);
            }
            if w.err > tol {
                failures.push(format!("{}: {} (len {}): {w} (tolerance {tol:e})", case.name, o.name, got.len()));
            }
        }
    }
    report(&format!("parity of {} against {}", candidate.name(), reference.name()), failures)
}

/// Every op's outputs on seeded inputs, named `case: output`, in a fixed order (f32 results
/// widened to f64 exactly, so bits compare). Two runs of a deterministic backend give identical
/// transcripts.
pub fn transcript(b: &mut dyn Backend, shapes: Shapes) -> Result<Vec<(String, Vec<f64>)>> {
    let mut out = Vec::new();
    for case in cases::cases(shapes, SEED, false) {
        let got = case.execute(b)?;
        out.extend(case.outputs.iter().zip(got).map(|(o, v)| (format!("{}: {}", case.name, o.name), v)));
    }
    Ok(out)
}

/// The memory calls: allocation, round trips, and errors (not panics) for bad spans.
fn memory(b: &mut dyn Backend) -> Result<()> {
    b.alloc(Mem::Acts, 10)?;
    b.alloc(Mem::Ids, 4)?;
    ensure!(b.mem_len(Mem::Acts) == 10 && b.mem_len(Mem::Ids) == 4, "mem_len after alloc");
    let mut got = [1f32; 10];
    b.download(Span::new(Mem::Acts, 0, 10), &mut got)?;
    ensure!(got == [0.0; 10], "alloc does not zero: {got:?}");
    let v = [1.5f32, -2.0, 3.25];
    b.upload(Span::new(Mem::Acts, 6, 3), &v)?;
    let mut back = [0f32; 3];
    b.download(Span::new(Mem::Acts, 6, 3), &mut back)?;
    ensure!(back == v, "upload then download: {back:?}");
    b.copy(Span::new(Mem::Acts, 1, 3), Span::new(Mem::Acts, 6, 3));
    b.download(Span::new(Mem::Acts, 0, 10), &mut got)?;
    ensure!(got == [0.0, 1.5, -2.0, 3.25, 0.0, 0.0, 1.5, -2.0, 3.25, 0.0], "copy within a buffer: {got:?}");
    ensure!(b.upload(Span::new(Mem::Acts, 8, 3), &v).is_err(), "an upload past the buffer's end succeeded");
    ensure!(b.upload(Span::new(Mem::Acts, 0, 2), &v).is_err(), "an upload of 3 values into a span of 2 succeeded");
    ensure!(b.download(Span::new(Mem::Acts, 9, 2), &mut back[..2]).is_err(), "a download past the buffer's end succeeded");
    ensure!(b.upload_ids(Span::new(Mem::Ids, 2, 3), &[1, 2, 3]).is_err(), "an ids upload past the buffer's end succeeded");
    b.upload_ids(Span::new(Mem::Ids, 1, 3), &[1, 2, 3])?;
    b.alloc(Mem::Acts, 4)?;
    ensure!(b.mem_len(Mem::Acts) == 4, "mem_len after a second alloc");
    let mut four = [1f32; 4];
    b.download(Span::new(Mem::Acts, 0, 4), &mut four)?;
    ensure!(four == [0.0; 4], "a second alloc does not zero: {four:?}");
    Ok(())
}
