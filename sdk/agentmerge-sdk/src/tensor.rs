//! Tensors that cross the plugin boundary without copying.
//!
//! A [`Tensor`] is a dtype, a shape and a byte buffer kept alive by a reference-counted owner
//! (a `Vec`, a memory map, anything `AsRef<[u8]>`). Cloning shares the buffer; the owner is
//! freed exactly once, by the last clone, on whichever side of the boundary that happens.

use std::{any::Any, ffi::c_void, fmt, sync::Arc};

use abi_stable::std_types::RVec;
use serde::{Deserialize, Serialize};

use crate::abi::FfiTensor;

/// Element types, named as in safetensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    U8,
    Bool,
}

impl DType {
    pub const ALL: [DType; 8] = [DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64, DType::I32, DType::U8, DType::Bool];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::U8 | DType::Bool => 1,
        }
    }

    /// The safetensors name (`F32`, `BF16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F64 => "F64",
            DType::I64 => "I64",
            DType::I32 => "I32",
            DType::U8 => "U8",
            DType::Bool => "BOOL",
        }
    }

    pub fn parse(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name().eq_ignore_ascii_case(name))
    }

    fn code(self) -> u8 {
        DType::ALL.iter().position(|d| *d == self).unwrap() as u8
    }

    fn from_code(code: u8) -> Option<DType> {
        DType::ALL.get(code as usize).copied()
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The shared owner behind a tensor's bytes.
#[allow(dead_code)] // held only to be dropped
struct Owner(Box<dyn Any + Send + Sync>);

unsafe extern "C" fn owner_retain(owner: *const c_void) {
    Arc::increment_strong_count(owner as *const Owner);
}

unsafe extern "C" fn owner_release(owner: *const c_void) {
    Arc::decrement_strong_count(owner as *const Owner);
}

/// An n-dimensional array of one [`DType`], shared without copying.
pub struct Tensor {
    raw: FfiTensor,
}

impl Tensor {
    /// A tensor over `owner`'s bytes (all of them). Fails when the byte length does not match
    /// the shape and dtype.
    pub fn from_owner<O>(dtype: DType, shape: Vec<u64>, owner: O) -> anyhow::Result<Tensor>
    where
        O: AsRef<[u8]> + Send + Sync + 'static,
    {
        // Box the owner first: the heap slot never moves afterwards, so the byte pointer taken
        // from it stays valid even for owners that store their bytes inline.
        let boxed: Box<O> = Box::new(owner);
        let bytes = (*boxed).as_ref();
        let (data, len) = (bytes.as_ptr(), bytes.len());
        let want = shape.iter().product::<u64>() as usize * dtype.size();
        anyhow::ensure!(len == want, "tensor of shape {shape:?} and dtype {dtype} needs {want} bytes, got {len}");
        let owner = Arc::new(Owner(boxed));
        Ok(Tensor {
            raw: FfiTensor {
                dtype: dtype.code(),
                shape: RVec::from(shape),
                data,
                len,
                owner: Arc::into_raw(owner) as *const c_void,
                retain: owner_retain,
                release: owner_release,
            },
        })
    }

    /// A tensor owning `values` (f32, f64, i64, i32 or u8 elements).
    pub fn from_vec<T: Element>(shape: Vec<u64>, values: Vec<T>) -> anyhow::Result<Tensor> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes_vec()).collect();
        Tensor::from_owner(T::DTYPE, shape, bytes)
    }

    pub fn dtype(&self) -> DType {
        DType::from_code(self.raw.dtype).unwrap_or(DType::U8)
    }

    pub fn shape(&self) -> &[u64] {
        &self.raw.shape
    }

    pub fn numel(&self) -> usize {
        self.shape().iter().product::<u64>() as usize
    }

    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `data`/`len` point into the owner, which lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.raw.data, self.raw.len) }
    }

    /// The elements as f64, whatever the dtype (bf16/f16 widened exactly).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let b = self.bytes();
        match self.dtype() {
            DType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            DType::F64 => b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
            DType::F16 => b.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])) as f64).collect(),
            DType::BF16 => b.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64).collect(),
            DType::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            DType::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            DType::U8 | DType::Bool => b.iter().map(|&x| x as f64).collect(),
        }
    }

    pub(crate) fn into_raw(self) -> FfiTensor {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so ownership of `raw` moves out exactly once.
        unsafe { std::ptr::read(&this.raw) }
    }

    pub(crate) fn from_raw(raw: FfiTensor) -> Tensor {
        Tensor { raw }
    }
}

/// IEEE half to f32, exact.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // subnormal: value = frac * 2^-24
            let v = frac as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

impl Clone for Tensor {
    fn clone(&self) -> Tensor {
        // SAFETY: the owner is alive (we hold a reference); retain adds one more.
        unsafe { (self.raw.retain)(self.raw.owner) };
        Tensor {
            raw: FfiTensor {
                dtype: self.raw.dtype,
                shape: self.raw.shape.clone(),
                data: self.raw.data,
                len: self.raw.len,
                owner: self.raw.owner,
                retain: self.raw.retain,
                release: self.raw.release,
            },
        }
    }
}

impl Drop for FfiTensor {
    fn drop(&mut self) {
        // SAFETY: each FfiTensor holds exactly one reference to its owner.
        unsafe { (self.release)(self.owner) }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({} {:?})", self.dtype(), self.shape())
    }
}

/// Element types a [`Tensor`] can be built from with [`Tensor::from_vec`].
pub trait Element: Copy {
    const DTYPE: DType;
    fn to_le_bytes_vec(self) -> Vec<u8>;
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DTYPE: DType = $d;
            fn to_le_bytes_vec(self) -> Vec<u8> {
                self.to_le_bytes().to_vec()
            }
        }
    };
}
element!(f32, DType::F32);
element!(f64, DType::F64);
element!(i64, DType::I64);
element!(i32, DType::I32);
element!(u8, DType::U8);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static DROPS: AtomicUsize = AtomicUsize::new(0);

    struct Counted(Vec<u8>);
    impl AsRef<[u8]> for Counted {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn owner_is_freed_exactly_once_and_bytes_are_shared() {
        let t = Tensor::from_owner(DType::U8, vec![2, 2], Counted(vec![1, 2, 3, 4])).unwrap();
        let ptr = t.bytes().as_ptr();
        let clones: Vec<Tensor> = (0..5).map(|_| t.clone()).collect();
        assert!(clones.iter().all(|c| c.bytes().as_ptr() == ptr));
        let raw = clones.into_iter().next().unwrap().into_raw();
        let back = Tensor::from_raw(raw);
        drop(t);
        assert_eq!(DROPS.load(Ordering::SeqCst), 0);
        assert_eq!(back.bytes(), &[1, 2, 3, 4]);
        drop(back);
        assert_eq!(DROPS.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let err = Tensor::from_owner(DType::F32, vec![3], vec![0u8; 8]).unwrap_err();
        assert!(err.to_string().contains("needs 12 bytes"), "{err}");
    }

    #[test]
    fn conversions() {
        let t = Tensor::from_vec(vec![3], vec![1.5f32, -2.0, 3.25]).unwrap();
        assert_eq!(t.to_f64_vec(), vec![1.5, -2.0, 3.25]);
        // 1.0 in f16 is 0x3c00, in bf16 0x3f80
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        let bf = Tensor::from_owner(DType::BF16, vec![1], vec![0x80u8, 0x3f]).unwrap();
        assert_eq!(bf.to_f64_vec(), vec![1.0]);
        for d in DType::ALL {
            assert_eq!(DType::parse(d.name()), Some(d));
            assert_eq!(DType::from_code(d.code()), Some(d));
        }
    }
}
