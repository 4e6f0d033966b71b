//! Naive f64 loops that define each op: the expected values of [`crate::forward_references`].
//! Written for clarity, not speed, straight from the formulas in the `Backend` docs.

use agentmerge_model::backend::{AdamStep, AttnShape, DecodeShape, Trans, IGNORE};

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// `op(a)·op(b)` (`m × n`), plus `c0` when given.
#[allow(clippy::too_many_arguments)]
pub fn matmul(c0: Option<&[f32]>, a: &[f32], ta: Trans, b: &[f32], tb: Trans, m: usize, k: usize, n: usize) -> Vec<f64> {
    let at = |i: usize, p: usize| match ta {
        Trans::N => a[i * k + p],
        Trans::T => a[p * m + i],
    } as f64;
    let bt = |p: usize, j: usize| match tb {
        Trans::N => b[p * n + j],
        Trans::T => b[j * k + p],
    } as f64;
    let mut c = c0.map(f64s).unwrap_or_else(|| vec![0.0; m * n]);
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] += (0..k).map(|p| at(i, p) * bt(p, j)).sum::<f64>();
        }
    }
    c
}

pub fn embedding_fwd(table: &[f32], ids: &[u32], d: usize) -> Vec<f64> {
    ids.iter().flat_map(|&id| f64s(&table[id as usize * d..(id as usize + 1) * d])).collect()
}

/// `dtable0 + scatter(dout)`.
pub fn embedding_bwd(dtable0: &[f32], dout: &[f32], ids: &[u32], d: usize) -> Vec<f64> {
    let mut dt = f64s(dtable0);
    for (i, &id) in ids.iter().enumerate() {
        for j in 0..d {
            dt[id as usize * d + j] += dout[i * d + j] as f64;
        }
    }
    dt
}

/// `(out, rstd)`.
pub fn rmsnorm_fwd(x: &[f32], w: &[f32], d: usize, eps: f32) -> (Vec<f64>, Vec<f64>) {
    let (mut out, mut rstd) = (Vec::new(), Vec::new());
    for x in x.chunks_exact(d) {
        let r = 1.0 / (x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / d as f64 + eps as f64).sqrt();
        out.extend(x.iter().zip(w).map(|(&x, &w)| w as f64 * x as f64 * r));
        rstd.push(r);
    }
    (out, rstd)
}

/// `(dx0 + dx, dw0 + dw)`, from the exact gradient of `out = w ⊙ x / √(mean(x²) + eps)` (with
/// `rstd` recomputed in f64, not taken from the forward).
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_bwd(dx0: &[f32], dw0: &[f32], dout: &[f32], x: &[f32], w: &[f32], d: usize, eps: f32) -> (Vec<f64>, Vec<f64>) {
    let (mut dx, mut dw) = (f64s(dx0), f64s(dw0));
    for (i, x) in x.chunks_exact(d).enumerate() {
        let r = 1.0 / (x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / d as f64 + eps as f64).sqrt();
        let dout = &dout[i * d..(i + 1) * d];
        // out_j = w_j x_j r; ∂r/∂x_k = −r³ x_k / d.
        let gx: f64 = (0..d).map(|j| dout[j] as f64 * w[j] as f64 * x[j] as f64).sum();
        for k in 0..d {
            dx[i * d + k] += dout[k] as f64 * w[k] as f64 * r - gx * r * r * r * x[k] as f64 / d as f64;
            dw[k] += dout[k] as f64 * x[k] as f64 * r;
        }
    }
    (dx, dw)
}

/// Rotary embedding of `x` (`[n, heads, head_dim]`), by minus the angle when `inverse`. The angle
/// is defined in f32 as transformers computes it (`inv_freq = 1/theta^(2i/head_dim)`, then
/// `pos·inv_freq`, both rounded to f32); the rotation itself is f64.
pub fn rope(x: &[f32], pos: &[u32], heads: usize, head_dim: usize, theta: f32, inverse: bool) -> Vec<f64> {
    let half = head_dim / 2;
    let mut out = f64s(x);
    for (t, &p) in pos.iter().enumerate() {
        for i in 0..half {
            let inv_freq = 1.0f32 / theta.powf((2 * i) as f32 / head_dim as f32);
            let angle = (p as f32 * inv_freq) as f64;
            let (sin, cos) = angle.sin_cos();
            let sin = if inverse { -sin } else { sin };
            for h in 0..heads {
                let at = (t * heads + h) * head_dim;
                let (x1, x2) = (x[at + i] as f64, x[at + i + half] as f64);
                out[at + i] = x1 * cos - x2 * sin;
                out[at + i + half] = x2 * cos + x1 * sin;
            }
        }
    }
    out
}

/// Whether token `i` of a row sees token `j` of it.
fn sees(doc: &[u32], i: usize, j: usize) -> bool {
    j <= i && doc[j] == doc[i]
}

/// Attention probabilities of one (row, head): `p[i][j]`, and the log-sum-exp per query.
fn attn_probs(q: &[f32], k: &[f32], doc: &[u32], s: &AttnShape, b: usize, h: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let (t, hd) = (s.seq, s.head_dim);
    let g = h / (s.heads / s.kv_heads);
    let scale = 1.0 / (hd as f64).sqrt();
    let doc = &doc[b * t..(b + 1) * t];
    let qi = |i: usize| &q[((b * t + i) * s.heads + h) * hd..][..hd];
    let kj = |j: usize| &k[((b * t + j) * s.kv_heads + g) * hd..][..hd];
    let (mut p, mut lse) = (Vec::new(), Vec::new());
    for i in 0..t {
        let scores: Vec<f64> = (0..t)
            .map(|j| if sees(doc, i, j) { scale * qi(i).iter().zip(kj(j)).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() } else { f64::NEG_INFINITY })
            .collect();
        let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = scores.iter().map(|&x| (x - m).exp()).sum();
        p.push(scores.iter().map(|&x| (x - m).exp() / sum).collect());
        lse.push(m + sum.ln());
    }
    (p, lse)
}

/// `(out, lse)`.
pub fn attention_fwd(q: &[f32], k: &[f32], v: &[f32], doc: &[u32], s: &AttnShape) -> (Vec<f64>, Vec<f64>) {
    let (t, hd) = (s.seq, s.head_dim);
    let mut out = vec![0.0; s.tokens() * s.heads * hd];
    let mut lse = vec![0.0; s.tokens() * s.heads];
    for b in 0..s.batch {
        for h in 0..s.heads {
            let g = h / (s.heads / s.kv_heads);
            let (p, l) = attn_probs(q, k, doc, s, b, h);
            for i in 0..t {
                lse[(b * t + i) * s.heads + h] = l[i];
                for j in 0..t {
                    for e in 0..hd {
                        out[((b * t + i) * s.heads + h) * hd + e] += p[i][j] * v[((b * t + j) * s.kv_heads + g) * hd + e] as f64;
                    }
                }
            }
        }
    }
    (out, lse)
}

/// `(dq, dk, dv)` for the output gradient `dout`, from f64 probabilities (the exact gradient).
pub fn attention_bwd(dout: &[f32], q: &[f32], k: &[f32], v: &[f32], doc: &[u32], s: &AttnShape) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (t, hd) = (s.seq, s.head_dim);
    let scale = 1.0 / (hd as f64).sqrt();
    let mut dq = vec![0.0; q.len()];
    let (mut dk, mut dv) = (vec![0.0; k.len()], vec![0.0; v.len()]);
    let qa = |b: usize, i: usize, h: usize| ((b * t + i) * s.heads + h) * hd;
    let ka = |b: usize, j: usize, g: usize| ((b * t + j) * s.kv_heads + g) * hd;
    for b in 0..s.batch {
        for h in 0..s.heads {
            let g = h / (s.heads / s.kv_heads);
            let (p, _) = attn_probs(q, k, doc, s, b, h);
            for i in 0..t {
                // dP_ij = dO_i·V_j; dS_ij = P_ij (dP_ij − Σ_l P_il dP_il).
                let dp: Vec<f64> = (0..t).map(|j| (0..hd).map(|e| dout[qa(b, i, h) + e] as f64 * v[ka(b, j, g) + e] as f64).sum()).collect();
                let dot: f64 = (0..t).map(|j| p[i][j] * dp[j]).sum();
                for j in 0..t {
                    let ds = p[i][j] * (dp[j] - dot);
                    for e in 0..hd {
                        dq[qa(b, i, h) + e] += scale * ds * k[ka(b, j, g) + e] as f64;
                        dk[ka(b, j, g) + e] += scale * ds * q[qa(b, i, h) + e] as f64;
                        dv[ka(b, j, g) + e] += p[i][j] * dout[qa(b, i, h) + e] as f64;
                    }
                }
            }
        }
    }
    (dq, dk, dv)
}

/// The cache after `cache[slots[b], pos[b]] ← x[b]` (values copied exactly, so f32).
pub fn kv_store(cache: &[f32], x: &[f32], slots: &[u32], pos: &[u32], s: &DecodeShape) -> Vec<f32> {
    let kd = s.kv_heads * s.head_dim;
    let mut out = cache.to_vec();
    for b in 0..s.batch {
        let at = (slots[b] as usize * s.max_len + pos[b] as usize) * kd;
        out[at..at + kd].copy_from_slice(&x[b * kd..(b + 1) * kd]);
    }
    out
}

/// Query `b` against positions `0..lens[b]` of slot `slots[b]`: softmax of the scaled scores in
/// f64, then the weighted sum of the values.
pub fn attention_decode(q: &[f32], k_cache: &[f32], v_cache: &[f32], slots: &[u32], lens: &[u32], s: &DecodeShape) -> Vec<f64> {
    let (hd, kd) = (s.head_dim, s.kv_heads * s.head_dim);
    let scale = 1.0 / (hd as f64).sqrt();
    let mut out = vec![0.0; s.batch * s.heads * hd];
    for b in 0..s.batch {
        for h in 0..s.heads {
            let g = h / (s.heads / s.kv_heads);
            let qh = &q[(b * s.heads + h) * hd..][..hd];
            let at = |j: usize| (slots[b] as usize * s.max_len + j) * kd + g * hd;
            let scores: Vec<f64> =
                (0..lens[b] as usize).map(|j| scale * qh.iter().zip(&k_cache[at(j)..]).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>()).collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = scores.iter().map(|&x| (x - m).exp()).sum();
            for (j, &x) in scores.iter().enumerate() {
                let p = (x - m).exp() / sum;
                for e in 0..hd {
                    out[(b * s.heads + h) * hd + e] += p * v_cache[at(j) + e] as f64;
                }
            }
        }
    }
    out
}

fn sigmoid(g: f64) -> f64 {
    1.0 / (1.0 + (-g).exp())
}

pub fn swiglu_fwd(gate: &[f32], up: &[f32]) -> Vec<f64> {
    gate.iter().zip(up).map(|(&g, &u)| g as f64 * sigmoid(g as f64) * u as f64).collect()
}

/// `(dgate, dup)`.
pub fn swiglu_bwd(dout: &[f32], gate: &[f32], up: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let mut dg = Vec::new();
    let mut du = Vec::new();
    for ((&d, &g), &u) in dout.iter().zip(gate).zip(up) {
        let (d, g, u, s) = (d as f64, g as f64, u as f64, sigmoid(g as f64));
        dg.push(d * u * s * (1.0 + g * (1.0 - s)));
        du.push(d * g * s);
    }
    (dg, du)
}

/// `(losses, s·(softmax − onehot))`, zeros on ignored rows.
pub fn cross_entropy(logits: &[f32], targets: &[u32], vocab: usize, s: f64) -> (Vec<f64>, Vec<f64>) {
    let mut losses = Vec::new();
    let mut grad = Vec::new();
    for (row, &t) in logits.chunks_exact(vocab).zip(targets) {
        if t == IGNORE {
            losses.push(0.0);
            grad.extend(std::iter::repeat_n(0.0, vocab));
            continue;
        }
        let m = row.iter().map(|&x| x as f64).fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
        let lse = m + sum.ln();
        losses.push(lse - row[t as usize] as f64);
        grad.extend(row.iter().enumerate().map(|(j, &x)| s * ((x as f64 - lse).exp() - if j == t as usize { 1.0 } else { 0.0 })));
    }
    (losses, grad)
}

/// One AdamW step in f64, torch's formula: `(p, m, v)` after it.
pub fn adamw(p: &[f64], g: &[f32], m: &[f64], v: &[f64], s: &AdamStep) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (lr, b1, b2, eps, wd) = (s.lr as f64, s.beta1 as f64, s.beta2 as f64, s.eps as f64, s.weight_decay as f64);
    let t = s.t as f64;
    let (bc1, bc2) = (1.0 - b1.powf(t), 1.0 - b2.powf(t));
    let (mut p2, mut m2, mut v2) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..p.len() {
        let g = g[i] as f64 * s.grad_scale as f64;
        let m = b1 * m[i] + (1.0 - b1) * g;
        let v = b2 * v[i] + (1.0 - b2) * g * g;
        let p = p[i] * (1.0 - lr * wd) - (lr / bc1) * m / (v.sqrt() / bc2.sqrt() + eps);
        p2.push(p);
        m2.push(m);
        v2.push(v);
    }
    (p2, m2, v2)
}

pub fn sum_squares(x: &[f32]) -> f64 {
    x.iter().map(|&v| v as f64 * v as f64).sum()
}
