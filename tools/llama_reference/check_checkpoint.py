"""Checks that a checkpoint directory written by the Rust trainer loads in Hugging Face
`transformers` as a LlamaForCausalLM, and optionally that its logits match the Rust side's.

Pinned versions (see _pins.py; a warning is printed when others run this):
    torch 2.15.0, transformers 5.25.0, safetensors 0.8.0, numpy 2.4.6 (Python 3.11.7)

    /work/venv-ref/bin/python tools/llama_reference/check_checkpoint.py DIR [--logits FILE] [--tol 1e-4]

DIR     config.json + model.safetensors (or a sharded index). Loaded with
        LlamaForCausalLM.from_pretrained(DIR, dtype=float32, attn_implementation="eager",
        output_loading_info=True); any missing, unexpected or mismatched key is a failure
        (a tied checkpoint without lm_head.weight is fine: transformers ties it).
--logits FILE
        safetensors with `ids` int64 [B,T] and `logits` float32 [B,T,V] computed by the Rust
        side from DIR. Optional `positions` and `docs` int64 [B,T] mean a packed batch: then
        position_ids=positions and a block-causal 4D mask keep the documents apart (as in
        make_fixtures.py); without them it is a plain causal forward from position 0.
        The max abs logit error must be <= --tol (default 1e-4). For a checkpoint stored in
        bfloat16 the weights are upcast to float32 (exactly) and the error is only reported.

Prints the result; exits 1 on failure, 0 on success.
"""
import argparse
import json
import pathlib
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _pins import check_versions  # noqa: E402

from transformers import LlamaForCausalLM  # noqa: E402


def stored_dtypes(ckpt):
    """The dtypes of the tensors in the checkpoint's safetensors file(s), from their headers."""
    index = ckpt / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    dtypes = set()
    for f in files:
        with safe_open(str(ckpt / f), "pt") as st:
            for k in st.keys():
                dtypes.add(str(st.get_slice(k).get_dtype()))
    return dtypes


def block_causal_mask(docs):
    t = docs.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    allowed = (causal[None] & (docs[:, :, None] == docs[:, None, :]))[:, None]
    return torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, torch.finfo(torch.float32).min)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=pathlib.Path)
    ap.add_argument("--logits", type=pathlib.Path)
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    check_versions()

    failures = []
    try:
        dtypes = stored_dtypes(args.dir)
    except Exception as e:  # noqa: BLE001
        print(f"FAIL: cannot read the safetensors headers in {args.dir}: {e}")
        return 1
    bf16 = "BF16" in dtypes
    print(f"checkpoint: {args.dir} (stored dtypes: {', '.join(sorted(dtypes))})")

    try:
        model, info = LlamaForCausalLM.from_pretrained(
            args.dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
        )
    except Exception as e:  # noqa: BLE001
        print(f"FAIL: from_pretrained raised {type(e).__name__}: {e}")
        return 1
    model.eval()
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        vals = info.get(key) or []
        if vals:
            failures.append(f"{key}: {sorted(map(str, vals))}")
    cfg = model.config
    tied = model.lm_head.weight is model.model.embed_tokens.weight
    rope = getattr(cfg, "rope_parameters", None) or {"rope_theta": getattr(cfg, "rope_theta", None)}
    print(
        f"loaded: vocab {cfg.vocab_size}, hidden {cfg.hidden_size}, inter {cfg.intermediate_size}, "
        f"layers {cfg.num_hidden_layers}, heads {cfg.num_attention_heads}/{cfg.num_key_value_heads} kv, "
        f"head_dim {getattr(cfg, 'head_dim', None)}, rope_theta {rope.get('rope_theta')}, "
        f"rms_norm_eps {cfg.rms_norm_eps}, tied {tied}, params {sum(p.numel() for p in model.parameters())}"
    )
    print(f"loading info: {', '.join(f'{k} {len(v or [])}' for k, v in info.items())}")

    if args.logits:
        ref = load_file(str(args.logits))
        ids = ref["ids"].to(torch.long)
        want = ref["logits"].to(torch.float32)
        kwargs = {}
        if "positions" in ref and "docs" in ref:
            kwargs = {"position_ids": ref["positions"].to(torch.long), "attention_mask": block_causal_mask(ref["docs"])}
        with torch.no_grad():
            got = model(input_ids=ids, use_cache=False, **kwargs).logits
        if got.shape != want.shape:
            failures.append(f"logits shape {tuple(want.shape)} in {args.logits}, transformers gives {tuple(got.shape)}")
        else:
            err = (got - want).abs().max().item()
            where = "packed" if kwargs else "causal"
            if bf16:
                print(f"logits ({where}, {tuple(ids.shape)}): max abs error {err:.3g} (bf16 checkpoint: reported, not checked)")
            else:
                print(f"logits ({where}, {tuple(ids.shape)}): max abs error {err:.3g} (tolerance {args.tol:g})")
                if not err <= args.tol:
                    failures.append(f"max abs logit error {err:.3g} > {args.tol:g}")

    if failures:
        for f in failures:
            print(f"FAIL: {f}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
