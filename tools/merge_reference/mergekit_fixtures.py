"""Merges computed by mergekit 0.1.5 itself, for the recipes whose results depend on how mergekit
resolves parameters (gradients across layers, filters), not only on a method's formula.

Writes sdk/merge/tests/fixtures/mergekit-0.1.5/: complete tiny Llama checkpoints
(models/{base,a,b,c}: 3 layers, hidden 8, every tensor mergekit's Llama architecture lists,
seeded random f32 values), then for each recipe below runs `mergekit-yaml` and writes
<case>.safetensors (the merged tensors) beside <case>.yml (the recipe, model paths relative to
models/). sdk/merge/tests/reference.rs merges the same recipes with our engine and compares.

Needs mergekit 0.1.5 (and its torch/transformers); CI does not run it:
    pip install mergekit==0.1.5
    python3 tools/merge_reference/mergekit_fixtures.py
"""
import pathlib
import shutil
import subprocess
import tempfile

import json

import mergekit
import numpy as np
from safetensors.numpy import load_file, save_file

ROOT = pathlib.Path("sdk/merge/tests/fixtures")
OUT = ROOT / "mergekit-0.1.5"
# Gradients on every model, so the tensors before, inside and after the layers all differ.
RECIPES = {
    "linear_gradients": """merge_method: linear
models:
  - model: a
    parameters:
      weight: [0.2, 1.0]
  - model: b
    parameters:
      weight: [1.0, 0.0, 0.5]
  - model: c
    parameters:
      weight:
        - filter: mlp
          value: 0.5
        - value: [0.1, 0.9]
dtype: float32
""",
    "task_arithmetic_gradients": """merge_method: task_arithmetic
base_model: base
models:
  - model: a
    parameters:
      weight: [0.3, 1.2]
  - model: b
    parameters:
      weight: [1.0, -0.5]
dtype: float32
""",
}


LAYERS, HIDDEN, INTER, VOCAB, HEADS = 3, 8, 12, 16, 2


def write_models(dir):
    """Full Llama checkpoints; `a`, `b`, `c` are `base` plus different random deltas."""
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS, "vocab_size": VOCAB, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False, "torch_dtype": "float32",
    }
    shapes = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,), "lm_head.weight": (VOCAB, HIDDEN)}
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        for n in ["q_proj", "k_proj", "v_proj", "o_proj"]:
            shapes[p + f"self_attn.{n}.weight"] = (HIDDEN, HIDDEN)
        shapes[p + "mlp.gate_proj.weight"] = (INTER, HIDDEN)
        shapes[p + "mlp.up_proj.weight"] = (INTER, HIDDEN)
        shapes[p + "mlp.down_proj.weight"] = (HIDDEN, INTER)
        shapes[p + "input_layernorm.weight"] = (HIDDEN,)
        shapes[p + "post_attention_layernorm.weight"] = (HIDDEN,)
    rng = np.random.default_rng(15)
    base = {k: rng.standard_normal(s).astype(np.float32) for k, s in sorted(shapes.items())}
    for name in ["base", "a", "b", "c"]:
        d = dir / name
        d.mkdir(parents=True)
        tensors = base if name == "base" else {k: (v + 0.3 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in base.items()}
        save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})
        (d / "config.json").write_text(json.dumps(config, indent=1) + "\n")


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    write_models(OUT / "models")
    models = (OUT / "models").resolve()
    for case, recipe in RECIPES.items():
        (OUT / f"{case}.yml").write_text(f"# {case}: merged by mergekit 0.1.5 (tools/merge_reference/mergekit_fixtures.py)\n" + recipe)
        absolute = recipe
        for name in ["base", "a", "b", "c"]:
            absolute = absolute.replace(f"model: {name}\n", f"model: {models / name}\n")
        with tempfile.TemporaryDirectory() as tmp:
            cfg = pathlib.Path(tmp) / "recipe.yml"
            cfg.write_text(absolute)
            out = pathlib.Path(tmp) / "out"
            subprocess.run(["mergekit-yaml", str(cfg), str(out), "--no-copy-tokenizer"], check=True)
            tensors = {}
            for f in sorted(out.glob("*.safetensors")):
                tensors.update(load_file(f))
            save_file(tensors, OUT / f"{case}.safetensors")
        print(f"{case}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
