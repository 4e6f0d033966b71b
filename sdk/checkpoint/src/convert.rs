//! Converting tensor bytes to and from f32/f64 (bf16 and f16 round to nearest even).

#[cfg(test)]
use half::bf16;
use half::{f16, slice::HalfFloatSliceExt};

use crate::{vectorized, DType};

/// How far ahead of the decode loops to prefetch: one page, because the hardware prefetchers
/// stop at page boundaries and the page cache's pages are scattered in physical memory
/// (measured: about 5% off a bf16 merge).
const PREFETCH_AHEAD: usize = 4096;

/// The decode loops work in blocks of this many input bytes: a prefetch per cache line of
/// the block, then one flat loop the compiler vectorizes whole.
const BLOCK_BYTES: usize = 1024;

/// Asks for the cache lines `PREFETCH_AHEAD` bytes after `block` (never faults, even past
/// the end).
#[inline(always)]
fn prefetch_ahead<T>(block: &[T]) {
    #[cfg(target_arch = "x86_64")]
    for line in (0..std::mem::size_of_val(block)).step_by(64) {
        // SAFETY: a prefetch is only a hint; it does not fault on any address.
        unsafe { std::arch::x86_64::_mm_prefetch((block.as_ptr() as *const i8).wrapping_add(PREFETCH_AHEAD + line), std::arch::x86_64::_MM_HINT_T0) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = block;
}

/// Whether no f16 value is NaN or ±Inf (all exponent bits set), in one vectorized pass.
fn f16_all_finite(v: &[f16]) -> bool {
    vectorized!(!v.iter().fold(false, |bad, h| bad | (h.to_bits() & 0x7C00 == 0x7C00)))
}

/// Decodes `bytes` of `dtype` into `out` (exactly `out.len()` elements); returns whether
/// every value is finite (no NaN or ±Inf), checked in the same pass.
pub fn to_f32_into(dtype: DType, bytes: &[u8], out: &mut [f32]) -> bool {
    let bytes = &bytes[..out.len() * dtype.size()];
    match dtype {
        // Aligned little-endian data (the usual case) is reinterpreted in place, so the loops
        // vectorize; unaligned data goes byte by byte.
        DType::F32 => match bytemuck::try_cast_slice::<u8, f32>(bytes) {
            Ok(v) if cfg!(target_endian = "little") => vectorized!({
                // The largest exponent field seen: all ones is NaN or ±Inf.
                let mut top = 0u32;
                for (os, xs) in out.chunks_mut(BLOCK_BYTES / 4).zip(v.chunks(BLOCK_BYTES / 4)) {
                    prefetch_ahead(xs);
                    for (o, x) in os.iter_mut().zip(xs) {
                        *o = *x;
                        top = top.max(x.to_bits() & 0x7F80_0000);
                    }
                }
                top != 0x7F80_0000
            }),
            _ => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
                out.iter().all(|x| x.is_finite())
            }
        },
        DType::BF16 => match bytemuck::try_cast_slice::<u8, u16>(bytes) {
            Ok(v) if cfg!(target_endian = "little") => vectorized!({
                // The largest exponent field seen: all ones is NaN or ±Inf.
                let mut top = 0u16;
                for (os, bs) in out.chunks_mut(BLOCK_BYTES / 2).zip(v.chunks(BLOCK_BYTES / 2)) {
                    prefetch_ahead(bs);
                    for (o, b) in os.iter_mut().zip(bs) {
                        *o = f32::from_bits((*b as u32) << 16);
                        top = top.max(*b & 0x7F80);
                    }
                }
                top != 0x7F80
            }),
            _ => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
                }
                out.iter().all(|x| x.is_finite())
            }
        },
        DType::F16 => match bytemuck::try_cast_slice::<u8, f16>(bytes) {
            // `half` converts slices with F16C when the CPU has it.
            Ok(v) if cfg!(target_endian = "little") => {
                v.convert_to_f32_slice(out);
                f16_all_finite(v)
            }
            _ => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
                }
                out.iter().all(|x| x.is_finite())
            }
        },
        _ => {
            let mut tmp = vec![0f64; out.len()];
            to_f64_into(dtype, bytes, &mut tmp);
            for (o, v) in out.iter_mut().zip(tmp) {
                *o = v as f32;
            }
            out.iter().all(|x| x.is_finite())
        }
    }
}

/// Decodes `bytes` of `dtype` into `out` as f64; returns whether every value is finite.
pub fn to_f64_into(dtype: DType, bytes: &[u8], out: &mut [f64]) -> bool {
    match dtype {
        DType::F64 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                *o = f64::from_le_bytes(c.try_into().unwrap());
            }
        }
        DType::I64 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                *o = i64::from_le_bytes(c.try_into().unwrap()) as f64;
            }
        }
        DType::I32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = i32::from_le_bytes(c.try_into().unwrap()) as f64;
            }
        }
        DType::U8 | DType::Bool => {
            for (o, b) in out.iter_mut().zip(bytes) {
                *o = *b as f64;
            }
        }
        DType::F32 | DType::BF16 | DType::F16 => {
            let mut tmp = vec![0f32; out.len()];
            to_f32_into(dtype, bytes, &mut tmp);
            for (o, v) in out.iter_mut().zip(tmp) {
                *o = v as f64;
            }
        }
    }
    vectorized!(!out.iter().fold(false, |bad, x| bad | !x.is_finite()))
}

/// f32 → bf16 bits, rounding to nearest even (NaN stays a quiet NaN), without branches so
/// the loops around it vectorize; equal to `half::bf16::from_f32`.
#[inline(always)]
pub fn bf16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let rounded = (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16;
    if v.is_nan() {
        ((b >> 16) as u16) | 0x0040
    } else {
        rounded
    }
}

/// Encodes f32 values as `dtype` into `out` (`values.len() * dtype.size()` bytes); returns
/// whether every encoded value is finite (for f16 and bf16: also that none overflowed to
/// ±Inf), checked in the same pass.
pub fn cast_f32_into(values: &[f32], dtype: DType, out: &mut [u8]) -> bool {
    let finite = |values: &[f32]| !values.iter().fold(false, |bad, x| bad | !x.is_finite());
    match dtype {
        DType::F32 => {
            out.copy_from_slice(bytemuck::cast_slice(values));
            vectorized!(finite(values))
        }
        DType::BF16 => match bytemuck::try_cast_slice_mut::<u8, u16>(out) {
            Ok(o) if cfg!(target_endian = "little") => vectorized!({
                let mut bad = false;
                for (o, v) in o.iter_mut().zip(values) {
                    *o = bf16_bits(*v);
                    // On the output, so a finite f32 that rounds to ±Inf counts too.
                    bad |= *o & 0x7F80 == 0x7F80;
                }
                !bad
            }),
            _ => {
                let mut bad = false;
                for (c, v) in out.chunks_exact_mut(2).zip(values) {
                    let b = bf16_bits(*v);
                    c.copy_from_slice(&b.to_le_bytes());
                    bad |= b & 0x7F80 == 0x7F80;
                }
                !bad
            }
        },
        DType::F16 => match bytemuck::try_cast_slice_mut::<u8, f16>(out) {
            Ok(o) if cfg!(target_endian = "little") => {
                o.convert_from_f32_slice(values);
                // On the output, so values beyond ±65504 (which become ±Inf) count too.
                f16_all_finite(o)
            }
            _ => {
                let mut bad = false;
                for (c, v) in out.chunks_exact_mut(2).zip(values) {
                    let h = f16::from_f32(*v).to_bits();
                    c.copy_from_slice(&h.to_le_bytes());
                    bad |= h & 0x7C00 == 0x7C00;
                }
                !bad
            }
        },
        DType::F64 => {
            for (c, v) in out.chunks_exact_mut(8).zip(values) {
                c.copy_from_slice(&(*v as f64).to_le_bytes());
            }
            finite(values)
        }
        DType::I64 => {
            for (c, v) in out.chunks_exact_mut(8).zip(values) {
                c.copy_from_slice(&(v.round() as i64).to_le_bytes());
            }
            finite(values)
        }
        DType::I32 => {
            for (c, v) in out.chunks_exact_mut(4).zip(values) {
                c.copy_from_slice(&(v.round() as i32).to_le_bytes());
            }
            finite(values)
        }
        DType::U8 | DType::Bool => {
            for (c, v) in out.iter_mut().zip(values) {
                *c = v.round().clamp(0.0, 255.0) as u8;
            }
            finite(values)
        }
    }
}

/// f32 values encoded as `dtype`.
pub fn f32_to_bytes(values: &[f32], dtype: DType) -> Vec<u8> {
    let mut out = vec![0u8; values.len() * dtype.size()];
    cast_f32_into(values, dtype, &mut out);
    out
}

/// Encodes f64 values as `dtype` into `out` (F64 exactly; other dtypes through f32); returns
/// whether every encoded value is finite, as [`cast_f32_into`].
pub fn cast_f64_into(values: &[f64], dtype: DType, out: &mut [u8]) -> bool {
    if dtype == DType::F64 {
        for (c, v) in out.chunks_exact_mut(8).zip(values) {
            c.copy_from_slice(&v.to_le_bytes());
        }
        return values.iter().all(|v| v.is_finite());
    }
    let narrow: Vec<f32> = values.iter().map(|v| *v as f32).collect();
    cast_f32_into(&narrow, dtype, out)
}

/// f64 values encoded as `dtype` (F64 exactly; other dtypes through f32).
pub fn f64_to_bytes(values: &[f64], dtype: DType) -> Vec<u8> {
    let mut out = vec![0u8; values.len() * dtype.size()];
    cast_f64_into(values, dtype, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_equals_half() {
        let mut x = 0x1234_5678u32;
        let specials = [0.0f32, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN_POSITIVE, 1.0 + f32::EPSILON, 3.0e38];
        for i in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let v = if (i as usize) < specials.len() { specials[i as usize] } else { f32::from_bits(x) };
            if v.is_nan() {
                assert!(f32::from_bits((bf16_bits(v) as u32) << 16).is_nan());
            } else {
                assert_eq!(bf16_bits(v), bf16::from_f32(v).to_bits(), "{v:e} ({:#x})", v.to_bits());
            }
        }
        // Unaligned buffers take the byte-wise path to the same values.
        let vals: Vec<f32> = (0..37).map(|i| i as f32 * 0.37 - 5.0).collect();
        let mut buf = vec![0u8; vals.len() * 2 + 1];
        cast_f32_into(&vals, DType::BF16, &mut buf[1..]);
        let mut back = vec![0f32; vals.len()];
        to_f32_into(DType::BF16, &buf[1..], &mut back);
        assert_eq!(f32_to_bytes(&vals, DType::BF16), buf[1..]);
        let mut back2 = vec![0f32; vals.len()];
        to_f32_into(DType::BF16, &f32_to_bytes(&vals, DType::BF16), &mut back2);
        assert_eq!(back, back2);
    }

    #[test]
    fn round_trips() {
        let vals = [1.0f32, -2.5, 0.1, 3.0e-3, 65504.0];
        for d in [DType::F32, DType::BF16, DType::F16, DType::F64] {
            let b = f32_to_bytes(&vals, d);
            let mut back = vec![0f32; vals.len()];
            to_f32_into(d, &b, &mut back);
            let tol = match d {
                DType::BF16 => 1e-2,
                DType::F16 => 1e-3,
                _ => 0.0,
            };
            for (a, b) in vals.iter().zip(&back) {
                assert!((a - b).abs() <= tol * a.abs(), "{d}: {a} vs {b}");
            }
        }
        // bf16 rounds to nearest even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 → 1.
        let b = f32_to_bytes(&[1.0 + 1.0 / 256.0], DType::BF16);
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), 0x3f80);
    }

    /// Decode and encode report NaN and ±Inf in the same pass, on every path; an encode also
    /// reports a finite value that overflows the narrower type.
    #[test]
    fn non_finite_values_are_reported() {
        for d in [DType::F32, DType::BF16, DType::F16] {
            let ok = f32_to_bytes(&[1.0, -2.0, 0.5], d);
            let mut out = vec![0f32; 3];
            assert!(to_f32_into(d, &ok, &mut out), "{d}");
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut bytes = vec![0u8; 40 * d.size()];
                let mut vals = vec![0.25f32; 40];
                vals[33] = bad;
                assert!(!cast_f32_into(&vals, d, &mut bytes), "{d} {bad}");
                let mut out = vec![0f32; 40];
                assert!(!to_f32_into(d, &bytes, &mut out), "{d} {bad}");
            }
        }
        let mut two = [0u8; 2];
        assert!(!cast_f32_into(&[70_000.0], DType::F16, &mut two), "beyond f16's 65504");
        assert!(!cast_f32_into(&[f32::MAX], DType::BF16, &mut two), "rounds to bf16 Inf");
        assert!(cast_f32_into(&[65_504.0], DType::F16, &mut two));
    }
}
