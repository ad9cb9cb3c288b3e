#!/usr/bin/env bash
# docs/errors.md is complete and true: every cd_status code of
# include/candor/error.h has a section, and every documented code (except
# `internal`, which no input may produce) is really produced — each is
# triggered here by a representative failing CLI command whose one-line
# message "candor CMD: error (NAME): ..." must carry that NAME.
set -uo pipefail
SRC=${CANDOR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${CANDOR_BINARY_DIR:-$SRC/build}
CLI=${CANDOR_CLI:-$BIN/candor}
PY=/usr/bin/python3
DOC=$SRC/docs/errors.md
[ -x "$CLI" ] || { echo "skip: no candor binary at $CLI"; exit 77; }
$PY -c 'import onnx, numpy' 2>/dev/null || { echo "skip: $PY lacks onnx/numpy"; exit 77; }
fail=0

# 1. Every code in error.h has a section "## `name` — CD_ERR_..." in the doc.
for code in $(grep -oE 'CD_ERR_[A-Z_]+ *=' "$SRC/include/candor/error.h" | tr -d ' ='); do
    grep -qE "^## \`[a-z-]+\` — $code\$" "$DOC" || { echo "FAIL: $code has no section in docs/errors.md"; fail=1; }
done
mapfile -t documented < <(grep -oE '^## `[a-z-]+`' "$DOC" | tr -d '#` ')

# 2. Trigger each documented code.
W=$BIN/errors_doc_test
rm -rf "$W"; mkdir -p "$W"
M=$SRC/tests/fuzz/corpus/fuzz_onnx_run/small_cnn.onnx
$PY - "$W" "$M" <<'PYEOF' || exit 1
import sys, numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
w, base = sys.argv[1], sys.argv[2]
np.save(w + "/x.npy", np.ones((1, 1, 4, 4), np.float32))
np.save(w + "/x5.npy", np.ones((1, 1, 5, 5), np.float32))
np.save(w + "/x64.npy", np.ones((1, 1, 64, 64), np.float32))
m = onnx.load(base); m.opset_import[0].version = 99
onnx.save(m, w + "/opset99.onnx")
m = onnx.load(base); m.graph.initializer[0].dims[0] = 2**40
onnx.save(m, w + "/hugedims.onnx")
# Resize x256 of a 64x64 input: 4 GiB of activations, beyond the capped address space.
scales = numpy_helper.from_array(np.array([1, 1, 256, 256], np.float32), "scales")
roi = numpy_helper.from_array(np.zeros(0, np.float32), "roi")
g = helper.make_graph([helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="nearest")], "g",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 64, 64])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [scales, roi])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), w + "/bigout.onnx")
open(w + "/nan.csv", "w").write("a,b,label\nnan,0.5,0\n0.5,0.5,1\n")
open(w + "/trunc.onnx", "wb").write(open(base, "rb").read()[:200])
PYEOF

SANITIZED=
if grep -Eqs '^CANDOR_(SANITIZE|TSAN):BOOL=ON' "$BIN/CMakeCache.txt" ||
   { libs=$(ldd "$CLI" 2>/dev/null; nm "$CLI" 2>/dev/null); grep -qE 'lib(a|t)san|__(a|t)san_init' <<<"$libs"; }; then
    SANITIZED=1
fi
declare -A trigger=(
    [invalid-argument]="run $M --input nosuch=$W/x.npy"
    [io]="info $W/does-not-exist.onnx"
    [parse]="info $W/trunc.onnx"
    [unsupported]="info $W/opset99.onnx"
    [shape]="run $M $W/x5.npy"
    [out-of-memory]="run $W/bigout.onnx $W/x64.npy --threads 1"
    [limit]="info $W/hugedims.onnx"
    [numeric]="report --predictions $W/nan.csv --json $W/nan.json --bootstrap 0"
)
for name in "${documented[@]}"; do
    [ "$name" = internal ] && continue
    if [ "$name" = out-of-memory ] && [ -n "$SANITIZED" ]; then
        echo "skip $name: sanitizer runtimes cannot run under an address-space cap"; continue
    fi
    if [ -z "${trigger[$name]:-}" ]; then
        echo "FAIL: no trigger for documented code '$name' (add one to this test)"; fail=1; continue
    fi
    # The address-space cap makes the 4 GiB allocation fail on any machine.
    ( [ "$name" = out-of-memory ] && ulimit -v 1500000; $CLI ${trigger[$name]} ) >/dev/null 2>"$W/err"
    rc=$?
    line=$(tail -n 1 "$W/err")
    if [ "$rc" = 0 ] || ! grep -q "error ($name): " "$W/err" || [ "$(grep -c . "$W/err")" -gt 2 ]; then
        echo "FAIL: '$name': candor ${trigger[$name]} -> exit $rc: $line"; fail=1
    else
        echo "ok   $name: $line"
    fi
done
rm -rf "$W"
exit $fail
