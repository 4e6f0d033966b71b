#!/usr/bin/env python3
"""Replays a `cpu/pretrain` run in PyTorch on exactly the same rows, to find where (and whether)
the two trainers part: the first batch's gradient tensor by tensor, then the loss step by step.

    cargo run --release -p agentmerge-model --example replay_dump -- INIT SEQ_FILE SEQ ROWS STEPS LR WARMUP DUMP
    python3 tools/torch_replay.py INIT DUMP SEQ ROWS STEPS LR WARMUP [--double] [--save DIR]

DUMP is the example's output directory (`batches.u16`, `grads0/`, `work/metrics.jsonl`). The
replay uses the same AdamW (0.9, 0.95, eps 1e-8, weight decay 0.1 on matrices), warm-up then
cosine to a tenth, clipping at 1.0, attention kept inside each document (a document starts
where the position id is 0) and RoPE on the position ids. `--double` trains in float64 (the
reference both f32 trainers round away from). `--save DIR` writes the final weights as a
checkpoint next to the init's config. Needs torch (not in CI).
"""
import json, math, shutil, sys, time
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F
from safetensors.numpy import load_file
from safetensors.torch import save_file

args = [a for a in sys.argv[1:] if not a.startswith('--')]
init, dump, seq, rows, steps, lr_max, warmup = args[0], Path(args[1]), int(args[2]), int(args[3]), int(args[4]), float(args[5]), int(args[6])
dt = torch.float64 if '--double' in sys.argv else torch.float32
save_dir = sys.argv[sys.argv.index('--save') + 1] if '--save' in sys.argv else None
torch.set_num_threads(2)
cfg = json.load(open(init + '/config.json'))
P = {k: torch.nn.Parameter(torch.tensor(v).to(dt)) for k, v in load_file(init + '/model.safetensors').items()}
L, H, KV, D = cfg['num_hidden_layers'], cfg['num_attention_heads'], cfg['num_key_value_heads'], cfg['head_dim']
eps, theta = cfg['rms_norm_eps'], cfg.get('rope_theta', 10000.0)
inv = 1.0 / theta ** (torch.arange(0, D, 2).double() / D)

def rope(x, pos):  # x [B, h, T, D], pos [B, T]
    ang = pos.double()[:, None, :, None] * inv; ang = torch.cat([ang, ang], -1)
    cos, sin = ang.cos().to(dt), ang.sin().to(dt)
    half = D // 2; rot = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin

def norm(x, w): return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w

def forward(ids, pos, mask):
    B, T = ids.shape; x = P['model.embed_tokens.weight'][ids]
    for l in range(L):
        p = f'model.layers.{l}.'; h = norm(x, P[p + 'input_layernorm.weight'])
        q = (h @ P[p + 'self_attn.q_proj.weight'].T).view(B, T, H, D).transpose(1, 2)
        k = (h @ P[p + 'self_attn.k_proj.weight'].T).view(B, T, KV, D).transpose(1, 2).repeat_interleave(H // KV, 1)
        v = (h @ P[p + 'self_attn.v_proj.weight'].T).view(B, T, KV, D).transpose(1, 2).repeat_interleave(H // KV, 1)
        a = F.scaled_dot_product_attention(rope(q, pos), rope(k, pos), v, attn_mask=mask, is_causal=mask is None).transpose(1, 2).reshape(B, T, H * D)
        x = x + a @ P[p + 'self_attn.o_proj.weight'].T
        h = norm(x, P[p + 'post_attention_layernorm.weight'])
        x = x + (F.silu(h @ P[p + 'mlp.gate_proj.weight'].T) * (h @ P[p + 'mlp.up_proj.weight'].T)) @ P[p + 'mlp.down_proj.weight'].T
    return norm(x, P['model.norm.weight']) @ P['lm_head.weight'].T

raw = np.memmap(dump / 'batches.u16', dtype='<u2', mode='r').reshape(-1, rows, 3, seq)
assert raw.shape[0] >= steps, f'{dump}/batches.u16 holds {raw.shape[0]} steps, fewer than {steps}'

def batch(s):
    b = torch.tensor(raw[s].astype(np.int64))
    ids, tgt, pos = b[:, 0], b[:, 1], b[:, 2]
    doc = torch.cumsum((pos == 0).long(), 1)
    # One document per row, then padding (no targets, and after every real token): a causal
    # mask gives the same losses and gradients, and takes PyTorch's fast attention.
    if bool(((doc == 1) | (tgt == 65535)).all()):
        return ids, tgt, pos, None
    causal = torch.tril(torch.ones(seq, seq, dtype=torch.bool))
    mask = (doc[:, :, None] == doc[:, None, :]) & causal  # [B, Tq, Tk]
    return ids, tgt, pos, mask[:, None]

def loss_of(s):
    ids, tgt, pos, mask = batch(s)
    logits = forward(ids, pos, mask)
    keep = tgt != 65535
    return F.cross_entropy(logits[keep], tgt[keep], reduction='sum') / keep.sum(), int(keep.sum())

# The first batch's gradient, tensor by tensor, against the Rust trainer's.
loss, _ = loss_of(0); loss.backward()
theirs = load_file(str(dump / 'grads0' / 'model.safetensors'))
print(f'first batch loss: torch {loss.item():.6f}')
worst = 0.0
for k, p in P.items():
    g, r = p.grad.double().numpy(), theirs[k].astype(np.float64)
    err = np.abs(g - r).max() / max(np.abs(g).max(), 1e-30); worst = max(worst, err)
    if err > 1e-3: print(f'  gradient of {k} differs: {err:.2e} of its largest entry')
print(f'first-batch gradients: largest difference {worst:.2e} of a tensor\'s largest entry')
for p in P.values(): p.grad = None

decay = [p for p in P.values() if p.dim() == 2]; nodecay = [p for p in P.values() if p.dim() < 2]
opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': nodecay, 'weight_decay': 0.0}], lr=lr_max, betas=(0.9, 0.95), eps=1e-8)
ours = [json.loads(l) for l in open(dump / 'work' / 'metrics.jsonl')]
t0 = time.time()
for s in range(steps):
    lr = lr_max * (s + 1) / warmup if s < warmup else lr_max * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup))))
    for g in opt.param_groups: g['lr'] = lr
    loss, _ = loss_of(s)
    opt.zero_grad(); loss.backward(); gn = torch.nn.utils.clip_grad_norm_(P.values(), 1.0); opt.step()
    o = ours[s] if s < len(ours) else {}
    if s < 5 or s % 50 == 0 or s == steps - 1:
        print(f'step {s + 1}: loss torch {loss.item():.5f} rust {o.get("loss", float("nan")):.5f} · grad norm torch {gn.item():.4f} rust {o.get("grad_norm", float("nan")):.4f} · {time.time() - t0:.0f} s', flush=True)
if save_dir:
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    save_file({k: p.detach().float().contiguous() for k, p in P.items()}, save_dir + '/model.safetensors', metadata={'format': 'pt'})
    for f in Path(init).iterdir():
        if f.name != 'model.safetensors' and f.is_file(): shutil.copy(f, Path(save_dir) / f.name)
