//! The error measure every check uses, and its report.
//!
//! Element `i` of `got` against `want` has error `|got_i − want_i| / (|want_i| + rms(want))`:
//! relative for elements of the tensor's size or larger, relative to the tensor's scale for those
//! near zero (where a relative error means nothing). NaN and infinities count as infinite error
//! (so a comparison `err > tol` fails on them).

use std::fmt;

/// The worst element of a comparison.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Worst {
    pub err: f64,
    pub index: usize,
    pub got: f64,
    pub want: f64,
}

impl fmt::Display for Worst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error {:.3e} at element {}: got {:.9e}, want {:.9e}", self.err, self.index, self.got, self.want)
    }
}

pub(crate) fn rms(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
}

/// The worst element of `got` against `want` (same lengths).
pub(crate) fn worst(got: &[f64], want: &[f64]) -> Worst {
    assert_eq!(got.len(), want.len(), "comparing tensors of different lengths");
    let scale = rms(want).max(f64::MIN_POSITIVE);
    let mut w = Worst { err: 0.0, index: 0, got: 0.0, want: 0.0 };
    for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
        let err = (g - e).abs() / (e.abs() + scale);
        let err = if err.is_finite() { err } else { f64::INFINITY };
        if err > w.err || i == 0 {
            w = Worst { err, index: i, got: g, want: e };
        }
    }
    w
}

pub(crate) fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}
