"""Pinned package versions for the tools/llama_reference scripts, and a warning when others run.

The fixtures in sdk/model/tests/fixtures/ were computed with exactly these versions
(Python 3.11.7, CPU). Other versions usually agree to ~1e-6 but are not what the fixtures
record; re-generating with them changes the committed files.
"""
import sys
import warnings

PINNED = {
    "torch": "2.15.0",
    "transformers": "5.25.0",
    "safetensors": "0.8.0",
    "numpy": "2.4.6",
}


def versions():
    import numpy
    import safetensors
    import torch
    import transformers

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": numpy.__version__,
    }


def check_versions(quiet=False):
    """Returns the running versions; warns (does not fail) for each one that differs from PINNED."""
    v = versions()
    for name, want in PINNED.items():
        got = v[name].split("+")[0]  # torch reports e.g. 2.15.0+cu132 for the default PyPI wheel
        if got != want:
            warnings.warn(f"{name} {v[name]} is running; these scripts are pinned to {name}=={want}", stacklevel=2)
    if not quiet:
        print("versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    return v
