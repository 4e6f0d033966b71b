"""Reference values for agentmerge-model (the Rust Llama trainer), computed with Hugging Face
`transformers` and `torch` on the CPU in float32.

Pinned versions (see _pins.py; a warning is printed when others run this):
    torch 2.15.0, transformers 5.25.0, safetensors 0.8.0, numpy 2.4.6 (Python 3.11.7)

Writes sdk/model/tests/fixtures/<case>/ for two cases:
  gqa_untied  vocab 97, hidden 32, inter 64, 2 layers, 4 heads / 2 kv heads (head_dim 8),
              rope_theta 1e4, rms_norm_eps 1e-5, untied lm_head
  tied        vocab 89, hidden 24, inter 40, 2 layers, 3 heads / 3 kv heads (head_dim 8),
              rope_theta 5e5, rms_norm_eps 1e-6, lm_head tied to the embeddings

Each case dir holds
  config.json, generation_config.json, model.safetensors
              the initial weights, exactly as `save_pretrained(safe_serialization=True)` writes
              them (transformers 5 writes `rope_parameters` and `dtype` instead of 4.x's
              `rope_theta` and `torch_dtype`; the tied case has no lm_head.weight)
  batch.json  one packed batch, 2 rows x 16 tokens: ids, positions (restart at 0 per document),
              docs (a document id per token, unique across the batch), mask (SFT loss mask: the
              last half of each document) and targets (-1 = ignored):
              targets[t] = ids[t+1] if t+1 < seq and docs[t+1] == docs[t] and mask[t+1] == 1
  expected.safetensors (float32)
              logits [2,16,V] and loss [1] of the initial weights on the batch (documents kept
              apart by position_ids plus a 4D block-causal additive mask); grad.<name> for each
              parameter (the un-clipped gradient of that loss; the tied case has one
              grad.model.embed_tokens.weight); after3.<name>, the weights after 3 AdamW steps
  meta.json   versions, hyper-parameters, per-step lr / pre-clip grad norm / loss, and the
              exact clipping and AdamW formulas used
  generate.json greedy decoding from the initial weights: a 6-token prompt, the 12 new ids, and
              the top1 - top2 logit margin of each step (all >= 1e-4, so no near-ties); the prompt
              seed is chosen so that neither eos (2) nor pad (0) is in the prompt or generated

The packed forward is checked against each document run alone (positions from 0, no mask):
the logits must agree to 1e-5, else this script fails.

Run from the repository root with the reference venv (see tools/llama_reference/README.md;
CI does not run it):
    /work/venv-ref/bin/python tools/llama_reference/make_fixtures.py
"""
import copy
import json
import math
import pathlib
import shutil
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _pins import check_versions  # noqa: E402

from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

ROOT = pathlib.Path("sdk/model/tests/fixtures")
IGNORE = -1

# Initial weights: transformers' own init (normal(0, initializer_range) for every matrix) with
# a larger std than the 0.02 default so attention is far from uniform and the loss and its
# gradients depend visibly on every part of the model; RMSNorm weights are then moved off 1.
INITIALIZER_RANGE = 0.2
NORM_PERTURBATION = 0.1  # norm weight = 1 + 0.1 * randn

ROWS, SEQ = 2, 16
DOC_LENGTHS = [[5, 7, 4], [10, 6]]

HYPER = {
    "lr_max": 1e-2,
    "warmup": 2,
    "total": 3,
    "min_lr_ratio": 0.1,
    "betas": [0.9, 0.95],
    "eps": 1e-8,
    "weight_decay": 0.1,  # 2-D weights (embeddings, lm_head, projections); 0.0 for RMSNorm weights
    "max_norm": 1.0,  # lowered (and recorded) if step 1 would not clip at 1.0
}

CASES = {
    "gqa_untied": {
        "seed": 1,
        "config": dict(
            vocab_size=97,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            rope_theta=10000.0,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            max_position_embeddings=64,
            attention_bias=False,
            mlp_bias=False,
            hidden_act="silu",
        ),
    },
    "tied": {
        "seed": 2,
        "config": dict(
            vocab_size=89,
            hidden_size=24,
            intermediate_size=40,
            num_hidden_layers=2,
            num_attention_heads=3,
            num_key_value_heads=3,
            head_dim=8,
            rope_theta=500000.0,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            max_position_embeddings=64,
            attention_bias=False,
            mlp_bias=False,
            hidden_act="silu",
        ),
    },
}


def lr_at(s, h):
    """Linear warmup then cosine decay to lr_max * min_lr_ratio (0-based step s)."""
    lr_max, warmup, total = h["lr_max"], h["warmup"], h["total"]
    if s < warmup:
        return lr_max * (s + 1) / warmup
    lr_min = lr_max * h["min_lr_ratio"]
    progress = (s - warmup) / max(1, total - warmup)
    return lr_min + (lr_max - lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_batch(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (ROWS, SEQ), generator=g)
    positions = torch.zeros(ROWS, SEQ, dtype=torch.long)
    docs = torch.zeros(ROWS, SEQ, dtype=torch.long)
    mask = torch.zeros(ROWS, SEQ, dtype=torch.long)
    doc_id = 0
    for r, lengths in enumerate(DOC_LENGTHS):
        assert sum(lengths) == SEQ
        start = 0
        for n in lengths:
            positions[r, start : start + n] = torch.arange(n)
            docs[r, start : start + n] = doc_id
            prompt = (n + 1) // 2  # the first ceil(n/2) tokens are the "prompt", the rest the response
            mask[r, start + prompt : start + n] = 1
            doc_id += 1
            start += n
    targets = torch.full((ROWS, SEQ), IGNORE, dtype=torch.long)
    for r in range(ROWS):
        for t in range(SEQ - 1):
            if docs[r, t + 1] == docs[r, t] and mask[r, t + 1] == 1:
                targets[r, t] = ids[r, t + 1]
    return ids, positions, docs, mask, targets


def block_causal_mask(docs):
    """[B,1,T,T] additive float mask: 0 where key j <= query i in the same document, else min."""
    t = docs.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    same = docs[:, :, None] == docs[:, None, :]
    allowed = (causal[None] & same)[:, None]
    m = torch.zeros(allowed.shape, dtype=torch.float32)
    return m.masked_fill(~allowed, torch.finfo(torch.float32).min)


def packed_logits(model, ids, positions, docs):
    out = model(input_ids=ids, position_ids=positions, attention_mask=block_causal_mask(docs), use_cache=False)
    return out.logits


def loss_of(logits, targets):
    v = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, v).float(), targets.reshape(-1), ignore_index=IGNORE)


def check_packing(model, ids, positions, docs, packed):
    """Each document alone (positions 0.., no mask) must give the packed logits of its tokens."""
    worst = 0.0
    with torch.no_grad():
        for r in range(ROWS):
            for d in docs[r].unique().tolist():
                cols = (docs[r] == d).nonzero().flatten()
                alone = model(input_ids=ids[r, cols][None], use_cache=False).logits[0]
                worst = max(worst, (alone - packed[r, cols]).abs().max().item())
        # Not vacuous: with a plain causal mask and contiguous positions the logits do differ.
        plain = model(input_ids=ids, use_cache=False).logits
        leak = (plain - packed).abs().max().item()
        # What transformers does with packed position_ids and no mask at all (informational).
        pos_only = model(input_ids=ids, position_ids=positions, use_cache=False).logits
        pos_only_diff = (pos_only - packed).abs().max().item()
    assert worst < 1e-5, f"packed logits differ from per-document logits by {worst}: 4D mask not honoured"
    assert leak > 1e-3, f"a plain causal forward matches the packed one ({leak}): the check is vacuous"
    return {
        "max_abs_diff_vs_documents_alone": worst,
        "max_abs_diff_plain_causal": leak,
        "max_abs_diff_position_ids_only_no_mask": pos_only_diff,
    }


def train(model, ids, positions, docs, targets, h):
    model.train()
    decay = [p for _, p in model.named_parameters() if p.ndim == 2]
    no_decay = [p for _, p in model.named_parameters() if p.ndim == 1]
    assert len(decay) + len(no_decay) == len(list(model.parameters()))
    params = decay + no_decay
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": h["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=h["lr_max"],
        betas=tuple(h["betas"]),
        eps=h["eps"],
        foreach=False,
        fused=False,
    )
    # A shadow copy updated by the formulas written into meta.json, in float64, to check them.
    b1, b2 = h["betas"]
    shadow = [p.detach().double().clone() for p in params]
    m1 = [torch.zeros_like(x) for x in shadow]
    m2 = [torch.zeros_like(x) for x in shadow]
    wds = [h["weight_decay"]] * len(decay) + [0.0] * len(no_decay)
    steps = []
    for s in range(h["total"]):
        opt.zero_grad(set_to_none=True)
        loss = loss_of(packed_logits(model, ids, positions, docs), targets)
        loss.backward()
        raw = [p.grad.detach().double().clone() for p in params]
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=h["max_norm"]).item()
        lr = lr_at(s, h)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        steps.append({"step": s, "lr": lr, "grad_norm_pre_clip": norm, "clipped": norm > h["max_norm"], "loss": loss.item()})
        total = torch.sqrt(sum((g**2).sum() for g in raw)).item()
        coef = min(1.0, h["max_norm"] / (total + 1e-6))
        t = s + 1
        for i, g in enumerate(raw):
            g = g * coef
            shadow[i] *= 1 - lr * wds[i]
            m1[i] = b1 * m1[i] + (1 - b1) * g
            m2[i] = b2 * m2[i] + (1 - b2) * g * g
            shadow[i] -= (lr / (1 - b1**t)) * m1[i] / (m2[i].sqrt() / math.sqrt(1 - b2**t) + h["eps"])
    formula_diff = max((p.detach().double() - x).abs().max().item() for p, x in zip(params, shadow))
    assert formula_diff < 1e-5, f"the documented AdamW/clip formulas differ from torch by {formula_diff}"
    with torch.no_grad():
        final = loss_of(packed_logits(model, ids, positions, docs), targets).item()
    return steps, final, formula_diff


def greedy(model, prompt, n):
    """Greedy decoding by full recomputation; returns the new ids and each step's top1 - top2 margin."""
    seq = prompt.clone()
    new, margins = [], []
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=seq[None], use_cache=False).logits[0, -1]
            top = logits.topk(2)
            margins.append((top.values[0] - top.values[1]).item())
            new.append(top.indices[0].item())
            seq = torch.cat([seq, top.indices[:1]])
    return new, margins


def make_generate(model, vocab, eos_in_config, pad, seed0):
    model.eval()
    for k in range(100):
        seed = seed0 + k
        prompt = torch.randint(0, vocab, (6,), generator=torch.Generator().manual_seed(seed))
        new, margins = greedy(model, prompt, 12)
        if min(margins) < 1e-4 or {eos_in_config, pad} & set(new + prompt.tolist()):
            continue
        gen_model = copy.deepcopy(model)
        gen_model.generation_config.eos_token_id = None
        with torch.no_grad():
            out = gen_model.generate(
                input_ids=prompt[None],
                attention_mask=torch.ones(1, 6, dtype=torch.long),
                max_new_tokens=12,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=pad,
            )
        hf_new = out[0, 6:].tolist()
        assert hf_new == new, f"generate() {hf_new} != greedy recomputation {new}"
        return {
            "prompt": prompt.tolist(),
            "generated": new,
            "max_new_tokens": 12,
            "eos_token_id": None,
            "pad_token_id": pad,
            "note": f"neither the config's eos_token_id {eos_in_config} nor the pad id {pad} occurs in `prompt` or `generated`, "
            "so stopping at eos changes nothing",
            "prompt_seed": seed,
            "margins": margins,
            "min_margin": min(margins),
        }
    raise RuntimeError("no prompt seed gave margins >= 1e-4")


def dump_json_lines(path, fields):
    """One key per line, values compact (lists on one line)."""
    lines = [f'  "{k}": {json.dumps(v, separators=(",", ":"))}' for k, v in fields.items()]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")


def make_case(name, spec, versions):
    out = ROOT / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    h = dict(HYPER)
    torch.manual_seed(spec["seed"])
    cfg = LlamaConfig(**spec["config"], initializer_range=INITIALIZER_RANGE, attn_implementation="eager")
    model = LlamaForCausalLM(cfg).to(torch.float32)
    assert model.config._attn_implementation == "eager"
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1.0 + NORM_PERTURBATION * torch.randn(p.shape))
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    vocab = cfg.vocab_size

    ids, positions, docs, mask, targets = make_batch(vocab, 100 + spec["seed"])
    dump_json_lines(
        out / "batch.json",
        {
            "rows": ROWS,
            "seq": SEQ,
            "ids": ids.flatten().tolist(),
            "positions": positions.flatten().tolist(),
            "docs": docs.flatten().tolist(),
            "mask": mask.flatten().tolist(),
            "targets": targets.flatten().tolist(),
        },
    )

    # Reference forward + backward on the initial weights.
    model.zero_grad(set_to_none=True)
    logits = packed_logits(model, ids, positions, docs)
    loss = loss_of(logits, targets)
    loss.backward()
    names = [n for n, _ in model.named_parameters()]
    tensors = {"logits": logits.detach().clone(), "loss": loss.detach().reshape(1).clone()}
    for n, p in model.named_parameters():
        tensors[f"grad.{n}"] = p.grad.detach().clone()
    grad_norm0 = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())).item()
    model.zero_grad(set_to_none=True)
    if grad_norm0 <= h["max_norm"]:
        h["max_norm"] = float(f"{grad_norm0 / 2:.2g}")

    packing = check_packing(model, ids, positions, docs, logits.detach())

    # The saved checkpoint reloads to the same model (for tied: without an lm_head.weight entry).
    reloaded, info = LlamaForCausalLM.from_pretrained(
        out, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    with torch.no_grad():
        diff = (packed_logits(reloaded, ids, positions, docs) - logits).abs().max().item()
    assert diff == 0.0, f"reloaded checkpoint gives different logits ({diff})"

    gen = make_generate(model, vocab, cfg.eos_token_id, 0, 1000 * spec["seed"])
    dump_json_lines(out / "generate.json", gen)

    trained = copy.deepcopy(model)
    steps, final_loss, formula_diff = train(trained, ids, positions, docs, targets, h)
    assert steps[0]["clipped"], "clipping must be active in step 1"
    assert abs(steps[0]["loss"] - loss.item()) < 1e-6
    for n, p in trained.named_parameters():
        tensors[f"after3.{n}"] = p.detach().clone()
    tensors = {k: v.contiguous().to(torch.float32) for k, v in tensors.items()}
    save_file(tensors, str(out / "expected.safetensors"), metadata={"format": "pt"})

    meta = {
        "case": name,
        "versions": versions,
        "config": spec["config"],
        "init": {
            "torch_manual_seed": spec["seed"],
            "initializer_range": INITIALIZER_RANGE,
            "norm_weights": f"1 + {NORM_PERTURBATION} * randn (after the init, same RNG stream)",
            "attn_implementation": "eager",
            "dtype": "float32",
        },
        "batch": {
            "doc_lengths": DOC_LENGTHS,
            "mask": "per document, the last floor(n/2) tokens are 1",
            "ignore_index": IGNORE,
            "attention": "position_ids = positions; 4D additive float mask [B,1,T,T]: 0.0 where key j <= query i "
            "and docs[j] == docs[i], float32 min elsewhere",
            "n_targets": int((targets != IGNORE).sum()),
        },
        "parameters": names,
        "loss": loss.item(),
        "hyper": h,
        "lr_schedule": "s < warmup: lr_max*(s+1)/warmup; else lr_min + (lr_max-lr_min)*0.5*(1+cos(pi*(s-warmup)/max(1,total-warmup))), "
        "lr_min = lr_max*min_lr_ratio",
        "clip": "torch.nn.utils.clip_grad_norm_: total = sqrt(sum of all grads^2); coef = min(1, max_norm/(total+1e-6)); grads *= coef",
        "adamw": "torch.optim.AdamW (foreach=False): p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; "
        "p -= (lr/(1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps), t = 1,2,3",
        "formula_check": f"the clip + AdamW formulas above, in float64, reproduce after3 to {formula_diff:.2g}",
        "steps": steps,
        "loss_after3": final_loss,
        "packing_check": packing,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")

    for f in out.iterdir():
        f.chmod(0o644)  # save_pretrained / safetensors create some files 0600
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    print(f"\n== {name}: {out}")
    print(f"   params {sum(p.numel() for p in model.parameters())}, targets {meta['batch']['n_targets']}, loss {loss.item():.6f}")
    print(f"   packing: {packing}")
    for s in steps:
        print(f"   step {s['step']}: lr {s['lr']:.4g}  loss {s['loss']:.6f}  grad norm {s['grad_norm_pre_clip']:.4f}  clipped {s['clipped']}")
    print(f"   loss after 3 steps {final_loss:.6f}; max_norm {h['max_norm']}")
    print(f"   generate: prompt {gen['prompt']} -> {gen['generated']} (min margin {gen['min_margin']:.4g})")
    print(f"   files: {sizes} total {sum(sizes.values())} bytes")


def main():
    versions = check_versions()
    torch.use_deterministic_algorithms(True)
    for name, spec in CASES.items():
        make_case(name, spec, versions)


if __name__ == "__main__":
    main()
