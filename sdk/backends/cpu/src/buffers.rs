//! The backend's memory: one `Vec<f32>` per f32 [`Mem`], one `Vec<u32>` for [`Mem::Ids`], and the
//! checked hand-out of slices that lets an op read and write different spans of one buffer.

use agentmerge_model::backend::{Mem, Span};
use anyhow::{bail, ensure, Result};

/// The f32 buffers, indexed by [`slot`].
#[derive(Default)]
pub(crate) struct Buffers {
    f: [Vec<f32>; 7],
}

/// The f32 buffer a [`Mem`] names.
fn slot(mem: Mem) -> usize {
    match mem {
        Mem::Params => 0,
        Mem::Grads => 1,
        Mem::AdamM => 2,
        Mem::AdamV => 3,
        Mem::Acts => 4,
        Mem::DActs => 5,
        Mem::Kv => 6,
        Mem::Ids => panic!("Mem::Ids holds u32 ids, not f32 values"),
    }
}

/// Whether two spans share an element.
fn overlap(a: Span, b: Span) -> bool {
    a.mem == b.mem && a.len > 0 && b.len > 0 && a.off < b.end() && b.off < a.end()
}

/// Zeroed storage of `len` elements, or an error when the memory is not there.
fn zeroed<T: Copy + Default>(len: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    if let Err(e) = v.try_reserve_exact(len) {
        bail!("cannot allocate {len} elements of {} bytes: {e}", size_of::<T>());
    }
    v.resize(len, T::default());
    Ok(v)
}

impl Buffers {
    pub fn alloc(&mut self, mem: Mem, len: usize) -> Result<()> {
        let i = slot(mem);
        self.f[i] = Vec::new(); // drop the old buffer first: peak memory is one buffer, not two
        self.f[i] = zeroed(len).map_err(|e| e.context(format!("allocating {mem:?}")))?;
        Ok(())
    }

    pub fn len(&self, mem: Mem) -> usize {
        self.f[slot(mem)].len()
    }

    fn checked(&self, span: Span) -> Result<()> {
        ensure!(span.mem != Mem::Ids, "{span:?}: Mem::Ids holds u32 ids (use upload_ids)");
        let have = self.f[slot(span.mem)].len();
        ensure!(span.off.checked_add(span.len).is_some_and(|end| end <= have), "{span:?} lies outside {:?} of {have} elements", span.mem);
        Ok(())
    }

    pub fn upload(&mut self, dst: Span, src: &[f32]) -> Result<()> {
        self.checked(dst)?;
        ensure!(src.len() == dst.len, "upload: {} values into {dst:?}", src.len());
        self.f[slot(dst.mem)][dst.off..dst.end()].copy_from_slice(src);
        Ok(())
    }

    pub fn download(&mut self, src: Span, dst: &mut [f32]) -> Result<()> {
        self.checked(src)?;
        ensure!(dst.len() == src.len, "download: {src:?} into {} values", dst.len());
        dst.copy_from_slice(&self.f[slot(src.mem)][src.off..src.end()]);
        Ok(())
    }

    /// Slices for one op: `reads` shared, `writes` exclusive. Panics (a programming error) when a
    /// span lies outside its buffer or a written span overlaps any other span of the call. Ops
    /// whose contract allows aliasing (`add`'s `out = a`) pass the aliased span once, as a write.
    #[track_caller]
    pub fn io<const R: usize, const W: usize>(&mut self, op: &str, reads: [Span; R], writes: [Span; W]) -> ([&[f32]; R], [&mut [f32]; W]) {
        for s in reads.iter().chain(&writes) {
            if let Err(e) = self.checked(*s) {
                panic!("{op}: {e}");
            }
        }
        for (i, w) in writes.iter().enumerate() {
            for r in &reads {
                assert!(!overlap(*w, *r), "{op}: output {w:?} overlaps input {r:?}");
            }
            for w2 in &writes[i + 1..] {
                assert!(!overlap(*w, *w2), "{op}: outputs {w:?} and {w2:?} overlap");
            }
        }
        let base = self.f.each_mut().map(|v| v.as_mut_ptr());
        // SAFETY: every span lies inside its buffer (checked above), written spans overlap no
        // other span of the call, and the slices borrow `self` mutably for their lifetime, so
        // nothing else touches the buffers meanwhile.
        let reads = reads.map(|s| unsafe { std::slice::from_raw_parts(base[slot(s.mem)].add(s.off).cast_const(), s.len) });
        let writes = writes.map(|s| unsafe { std::slice::from_raw_parts_mut(base[slot(s.mem)].add(s.off), s.len) });
        (reads, writes)
    }
}

/// The `u32` buffer of [`Mem::Ids`]. Ops only read it.
#[derive(Default)]
pub(crate) struct Ids {
    v: Vec<u32>,
}

impl Ids {
    pub fn alloc(&mut self, len: usize) -> Result<()> {
        self.v = Vec::new();
        self.v = zeroed(len).map_err(|e| e.context("allocating Ids"))?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.v.len()
    }

    fn checked(&self, span: Span) -> Result<()> {
        ensure!(span.mem == Mem::Ids, "{span:?}: expected a span of Mem::Ids");
        ensure!(span.off.checked_add(span.len).is_some_and(|end| end <= self.v.len()), "{span:?} lies outside Ids of {} elements", self.v.len());
        Ok(())
    }

    pub fn upload(&mut self, dst: Span, src: &[u32]) -> Result<()> {
        self.checked(dst)?;
        ensure!(src.len() == dst.len, "upload_ids: {} ids into {dst:?}", src.len());
        self.v[dst.off..dst.end()].copy_from_slice(src);
        Ok(())
    }

    #[track_caller]
    pub fn get(&self, op: &str, span: Span) -> &[u32] {
        if let Err(e) = self.checked(span) {
            panic!("{op}: {e}");
        }
        &self.v[span.off..span.end()]
    }

    #[track_caller]
    pub fn get_mut(&mut self, op: &str, span: Span) -> &mut [u32] {
        if let Err(e) = self.checked(span) {
            panic!("{op}: {e}");
        }
        &mut self.v[span.off..span.end()]
    }

    #[track_caller]
    pub fn copy(&mut self, dst: Span, src: Span) {
        self.get("copy", src);
        self.get("copy", dst);
        assert!(!overlap(dst, src), "copy: {dst:?} overlaps {src:?}");
        self.v.copy_within(src.off..src.end(), dst.off);
    }
}
