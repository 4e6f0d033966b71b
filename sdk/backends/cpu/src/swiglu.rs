//! The SwiGLU gate of the MLP: `out = silu(gate) ⊙ up` with `silu(g) = g·σ(g)`, and its
//! backward `dgate = dout·up·σ·(1 + g·(1 − σ))`, `dup = dout·silu(g)`.

use crate::elementwise::GRAIN;
use crate::math;
use rayon::prelude::*;

fn sigmoid(g: f32) -> f32 {
    1.0 / (1.0 + math::exp(-g))
}

pub fn forward(out: &mut [f32], gate: &[f32], up: &[f32]) {
    out.par_chunks_mut(GRAIN).zip(gate.par_chunks(GRAIN)).zip(up.par_chunks(GRAIN)).for_each(|((out, gate), up)| {
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = g * sigmoid(g) * u;
        }
    });
}

pub fn backward(dgate: &mut [f32], dup: &mut [f32], dout: &[f32], gate: &[f32], up: &[f32]) {
    let inputs = dout.par_chunks(GRAIN).zip(gate.par_chunks(GRAIN)).zip(up.par_chunks(GRAIN));
    dgate.par_chunks_mut(GRAIN).zip(dup.par_chunks_mut(GRAIN)).zip(inputs).for_each(|((dg, du), ((dout, gate), up))| {
        for (((dg, du), &d), (&g, &u)) in dg.iter_mut().zip(du.iter_mut()).zip(dout).zip(gate.iter().zip(up)) {
            let s = sigmoid(g);
            *dg = d * u * s * (1.0 + g * (1.0 - s));
            *du = d * (g * s);
        }
    });
}
