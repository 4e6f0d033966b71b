"""PyTorch CPU baseline for the Rust `train-bench`: full training steps of a LlamaForCausalLM
(eager attention, float32) on random token batches.

Pinned versions (see _pins.py; a warning is printed when others run this):
    torch 2.15.0, transformers 5.25.0, safetensors 0.8.0, numpy 2.4.6 (Python 3.11.7)

    /work/venv-ref/bin/python tools/llama_reference/bench_torch.py --config h128l4,h256l4 [--threads 2]
        [--steps 10] [--warmup 2]

One step = zero_grad, forward, cross-entropy over all B*T tokens (random targets), backward,
clip_grad_norm_(1.0), AdamW(lr 1e-3, betas (0.9, 0.95), wd 0.1). `--warmup` steps run first
and are not timed. Prints one JSON line per config with the median step time and tokens/s,
N (all parameters except the input embedding table: lm_head counted), model FLOPs per token
6*N + 12*L*d*T (PaLM / llm.c convention: T = seq, d = heads*head_dim, causal masking not
discounted), achieved GFLOP/s, the peak RSS, and cpu_util / loadavg_1m to show whether
other processes competed for the cores (a number taken under load is not a baseline).
Several configs run one per subprocess so each peak RSS is its own.
"""
import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _pins import check_versions  # noqa: E402

from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

CONFIGS = {
    # name: (hidden, intermediate, layers, heads, kv heads, vocab, seq, batch)
    "h128l4": (128, 344, 4, 4, 4, 4096, 256, 8),
    "h256l4": (256, 688, 4, 4, 4, 4096, 256, 8),
    "h512l8": (512, 1376, 8, 8, 8, 4096, 256, 8),
}
FLOPS_FORMULA = "6*N + 12*L*d*T, N = all params except the input embedding table (lm_head counted), d = heads*head_dim, T = seq"


def run_one(name, threads, steps, warmup, versions):
    hidden, inter, layers, heads, kv, vocab, seq, batch = CONFIGS[name]
    rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=hidden // heads,
        max_position_embeddings=seq,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    model = LlamaForCausalLM(cfg).to(torch.float32)
    assert model.config._attn_implementation == "eager"
    model.train()
    params = list(model.parameters())
    decay = [p for p in params if p.ndim == 2]
    no_decay = [p for p in params if p.ndim == 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.95), eps=1e-8
    )
    n_total = sum(p.numel() for p in params)
    n = n_total - model.model.embed_tokens.weight.numel()
    flops_per_token = 6 * n + 12 * layers * (heads * (hidden // heads)) * seq
    g = torch.Generator().manual_seed(1)
    times, cpu, losses = [], [], []
    load_start = os.getloadavg()[0]
    for i in range(warmup + steps):
        ids = torch.randint(0, vocab, (batch, seq), generator=g)
        targets = torch.randint(0, vocab, (batch, seq), generator=g)
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=ids, use_cache=False).logits
        loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
        opt.step()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if i >= warmup:
            times.append(dt)
            cpu.append(dc)
            losses.append(loss.item())
    med = statistics.median(times)
    tokens = batch * seq
    return {
        "config": name,
        "impl": "pytorch-eager-f32",
        "threads": threads,
        "hidden": hidden,
        "intermediate": inter,
        "layers": layers,
        "heads": heads,
        "kv_heads": kv,
        "vocab": vocab,
        "seq": seq,
        "batch": batch,
        "steps": steps,
        "warmup": warmup,
        "tokens_per_step": tokens,
        "ms_per_step": round(med * 1e3, 2),
        "ms_per_step_min": round(min(times) * 1e3, 2),
        "ms_per_step_max": round(max(times) * 1e3, 2),
        "tokens_per_s": round(tokens / med, 1),
        "params_total": n_total,
        "params_N": n,
        "flops_per_token": flops_per_token,
        "flops_formula": FLOPS_FORMULA,
        "gflops_per_s": round(flops_per_token * tokens / med / 1e9, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        # What torch + transformers take before the model exists (part of peak_rss_mib).
        "rss_after_import_mib": round(rss_import, 1),
        "loss_last": round(losses[-1], 4),
        # Busy cores while timed (process CPU time / wall time; ~threads when nothing competes)
        # and the 1-minute load average at the start and end: check them before trusting a number.
        "cpu_util": round(sum(cpu) / sum(times), 2),
        "loadavg_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "versions": versions,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default="h256l4", help=f"one or more of {', '.join(CONFIGS)}, comma-separated")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    names = [c for c in args.config.split(",") if c]
    for c in names:
        if c not in CONFIGS:
            ap.error(f"unknown config {c}; known: {', '.join(CONFIGS)}")
    if len(names) > 1:
        rc = 0
        for c in names:
            cmd = [sys.executable, __file__, "--config", c, "--threads", str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup)]
            rc |= subprocess.run(cmd, check=False).returncode
        return rc
    versions = check_versions(quiet=True)
    print(json.dumps(run_one(names[0], args.threads, args.steps, args.warmup, versions)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
