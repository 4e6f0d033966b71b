#!/usr/bin/env python3
"""Lookup drills trained in PyTorch: an independent replication of `cpu/pretrain` on a small task,
to tell a trainer's fault from a task's difficulty (docs/paper.md, *Can the base learn to look
up at all?*).

    python3 tools/torch_lookup.py INIT_MODEL TOKENIZER TRAIN.jsonl TEST.jsonl STEPS DOCS_PER_STEP

INIT_MODEL is a `models/random_llama` output (its initial weights are loaded, so both trainers
start from the same point); TRAIN and TEST are `tools/lookup_drills.py` files. It trains as
`cpu/pretrain` does — AdamW (0.9, 0.95, eps 1e-8, weight decay 0.1 on matrices), linear warm-up
of 20 steps to 3e-3 then cosine to a tenth, global-norm clipping at 1.0, every token of a
document in the loss, one document per row (as `cpu/pretrain` packs ~200-token documents in
256-token rows) — then answers TEST's first 100 documents' questions greedily, each given the
document up to its `A:`, and prints how many answers are right. Documents are framed by the
tokenizer's bos and eos ids, as `sft/tokenize` frames them (the runs in docs/paper.md, made
before that was so, framed them by ids 1 and 2: the same role, other tokens). Needs torch (not
in CI). To train PyTorch on exactly the rows a `cpu/pretrain` run drew, see torch_replay.py.
"""
import json, math, sys, time
import numpy as np, torch, torch.nn.functional as F
from safetensors.numpy import load_file
from tokenizers import Tokenizer
torch.manual_seed(0); torch.set_num_threads(2)
init_dir, tok_dir, train, test, steps, docs_per_step = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
cfg = json.load(open(init_dir + '/config.json')); W = {k: torch.tensor(v) for k, v in load_file(init_dir + '/model.safetensors').items()}
P = {k: torch.nn.Parameter(v.clone()) for k, v in W.items()}
L, H, D = cfg['num_hidden_layers'], cfg['num_attention_heads'], cfg['head_dim']
inv = 1.0 / 10000 ** (torch.arange(0, D, 2).double() / D)
def rope(x, T):
    ang = torch.outer(torch.arange(T).double(), inv); ang = torch.cat([ang, ang], -1)
    cos, sin = ang.cos().float(), ang.sin().float()
    half = D // 2; rot = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin
def norm(x, w): return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * w
def forward(ids):
    B, T = ids.shape; x = P['model.embed_tokens.weight'][ids]
    for l in range(L):
        p = f'model.layers.{l}.'; h = norm(x, P[p + 'input_layernorm.weight'])
        q = (h @ P[p + 'self_attn.q_proj.weight'].T).view(B, T, H, D).transpose(1, 2)
        k = (h @ P[p + 'self_attn.k_proj.weight'].T).view(B, T, H, D).transpose(1, 2)
        v = (h @ P[p + 'self_attn.v_proj.weight'].T).view(B, T, H, D).transpose(1, 2)
        a = F.scaled_dot_product_attention(rope(q, T), rope(k, T), v, is_causal=True).transpose(1, 2).reshape(B, T, H * D)
        x = x + a @ P[p + 'self_attn.o_proj.weight'].T
        h = norm(x, P[p + 'post_attention_layernorm.weight'])
        x = x + (F.silu(h @ P[p + 'mlp.gate_proj.weight'].T) * (h @ P[p + 'mlp.up_proj.weight'].T)) @ P[p + 'mlp.down_proj.weight'].T
    return norm(x, P['model.norm.weight']) @ P['lm_head.weight'].T
tk = Tokenizer.from_file(tok_dir + '/tokenizer.json')
special = json.load(open(tok_dir + '/tokenizer_config.json'))
BOS, EOS = tk.token_to_id(special['bos_token']), tk.token_to_id(special['eos_token'])
def enc(t): return [BOS] + tk.encode(t).ids + [EOS]
docs = [enc(json.loads(l)['text']) for l in open(train)]
Tm = max(map(len, docs))
decay = [p for k, p in P.items() if p.dim() == 2]; nodecay = [p for k, p in P.items() if p.dim() < 2]
opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': nodecay, 'weight_decay': 0.0}], lr=3e-3, betas=(0.9, 0.95), eps=1e-8)
rng = np.random.default_rng(0); t0 = time.time()
for s in range(steps):
    lr = 3e-3 * (s + 1) / 20 if s < 20 else 3e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - 20) / max(1, steps - 20))))
    for g in opt.param_groups: g['lr'] = lr
    batch = [docs[i] for i in rng.integers(0, len(docs), docs_per_step)]
    ids = torch.full((len(batch), Tm), 2); mask = torch.zeros((len(batch), Tm))
    for i, d in enumerate(batch): ids[i, :len(d)] = torch.tensor(d); mask[i, :len(d) - 1] = 1
    logits = forward(ids)
    loss = (F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction='none') * mask[:, :-1].reshape(-1)).sum() / mask.sum()
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(P.values(), 1.0); opt.step()
    if s % 200 == 0 or s == steps - 1: print(s, round(loss.item(), 3), round(time.time() - t0), 's', flush=True)
# Greedy answers on the held-out drills: each question's answer, given the document up to `A: `.
right = total = 0
with torch.no_grad():
    for l in list(open(test))[:100]:
        t = json.loads(l)['text']; head, qa = t.split('# Questions\n')
        lines = qa.strip('\n').split('\n')
        for j in range(0, len(lines), 2):
            prefix = head + '# Questions\n' + '\n'.join(lines[:j + 1]) + '\nA:'
            ids = [BOS] + tk.encode(prefix).ids; want = lines[j + 1][3:]
            out = []
            for _ in range(6):
                nxt = forward(torch.tensor([ids + out]))[0, -1].argmax().item()
                if '\n' in tk.decode([nxt]): break
                out.append(nxt)
            right += tk.decode(out).strip() == want; total += 1
print('held-out lookups right: %d / %d = %.2f' % (right, total, right / total))
