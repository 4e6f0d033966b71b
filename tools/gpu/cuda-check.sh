#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine, in about ten minutes. The GPU machines have the
# NVIDIA driver and CUDA libraries but no Rust toolchain and no network, so everything is built
# here first by tools/gpu/bundle.sh into .gpu-bundle/release.tar.xz; then, on the GPU machine,
# from the repository root (the device tool: carry [".gpu-bundle"], timeout_s 600):
#
#     bash tools/gpu/cuda-check.sh
#
# 1. the machine: nvidia-smi, and where NVRTC and cuBLAS are (the script looks in the usual
#    toolkit places and in Python wheels, e.g. a torch install's nvidia/ packages, and puts
#    unversioned links to what it finds first on LD_LIBRARY_PATH: cudarc, built for CUDA 12,
#    asks for libnvrtc.so / libcublas.so first, whatever the toolkit's major version);
# 2. the cuda crate's tests: every kernel compiles with NVRTC, and each conformance check
#    (finite differences, naive references, parity with the CPU backend, determinism), one
#    process each so that a kernel fault in one cannot take the others down;
# 3. the end-to-end test: `agentmerge plugins` lists the cuda kinds, and a tiny pipeline trains
#    on `cuda/pretrain` with losses that track the CPU backend's;
# 4. op-bench, train-bench (h128l4 and h768l12, GPT-2 small's size) and gen-bench (h768l12),
#    cuda first, then cpu for comparison.
#
# Every step runs under `timeout`; its output goes to "$OUT/<step>.log" and one line per step
# (status, seconds) to "$OUT/summary.txt", followed by the test results and the benches' JSON.
# A failed step does not stop the later ones. OUT defaults to ./cuda-check-out.

set -u
OUT="${OUT:-$PWD/cuda-check-out}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
export RUST_BACKTRACE=1 CARGO_TERM_COLOR=never AGENTMERGE_REQUIRE_CUDA=1

# step NAME SECONDS COMMAND...: runs COMMAND with a time limit, logs it, records the outcome.
step() {
    local name="$1" limit="$2"
    shift 2
    local t0=$SECONDS
    echo "== $name: $*" | tee -a "$OUT/$name.log"
    timeout --kill-after=10 "$limit" "$@" >> "$OUT/$name.log" 2>&1
    local rc=$?
    local status=ok
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && status="TIMED OUT after ${limit}s"
    [ $rc -ne 0 ] && [ "$status" = ok ] && status="FAILED (exit $rc)"
    printf '%-22s %-28s %4ds\n' "$name" "$status" $((SECONDS - t0)) | tee -a "$SUMMARY"
    return $rc
}

# 1. The machine and its libraries.
step machine 30 bash -c 'nvidia-smi; echo; nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv; echo; nproc; free -g'
# The bundle.
BUNDLE=/tmp/agentmerge-gpu
rm -rf "$BUNDLE" && mkdir -p "$BUNDLE"
[ -f .gpu-bundle/release.tar.xz ] || { echo "no .gpu-bundle/release.tar.xz: run tools/gpu/bundle.sh first, and carry .gpu-bundle" | tee -a "$SUMMARY"; exit 1; }
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' .gpu-bundle/release.tar.xz "$BUNDLE"
R="$BUNDLE/release"

# Where NVRTC and cuBLAS are: the newest of each found, linked under its unversioned name.
links=/tmp/agentmerge-cuda-libs
rm -rf "$links" && mkdir -p "$links"
libdirs="$links"
roots="/usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib /usr/lib/x86_64-linux-gnu /opt/conda/lib $PWD/tools/gpu/cuda-libs
       /opt/torch/.venv/lib/python3*/site-packages/nvidia /usr/local/lib/python3*/dist-packages/nvidia
       /usr/local/lib/python3*/site-packages/nvidia /usr/lib/python3*/dist-packages/nvidia /opt/conda/lib/python3*/site-packages/nvidia"
for lib in libnvrtc libcublas libcublasLt; do
    f=$(find $roots -maxdepth 4 -name "$lib.so*" 2>/dev/null | sort -V | tail -1)
    [ -n "$f" ] || continue
    ln -sf "$f" "$links/$lib.so"
    d=$(dirname "$f")
    case ":$libdirs:" in *":$d:"*) ;; *) libdirs="$libdirs:$d" ;; esac
done
export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    echo "libcuda.so.1: $( (ldconfig -p 2>/dev/null | grep -m1 ' libcuda.so.1 ' | sed 's/.*=> //') || true)"
    for lib in libnvrtc libcublas libcublasLt; do echo "$lib.so -> $(readlink "$links/$lib.so" || echo NOT FOUND)"; done
} | tee "$OUT/libraries.txt" | tee -a "$SUMMARY"

# 2. The cuda crate's tests, one process per conformance check.
step nvrtc-compile 60 "$R/deps/no_gpu" --nocapture
for t in every_op_matches_naive_references every_op_matches_the_cpu_backend gradients_match_finite_differences ops_are_deterministic; do
    AGENTMERGE_CONFORMANCE_VERBOSE=1 step "conf-${t:0:16}" 60 "$R/deps/conformance" --exact "$t" --nocapture
done

# 3. End to end through the host.
step e2e 150 "$R/deps/cuda" --nocapture --test-threads 1

# 4. Benches: cuda first (so a timeout still leaves its figures), then cpu.
step op-bench 60 "$R/op-bench" --backend cuda,cpu --reps 5
step train-bench 200 "$R/train-bench" --backend cuda,cpu --config h128l4,h768l12 --steps 3 --warmup 1
step gen-bench 150 "$R/gen-bench" --backend cuda,cpu --config h768l12 --batch 1,8 --prompt 256 --new 32 --reps 1 --no-uncached

{
    echo
    echo "== test results"
    grep -h -E '^test .* \.\.\. |^test result|panicked at|failure\(s\)|skipped' "$OUT"/nvrtc-compile.log "$OUT"/conf-*.log "$OUT"/e2e.log 2>/dev/null
    echo
    echo "== conformance failures (first 40 lines)"
    grep -h -A3 'failure(s)' "$OUT"/conf-*.log 2>/dev/null | head -40
    echo
    echo "== bench results (JSON lines)"
    grep -h '^{' "$OUT"/op-bench.log "$OUT"/train-bench.log "$OUT"/gen-bench.log 2>/dev/null
} >> "$SUMMARY"
echo "summary: $SUMMARY"
cat "$SUMMARY"
