#!/usr/bin/env bash
# The installed package (issue 7, acceptance 3):
#  - `cmake --install` to a temporary prefix lays out the shared and static
#    libraries, the headers, the candor binary, candor.pc and the CMake
#    package config;
#  - the shared library exports exactly the public API (every function
#    declared in include/candor/*.h, nothing else);
#  - examples/ builds against the installed package with find_package(candor)
#    (shared and static) and with pkg-config (shared, and static from
#    Requires.private/Libs.private), and each build runs;
#  - the example's top-3 on a deterministic model equals a NumPy forward pass
#    (bindings/python/tests/tiny_models.py), from a .npy and from a PNG;
#    with MC dropout its summary is well formed;
#  - a moved install still resolves through pkg-config and find_package.
# Environment: CANDOR_SOURCE_DIR, CANDOR_BINARY_DIR (set by ctest).
set -u
PY=/usr/bin/python3
SRC=${CANDOR_SOURCE_DIR:?}
BIN=${CANDOR_BINARY_DIR:?}
CC=${CC:-cc}

for f in libcandor.so libcandor.a candor; do
  [ -e "$BIN/$f" ] || { echo "FAIL: $BIN/$f is not built (build all targets first)"; exit 1; }
done
if grep -Eq '^CANDOR_(SANITIZE|TSAN):BOOL=ON' "$BIN/CMakeCache.txt"; then
  echo "SKIP: sanitizer build (an uninstrumented example cannot load this libcandor.so)"
  exit 77
fi
if ! [ -x "$PY" ] || ! "$PY" -c 'import numpy, onnx' 2>/dev/null; then
  echo "SKIP: $PY lacks numpy/onnx (needed to make the test model)"; exit 77
fi
command -v pkg-config >/dev/null || { echo "SKIP: no pkg-config"; exit 77; }

T=$(mktemp -d "${TMPDIR:-/tmp}/candor-install.XXXXXX")
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok   $*"; }

# ---------------------------------------------------------------- install
P="$T/prefix"
cmake --install "$BIN" --prefix "$P" >"$T/install.log" 2>&1 ||
  { cat "$T/install.log"; echo "FAIL: cmake --install"; exit 1; }
PC=$(find "$P" -name candor.pc | head -1)
[ -n "$PC" ] || { echo "FAIL: no candor.pc installed"; exit 1; }
LIB=$(dirname "$(dirname "$PC")")
for f in "$LIB/libcandor.so" "$LIB/libcandor.a" "$P/bin/candor" "$P/include/candor/candor.h" \
         "$LIB/cmake/candor/candorConfig.cmake" "$LIB/cmake/candor/candorTargets.cmake"; do
  [ -e "$f" ] || fail "not installed: ${f#$P/}"
done
for h in "$SRC"/include/candor/*.h; do
  cmp -s "$h" "$P/include/candor/$(basename "$h")" || fail "header $(basename "$h") not installed"
done
"$P/bin/candor" --help >/dev/null 2>&1 && ok "installed candor --help" || fail "installed candor --help"

# ---------------------------------------------------------------- symbols
nm -D --defined-only "$LIB/libcandor.so" | awk '{print $3}' | sort -u >"$T/exported"
grep -ohE '\bcd_[a-z0-9_]+ *\(' "$SRC"/include/candor/*.h | sed 's/ *(//' | sort -u >"$T/declared"
extra=$(comm -13 "$T/declared" "$T/exported" | tr '\n' ' ')
missing=$(comm -23 "$T/declared" "$T/exported" | tr '\n' ' ')
[ -z "$extra" ] && ok "exported symbols: only the public API ($(wc -l <"$T/exported") functions)" ||
  fail "exported but not declared in include/candor: $extra"
[ -z "$missing" ] && ok "every declared function is exported" ||
  fail "declared but not exported (missing CD_API?): $missing"

# docs/c-api.md names every public function.
undocumented=$(while read -r f; do grep -q "\b$f\b" "$SRC/docs/c-api.md" || printf '%s ' "$f"; done <"$T/declared")
[ -z "$undocumented" ] && ok "docs/c-api.md names every public function" ||
  fail "missing from docs/c-api.md: $undocumented"

# ---------------------------------------------------------------- model
M="$T/models"
"$PY" "$SRC/bindings/python/tests/tiny_models.py" "$M" >"$T/models.log" 2>&1 ||
  { cat "$T/models.log"; echo "FAIL: making the test models"; exit 1; }

# Expected top-3 lines "index label p" of the deterministic model, from NumPy.
"$PY" - "$SRC/bindings/python/tests" "$M/input.npy" >"$T/expected.txt" <<'PYEOF' || exit 1
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import tiny_models as tm
z = tm.forward(tm.weights(1), np.load(sys.argv[2]))[0]
p = np.exp(z - z.max()); p /= p.sum()
for c in np.argsort(-p, kind="stable")[:3]:
    print(c, tm.LABELS[c], "%.4f" % p[c])
PYEOF

# check_top3 NAME OUTPUT: the deterministic run's lines match the reference.
check_top3() {
  if awk 'NR<=3 {sub("p=", "", $3); print $1, $2, $3}' "$2" | diff -q - "$T/expected.txt" >/dev/null; then
    ok "$1: top-3 equals NumPy"
  else
    fail "$1: top-3 differs from NumPy"; echo "got:"; cat "$2"; echo "expected:"; cat "$T/expected.txt"
  fi
}
# check_mc NAME OUTPUT: a 30-sample MC summary is well formed and not degenerate.
check_mc() {
  if "$PY" - "$2" <<'PYEOF'; then ok "$1: MC-dropout summary well formed"; else fail "$1: MC summary"; cat "$2"; fi
import re, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 4, lines
rows = [re.match(r"(\d+) (\S+) +p=(\S+) std=(\S+) 95%=\[(\S+), (\S+)\]$", l) for l in lines[:3]]
assert all(rows), lines
ps = [float(r.group(3)) for r in rows]
assert ps == sorted(ps, reverse=True) and sum(ps) <= 1.0001, ps
for r in rows:
    p, s, lo, hi = (float(r.group(i)) for i in range(3, 7))
    assert 0 <= lo <= p <= hi <= 1 and s >= 0, r.group(0)
assert max(float(r.group(4)) for r in rows) > 0, "dropout left every sample identical"
tail = dict(kv.split("=") for kv in lines[3].split())
assert tail["samples"] == "30" and float(tail["mutual_information"]) >= 0, tail
assert 0 <= float(tail["entropy"]) <= 1.6095 and 0 < float(tail["agreement"]) <= 1, tail
PYEOF
}
# run_example NAME EXE: deterministic on .npy and PNG, then MC dropout.
run_example() {
  "$2" "$M/tiny_cnn_nodrop.onnx" "$M/input.npy" 1 >"$T/$1.npy.txt" 2>&1 || { fail "$1 exited non-zero"; cat "$T/$1.npy.txt"; return; }
  check_top3 "$1 (.npy)" "$T/$1.npy.txt"
  "$2" "$M/tiny_cnn_nodrop.onnx" "$M/input.png" 1 >"$T/$1.png.txt" 2>&1 || { fail "$1 on PNG exited non-zero"; cat "$T/$1.png.txt"; return; }
  check_top3 "$1 (PNG)" "$T/$1.png.txt"
  "$2" "$M/tiny_cnn.onnx" "$M/input.npy" >"$T/$1.mc.txt" 2>&1 || { fail "$1 MC exited non-zero"; cat "$T/$1.mc.txt"; return; }
  check_mc "$1" "$T/$1.mc.txt"
}

# ---------------------------------------------------------------- builds
cmake_example() { # NAME PREFIX [cmake args...]
  local name=$1 prefix=$2; shift 2
  if cmake -S "$SRC/examples" -B "$T/$name" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
       "$@" >"$T/$name.log" 2>&1 && cmake --build "$T/$name" >>"$T/$name.log" 2>&1; then
    run_example "$name" "$T/$name/classify"
  else
    fail "$name: building examples/ against the installed package"; tail -30 "$T/$name.log"
  fi
}
cmake_example cmake-shared "$P"
cmake_example cmake-static "$P" -DCLASSIFY_STATIC=ON
if [ -x "$T/cmake-static/classify" ] && readelf -d "$T/cmake-static/classify" | grep -q 'libcandor\.so'; then
  fail "cmake-static: the static build still needs libcandor.so"
fi

export PKG_CONFIG_PATH="$(dirname "$PC")"
pc_build() { # NAME CC-ARGS...
  local name=$1; shift
  if $CC -std=c11 -O1 -o "$T/$name" "$SRC/examples/classify.c" "$@" >"$T/$name.log" 2>&1; then
    run_example "$name" "$T/$name"
  else
    fail "$name: cc with pkg-config flags"; cat "$T/$name.log"
  fi
}
pc_build pc-shared $(pkg-config --cflags --libs candor) -Wl,-rpath,"$LIB"
# Static: the archive plus everything --static adds (Requires.private and
# Libs.private), minus -lcandor itself, which would pick the shared library.
pc_build pc-static $(pkg-config --cflags candor) "$LIB/libcandor.a" \
  $(pkg-config --static --libs candor | sed -E 's/(^| )-lcandor( |$)/ /')
if [ -x "$T/pc-static" ] && readelf -d "$T/pc-static" | grep -q 'libcandor\.so'; then
  fail "pc-static: the static build still needs libcandor.so"
fi

# The complete example in docs/c-api.md compiles against the package and runs.
awk '/^## A complete example/ {f=1} f && /^```c$/ {c=1; next} c && /^```$/ {exit} c' \
  "$SRC/docs/c-api.md" >"$T/doc_example.c"
if $CC -std=c11 -o "$T/doc_example" "$T/doc_example.c" $(pkg-config --cflags --libs candor) \
     -Wl,-rpath,"$LIB" >"$T/doc_example.log" 2>&1; then
  cp "$M/tiny_cnn_nodrop.onnx" "$T/model.onnx" && cp "$M/input.npy" "$T/input.npy"
  if (cd "$T" && ./doc_example) >"$T/doc_example.out" 2>&1 && grep -q '^5 outputs' "$T/doc_example.out"; then
    ok "docs/c-api.md example builds and runs"
  else
    fail "docs/c-api.md example run"; cat "$T/doc_example.out"
  fi
else
  fail "docs/c-api.md example does not compile"; cat "$T/doc_example.log"
fi

# ---------------------------------------------------------------- relocation
mv "$P" "$T/moved"
NEWPC="$T/moved/${PC#$P/}"
[ "$(PKG_CONFIG_PATH=$(dirname "$NEWPC") pkg-config --variable=includedir candor)" -ef "$T/moved/include" ] &&
  ok "moved install: pkg-config includedir follows the move" || fail "moved install: pkg-config includedir"
cmake_example cmake-moved "$T/moved"

[ "$fails" = 0 ] && echo "PASS" || { echo "$fails failure(s)"; exit 1; }
