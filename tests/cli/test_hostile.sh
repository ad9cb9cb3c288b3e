#!/usr/bin/env bash
# Hostile inputs through the CLI (issue 8, acceptance 2): >= 1000 mutated
# models (bit flips, truncations, huge/negative dims, cycles, dangling names,
# absurd attributes, broken tensors) and >= 300 mutated images/CSVs/.npy/
# sidecars, generated into the build tree by tools/make_hostile_corpus.py, go
# through `candor info/run/predict/report`. Every process must exit 0, or
# non-zero with a final one-line "candor ...: message" on stderr — never by
# a signal, a hang or a sanitizer report.
set -uo pipefail
SRC=${CANDOR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${CANDOR_BINARY_DIR:-$SRC/build}
CLI=${CANDOR_CLI:-$BIN/candor}
PY=/usr/bin/python3
[ -x "$CLI" ] || { echo "skip: no candor binary at $CLI"; exit 77; }
$PY -c 'import onnx, numpy, PIL' 2>/dev/null || { echo "skip: $PY lacks onnx/numpy/PIL"; exit 77; }

OUT=$BIN/hostile
rm -rf "$OUT"
$PY "$SRC/tools/make_hostile_corpus.py" "$OUT" || exit 1
n_models=$(ls "$OUT/models" | wc -l)
n_other=$(( $(ls "$OUT/images" | wc -l) + $(ls "$OUT/csv" | wc -l) ))
if [ "$n_models" -lt 1000 ] || [ "$n_other" -lt 300 ]; then
    echo "FAIL: corpus too small ($n_models models, $n_other images+CSVs)"
    exit 1
fi
# Leaks are valgrind's business (test_valgrind.sh); here only crashes count.
# A huge allocation must come back NULL (and be reported as out-of-memory),
# as it does without ASan, instead of aborting the process.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
$PY "$SRC/tools/make_hostile_corpus.py" "$OUT" --check "$CLI" --jobs "${CANDOR_TEST_JOBS:-2}"
