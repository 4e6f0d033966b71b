"""Writes sdk/checkpoint/tests/fixtures/python_tiny: a tiny checkpoint written by the reference
`safetensors` Python package (F32, F16, BF16-as-uint16 and F64 tensors) plus expected.json with
the exact values, so the Rust reader is checked against an independent writer.

Run from the repository root (needs numpy and safetensors; not needed by CI):
    python3 tools/checkpoint_fixture.py
"""
import json
import pathlib

import numpy as np
from safetensors.numpy import save_file

OUT = pathlib.Path("sdk/checkpoint/tests/fixtures/python_tiny")


def bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (as torch does)."""
    u = x.astype(np.float32).view(np.uint32)
    rounding = ((u >> 16) & 1) + 0x7FFF
    return ((u + rounding) >> 16).astype(np.uint16)


def main():
    rng = np.random.default_rng(1234)
    OUT.mkdir(parents=True, exist_ok=True)
    f32 = rng.standard_normal((3, 4)).astype(np.float32)
    f16 = rng.standard_normal((5,)).astype(np.float16)
    f64 = rng.standard_normal((2, 2)).astype(np.float64)
    bf = rng.standard_normal((6,)).astype(np.float32)
    bits = bf16_bits(bf)
    tensors = {"a.f32": f32, "b.f16": f16, "c.f64": f64, "d.bf16": bits}
    save_file(tensors, str(OUT / "model.safetensors"), metadata={"format": "pt"})
    # numpy has no bfloat16: patch the dtype tag of d.bf16 from U16 to BF16 in the header.
    raw = bytearray((OUT / "model.safetensors").read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header["d.bf16"]["dtype"] = "BF16"
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    data = raw[8 + n :]
    (OUT / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + data)
    bf_values = (bits.astype(np.uint32) << 16).view(np.float32)
    expected = {
        "a.f32": f32.astype(np.float64).ravel().tolist(),
        "b.f16": f16.astype(np.float64).ravel().tolist(),
        "c.f64": f64.ravel().tolist(),
        "d.bf16": bf_values.astype(np.float64).ravel().tolist(),
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    (OUT / "config.json").write_text(json.dumps({"architectures": ["Fixture"]}) + "\n")


if __name__ == "__main__":
    main()
