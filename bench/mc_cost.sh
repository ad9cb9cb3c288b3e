#!/usr/bin/env bash
# MC dropout cost (issue 4, acceptance 4). resnet18 parity fixture, batch 1,
# 224x224, T samples (default 50), p = 0.2, THREADS threads (default 2):
#   1. site on the input of the final Gemm: cd_mc_sample time / one
#      deterministic forward pass (target <= 1.5x);
#   2. site after layer3: cd_mc_sample time, against PyTorch looping T full
#      passes with dropout at the same place (torch.set_num_threads(THREADS)).
# Both candor numbers come from bench/mc_cost.c (median of RUNS interleaved
# runs, one process); PyTorch's from bench/mc_cost_torch.py.
#
#   bench/mc_cost.sh BUILD_DIR [T] [THREADS] [RUNS]
# BUILD_DIR: a configured candor build (use -DCMAKE_BUILD_TYPE=Release for
# real numbers); libcandor is built there if missing.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "${1:?usage: bench/mc_cost.sh BUILD_DIR [T] [THREADS] [RUNS]}" && pwd)
T=${2:-50}; THREADS=${3:-2}; RUNS=${4:-10}
PY=/usr/bin/python3
. "$SRC/tests/cli/mc_fixtures.bash"
mc_fixtures resnet18
[ -f "$BIN/libcandor.so" ] || cmake --build "$BIN" -j2 --target candor >/dev/null
cc -O2 -std=c11 -I"$SRC/include" "$SRC/bench/mc_cost.c" -o "$BIN/mc_cost" \
  -L"$BIN" -lcandor -Wl,-rpath,"$BIN"

M="$FIX/resnet18.onnx"; X="$FIX/resnet18.input.npy"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
echo "build: $(grep -m1 CMAKE_BUILD_TYPE "$BIN/CMakeCache.txt" | cut -d= -f2); T=$T threads=$THREADS runs=$RUNS"
fc=$("$BIN/mc_cost" "$M" "$X" /Flatten_output_0 0.2 "$T" "$THREADS" "$RUNS")
l3=$("$BIN/mc_cost" "$M" "$X" /layer3/layer3.1/relu_1/Relu_output_0 0.2 "$T" "$THREADS" "$RUNS")
pt=$("$PY" "$SRC/bench/mc_cost_torch.py" "$X" --T "$T" --threads "$THREADS" --runs 3)
echo "candor site=final Gemm input: $fc"
echo "candor site=after layer3:     $l3"
echo "pytorch loop:                 $pt"
"$PY" - "$fc" "$l3" "$pt" <<'PYEOF'
import json, sys
fc, l3, pt = (json.loads(a) for a in sys.argv[1:])
T = fc["T"]
print("\n| case | candor | reference | ratio |")
print("|---|---|---|---|")
print("| site on final Gemm input, T=%d vs 1 deterministic pass | %.1f ms | %.1f ms (candor, 1 pass) | %.2fx (target <= 1.5x) |"
      % (T, fc["mc_ms"], fc["det_ms"], fc["ratio"]))
print("| site on final Gemm input, T=%d vs PyTorch loop | %.1f ms | %.1f ms | %.3fx |"
      % (T, fc["mc_ms"], pt["loop_fc_ms"], fc["mc_ms"] / pt["loop_fc_ms"]))
print("| site after layer3, T=%d vs 1 deterministic pass | %.1f ms | %.1f ms (candor, 1 pass) | %.2fx |"
      % (T, l3["mc_ms"], l3["det_ms"], l3["ratio"]))
print("| site after layer3, T=%d vs PyTorch loop | %.1f ms | %.1f ms | %.3fx |"
      % (T, l3["mc_ms"], pt["loop_layer3_ms"], l3["mc_ms"] / pt["loop_layer3_ms"]))
print("| PyTorch one deterministic pass | | %.1f ms | |" % pt["det_ms"])
print("\nbatched suffix: final Gemm %s (%d prefix / %d suffix steps), layer3 %s (%d / %d)"
      % (fc["batched"], fc["prefix_steps"], fc["suffix_steps"], l3["batched"],
         l3["prefix_steps"], l3["suffix_steps"]))
PYEOF
