#!/usr/bin/env bash
# Issue 6, acceptance 2 made precise: whole-model input gradients against
# PyTorch float64 autograd, max|a-b| <= 1e-4 * max|b| ("max_rel"), measured
# by tests/cli/grad_precision.py (PyTorch references only).
#
# Where no ReLU / Clip / MaxPool decision sits within float32 rounding of its
# kink, the criterion holds as written; this test asserts it on unet (summed
# over its region), conv1d_reg, squeezenet1_1 and mobilenet_v3_small.
# On resnet18 and mobilenet_v2 one (resp. a few) pre-activations lie within
# float32 rounding of 0 (resnet18: 1.1e-6 in float64 against ~1e-5 float32
# error of that tensor), and any float32 engine may take the other branch
# there (candor's current kernels happen to keep resnet18's on float64's
# side, 6.5e-6; earlier ones did not, 7.8e-4, so it is not asserted literally): PyTorch float32 evaluating the same exported graph misses float64 by
# 2.7e-3 (resnet18) and 1.1e-2 (mobilenet_v2). For every model this test
# asserts
#   - candor vs float64: max_rel <= max(1e-4, 2 x PyTorch-float32's max_rel
#     on the same ONNX graph), l2_rel <= max(1e-3, 2 x its l2_rel);
#   - same branches, float64 evaluation of the ONNX graph whose ReLU / Clip
#     masks and MaxPool argmaxes are candor's own: max_rel <= 1e-4 (the
#     arithmetic itself is float32-accurate; measured ~1e-6);
#   - `--precision float64` (every pass evaluated in float64, core/plan64.c):
#     max_rel <= 1e-4 against PyTorch float64 autograd of the function candor
#     is given, the criterion as written, on every model: the exported ONNX
#     graph evaluated by PyTorch in float64 where grad_precision.py's ONNX
#     evaluator covers the operators (the export's float32 BN folding moves a
#     Clip kink of mobilenet_v2, so the unfolded model is a different
#     function there), the generator's model (unet, conv1d_reg) elsewhere.
# Numbers are recorded in docs/explain.md. Exit 77 without torch/onnx.
set -u
PY=/usr/bin/python3
SRC=${CANDOR_SOURCE_DIR:?CANDOR_SOURCE_DIR not set}
BIN=${CANDOR_BINARY_DIR:?CANDOR_BINARY_DIR not set}
CLI=${CANDOR_CLI:?CANDOR_CLI not set}
GEN="$SRC/tools/make_parity_fixtures.py"; DIR="$BIN/parity"
if ! [ -x "$PY" ] || ! "$PY" -c 'import torch, torchvision, onnx, numpy' 2>/dev/null; then
  echo "SKIP: $PY lacks torch/torchvision/onnx/numpy"; exit 77
fi
. "$SRC/tests/cli/explain_fixtures.inc"
ensure_fixtures || exit 1

LITERAL="unet conv1d_reg squeezenet1_1 mobilenet_v3_small"
out=$("$PY" "$SRC/tests/cli/grad_precision.py" "$DIR" "$CLI" \
      resnet18 mobilenet_v2 squeezenet1_1 mobilenet_v3_small unet conv1d_reg) || {
  echo "FAIL: grad_precision.py failed"; echo "$out"; exit 1; }
"$PY" - "$LITERAL" <<PYEOF "$out"
import json, sys
literal = sys.argv[1].split()
fail = 0
for line in sys.argv[2].splitlines():
    r = json.loads(line)
    m, c = r["model"], r["candor"]
    checks = []
    if m in literal:
        checks.append(("max_rel <= 1e-4 (as written)", c["max_rel"], 1e-4))
    ref = r.get("torch32_onnx_vs_onnx64", r["torch32"])
    checks.append(("max_rel <= max(1e-4, 2 x PyTorch f32)", c["max_rel"], max(1e-4, 2 * ref["max_rel"])))
    checks.append(("l2_rel <= max(1e-3, 2 x PyTorch f32)", c["l2_rel"], max(1e-3, 2 * ref["l2_rel"])))
    ref64 = r.get("candor64_vs_onnx64", r["candor64"])
    checks.append(("--precision float64: max_rel <= 1e-4", ref64["max_rel"], 1e-4))
    # measured 3e-8..1e-7: the float32 rounding of the saved map, nothing else
    checks.append(("--precision float64: max_rel <= 1e-6", ref64["max_rel"], 1e-6))
    if "masked" in r:
        checks.append(("same masks: max_rel <= 1e-4", r["masked"]["max_rel"], 1e-4))
    for what, v, tol in checks:
        ok = v <= tol
        fail += not ok
        print("%s %-20s %-40s %.3g (tol %.3g)" % ("ok  " if ok else "FAIL", m, what, v, tol))
    print("     %-20s --precision float64 vs PyTorch f64 of the model %.3g, of the ONNX graph %s"
          % (m, r["candor64"]["max_rel"], "%.3g" % r["candor64_vs_onnx64"]["max_rel"]
             if "candor64_vs_onnx64" in r else "n/a"))
    print("     %-20s PyTorch f32 (own model) max_rel %.3g, on the ONNX graph %s"
          % (m, r["torch32"]["max_rel"],
             "%.3g" % r["torch32_onnx_vs_onnx64"]["max_rel"] if "torch32_onnx_vs_onnx64" in r else "n/a"))
sys.exit(1 if fail else 0)
PYEOF
