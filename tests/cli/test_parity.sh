#!/usr/bin/env bash
# Parity with PyTorch: `candor run` on exported torchvision / custom models
# must reproduce PyTorch's eval-mode outputs.
#
# Fixtures come from tools/make_parity_fixtures.py (seeded random weights,
# opset 13) and are generated into $CANDOR_BINARY_DIR/parity, regenerated only
# when the generator script changes (cached by its SHA-256).
# Pass rule per model: max|a-b| <= 1e-4 * max(1, max|b|), b = PyTorch output.
# Environment: CANDOR_SOURCE_DIR, CANDOR_BINARY_DIR, CANDOR_CLI (set by ctest);
# CANDOR_PARITY_MODELS=a,b restricts the models checked.
# Exit 77 (skip) when /usr/bin/python3 lacks torch, torchvision, onnx or numpy.
set -u

PY=/usr/bin/python3
SRC=${CANDOR_SOURCE_DIR:?CANDOR_SOURCE_DIR not set}
BIN=${CANDOR_BINARY_DIR:?CANDOR_BINARY_DIR not set}
CLI=${CANDOR_CLI:?CANDOR_CLI not set}
GEN="$SRC/tools/make_parity_fixtures.py"
DIR="$BIN/parity"

if ! [ -x "$PY" ] || ! "$PY" -c 'import torch, torchvision, onnx, numpy' 2>/dev/null; then
  echo "SKIP: $PY lacks torch/torchvision/onnx/numpy (tools/bootstrap.sh installs them)"
  exit 77
fi

hash=$(sha256sum "$GEN" | cut -d' ' -f1)
if ! [ -f "$DIR/manifest.json" ] || [ "$(cat "$DIR/.script_sha256" 2>/dev/null)" != "$hash" ]; then
  echo "generating fixtures into $DIR"
  rm -rf "$DIR" && mkdir -p "$DIR"
  if ! "$PY" "$GEN" "$DIR" >/dev/null 2>"$DIR/generate.log"; then
    echo "FAIL: fixture generation failed:"; tail -20 "$DIR/generate.log"
    exit 1
  fi
  echo "$hash" > "$DIR/.script_sha256"
else
  echo "reusing fixtures in $DIR"
fi

models=$("$PY" -c 'import json,sys; print(" ".join(m["name"] for m in json.load(open(sys.argv[1]))["models"]))' "$DIR/manifest.json")
if [ -n "${CANDOR_PARITY_MODELS:-}" ]; then models=${CANDOR_PARITY_MODELS//,/ }; fi

pass=0; fail=0
for m in $models; do
  out="$DIR/$m.candor.npy"
  rm -f "$out"
  if ! "$CLI" run "$DIR/$m.onnx" "$DIR/$m.input.npy" -o "$out" >"$DIR/$m.run.log" 2>&1; then
    echo "FAIL $m: candor run exited non-zero:"; tail -5 "$DIR/$m.run.log"
    fail=$((fail + 1)); continue
  fi
  if "$PY" - "$out" "$DIR/$m.output.npy" "$m" <<'EOF'
import sys, numpy as np
a, b, name = np.load(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
if a.shape != b.shape:
    print("FAIL %s: shape %s, expected %s" % (name, a.shape, b.shape)); sys.exit(1)
err = float(np.abs(a.astype(np.float64) - b).max())
tol = 1e-4 * max(1.0, float(np.abs(b).max()))
ok = np.isfinite(a).all() and err <= tol
print("%s %-20s max|a-b| = %.3g (tol %.3g)" % ("ok  " if ok else "FAIL", name, err, tol))
sys.exit(0 if ok else 1)
EOF
  then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done

echo "parity: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
