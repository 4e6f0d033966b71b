//! Token embedding: the forward gathers table rows, the backward scatters the rows' gradients
//! back, parallel over blocks of columns so that each table element is summed by one task, in
//! token order.

use crate::SharedMut;
use rayon::prelude::*;

/// Rows per forward task.
const ROWS: usize = 16;

/// Panics on the first id outside a table of `vocab` rows.
fn check_ids(op: &str, ids: &[u32], vocab: usize) {
    if let Some((i, id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
        panic!("{op}: id {id} (token {i}) outside a table of {vocab} rows");
    }
}

/// `out[i] ← table[ids[i]]`.
pub fn forward(out: &mut [f32], table: &[f32], ids: &[u32], d: usize) {
    check_ids("embedding_fwd", ids, table.len() / d);
    out.par_chunks_mut(ROWS * d).zip(ids.par_chunks(ROWS)).for_each(|(out, ids)| {
        for (o, &id) in out.chunks_exact_mut(d).zip(ids) {
            let id = id as usize;
            o.copy_from_slice(&table[id * d..(id + 1) * d]);
        }
    });
}

/// `dtable[ids[i]] += dout[i]`, each element summed in token order.
pub fn backward(dtable: &mut [f32], dout: &[f32], ids: &[u32], d: usize) {
    check_ids("embedding_bwd", ids, dtable.len() / d);
    // Column blocks of at least 16 values, about four per thread. The block size does not change
    // any sum: element (row, j) always receives its tokens' values in token order.
    let block = d.div_ceil(4 * rayon::current_num_threads()).next_multiple_of(16).min(d);
    let table = SharedMut::new(dtable);
    (0..d.div_ceil(block)).into_par_iter().for_each(|b| {
        let (c0, c1) = (b * block, ((b + 1) * block).min(d));
        for (i, &id) in ids.iter().enumerate() {
            // SAFETY: `id` is inside the table (checked above) and columns c0..c1 belong to this
            // task alone.
            let dst = unsafe { std::slice::from_raw_parts_mut(table.get().add(id as usize * d + c0), c1 - c0) };
            for (t, g) in dst.iter_mut().zip(&dout[i * d + c0..i * d + c1]) {
                *t += g;
            }
        }
    });
}
