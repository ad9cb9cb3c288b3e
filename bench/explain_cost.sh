#!/usr/bin/env bash
# Explanation cost (issue 6, acceptance 4) on the resnet18 parity fixture
# (batch 1, 224x224, tools/make_parity_fixtures.py): vanilla gradient vs one
# forward pass (target <= 3x), IG with 32 steps batched (target <= 40
# forward-pass equivalents), occlusion and RISE per-mask cost with their
# masks run BATCH rows per pass. Numbers from bench/explain_cost.c; wall
# time and process CPU time (steadier on a shared machine, and with
# THREADS=1 free of any thread-pool effect) are both reported.
#
#   bench/explain_cost.sh BUILD_DIR [THREADS] [RUNS] [BATCH]
# BUILD_DIR: a configured candor build (use -DCMAKE_BUILD_TYPE=Release for
# real numbers); libcandor is built there if missing. Fixtures are taken
# from BUILD_DIR/parity (generated there when missing, as the tests do).
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "${1:?usage: bench/explain_cost.sh BUILD_DIR [THREADS] [RUNS] [BATCH]}" && pwd)
THREADS=${2:-2}; RUNS=${3:-5}; BATCH=${4:-8}
PY=/usr/bin/python3
GEN="$SRC/tools/make_parity_fixtures.py"; DIR="$BIN/parity"
. "$SRC/tests/cli/explain_fixtures.inc"
ensure_fixtures
[ -f "$BIN/libcandor.so" ] || cmake --build "$BIN" -j2 --target candor >/dev/null
cc -O2 -std=c11 -I"$SRC/include" "$SRC/bench/explain_cost.c" -o "$BIN/explain_cost" \
  -L"$BIN" -lcandor -Wl,-rpath,"$BIN"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
echo "build: $(grep -m1 CMAKE_BUILD_TYPE "$BIN/CMakeCache.txt" | cut -d= -f2); threads=$THREADS runs=$RUNS batch=$BATCH"
r=$("$BIN/explain_cost" "$DIR/resnet18.onnx" "$DIR/resnet18.input.npy" "$THREADS" "$RUNS" "$BATCH")
echo "$r"
"$PY" - "$r" <<'PYEOF'
import json, sys
r = json.loads(sys.argv[1])
print("\n| measurement | wall time | ratio to one forward pass (wall) | (process CPU time) | target |")
print("|---|---|---|---|---|")
print("| forward pass (fast plan) | %.1f ms | 1 | 1 (%.1f ms) | |" % (r["forward_ms"], r["forward_cpu_ms"]))
print("| vanilla gradient (tape forward + backward) | %.1f ms | %.2fx | %.2fx | <= 3x |" % (r["gradient_ms"], r["gradient_ratio"], r["gradient_cpu_ratio"]))
print("| IG, 32 Gauss-Legendre steps, %d rows per pass | %.1f ms | %.1f forward-pass equivalents | %.1f | <= 40 |" % (r["batch"], r["ig32_ms"], r["ig32_forward_equivalents"], r["ig32_cpu_forward_equivalents"]))
print("| occlusion, %d windows, %d rows per pass | %.1f ms | %.3f per window | %.3f | |" % (r["occlusion_windows"], r["batch"], r["occlusion_ms"], r["occlusion_forward_equivalents_per_window"], r["occlusion_cpu_per_window"]))
print("| RISE, %d masks, %d rows per pass | %.1f ms | %.3f per mask | %.3f | |" % (r["rise_masks"], r["batch"], r["rise_ms"], r["rise_forward_equivalents_per_mask"], r["rise_cpu_per_mask"]))
PYEOF
# The same measurements in PyTorch (torchvision resnet18, same input size,
# same thread count, measured here in the same run): its own forward pass,
# vanilla gradient and IG-32 in passes of BATCH rows, so the ratios have a
# reference from a mainstream autograd engine on this machine.
if "$PY" -c 'import torch, torchvision' 2>/dev/null; then
  "$PY" - "$THREADS" "$RUNS" "$BATCH" <<'PYEOF'
import sys, time
import torch, torchvision
threads, runs, batch = (int(a) for a in sys.argv[1:4])
torch.set_num_threads(threads)
torch.manual_seed(0)
m = torchvision.models.resnet18().eval()
x = torch.randn(1, 3, 224, 224)
def median_ms(f):
    f()
    ts = []
    for _ in range(runs):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2] * 1e3
def forward():
    with torch.no_grad():
        m(x)
def gradient():
    xi = x.clone().requires_grad_(True)
    m(xi)[0, 0].backward()
def ig32():
    # 32 points on the straight path from a black baseline, BATCH rows a pass
    for s in range(0, 32, batch):
        a = (torch.arange(s, min(s + batch, 32), dtype=torch.float32) + 0.5) / 32
        xi = (a.view(-1, 1, 1, 1) * x).requires_grad_(True)
        m(xi)[:, 0].sum().backward()
f, g, i = median_ms(forward), median_ms(gradient), median_ms(ig32)
print("\nPyTorch %s reference (same machine, same run, %d threads):" % (torch.__version__, threads))
print("| measurement | wall time | ratio to PyTorch's forward pass |")
print("|---|---|---|")
print("| forward pass | %.1f ms | 1 |" % f)
print("| vanilla gradient (autograd) | %.1f ms | %.2fx |" % (g, g / f))
print("| IG, 32 steps, %d rows per pass | %.1f ms | %.1f forward-pass equivalents |" % (batch, i, i / f))
PYEOF
fi
