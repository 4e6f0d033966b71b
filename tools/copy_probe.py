#!/usr/bin/env python3
"""Copy probe: does a model put its probability on the value the goal names, or on a value it
memorised? Teacher-forced, on an `sft/build` preview of expert steps (`preview_examples` large
enough to hold them all).

For every expert action that types or says a value copied from the goal (the knowledge-base
query `travel guidelines Oslo`, the user to impersonate, ...), the action is scored with each
candidate value in its place — every value the same slot takes anywhere in the preview — and the
rank of the goal's own value among them is recorded (1: the model prefers what the goal says).
A model that ignores the goal ranks it like chance, ~(k+1)/2 of k; one that copies ranks it 1.

    python3 tools/copy_probe.py MODEL_DIR TOKENIZER_DIR PREVIEW.txt [MODEL_DIR ...]

Needs numpy, safetensors and tokenizers only (a plain Llama forward in numpy, f32). Its forward
is checked against the Rust model's logits on the same checkpoint:

    cargo run --release -p agentmerge-model --example dump_logits -- MODEL_DIR /tmp/l.safetensors 2 64
    python3 tools/copy_probe.py --check MODEL_DIR /tmp/l.safetensors    # max |Δ log-probability| <= 1e-3
"""
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer


class Llama:
    """LlamaForCausalLM's forward in numpy: RMSNorm, RoPE (rotate-half), causal attention, SwiGLU."""

    def __init__(self, model_dir):
        cfg = json.loads((Path(model_dir) / "config.json").read_text())
        self.w = load_file(str(Path(model_dir) / "model.safetensors"))
        self.layers = cfg["num_hidden_layers"]
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg.get("num_key_value_heads", self.heads)
        self.dim = cfg.get("head_dim") or cfg["hidden_size"] // self.heads
        self.eps = cfg["rms_norm_eps"]
        theta = cfg.get("rope_theta") or cfg.get("rope_parameters", {}).get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / theta ** (np.arange(0, self.dim, 2, dtype=np.float64) / self.dim)
        self.head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])

    def norm(self, x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):
        ang = np.outer(pos, self.inv_freq)
        cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
        half = x.shape[-1] // 2
        rot = np.concatenate([-x[..., half:], x[..., :half]], -1)
        return (x * cos + rot * sin).astype(np.float32)

    def run(self, ids, past=None):
        """Log-probabilities of the next token after each of `ids`, (T, V), given the keys and
        values of the tokens before them (`past`, from an earlier call); returns them and the
        keys and values of all tokens so far."""
        w, t = self.w, len(ids)
        t0 = past[0][0].shape[1] if past else 0
        x = w["model.embed_tokens.weight"][ids]
        pos = np.arange(t0, t0 + t)
        mask = np.concatenate([np.zeros((t, t0), np.float32), np.triu(np.full((t, t), -np.inf, dtype=np.float32), 1)], 1)
        kv = []
        for l in range(self.layers):
            p = f"model.layers.{l}."
            h = self.norm(x, w[p + "input_layernorm.weight"])
            q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(t, self.heads, self.dim).transpose(1, 0, 2)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(t, self.kv_heads, self.dim).transpose(1, 0, 2)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(t, self.kv_heads, self.dim).transpose(1, 0, 2)
            q, k = self.rope(q, pos), self.rope(k, pos)
            if past:
                k, v = np.concatenate([past[l][0], k], 1), np.concatenate([past[l][1], v], 1)
            kv.append((k, v))
            rep = self.heads // self.kv_heads
            kr, vr = np.repeat(k, rep, 0), np.repeat(v, rep, 0)
            s = q @ kr.transpose(0, 2, 1) / np.sqrt(self.dim) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = (s @ vr).transpose(1, 0, 2).reshape(t, -1)
            x = x + a @ w[p + "self_attn.o_proj.weight"].T
            h = self.norm(x, w[p + "post_attention_layernorm.weight"])
            g = h @ w[p + "mlp.gate_proj.weight"].T
            u = h @ w[p + "mlp.up_proj.weight"].T
            x = x + ((g / (1 + np.exp(-g))) * u) @ w[p + "mlp.down_proj.weight"].T
        z = self.norm(x, w["model.norm.weight"]) @ self.head.T
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True)), kv


HEADER = re.compile(r"^======== example \d+: (\S+) seed (\d+) step (\d+) \| (\d+) tokens, (\d+) in the loss", re.M)


def examples(preview):
    """(task, prompt text, response text) of every example in a preview file."""
    text = Path(preview).read_text()
    heads = list(HEADER.finditer(text))
    for i, h in enumerate(heads):
        body = text[text.index("\n", h.end()) + 1 : heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        prompt, rest = body.split("\n>>>>>> LOSS >>>>>>\n", 1)
        response = rest.split("\n<<<<<< END LOSS <<<<<<", 1)[0]
        yield h.group(1), prompt, response


def goal_of(prompt):
    m = re.search(r"# Goal\n(.*?)\n\n# Current page", prompt, re.S)
    return m.group(1) if m else ""


# A slot: an action whose quoted value ends with (or is) a phrase the goal names. The slot's key
# is the action with that phrase cut out, so actions of one shape share their candidates.
ACTION = re.compile(r"<action>(fill|select_option)\('([^']*)', '([^']*)'\)</action>")


def slots(goal, response):
    """(key, value, prefix of the response before the value, suffix after it) for a copied value."""
    m = ACTION.search(response)
    if not m:
        return None
    verb, value = m.group(1), m.group(3)
    # The longest tail of the value (whole words) that the goal contains.
    words = value.split(" ")
    for i in range(len(words)):
        tail = " ".join(words[i:])
        if tail and tail in goal:
            head = " ".join(words[:i])
            start = m.start(3) + (len(head) + 1 if head else 0)
            return (verb, head), tail, response[:start], response[start + len(tail) :]
    return None


def check(model_dir, logits_file):
    """The numpy forward against `dump_logits`' logits (rows of a plain causal forward)."""
    ref = load_file(logits_file)
    model = Llama(model_dir)
    worst = 0.0
    for ids, want in zip(ref["ids"], ref["logits"]):
        got = model.run(ids)[0]
        want = want - want.max(-1, keepdims=True)
        want = want - np.log(np.exp(want).sum(-1, keepdims=True))
        worst = max(worst, float(np.abs(got - want).max()))
    print(f"max |log-probability difference| against {logits_file}: {worst:.2e}")
    sys.exit(0 if worst <= 1e-3 else 1)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        return check(sys.argv[2], sys.argv[3])
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    tok = Tokenizer.from_file(str(Path(sys.argv[2]) / "tokenizer.json"))
    exs = list(examples(sys.argv[3]))
    found = []
    values = defaultdict(set)
    for task, prompt, response in exs:
        s = slots(goal_of(prompt), response)
        if s:
            (key, value, pre, post) = s
            found.append((task, key, value, prompt, pre, post))
            values[(task, key)].add(value)
    print(f"{len(found)} copied values in {len(exs)} expert steps of {sys.argv[3]}")
    for model_dir in [sys.argv[1], *sys.argv[4:]]:
        model = Llama(model_dir)
        by_task = defaultdict(list)
        for task, key, value, prompt, pre, post in found:
            cands = sorted(values[(task, key)])
            if len(cands) < 2:
                continue
            p_ids = tok.encode(prompt, add_special_tokens=False).ids
            first, past = model.run(np.array(p_ids))
            scores = {}
            for c in cands:
                r_ids = tok.encode(pre + c + post, add_special_tokens=False).ids
                lp = np.concatenate([first[-1:], model.run(np.array(r_ids[:-1]), past)[0]])
                scores[c] = float(sum(lp[j, t] for j, t in enumerate(r_ids)))
            rank = 1 + sum(1 for c in cands if scores[c] > scores[value])
            best = max(cands, key=lambda c: scores[c])
            by_task[task].append((rank, len(cands), best == value, best))
        print(f"\n{model_dir}")
        print("task | steps | goal's value ranked first | mean rank (chance) | most frequent first choice")
        for task, rs in sorted(by_task.items()):
            firsts = sum(r[2] for r in rs)
            mean_rank = sum(r[0] for r in rs) / len(rs)
            chance = sum((r[1] + 1) / 2 for r in rs) / len(rs)
            common = max(set(r[3] for r in rs), key=lambda b: sum(1 for r in rs if r[3] == b))
            n_common = sum(1 for r in rs if r[3] == common)
            print(f"{task} | {len(rs)} | {firsts} | {mean_rank:.1f} ({chance:.1f}) | {common} ({n_common})")


if __name__ == "__main__":
    main()
