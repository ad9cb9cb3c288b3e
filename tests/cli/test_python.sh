#!/usr/bin/env bash
# The Python binding's tests (bindings/python/tests, issue 7 acceptance 3),
# run by Debian's /usr/bin/python3 against this build's libcandor.so.
# Skips (77) without NumPy or onnx (the tests build their models with
# onnx.helper), and in sanitizer builds (an instrumented libcandor.so cannot
# be loaded into an uninstrumented Python).
# Environment: CANDOR_SOURCE_DIR, CANDOR_BINARY_DIR (set by ctest).
set -u
PY=/usr/bin/python3
SRC=${CANDOR_SOURCE_DIR:?}
BIN=${CANDOR_BINARY_DIR:?}

if ! [ -x "$PY" ] || ! "$PY" -c 'import numpy' 2>/dev/null; then
  echo "SKIP: $PY lacks numpy (apt-get install python3-numpy)"; exit 77
fi
if ! "$PY" -c 'import onnx' 2>/dev/null; then
  echo "SKIP: $PY lacks onnx (apt-get install python3-onnx), needed for the test models"; exit 77
fi
if grep -Eq '^CANDOR_(SANITIZE|TSAN):BOOL=ON' "$BIN/CMakeCache.txt" 2>/dev/null; then
  echo "SKIP: sanitizer build (Python cannot dlopen an instrumented libcandor.so)"; exit 77
fi
[ -e "$BIN/libcandor.so" ] || { echo "FAIL: $BIN/libcandor.so is not built"; exit 1; }

export CANDOR_LIBRARY="$BIN/libcandor.so"
export CANDOR_SOURCE_DIR="$SRC"
export PYTHONPATH="$SRC/bindings/python${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
cd "$SRC/bindings/python/tests" || exit 1
"$PY" -m unittest discover -v -s . -p 'test_*.py' 2>&1
