#!/usr/bin/env bash
# The CLI end to end under valgrind memcheck: info, run, predict (image and
# .npy, human and JSON output), report, and failing commands (corrupt model,
# missing file, malformed CSV) must run with zero memcheck errors and no
# definitely/indirectly lost memory. Slow: sanitizer passes skip it by name
# (ctest -E valgrind); it skips itself (77) when valgrind is missing or the
# binary carries ASan/TSan (they cannot run under valgrind).
set -uo pipefail
SRC=${CANDOR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${CANDOR_BINARY_DIR:-$SRC/build}
CLI=${CANDOR_CLI:-$BIN/candor}
[ -x "$CLI" ] || { echo "skip: no candor binary at $CLI"; exit 77; }
command -v valgrind >/dev/null || { echo "skip: valgrind not installed"; exit 77; }
if grep -Eqs '^CANDOR_(SANITIZE|TSAN):BOOL=ON' "$BIN/CMakeCache.txt" ||
   { libs=$(ldd "$CLI" 2>/dev/null; nm "$CLI" 2>/dev/null); grep -qE 'lib(a|t)san|__(a|t)san_init' <<<"$libs"; }; then
    echo "skip: $CLI is built with a sanitizer"; exit 77
fi
# Release builds use -march=native; valgrind cannot execute AVX-512, so such
# a binary dies with SIGILL under it. tools/ci_extra.sh runs this test on a
# Debug build made for it.
probe_model=$SRC/tests/fuzz/corpus/fuzz_onnx_run/small_cnn.onnx
valgrind --quiet "$CLI" info "$probe_model" >/dev/null 2>&1
if [ $? -ge 128 ]; then
    echo "skip: $CLI does not run under valgrind (instruction set); tools/ci_extra.sh covers it"
    exit 77
fi

W=$BIN/valgrind_test
rm -rf "$W"; mkdir -p "$W"
MODEL=$SRC/tests/fuzz/corpus/fuzz_onnx_run/small_cnn.onnx
PNG=$SRC/tests/fuzz/corpus/fuzz_png/rgb.png
JPG=$SRC/tests/fuzz/corpus/fuzz_jpeg/rgb.jpg
NPY=$SRC/tests/fuzz/corpus/fuzz_npy/nchw.npy
CSV=$SRC/tests/fuzz/corpus/fuzz_csv/probs.csv
cp "$MODEL" "$W/model.onnx"
printf '{"labels": ["a", "b", "c"], "output": {"kind": "probabilities"}}' > "$W/model.candor.json"
head -c 300 "$MODEL" > "$W/truncated.onnx"
printf 'a,b,label\n0.5,nan\n' > "$W/bad.csv"
export OPENBLAS_NUM_THREADS=1

fail=0 n=0
vg() { # vg EXPECT(ok|fail) ARGS...
    local expect=$1; shift
    n=$((n + 1))
    valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
        --show-leak-kinds=definite,indirect --log-file="$W/vg.$n.log" "$CLI" "$@" >"$W/out.$n" 2>&1
    local rc=$?
    if [ "$rc" = 99 ] || [ -s "$W/vg.$n.log" ]; then
        echo "FAIL: memcheck errors in: candor $*"; sed 's/^/    /' "$W/vg.$n.log" | head -40; fail=1
    elif [ "$expect" = ok ] && [ "$rc" != 0 ]; then
        echo "FAIL: candor $* exited $rc:"; sed 's/^/    /' "$W/out.$n" | head; fail=1
    elif [ "$expect" = fail ] && { [ "$rc" = 0 ] || [ "$rc" -gt 2 ]; }; then
        echo "FAIL: candor $* should fail cleanly (1 or 2), got $rc"; fail=1
    else
        echo "ok   candor $*"
    fi
}
vg ok info "$W/model.onnx"
vg ok run "$W/model.onnx" "$NPY" --threads 1 -o "$W/y.npy"
vg ok run "$W/model.onnx" "$NPY" --threads 2 --json
vg ok predict "$W/model.onnx" "$PNG" "$JPG" "$NPY" --threads 1
vg ok predict "$W/model.onnx" "$PNG" --json --top 2
vg ok report --predictions "$CSV" -o "$W/r.html" --json "$W/r.json" --bootstrap 50
vg fail info "$W/truncated.onnx"
vg fail run "$W/model.onnx" "$W/missing.npy"
vg fail run "$W/model.onnx" "$NPY" -o "$W/y.npy"          # exists, no --force
vg fail predict "$W/model.onnx" "$W/truncated.onnx"
vg fail report --predictions "$W/bad.csv" --json "$W/bad.json"
[ "$fail" = 0 ] && rm -rf "$W"
exit $fail
