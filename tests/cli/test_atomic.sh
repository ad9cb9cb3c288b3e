#!/usr/bin/env bash
# Atomic outputs (issue 8, acceptance 5): SIGKILL `candor run` at many points
# while it writes a large (64 MiB) output. Afterwards the target must hold
# either the previous complete file or the new complete file — never a
# partial one — and, without a previous file, be absent or complete. Also:
# an existing output is not replaced without --force.
# (`candor calibrate` writes through the same atomic writer, core/atomic_file.c;
# extend this test to it once the command exists.)
set -uo pipefail
SRC=${CANDOR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${CANDOR_BINARY_DIR:-$SRC/build}
CLI=${CANDOR_CLI:-$BIN/candor}
PY=/usr/bin/python3
[ -x "$CLI" ] || { echo "skip: no candor binary at $CLI"; exit 77; }
$PY -c 'import onnx, numpy' 2>/dev/null || { echo "skip: $PY lacks onnx/numpy"; exit 77; }

W=$BIN/atomic_test
rm -rf "$W"; mkdir -p "$W"
# Relu over a 4096x4096 float input: cheap to compute, 64 MiB to write, so
# most of a run is spent writing the output.
$PY - "$W" <<'PYEOF' || exit 1
import sys, numpy as np
from onnx import helper, TensorProto
w = sys.argv[1]
node = helper.make_node("Relu", ["x"], ["y"])
g = helper.make_graph([node], "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4096, 4096])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4096, 4096])])
open(w + "/up.onnx", "wb").write(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
np.save(w + "/x1.npy", np.full((1, 1, 4096, 4096), 1.0, np.float32))
np.save(w + "/x2.npy", np.arange(4096 * 4096, dtype=np.float32).reshape(1, 1, 4096, 4096))
PYEOF

run() { "$CLI" run "$W/up.onnx" "$@" >/dev/null 2>"$W/stderr"; }
run "$W/x1.npy" -o "$W/ref1.npy" || { echo "FAIL: reference run 1: $(cat "$W/stderr")"; exit 1; }
start=$(date +%s%N)
run "$W/x2.npy" -o "$W/ref2.npy" || { echo "FAIL: reference run 2: $(cat "$W/stderr")"; exit 1; }
full_ms=$(( ($(date +%s%N) - start) / 1000000 ))
cmp -s "$W/ref1.npy" "$W/ref2.npy" && { echo "FAIL: the two reference outputs are equal"; exit 1; }
echo "full run: ${full_ms} ms, output $(stat -c %s "$W/ref2.npy") bytes"

# Without --force an existing output is left alone and the run fails.
cp "$W/ref1.npy" "$W/keep.npy"
if run "$W/x2.npy" -o "$W/keep.npy"; then
    echo "FAIL: run replaced an existing file without --force"; exit 1
fi
cmp -s "$W/keep.npy" "$W/ref1.npy" || { echo "FAIL: existing file modified without --force"; exit 1; }
grep -q "^candor" "$W/stderr" || { echo "FAIL: no message when refusing to overwrite"; exit 1; }

# Each run is killed at a different moment after its temporary output file
# appears (so mid-write), or, for a few, at a fraction of the full run time.
fail=0 killed=0 midwrite=0 iters=0
for delay_ms in 0 2 5 10 20 40 80 160 320 x25 x50 x90; do
    for previous in yes no; do
        iters=$((iters + 1))
        rm -f "$W/out.npy" "$W"/out.npy.tmp.*
        [ "$previous" = yes ] && cp "$W/ref1.npy" "$W/out.npy"
        "$CLI" run "$W/up.onnx" "$W/x2.npy" -o "$W/out.npy" --force >/dev/null 2>&1 &
        pid=$!
        if [ "${delay_ms#x}" != "$delay_ms" ]; then
            sleep "$(awk -v ms="$full_ms" -v p="${delay_ms#x}" 'BEGIN { printf "%.3f", ms * p / 100000 }')"
        else
            for _ in $(seq 2000); do   # wait (up to ~10 s) for the temporary file
                compgen -G "$W/out.npy.tmp.*" >/dev/null && break
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.005
            done
            sleep "$(awk -v ms="$delay_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
        fi
        if kill -0 "$pid" 2>/dev/null; then
            compgen -G "$W/out.npy.tmp.*" >/dev/null && midwrite=$((midwrite + 1))
            kill -KILL "$pid" 2>/dev/null && killed=$((killed + 1))
        fi
        wait "$pid" 2>/dev/null
        if [ -e "$W/out.npy" ]; then
            if ! cmp -s "$W/out.npy" "$W/ref2.npy" && ! { [ "$previous" = yes ] && cmp -s "$W/out.npy" "$W/ref1.npy"; }; then
                echo "FAIL: SIGKILL (delay $delay_ms, previous file: $previous) left out.npy neither the old nor the new complete output ($(stat -c %s "$W/out.npy") bytes)"
                fail=1
            fi
        fi
    done
done
echo "atomic: $iters runs, $killed killed before finishing, $midwrite of them while writing"
[ "$midwrite" -gt 0 ] || { echo "FAIL: no run was killed while writing; the test proved nothing"; fail=1; }
rm -rf "$W"
exit $fail
