"""Reference values for agentmerge-merge, computed independently with numpy.

Writes sdk/merge/tests/fixtures/:
  models/{f32,bf16}/{base,a,b,c,near}/  small Llama-named checkpoints (3 layers) with
                                        config.json; base also has tokenizer files
  cases/<case>.yml                      mergekit recipes (model paths relative to models/<dtype>)
  expected/{f32,bf16}/<case>.safetensors the merged tensors, as float32

Each method is re-implemented here from mergekit's definitions (merge_methods/*.py and
sparsify.py), in float32 in the same operation order as the Rust code where the order
matters (deltas, weighted sums), so top-k selections and sign elections agree exactly.
Ties in magnitude are broken by position (stable sort), as in the Rust code. The one
deliberate difference from mergekit: breadcrumbs with gamma such that no outlier is dropped
keeps the kept range (mergekit's `indices[n_bot:-0]` would keep nothing).

Random methods (dare_*, della*) are checked in Rust by their invariants instead, except at
density 1 where they are deterministic.

Run from the repository root (needs only numpy and safetensors; CI does not run it):
    python3 tools/merge_reference/make_fixtures.py
"""
import json
import pathlib
import shutil

import numpy as np
from safetensors.numpy import load_file, save_file

ROOT = pathlib.Path("sdk/merge/tests/fixtures")
LAYERS = 3
SHAPES = {
    "model.embed_tokens.weight": (10, 6),
    "model.layers.0.mlp.up_proj.weight": (8, 6),
    "model.layers.0.self_attn.q_proj.weight": (6, 6),
    "model.layers.1.mlp.up_proj.weight": (8, 6),
    "model.layers.1.self_attn.q_proj.weight": (6, 6),
    "model.layers.2.mlp.up_proj.weight": (8, 6),
    "model.norm.weight": (6,),
}


# ---------------------------------------------------------------- dtypes and files


def bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (as torch and the `half` crate do)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounding = ((u >> 16) & 1) + 0x7FFF
    return ((u + rounding) >> 16).astype(np.uint16)


def bf16_round(x):
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def save_bf16(tensors, path):
    """numpy has no bfloat16: save the bits as U16, then patch the dtype tags to BF16."""
    save_file({k: bf16_bits(v) for k, v in tensors.items()}, str(path), metadata={"format": "pt"})
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    for k, v in header.items():
        if k != "__metadata__":
            v["dtype"] = "BF16"
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + bytes(text) + bytes(raw[8 + n :]))


def make_models(rng):
    base = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    models = {"base": base}
    for name in ["a", "b", "c"]:
        models[name] = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in base.items()}
    models["near"] = {k: (v + 1e-3 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in base.items()}
    return models


def write_models(models, dtype):
    out = ROOT / "models" / dtype
    loaded = {}
    for name, tensors in models.items():
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        if dtype == "f32":
            save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
            loaded[name] = tensors
        else:
            save_bf16(tensors, d / "model.safetensors")
            loaded[name] = {k: bf16_round(v) for k, v in tensors.items()}
        config = {
            "architectures": ["LlamaForCausalLM"],
            "num_hidden_layers": LAYERS,
            "hidden_size": 6,
            "torch_dtype": "float32" if dtype == "f32" else "bfloat16",
        }
        (d / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        if name == "base":
            (d / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "fixture"}}\n')
            (d / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}\n')
    return loaded


# ---------------------------------------------------------------- parameters (mergekit's config.py)


def layer_t(name):
    # mergekit 0.1.5's plan.py: t = layer / (layers - 1) inside the layers (1 for a single
    # layer); the weights before them (embeddings) and after them (final norm, lm_head) are
    # both planned by `plan_module` with its `ConfigReader(t=0)`, so they get t = 0.
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p == "layers":
            return int(parts[i + 1]) / (LAYERS - 1) if LAYERS > 1 else 1.0
    return 0.0


def evaluate(setting, name, t):
    if isinstance(setting, (bool, int, float, str)):
        return setting
    if isinstance(setting, dict):
        setting = [setting]
    if all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in setting):
        scaled = t * (len(setting) - 1)
        i0 = int(scaled)
        i1 = min(len(setting) - 1, i0 + 1)
        frac = scaled - i0
        return (1 - frac) * setting[i0] + frac * setting[i1]
    if all(isinstance(e, (bool, int, float, str)) for e in setting):
        return setting[int(t * (len(setting) - 1))]
    for cond in setting:
        f = cond.get("filter")
        if f is None or f == "*" or f in name:
            return evaluate(cond["value"], name, t)
    return None


def param(recipe, model_entry, key, name, default=None):
    """Per-model value, else the global value, else the default."""
    t = layer_t(name)
    if model_entry is not None and key in (model_entry.get("parameters") or {}):
        v = evaluate(model_entry["parameters"][key], name, t)
        if v is not None:
            return v
    if key in (recipe.get("parameters") or {}):
        v = evaluate(recipe["parameters"][key], name, t)
        if v is not None:
            return v
    return default


# ---------------------------------------------------------------- methods


def rank_mask(x, lo, hi, largest_first):
    a = np.abs(x).ravel()
    order = np.argsort(-a if largest_first else a, kind="stable")
    mask = np.zeros(a.size, dtype=bool)
    mask[order[lo:hi]] = True
    return mask.reshape(x.shape)


def rescale_l1(masked, before):
    after = np.abs(masked).astype(np.float64).sum()
    if before < 1e-7 or after < 1e-7:
        return masked
    return masked * np.float32(before / after)


def sparsify(delta, method, density, gamma, rescale):
    if method is None or density >= 1:
        return delta
    before = np.abs(delta).astype(np.float64).sum()
    n = delta.size
    if method == "magnitude":
        mask = rank_mask(delta, 0, int(density * n), True)
    elif method == "magnitude_outliers":
        target = int(density * n)
        top = int(gamma * n)
        bottom = n - target - top
        if bottom < 0:
            top += bottom
            bottom = 0
        mask = rank_mask(delta, bottom, n - top, False)
    else:
        raise ValueError(method)
    masked = np.where(mask, delta, np.float32(0)).astype(np.float32)
    return rescale_l1(masked, before) if rescale else masked


GTA = {
    # name: (sparsification, consensus, default normalize, default rescale)
    "task_arithmetic": (None, None, False, False),
    "agentmerge": (None, None, False, False),
    "ties": ("magnitude", "sum", True, False),
    "dare_linear": ("random", None, False, True),
    "breadcrumbs": ("magnitude_outliers", None, False, False),
    "breadcrumbs_ties": ("magnitude_outliers", "sum", False, False),
}


def gta(recipe, models, name, method):
    sparsification, consensus, d_norm, d_rescale = GTA[method]
    consensus = param(recipe, None, "consensus_method", name, consensus) if consensus else None
    normalize = param(recipe, None, "normalize", name, d_norm)
    rescale = param(recipe, None, "rescale", name, d_rescale)
    lam = np.float32(param(recipe, None, "lambda", name, 1.0))
    base = models[recipe["base_model"]][name]
    target = base
    weighted, weights = [], []
    for entry in recipe["models"]:
        if entry["model"] == recipe["base_model"]:
            continue
        if method == "agentmerge" and param(recipe, entry, "add_to", name, False):
            target = models[entry["model"]][name]
            continue
        delta = (models[entry["model"]][name] - base).astype(np.float32)
        density = param(recipe, entry, "density", name, 1.0)
        gamma = param(recipe, entry, "gamma", name, 0.01)
        delta = sparsify(delta, sparsification, density, gamma, rescale)
        w = np.float32(param(recipe, entry, "weight", name, 1.0 if method == "agentmerge" else None))
        weighted.append((delta * w).astype(np.float32))
        weights.append(w)
    mixed = np.zeros_like(base)
    divisor = np.zeros_like(base)
    if consensus is None:
        for d, w in zip(weighted, weights):
            mixed = mixed + d
            divisor = divisor + w
        divisor[np.abs(divisor) < 1e-8] = 1
    else:
        vote = np.zeros_like(base)
        for d in weighted:
            vote = vote + (d if consensus == "sum" else np.sign(d))
        elected = np.where(vote >= 0, np.float32(1), np.float32(-1))
        for d, w in zip(weighted, weights):
            agree = np.sign(d) == elected
            mixed = mixed + np.where(agree, d, np.float32(0))
            divisor = divisor + np.where(agree, w, np.float32(0))
        divisor[divisor == 0] = 1
    if normalize:
        mixed = mixed / divisor
    return (target + mixed * lam).astype(np.float32)


def linear(recipe, models, name):
    out = np.zeros_like(models[recipe["models"][0]["model"]][name])
    total = 0.0
    for entry in recipe["models"]:
        w = param(recipe, entry, "weight", name)
        total += w
        out = out + np.float32(w) * models[entry["model"]][name]
    if param(recipe, None, "normalize", name, True):
        out = out / np.float32(total)
    return out


def slerp_vec(t, v0, v1, threshold=0.9995, eps=1e-8):
    a, b = v0.astype(np.float64).ravel(), v1.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    a_u = a / na if na > eps else a
    b_u = b / nb if nb > eps else b
    dot = np.sum(a_u * b_u)
    if abs(dot) > threshold:
        s0, s1 = 1 - t, t
    else:
        theta0 = np.arccos(dot)
        s0 = np.sin(theta0 - theta0 * t) / np.sin(theta0)
        s1 = np.sin(theta0 * t) / np.sin(theta0)
    return (np.float32(s0) * v0 + np.float32(s1) * v1).astype(np.float32)


def slerp(recipe, models, name):
    other = [e["model"] for e in recipe["models"] if e["model"] != recipe["base_model"]][0]
    t = param(recipe, None, "t", name)
    return slerp_vec(t, models[recipe["base_model"]][name], models[other][name])


def nuslerp_rows(t, v0, v1):
    """Slerp of each row (last axis) of 2-D float64 arrays, as mergekit's nuslerp."""
    n0 = np.maximum(np.linalg.norm(v0, axis=-1, keepdims=True), 1e-7)
    n1 = np.maximum(np.linalg.norm(v1, axis=-1, keepdims=True), 1e-7)
    cos = np.sum((v0 / n0) * (v1 / n1), axis=-1, keepdims=True)
    theta = np.arccos(np.clip(cos, -1, 1))
    sin = np.sin(theta)
    colinear = np.abs(sin) < 1e-8
    safe = np.where(colinear, 1.0, sin)
    res = (np.sin((1 - t) * theta) * v0 + np.sin(t * theta) * v1) / safe
    return np.where(colinear, (1 - t) * v0 + t * v1, res)


def nuslerp(recipe, models, name):
    base_name = recipe.get("base_model")
    entries = [e for e in recipe["models"] if e["model"] != base_name]
    w0, w1 = (param(recipe, e, "weight", name) for e in entries)
    t = 0.5 if abs(w0 + w1) < 1e-6 else w1 / (w0 + w1)
    v0 = models[entries[0]["model"]][name].astype(np.float64)
    v1 = models[entries[1]["model"]][name].astype(np.float64)
    base = models[base_name][name].astype(np.float64) if base_name else None
    if base is not None:
        v0, v1 = v0 - base, v1 - base
    shape = v0.shape
    flatten = param(recipe, None, "nuslerp_flatten", name, True)
    row_wise = param(recipe, None, "nuslerp_row_wise", name, False)
    if flatten or v0.ndim < 2:
        res = nuslerp_rows(t, v0.reshape(1, -1), v1.reshape(1, -1)).reshape(shape)
    elif row_wise:
        res = nuslerp_rows(t, v0.T, v1.T).T
    else:
        res = nuslerp_rows(t, v0, v1)
    if base is not None:
        res = res + base
    return res.astype(np.float32)


def model_stock(recipe, models, name):
    base_name = recipe["base_model"]
    w0 = models[base_name][name].astype(np.float64)
    ws = [models[e["model"]][name].astype(np.float64) for e in recipe["models"] if e["model"] != base_name]
    shape = w0.shape
    if param(recipe, None, "filter_wise", name, False):
        w0r = w0.reshape(-1, shape[-1])
        wsr = [w.reshape(-1, shape[-1]) for w in ws]
    else:
        w0r = w0.reshape(1, -1)
        wsr = [w.reshape(1, -1) for w in ws]
    offsets = [w - w0r for w in wsr]
    coss = []
    for i in range(len(offsets)):
        for j in range(i + 1, len(offsets)):
            a, b = offsets[i], offsets[j]
            norm = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
            coss.append(np.clip(np.sum(a * b, axis=-1) / np.maximum(norm, 1e-6), -1, 1))
    cos = np.mean(coss, axis=0)[:, None]
    n = len(ws)
    t = n * cos / (1 + (n - 1) * cos)
    avg = sum(wsr) / n
    return (t * avg + (1 - t) * w0r).reshape(shape).astype(np.float32)


def passthrough(recipe, models, name):
    entry = recipe["models"][0]
    return (models[entry["model"]][name] * np.float32(param(recipe, entry, "scale", name, 1.0))).astype(np.float32)


def merge(recipe, models, name):
    method = recipe["merge_method"]
    if method == "linear":
        return linear(recipe, models, name)
    if method in GTA:
        return gta(recipe, models, name, method)
    return {"slerp": slerp, "nuslerp": nuslerp, "model_stock": model_stock, "passthrough": passthrough}[method](
        recipe, models, name
    )


# ---------------------------------------------------------------- cases

def m(name, **params):
    return {"model": name, "parameters": params} if params else {"model": name}


CASES = {
    "linear": {
        "merge_method": "linear",
        "models": [
            m("a", weight=1.0),
            m("b", weight=[0.2, 1.0]),
            m("c", weight=[{"filter": "mlp", "value": 0.5}, {"value": 0.25}]),
        ],
    },
    "linear_unnormalized_bf16_out": {
        "merge_method": "linear",
        "models": [m("a"), m("b")],
        "parameters": {"weight": 0.7, "normalize": False},
        "out_dtype": "bfloat16",
    },
    "task_arithmetic": {
        "merge_method": "task_arithmetic",
        "base_model": "base",
        "models": [m("a", weight=0.7), m("b", weight=0.3)],
        "parameters": {"lambda": 0.8},
    },
    "ties": {
        "merge_method": "ties",
        "base_model": "base",
        "models": [
            m("a", density=0.5, weight=1.0),
            m("b", density=[0.3, 0.9], weight=0.6),
            m("c", density=0.7, weight=0.4),
        ],
        "dtype": "float32",
    },
    "ties_count_rescaled": {
        "merge_method": "ties",
        "base_model": "base",
        "models": [m("base"), m("a", weight=1.0), m("b", weight=0.5), m("c", weight=-0.3)],
        "parameters": {
            "density": 0.6,
            "consensus_method": "count",
            "normalize": False,
            "rescale": True,
            "int8_mask": True,
        },
    },
    "breadcrumbs": {
        "merge_method": "breadcrumbs",
        "base_model": "base",
        "models": [m("a", weight=1.0, density=0.6, gamma=0.1), m("b", weight=0.5, density=0.8, gamma=0.05)],
    },
    "breadcrumbs_ties": {
        "merge_method": "breadcrumbs_ties",
        "base_model": "base",
        "models": [m("a", weight=1.0), m("b", weight=0.5)],
        "parameters": {"density": 0.7, "gamma": 0.05},
    },
    "dare_linear_density_one": {
        "merge_method": "dare_linear",
        "base_model": "base",
        "models": [m("a", weight=0.6), m("b", weight=0.4)],
    },
    "slerp": {
        "merge_method": "slerp",
        "base_model": "base",
        "models": [m("base"), m("a")],
        "parameters": {
            "t": [
                {"filter": "self_attn", "value": [0, 0.5, 1]},
                {"filter": "mlp", "value": [1, 0.5, 0]},
                {"value": 0.3},
            ]
        },
    },
    "slerp_colinear": {
        "merge_method": "slerp",
        "base_model": "base",
        "models": [m("base"), m("near")],
        "parameters": {"t": 0.4},
    },
    "nuslerp": {
        "merge_method": "nuslerp",
        "models": [m("a", weight=1.0), m("b", weight=3.0)],
    },
    "nuslerp_base_row_wise": {
        "merge_method": "nuslerp",
        "base_model": "base",
        "models": [m("a", weight=0.5), m("b", weight=0.5)],
        "parameters": {"nuslerp_flatten": False, "nuslerp_row_wise": True},
    },
    "nuslerp_rows": {
        "merge_method": "nuslerp",
        "models": [m("a", weight=2.0), m("c", weight=1.0)],
        "parameters": {"nuslerp_flatten": False},
    },
    "model_stock": {
        "merge_method": "model_stock",
        "base_model": "base",
        "models": [m("a"), m("b"), m("c")],
    },
    "model_stock_filter_wise": {
        "merge_method": "model_stock",
        "base_model": "base",
        "models": [m("a"), m("b")],
        "parameters": {"filter_wise": True},
    },
    "passthrough": {
        "merge_method": "passthrough",
        "models": [m("a", scale=[{"filter": "norm", "value": 1.0}, {"value": 0.5}])],
    },
    "agentmerge": {
        "merge_method": "agentmerge",
        "base_model": "base",
        "models": [m("a", add_to=True), m("b")],
        "parameters": {"lambda": 0.6},
    },
}


def scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def to_yaml(obj, indent=0):
    """Block-style YAML as people write mergekit recipes (lists of numbers in flow style)."""
    pad = " " * indent
    lines = []
    for k, v in obj.items():
        if isinstance(v, dict):
            lines.append(f"{pad}{k}:")
            lines.append(to_yaml(v, indent + 2))
        elif isinstance(v, list) and all(not isinstance(e, (dict, list)) for e in v):
            lines.append(f"{pad}{k}: [{', '.join(scalar(e) for e in v)}]")
        elif isinstance(v, list):
            lines.append(f"{pad}{k}:")
            for e in v:
                item = to_yaml(e, indent + 4).splitlines()
                lines.append(f"{pad}  - " + item[0].lstrip())
                lines.extend(item[1:])
        else:
            lines.append(f"{pad}{k}: {scalar(v)}")
    return "\n".join(lines)


def main():
    rng = np.random.default_rng(20241123)
    if ROOT.exists():
        shutil.rmtree(ROOT)
    models = make_models(rng)
    (ROOT / "cases").mkdir(parents=True)
    for case, recipe in CASES.items():
        (ROOT / "cases" / f"{case}.yml").write_text(f"# {case}: written by tools/merge_reference/make_fixtures.py\n" + to_yaml(recipe) + "\n")
    for dtype in ["f32", "bf16"]:
        loaded = write_models(models, dtype)
        # Check the files against what we meant to write, through the reference reader.
        if dtype == "f32":
            for k, v in load_file(str(ROOT / "models" / dtype / "a" / "model.safetensors")).items():
                assert np.array_equal(v, loaded["a"][k])
        out_dir = ROOT / "expected" / dtype
        out_dir.mkdir(parents=True)
        for case, recipe in CASES.items():
            # mergekit: out_dtype, else dtype, else the inputs' dtype.
            out_dtype = recipe.get("out_dtype") or recipe.get("dtype") or {"f32": "float32", "bf16": "bfloat16"}[dtype]
            result = {}
            for name in SHAPES:
                r = merge(recipe, loaded, name).astype(np.float32)
                if out_dtype == "bfloat16":
                    r = bf16_round(r)
                result[name] = np.ascontiguousarray(r)
            save_file(result, str(out_dir / f"{case}.safetensors"))
    size = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    print(f"wrote {ROOT} ({size} bytes)")


if __name__ == "__main__":
    main()
