//! Test memory: host tensors laid out as spans of a backend's buffers, with guard elements
//! between and around them, and the random inputs that fill them.
//!
//! Spans start a few elements into their buffer and are separated by guards holding a NaN of a
//! particular bit pattern: an op that reads past its inputs spreads NaN into its outputs, and one
//! that writes past its outputs changes a guard, which [`Arena::check_guards`] reports.

use agentmerge_model::backend::{Backend, Mem, Span};
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Guard elements before, between and after spans.
const GUARD: usize = 3;
/// The guards' value: a NaN no arithmetic produces.
const GUARD_BITS: u32 = 0x7fc0_51de;

/// Seeded random inputs: normal values (never exactly zero in practice), ids, positions.
pub(crate) struct Gen(ChaCha8Rng);

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen(ChaCha8Rng::seed_from_u64(seed))
    }

    /// `len` draws from N(0, scale²) (Box–Muller).
    pub fn normal(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len)
            .map(|_| {
                let u1: f64 = 1.0 - self.0.random::<f64>(); // (0, 1]
                let u2: f64 = self.0.random();
                ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32 * scale
            })
            .collect()
    }

    /// `len` draws from U(lo, hi).
    pub fn uniform(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.0.random_range(lo..hi)).collect()
    }

    /// `len` ids below `below`.
    pub fn ids(&mut self, len: usize, below: u32) -> Vec<u32> {
        (0..len).map(|_| self.0.random_range(0..below)).collect()
    }

    pub fn scalar(&mut self, lo: f32, hi: f32) -> f32 {
        self.0.random_range(lo..hi)
    }
}

/// The initial contents of one span.
enum Init {
    F32(Vec<f32>),
    Ids(Vec<u32>),
}

/// Spans laid out in a backend's buffers with their initial contents.
#[derive(Default)]
pub(crate) struct Arena {
    next: BTreeMap<Mem, usize>,
    spans: Vec<(Span, Init)>,
}

impl Arena {
    fn reserve(&mut self, mem: Mem, len: usize) -> Span {
        let next = self.next.entry(mem).or_insert(GUARD);
        let span = Span::new(mem, *next, len);
        *next += len + GUARD;
        span
    }

    /// A span of `mem` holding `data`.
    pub fn put(&mut self, mem: Mem, data: Vec<f32>) -> Span {
        assert!(mem != Mem::Ids);
        let span = self.reserve(mem, data.len());
        self.spans.push((span, Init::F32(data)));
        span
    }

    /// A span of [`Mem::Ids`] holding `data`.
    pub fn put_ids(&mut self, data: Vec<u32>) -> Span {
        let span = self.reserve(Mem::Ids, data.len());
        self.spans.push((span, Init::Ids(data)));
        span
    }

    /// The initial contents of an f32 span.
    pub fn host(&self, span: Span) -> &[f32] {
        match self.spans.iter().find(|(s, _)| *s == span) {
            Some((_, Init::F32(v))) => v,
            _ => panic!("{span:?} is not an f32 span of this arena"),
        }
    }

    /// The initial contents of an ids span.
    pub fn host_ids(&self, span: Span) -> &[u32] {
        match self.spans.iter().find(|(s, _)| *s == span) {
            Some((_, Init::Ids(v))) => v,
            _ => panic!("{span:?} is not an ids span of this arena"),
        }
    }

    /// (Re)allocates every buffer the arena uses and writes the guards and initial contents.
    pub fn load(&self, b: &mut dyn Backend) -> Result<()> {
        for (&mem, &len) in &self.next {
            b.alloc(mem, len).with_context(|| format!("alloc {mem:?} of {len}"))?;
            if mem != Mem::Ids {
                b.upload(Span::new(mem, 0, len), &vec![f32::from_bits(GUARD_BITS); len])?;
            }
        }
        for (span, init) in &self.spans {
            match init {
                Init::F32(v) => b.upload(*span, v)?,
                Init::Ids(v) => b.upload_ids(*span, v)?,
            }
        }
        Ok(())
    }

    /// Fails when an element outside every span of an f32 buffer has changed.
    pub fn check_guards(&self, b: &mut dyn Backend, what: &str) -> Result<()> {
        for (&mem, &len) in self.next.iter().filter(|(m, _)| **m != Mem::Ids) {
            let mut all = vec![0f32; len];
            b.download(Span::new(mem, 0, len), &mut all)?;
            let mut inside = vec![false; len];
            for (s, _) in self.spans.iter().filter(|(s, _)| s.mem == mem) {
                inside[s.off..s.end()].fill(true);
            }
            if let Some(i) = (0..len).find(|&i| !inside[i] && all[i].to_bits() != GUARD_BITS) {
                bail!("{what}: wrote {} at {mem:?}[{i}], outside every span of the call", all[i]);
            }
        }
        Ok(())
    }
}

/// The contents of `span`.
pub(crate) fn read(b: &mut dyn Backend, span: Span) -> Result<Vec<f32>> {
    let mut v = vec![0f32; span.len];
    b.download(span, &mut v)?;
    Ok(v)
}
