//! Weighted sums of the inputs, the form of `linear`, plain task arithmetic and `agentmerge`:
//! one definition of their arithmetic, used both on decoded values ([`WeightedSum::apply`],
//! the strategies' own `merge`) and by the engine straight on the inputs' bytes
//! ([`WeightedSum::fused`]: decode, sum and encode a tile at a time, so the decoded inputs are
//! never written out; measured 18% off a 1 B bf16 `linear` merge).

use std::ops::Range;

use agentmerge_checkpoint::{bf16_bits, DType};

use crate::{methods::TILE, vectorized, Bf16, Float, Input, Stored, TensorJob};

/// A tensor a [`WeightedSum`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// The recipe's `base_model`.
    Base,
    /// The `models:` entry with this index.
    Model(usize),
}

impl Operand {
    /// Its index among the engine's inputs: the base first (when there is one), then the
    /// models.
    pub fn slot(self, has_base: bool) -> usize {
        match self {
            Operand::Base => 0,
            Operand::Model(i) => i + has_base as usize,
        }
    }

    /// The operand at the engine's input `slot` ([`Operand::slot`]'s inverse).
    pub fn at_slot(slot: usize, has_base: bool) -> Operand {
        match slot.checked_sub(has_base as usize) {
            Some(i) => Operand::Model(i),
            None => Operand::Base,
        }
    }
}

/// Every output element is
///
/// ```text
/// S   = Σₖ wₖ·(xₖ − base)   when `centered`, else Σₖ wₖ·xₖ    (added in term order, from 0)
/// S   = S / Σₖ wₖ            when `normalize` (the weights added in the compute type, in
///                            term order; a sum below 1e-8 in magnitude divides by 1)
/// out = onto + S·λ           when `onto` is (onto, λ), else S
/// ```
///
/// with every step rounded in the compute type (f32, or f64 for f64 inputs) in this order,
/// so the engine's fused path and [`WeightedSum::apply`] give the same bits.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightedSum {
    /// (`models:` index, weight wₖ).
    pub terms: Vec<(usize, f64)>,
    /// Sum task vectors (xₖ − base) rather than the models themselves.
    pub centered: bool,
    pub normalize: bool,
    /// The tensor the sum is added to, and λ.
    pub onto: Option<(Operand, f64)>,
}

/// A [`WeightedSum`] with its numbers in the compute type.
struct Resolved<T> {
    terms: Vec<(Operand, T)>,
    centered: bool,
    divisor: Option<T>,
    onto: Option<(Operand, T)>,
}

impl WeightedSum {
    fn resolve<T: Float>(&self) -> Resolved<T> {
        let terms: Vec<(Operand, T)> = self.terms.iter().map(|(i, w)| (Operand::Model(*i), T::of(*w))).collect();
        let divisor = self.normalize.then(|| {
            let mut d = T::zero();
            for (_, w) in &terms {
                d += *w;
            }
            if d.abs() < T::of(1e-8) {
                T::one()
            } else {
                d
            }
        });
        Resolved { terms, centered: self.centered, divisor, onto: self.onto.map(|(o, l)| (o, T::of(l))) }
    }

    /// Whether it reads `op`.
    pub fn reads(&self, op: Operand) -> bool {
        match op {
            Operand::Base => self.centered || self.onto.is_some_and(|(o, _)| o == Operand::Base),
            Operand::Model(i) => self.terms.iter().any(|(k, _)| *k == i) || self.onto.is_some_and(|(o, _)| o == op),
        }
    }

    /// Whether [`WeightedSum::fused`] takes a tensor whose operands have these dtypes
    /// (`dtype`, for the base and `models` models) and whose output is `out`: everything it
    /// reads in one dtype, BF16 or F32, and the output BF16 or F32.
    pub fn fusable(&self, models: usize, dtype: impl Fn(Operand) -> Option<DType>, out: DType) -> bool {
        let fusable = |d: Option<DType>| matches!(d, Some(DType::BF16 | DType::F32));
        let mut read = [Operand::Base].into_iter().chain((0..models).map(Operand::Model)).filter(|op| self.reads(*op)).map(dtype);
        let first = read.next().flatten();
        fusable(first) && fusable(Some(out)) && read.all(|d| d == first)
    }

    /// The sum over decoded values: what a strategy's `merge` returns.
    pub fn apply<T: Float>(&self, job: &TensorJob<'_, T>) -> anyhow::Result<Vec<T>> {
        let r = self.resolve::<T>();
        let slice = |op: Operand| -> anyhow::Result<&[T]> {
            let values = match op {
                Operand::Base => job.base.ok_or_else(|| anyhow::anyhow!("this weighted sum needs `base_model` in the recipe"))?,
                Operand::Model(i) => job.inputs.get(i).map(|x: &Input<'_, T>| x.values).ok_or_else(|| anyhow::anyhow!("no model {i} in the recipe"))?,
            };
            anyhow::ensure!(values.len() == job.len(), "{} values for {} elements", values.len(), job.len());
            Ok(values)
        };
        let operands = Operands {
            base: if r.centered { slice(Operand::Base)? } else { &[] },
            terms: r.terms.iter().map(|(op, _)| slice(*op)).collect::<anyhow::Result<Vec<_>>>()?,
            onto: match r.onto {
                Some((op, _)) => slice(op)?,
                None => &[],
            },
        };
        let n = job.len();
        let mut out = Vec::with_capacity(n);
        vectorized!({
            let mut start = 0;
            while start < n {
                let end = (start + TILE).min(n);
                let mut acc = [T::zero(); TILE];
                tile(&r, &operands, start..end, &mut acc[..end - start]);
                out.extend_from_slice(&acc[..end - start]);
                start = end;
            }
        });
        Ok(out)
    }

    /// The engine's fast path, for f32 compute: merges the elements whose bytes are in `raw`
    /// (little-endian, indexed by operand: the base first when `has_base`, then the models;
    /// operands it does not read may be empty) into `out`, encoded as `out_dtype`.
    ///
    /// None when it cannot: the operands it reads are not all BF16 or all F32, the output is
    /// neither, or a buffer is not aligned to its element size. Some(false) when an output is
    /// not finite (NaN or Inf in an input, or an overflow of the output dtype): the engine
    /// then merges the unit the ordinary way, whose checks say which model and element.
    pub fn fused(&self, has_base: bool, raw: &[(DType, &[u8])], out_dtype: DType, out: &mut [u8]) -> Option<bool> {
        let r = self.resolve::<f32>();
        let slot = |op: Operand| op.slot(has_base);
        let dtype = raw.get(slot(r.terms.first()?.0))?.0;
        let n = out.len() / out_dtype.size();
        // The bytes of `op`, as `V`'s elements (none when it is not read).
        fn view<'a, V: bytemuck::Pod>(raw: &[(DType, &'a [u8])], slot: usize, dtype: DType, n: usize) -> Option<&'a [V]> {
            let (d, bytes) = raw.get(slot)?;
            let v: &[V] = bytemuck::try_cast_slice(bytes).ok()?;
            (*d == dtype && v.len() == n).then_some(v)
        }
        fn operands<'a, V: bytemuck::Pod>(
            r: &Resolved<f32>,
            raw: &[(DType, &'a [u8])],
            slot: impl Fn(Operand) -> usize,
            dtype: DType,
            n: usize,
        ) -> Option<Operands<&'a [V]>> {
            Some(Operands {
                base: if r.centered { view(raw, slot(Operand::Base), dtype, n)? } else { &[] },
                terms: r.terms.iter().map(|(op, _)| view(raw, slot(*op), dtype, n)).collect::<Option<Vec<_>>>()?,
                onto: match r.onto {
                    Some((op, _)) => view(raw, slot(op), dtype, n)?,
                    None => &[],
                },
            })
        }
        let mut out = match out_dtype {
            DType::BF16 => Encoded::Bf16(bytemuck::try_cast_slice_mut(out).ok()?),
            DType::F32 => Encoded::F32(bytemuck::try_cast_slice_mut(out).ok()?),
            _ => return None,
        };
        match dtype {
            DType::BF16 => {
                let o = operands::<Bf16>(&r, raw, slot, dtype, n)?;
                Some(vectorized!(fused_loop(&r, &o, &mut out, n)))
            }
            DType::F32 => {
                let o = operands::<f32>(&r, raw, slot, dtype, n)?;
                Some(vectorized!(fused_loop(&r, &o, &mut out, n)))
            }
            _ => None,
        }
    }
}

/// The tiles of [`WeightedSum::fused`]; returns whether every output is finite.
#[inline(always)]
fn fused_loop<S: Stored>(r: &Resolved<f32>, o: &Operands<&[S]>, out: &mut Encoded<'_>, n: usize) -> bool {
    let mut bad = false;
    let mut start = 0;
    while start < n {
        let end = (start + TILE).min(n);
        let mut acc = [0f32; TILE];
        let acc = &mut acc[..end - start];
        tile(r, o, start..end, acc);
        bad |= out.encode(start..end, acc);
        start = end;
    }
    !bad
}

/// What a [`WeightedSum`] reads, all of one kind (unread ones empty).
struct Operands<V> {
    base: V,
    terms: Vec<V>,
    onto: V,
}

/// Elements `r` of an operand as stored (decoded values, or a narrower dtype decoded on the
/// fly), as the compute type.
#[inline(always)]
fn at<T: Float, S: Stored>(x: &[S], r: Range<usize>) -> impl Iterator<Item = T> + '_ {
    x[r].iter().map(|v| v.get::<T>())
}

/// One tile of a [`WeightedSum`]: the outputs of elements `r` into `acc` (zeroed, `r`'s
/// length). Each input is read once, straight into the sum.
#[inline(always)]
fn tile<T: Float, S: Stored>(s: &Resolved<T>, o: &Operands<&[S]>, r: Range<usize>, acc: &mut [T]) {
    for ((_, w), x) in s.terms.iter().zip(&o.terms) {
        if s.centered {
            for ((a, x), b) in acc.iter_mut().zip(at::<T, S>(x, r.clone())).zip(at::<T, S>(o.base, r.clone())) {
                *a += (x - b) * *w;
            }
        } else {
            for (a, x) in acc.iter_mut().zip(at::<T, S>(x, r.clone())) {
                *a += x * *w;
            }
        }
    }
    if let Some(d) = s.divisor {
        for a in acc.iter_mut() {
            *a = *a / d;
        }
    }
    if let Some((_, lambda)) = s.onto {
        for (a, x) in acc.iter_mut().zip(at::<T, S>(o.onto, r)) {
            *a = x + *a * lambda;
        }
    }
}

/// The output, viewed as its dtype's bits.
enum Encoded<'a> {
    Bf16(&'a mut [u16]),
    F32(&'a mut [f32]),
}

impl Encoded<'_> {
    /// Encodes `values` at `r`; returns whether an encoded value is not finite (for bf16: also
    /// a finite f32 that rounded to ±Inf), as `cast_f32_into` checks.
    #[inline(always)]
    fn encode(&mut self, r: Range<usize>, values: &[f32]) -> bool {
        let mut bad = false;
        match self {
            Encoded::Bf16(o) => {
                for (o, v) in o[r].iter_mut().zip(values) {
                    *o = bf16_bits(*v);
                    bad |= *o & 0x7F80 == 0x7F80;
                }
            }
            Encoded::F32(o) => {
                for (o, v) in o[r].iter_mut().zip(values) {
                    *o = *v;
                    bad |= v.to_bits() & 0x7F80_0000 == 0x7F80_0000;
                }
            }
        }
        bad
    }
}

#[cfg(test)]
mod tests {
    use agentmerge_checkpoint::{cast_f32_into, f32_to_bytes, to_f32_into};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::Params;

    /// Every shape of sum the strategies make: a soup with and without `normalize`, task
    /// arithmetic onto the base and onto a model, with weights that sum to nearly 0.
    fn sums() -> Vec<WeightedSum> {
        let soup = |normalize| WeightedSum { terms: vec![(0, 0.7), (1, 0.2), (2, 1.3)], centered: false, normalize, onto: None };
        let tasks = |normalize, onto| WeightedSum { terms: vec![(0, 0.5), (2, -0.8)], centered: true, normalize, onto: Some((onto, 0.9)) };
        vec![
            soup(true),
            soup(false),
            tasks(false, Operand::Base),
            tasks(true, Operand::Base),
            tasks(true, Operand::Model(1)),
            WeightedSum { terms: vec![(0, 1e-9), (2, -1e-9)], centered: true, normalize: true, onto: Some((Operand::Base, 1.0)) },
        ]
    }

    /// Fresh random values of a bf16 or f32 checkpoint: base, then three models near it.
    fn inputs(g: &mut ChaCha8Rng, n: usize, dtype: DType) -> Vec<Vec<u8>> {
        let base: Vec<f32> = (0..n).map(|_| g.random_range(-0.1f32..0.1)).collect();
        let mut out = vec![f32_to_bytes(&base, dtype)];
        for _ in 0..3 {
            let m: Vec<f32> = base.iter().map(|b| b + g.random_range(-0.01f32..0.01)).collect();
            out.push(f32_to_bytes(&m, dtype));
        }
        out
    }

    fn decode(dtype: DType, bytes: &[u8]) -> Vec<f32> {
        let mut v = vec![0f32; bytes.len() / dtype.size()];
        assert!(to_f32_into(dtype, bytes, &mut v));
        v
    }

    /// The engine's fused path gives the bits of decoding, [`WeightedSum::apply`] and
    /// encoding, for bf16 and f32 inputs and outputs and a length that is not a whole
    /// number of tiles.
    #[test]
    fn fused_equals_decode_apply_encode() {
        let mut g = ChaCha8Rng::seed_from_u64(7);
        let n = 3 * TILE + 77;
        let params = Params::default();
        for dtype in [DType::BF16, DType::F32] {
            let raw = inputs(&mut g, n, dtype);
            let values: Vec<Vec<f32>> = raw.iter().map(|r| decode(dtype, r)).collect();
            let models: Vec<Input<'_>> = values[1..].iter().map(|v| Input { model: "m", values: v, params: &params, is_base: false }).collect();
            let job = TensorJob {
                name: "w",
                shape: &[n as u64],
                layer: None,
                t: 0.0,
                base: Some(&values[0]),
                inputs: &models,
                params: &params,
                seed: 1,
                range: 0..n,
            };
            for sum in sums() {
                let want = sum.apply(&job).unwrap();
                for out_dtype in [DType::BF16, DType::F32] {
                    let mut expected = vec![0u8; n * out_dtype.size()];
                    assert!(cast_f32_into(&want, out_dtype, &mut expected));
                    let mut got = vec![0u8; n * out_dtype.size()];
                    let parts: Vec<(DType, &[u8])> = raw.iter().map(|r| (dtype, r.as_slice())).collect();
                    assert_eq!(sum.fused(true, &parts, out_dtype, &mut got), Some(true), "{sum:?}");
                    assert!(got == expected, "{dtype} → {out_dtype}: {sum:?}");
                }
            }
        }
    }

    /// A NaN or Inf in an input the sum reads, or an output beyond the output dtype, makes
    /// the fused path give up (the engine then names the culprit); dtypes it does not decode,
    /// mixed dtypes and misaligned bytes are refused.
    #[test]
    fn fused_refuses_what_it_cannot_check_or_decode() {
        let mut g = ChaCha8Rng::seed_from_u64(8);
        let n = 2 * TILE;
        let sum = &sums()[3];
        let raw = inputs(&mut g, n, DType::F32);
        let parts = |raw: &[Vec<u8>]| -> Vec<(DType, Vec<u8>)> { raw.iter().map(|r| (DType::F32, r.clone())).collect() };
        let run = |parts: &[(DType, Vec<u8>)], out_dtype: DType| {
            let views: Vec<(DType, &[u8])> = parts.iter().map(|(d, r)| (*d, r.as_slice())).collect();
            sum.fused(true, &views, out_dtype, &mut vec![0u8; n * out_dtype.size()])
        };
        assert_eq!(run(&parts(&raw), DType::F32), Some(true));
        for bad in [f32::NAN, f32::INFINITY] {
            for input in [0, 1, 3] {
                let mut p = parts(&raw);
                p[input].1[4 * 300..4 * 301].copy_from_slice(&bad.to_le_bytes());
                assert_eq!(run(&p, DType::BF16), Some(false), "{bad} in input {input}");
            }
        }
        // Model 1 (input 2) is not a term of this sum: its values are not read.
        let mut p = parts(&raw);
        p[2].1[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(run(&p, DType::F32), Some(true));
        let mut p = parts(&raw);
        p[1].1[..4].copy_from_slice(&3.0e38f32.to_le_bytes());
        assert_eq!(run(&p, DType::BF16), Some(false), "overflows bf16");
        assert_eq!(run(&parts(&raw), DType::F16), None, "f16 output");
        let mut p = parts(&raw);
        p[1].0 = DType::BF16;
        assert_eq!(run(&p, DType::F32), None, "mixed dtypes");
        let shifted: Vec<Vec<u8>> = raw.iter().map(|r| [&[0u8][..], r].concat()).collect();
        let views: Vec<(DType, &[u8])> = shifted.iter().map(|r| (DType::F32, &r[1..])).collect();
        assert_eq!(sum.fused(true, &views, DType::F32, &mut vec![0u8; 4 * n]), None, "misaligned");
    }

    /// The engine plans a fused merge only where `fused` will take it: the operands it reads
    /// in one BF16 or F32 dtype, whatever the ones it does not read are; and its inputs'
    /// slots map back to the operands.
    #[test]
    fn fusable_needs_one_decodable_dtype_among_what_is_read() {
        let soup = &sums()[0];
        let tasks = &sums()[3];
        let all = |d: DType| move |_: Operand| Some(d);
        assert!(soup.fusable(3, all(DType::BF16), DType::BF16));
        assert!(tasks.fusable(3, all(DType::F32), DType::BF16));
        assert!(!soup.fusable(3, all(DType::F16), DType::BF16));
        assert!(!soup.fusable(3, all(DType::BF16), DType::F16));
        let mixed = |op: Operand| Some(if op == Operand::Model(2) { DType::F32 } else { DType::BF16 });
        assert!(!soup.fusable(3, mixed, DType::BF16));
        // Model 1 is not a term of the task sum, and the soup does not read the base.
        let unread = |op: Operand| Some(if op == Operand::Model(1) { DType::F16 } else { DType::BF16 });
        assert!(tasks.fusable(3, unread, DType::BF16));
        let f16_base = |op: Operand| Some(if op == Operand::Base { DType::F16 } else { DType::BF16 });
        assert!(soup.fusable(3, f16_base, DType::BF16));
        assert!(!tasks.fusable(3, f16_base, DType::BF16));
        for has_base in [false, true] {
            for slot in 0..4 {
                assert_eq!(Operand::at_slot(slot, has_base).slot(has_base), slot);
            }
        }
        assert_eq!(Operand::at_slot(0, true), Operand::Base);
        assert_eq!(Operand::at_slot(0, false), Operand::Model(0));
    }
}
