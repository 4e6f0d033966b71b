"""Simulates the TIES rank band's sample on row- and column-structured f32 task vectors.

The merge engine brackets a tensor's magnitude threshold with a band taken from a sample of
32 runs of neighbouring elements (sdk/merge/src/methods/task_arithmetic.rs, `sample_runs`;
select.rs, `BandSelect::end_sample`), then counts the whole tensor once. When the band
misses, the engine now searches again with a band from a second sample of single elements
spread through the tensor (kept during the counting pass), then falls back to exact radix
selection. This script applies the same rule to
|N(0,1) * row_scale * col_scale| matrices (log-normal scales) and prints how often the band
holds the median and what share of the tensor falls inside it, with the fixed margin the
engine uses and with a margin widened by the spread between runs.

    python3 tools/band_miss_sim.py      # needs numpy; about a minute
"""
import numpy as np

rng = np.random.default_rng(0)


def trial(rows, cols, sig_r, sig_c, runs, run, adaptive, q=0.5):
    n = rows * cols
    r = np.exp(rng.normal(0, sig_r, rows)).astype(np.float32)
    c = np.exp(rng.normal(0, sig_c, cols)).astype(np.float32)
    d = np.abs(rng.standard_normal((rows, cols), dtype=np.float32) * r[:, None] * c[None, :]).ravel()
    step = n // runs
    parts = [d[i * step:i * step + run] for i in range(runs)]
    sample = np.sort(np.concatenate(parts))
    m = len(sample)
    se = np.sqrt(q * (1 - q) / m)
    if adaptive:
        key_q = sample[int(q * (m - 1))]
        p = np.array([(x < key_q).mean() for x in parts])
        se = max(se, p.std(ddof=1) / np.sqrt(runs))
    margin = 0.003 + 6 * se
    lo = sample[int(max(q - margin, 0) * (m - 1))]
    hi = sample[min(int((q + margin) * (m - 1)), m - 1)]
    hit = (d < lo).mean() <= q <= (d <= hi).mean()
    return hit, ((d >= lo) & (d <= hi)).mean()


for adaptive in (False, True):
    print("margin widened by the spread between runs" if adaptive else "the engine's margin")
    for sig_r, sig_c in [(0.0, 0.0), (0.3, 0.3), (1.0, 0.3), (0.3, 1.0), (1.0, 1.0)]:
        cells = []
        for runs, run in [(32, 8192), (32, 2048), (128, 512)]:
            res = [trial(5632, 2048, sig_r, sig_c, runs, run, adaptive) for _ in range(6)]
            hits = sum(h for h, _ in res)
            inside = 100 * np.mean([i for _, i in res])
            cells.append(f"{runs}x{run}: band held {hits}/6, {inside:.1f}% inside")
        print(f"  rows σ {sig_r}, cols σ {sig_c}: " + " | ".join(cells), flush=True)
