#!/usr/bin/env bash
# Parity with PyTorch: on exported torchvision / custom models, `candor run`
# must reproduce PyTorch's eval-mode outputs and `candor explain --method
# gradient` the autograd input gradients (float64 reference).
#
# Fixtures come from tools/make_parity_fixtures.py (seeded random weights,
# opset 13) and are generated into $CANDOR_BINARY_DIR/parity, regenerated only
# when the generator script changes (cached by its SHA-256).
# Pass rules: outputs max|a-b| <= 1e-4 * max(1, max|b|); gradients
# ||a-b||_2 <= 1e-2 * ||b||_2 (max-abs error printed too: a float32 run may
# take the other side of a ReLU/MaxPool kink, which moves the gradient locally
# by ~1e-3 of its max). The max-relative criterion of issue 6 is checked
# precisely, against PyTorch float32 on the same graph and with candor's own
# branches, by tests/cli/test_grad_precision.sh (numbers in docs/explain.md).
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


# compare CANDOR.npy REFERENCE.npy NAME out|grad
COMPARE_PY='
import sys, numpy as np
a, b, name, mode = np.load(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3], sys.argv[4]
if a.shape != b.shape:
    print("FAIL %-4s %-20s shape %s, expected %s" % (mode, name, a.shape, b.shape)); sys.exit(1)
a64, b64 = a.astype(np.float64), b.astype(np.float64)
err = float(np.abs(a64 - b64).max())
if mode == "out":
    tol = 1e-4 * max(1.0, float(np.abs(b64).max()))
    ok = bool(np.isfinite(a).all()) and err <= tol
    print("%s out  %-20s max|a-b| = %.3g (tol %.3g)" % ("ok  " if ok else "FAIL", name, err, tol))
else:
    rel = float(np.linalg.norm(a64 - b64) / max(np.linalg.norm(b64), 1e-30))
    ok = bool(np.isfinite(a).all()) and rel <= 1e-2
    print("%s grad %-20s ||a-b||/||b|| = %.3g (tol 0.01), max|a-b|/max|b| = %.3g"
          % ("ok  " if ok else "FAIL", name, rel, err / max(float(np.abs(b64).max()), 1e-30)))
sys.exit(0 if ok else 1)
'
compare() { "$PY" -c "$COMPARE_PY" "$@"; }

# The objective whose input gradient each fixture holds (see the generator).
explain_args() {
  case "$1" in
    unet) echo "--target 1 --region 16:48,16:48" ;;  # sum of class-1 logits in the region
    conv1d_reg) echo "--objective sum" ;;            # sum of the outputs
    *) echo "" ;;                                    # logit of the top class
  esac
}

pass=0; fail=0
for m in $models; do
  out="$DIR/$m.candor.npy"
  rm -f "$out"
  if ! "$CLI" run "$DIR/$m.onnx" "$DIR/$m.input.npy" -o "$out" >"$DIR/$m.run.log" 2>&1; then
    echo "FAIL out  $m: candor run exited non-zero:"; tail -5 "$DIR/$m.run.log"
    fail=$((fail + 1))
  elif compare "$out" "$DIR/$m.output.npy" "$m" out; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
  fi

  grad="$DIR/$m.candor.grad.npy"
  rm -f "$grad"
  # shellcheck disable=SC2046
  if ! "$CLI" explain "$DIR/$m.onnx" "$DIR/$m.input.npy" --method gradient $(explain_args "$m") \
       --npy "$grad" >"$DIR/$m.explain.log" 2>&1; then
    echo "FAIL grad $m: candor explain exited non-zero:"; tail -5 "$DIR/$m.explain.log"
    fail=$((fail + 1))
  elif compare "$grad" "$DIR/$m.grad.npy" "$m" grad; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
  fi
done

echo "parity: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
