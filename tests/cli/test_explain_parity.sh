#!/usr/bin/env bash
# Whole-model input gradients and Grad-CAM against PyTorch.
#
# 1. `candor explain MODEL X.npy --method gradient --npy G.npy` on every
#    parity fixture (tools/make_parity_fixtures.py) must equal NAME.grad.npy,
#    PyTorch autograd of the fixture's scalar (manifest "grad_definition":
#    output[0, argmax] for classifiers, sum(output[0, 1, 16:48, 16:48]) for
#    the U-Net, sum(output) for conv1d_reg), within
#        max|a-b| <= 1e-4 * max|b|.
#    NAME.grad.npy is a float64 autograd gradient (make_parity_fixtures.py),
#    so it has no rounding of its own. Flip allowance: a ReLU/ReLU6 whose
#    float32 input lies within rounding of its kink can land on the other
#    side in candor's float32 run (BatchNorm is folded into the conv weights
#    by the exporter, so pre-activations differ from float64 by ~1e-6), which
#    changes the gradient over that unit's receptive field. Measured: resnet18
#    max 7.8e-4 (median 6e-8) with the kernels before the direct 7x7 first
#    layer, 6.5e-6 with them (the same unit now lands on float64's side: luck
#    of rounding, so resnet18 keeps the allowance), mobilenet_v2 max 1.1e-2
#    (median 1.6e-7; PyTorch's own float32 gradient is 4.5e-3 from float64
#    there), squeezenet1_1 1.6e-6.
#    Running the tape plan with the reference conv kernels instead of the fast
#    ones gives the same numbers, so the fast kernels are not the cause.
#    For the models in FLIP_MODELS the test then requires
#        median|a-b| <= 1e-4 * max|b|  and  max|a-b| <= 2e-2 * max|b|
#    (flips are local; a wrong VJP or an imprecise kernel moves the median)
#    and prints whether the strict rule held.
# 2. Grad-CAM and Grad-CAM++ on resnet18 (default layer = layer4's output)
#    against tools/explain_reference.py (forward/backward hooks, float64):
#    max|a-b| <= 1e-4 after normalisation.
# Fixtures are shared with test_parity.sh ($CANDOR_BINARY_DIR/parity).
# Exit 77 (skip) when /usr/bin/python3 lacks torch, torchvision, onnx, numpy.
set -u
PY=/usr/bin/python3
SRC=${CANDOR_SOURCE_DIR:?CANDOR_SOURCE_DIR not set}
BIN=${CANDOR_BINARY_DIR:?CANDOR_BINARY_DIR not set}
CLI=${CANDOR_CLI:?CANDOR_CLI not set}
GEN="$SRC/tools/make_parity_fixtures.py"
DIR="$BIN/parity"
FLIP_MODELS=" resnet18 mobilenet_v2 squeezenet1_1 "

if ! [ -x "$PY" ] || ! "$PY" -c 'import torch, torchvision, onnx, numpy' 2>/dev/null; then
  echo "SKIP: $PY lacks torch/torchvision/onnx/numpy"; exit 77
fi
. "$SRC/tests/cli/explain_fixtures.inc"
ensure_fixtures || exit 1

OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
pass=0; fail=0
while IFS='|' read -r name def; do
  args=()
  case "$def" in
    *"sum(output[0, 1, 16:48, 16:48])"*) args=(--target 1 --region 16:48,16:48) ;;
    *"sum(output)"*) args=(--objective sum) ;;
    *"argmax"*) ;;
    *) echo "FAIL $name: unknown gradient definition '$def'"; fail=$((fail + 1)); continue ;;
  esac
  if ! "$CLI" explain "$DIR/$name.onnx" "$DIR/$name.input.npy" --method gradient "${args[@]}" \
       --npy "$OUT/$name.npy" >"$OUT/$name.log" 2>&1; then
    echo "FAIL $name: candor explain exited non-zero:"; tail -3 "$OUT/$name.log"
    fail=$((fail + 1)); continue
  fi
  flip=0; case "$FLIP_MODELS" in *" $name "*) flip=1 ;; esac
  if "$PY" - "$OUT/$name.npy" "$DIR/$name.grad.npy" "$name" "$flip" <<'PYEOF'
import sys, numpy as np
a, b, name, flip = np.load(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
if a.shape != b.shape:
    print("FAIL %s: shape %s, expected %s" % (name, a.shape, b.shape)); sys.exit(1)
d = np.abs(a.astype(np.float64) - b); s = float(np.abs(b).max())
rel, med = float(d.max()) / s, float(np.median(d)) / s
strict = rel <= 1e-4
ok = np.isfinite(a).all() and (strict or (flip and med <= 1e-4 and rel <= 2e-2))
how = "strict 1e-4 rule" if strict else ("flip allowance; strict 1e-4 rule NOT met" if ok else "")
print("%s %-20s max|a-b|/max|b| = %.3g, median %.3g  %s" % ("ok  " if ok else "FAIL", name, rel, med, how))
sys.exit(0 if ok else 1)
PYEOF
  then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done < <("$PY" -c 'import json,sys
for m in json.load(open(sys.argv[1]))["models"]: print(m["name"] + "|" + m["grad_definition"])' "$DIR/manifest.json")

for method in gradcam gradcam++; do
  plus=(); [ "$method" = "gradcam++" ] && plus=(--plus)
  if "$CLI" explain "$DIR/resnet18.onnx" "$DIR/resnet18.input.npy" --method "$method" \
       --npy "$OUT/cam.npy" >"$OUT/cam.log" 2>&1 &&
     "$PY" "$SRC/tools/explain_reference.py" gradcam resnet18 "$DIR" "$OUT/ref.npy" "${plus[@]}" \
       >"$OUT/ref.log" 2>&1 &&
     "$PY" - "$OUT/cam.npy" "$OUT/ref.npy" "$method" <<'PYEOF'
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
err = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
print("%s %-20s Grad-CAM vs PyTorch hooks: max|a-b| = %.3g (tol 1e-4)" % (
    "ok  " if err <= 1e-4 else "FAIL", sys.argv[3], err))
sys.exit(0 if err <= 1e-4 else 1)
PYEOF
  then pass=$((pass + 1)); else echo "FAIL $method:"; tail -3 "$OUT/cam.log" "$OUT/ref.log"; fail=$((fail + 1)); fi
done
grep -h "layer" "$OUT/cam.log" | head -1
echo "explain parity: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
