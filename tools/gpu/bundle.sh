#!/usr/bin/env bash
# Builds here everything tools/gpu/cuda-check.sh runs on a GPU machine, into .gpu-bundle/ (git
# ignores it): the GPU machines have the NVIDIA driver and CUDA libraries but no Rust toolchain
# and no network, so the checks travel as built, stripped binaries. Run from the repository root:
#
#     bash tools/gpu/bundle.sh
#
# It builds in release (a few minutes on 2 cores), then copies into .gpu-bundle/release/ the host,
# the plugins the end-to-end test uses, the cuda crate's and the end-to-end test executables (in
# deps/, where they find the host beside them as target/release/deps/ does) and the three bench
# binaries, stripped, and prints the bundle's size: the device tool carries at most 64 MiB with
# the working tree, so the bundle is one xz archive, .gpu-bundle/release.tar.xz (unpacked
# there with Python's tarfile, which any image has). The device
# command is then (carry: [".gpu-bundle"]):
#
#     bash tools/gpu/cuda-check.sh

set -euo pipefail
cd "$(dirname "$0")/../.."
B=.gpu-bundle
rm -rf "$B"
mkdir -p "$B/release/deps"

pkgs=(-p agentmerge -p agentmerge-plugin-cuda -p agentmerge-plugin-cpu -p agentmerge-plugin-miniarena -p agentmerge-plugin-sft
      -p agentmerge-plugin-traces -p agentmerge-plugin-models -p agentmerge-backend-bench)
cargo build --release "${pkgs[@]}"

# The test executables, by the paths cargo reports.
tests=$( { cargo test --release --no-run --message-format=json -p agentmerge-backend-cuda --test conformance --test no_gpu
           cargo test --release --no-run --message-format=json -p agentmerge-tests --test cuda; } |
         python3 -c 'import json, sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])')
[ "$(echo "$tests" | wc -l)" -eq 3 ] || { echo "expected 3 test executables (conformance, no_gpu, cuda), got:"; echo "$tests"; exit 1; }
while read -r name exe; do
    cp "$exe" "$B/release/deps/$name"
done <<< "$tests"

cp target/release/agentmerge target/release/op-bench target/release/train-bench target/release/gen-bench "$B/release/"
for p in cuda cpu miniarena sft traces models; do
    cp "target/release/libagentmerge_plugin_$p.so" "$B/release/"
done
strip --strip-debug "$B"/release/* "$B"/release/deps/* 2>/dev/null || true
XZ_OPT="-9 -T0" tar -C "$B" -cJf "$B/release.tar.xz" release
rm -rf "$B/release"
du -h "$B/release.tar.xz"
echo "carry [\".gpu-bundle\"] and run: bash tools/gpu/cuda-check.sh"
