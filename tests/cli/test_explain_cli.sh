#!/usr/bin/env bash
# `candor explain` end to end on the small parity fixtures (U-Net 64x64,
# conv1d_reg): output files (raw map .npy, heatmap and overlay PNGs, JSON
# with method/settings/target/score/faithfulness), IG completeness printed,
# and bad input (unknown layer -> message lists candidates, target outside
# the classes, Grad-CAM without a spatial layer, unknown method, missing
# output) -> clear message and non-zero exit.
# Exit 77 (skip) when /usr/bin/python3 lacks torch, torchvision, onnx, numpy.
set -u
PY=/usr/bin/python3
SRC=${CANDOR_SOURCE_DIR:?CANDOR_SOURCE_DIR not set}
BIN=${CANDOR_BINARY_DIR:?CANDOR_BINARY_DIR not set}
CLI=${CANDOR_CLI:?CANDOR_CLI not set}
GEN="$SRC/tools/make_parity_fixtures.py"
DIR="$BIN/parity"
if ! [ -x "$PY" ] || ! "$PY" -c 'import torch, torchvision, onnx, numpy' 2>/dev/null; then
  echo "SKIP: $PY lacks torch/torchvision/onnx/numpy"; exit 77
fi
. "$SRC/tests/cli/explain_fixtures.inc"
ensure_fixtures || exit 1

OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
fail=0
check() { # check DESCRIPTION EXPECTED_RC PATTERN -- command...
  local what=$1 want=$2 pat=$3; shift 4
  "$@" >"$OUT/log" 2>&1; local rc=$?
  if { [ "$want" = nz ] && [ "$rc" -eq 0 ]; } || { [ "$want" != nz ] && [ "$rc" -ne "$want" ]; }; then
    echo "FAIL $what: exit $rc (want $want)"; tail -3 "$OUT/log"; fail=$((fail + 1)); return
  fi
  if [ -n "$pat" ] && ! grep -q -- "$pat" "$OUT/log"; then
    echo "FAIL $what: output lacks '$pat':"; tail -3 "$OUT/log"; fail=$((fail + 1)); return
  fi
  echo "ok   $what"
}
U="$DIR/unet.onnx"; UX="$DIR/unet.input.npy"
C="$DIR/conv1d_reg.onnx"; CX="$DIR/conv1d_reg.input.npy"

check "help" 0 "usage: candor explain" -- "$CLI" explain --help
check "unknown method" 2 "unknown --method" -- "$CLI" explain "$U" "$UX" --method magic --npy "$OUT/x.npy"
check "no output given" 2 "need MODEL INPUT" -- "$CLI" explain "$U" "$UX"
check "unknown layer lists candidates" nz "candidates: .*Relu" -- \
  "$CLI" explain "$U" "$UX" --method gradcam --target 1 --layer nope --npy "$OUT/x.npy"
check "target outside the classes" nz "outside the 3 classes" -- \
  "$CLI" explain "$U" "$UX" --method gradient --target 7 --npy "$OUT/x.npy"
check "gradcam without a spatial layer" nz "spatial" -- \
  "$CLI" explain "$C" "$CX" --method gradcam --npy "$OUT/x.npy"
check "bad option value" 2 "bad value" -- "$CLI" explain "$U" "$UX" --steps zero --npy "$OUT/x.npy"
check "bad precision names the option" 2 "bad value 'float16' for --precision" -- \
  "$CLI" explain "$U" "$UX" --precision float16 --npy "$OUT/x.npy"
[ -e "$OUT/x.npy" ] && { echo "FAIL: a failed run left $OUT/x.npy"; fail=$((fail + 1)); }

check "gradcam outputs" 0 "layer '" -- "$CLI" explain "$U" "$UX" --method gradcam --target 1 \
  --region 16:48,16:48 --evaluate --step 256 -o "$OUT/d"
check "ig outputs" 0 "completeness delta" -- "$CLI" explain "$U" "$UX" --method ig --steps 16 \
  --target 1 --region 16:48,16:48 -o "$OUT/d"
check "ig in float64" 0 "completeness delta" -- "$CLI" explain "$U" "$UX" --method ig --steps 16 \
  --target 1 --region 16:48,16:48 --precision float64 -o "$OUT/d64"
check "occlusion on a 1-D net" 0 "occlusion" -- "$CLI" explain "$C" "$CX" --method occlusion \
  --objective sum --window 8 --stride 4 -o "$OUT/d"
check "rise" 0 "rise" -- "$CLI" explain "$U" "$UX" --method rise --masks 64 --grid 4 \
  --target 1 --region 16:48,16:48 --objective logit -o "$OUT/d"
if ! "$PY" - "$OUT/d" <<'PYEOF'
import sys, json, os, numpy as np
d = sys.argv[1]
j = json.load(open(os.path.join(d, "unet.input.gradcam.json")))
assert j["method"] == "gradcam" and j["target"] == 1, j
assert j["settings"]["layer"] and "Grad-CAM" in j["settings"]["variant"], j
f = j["faithfulness"]
assert len(f["deletion"]) == f["n_steps"] + 1 == 17 and f["step"] == 256, f
auc = (sum(f["deletion"]) - f["deletion"][0] / 2 - f["deletion"][-1] / 2) / f["n_steps"]
assert abs(auc - f["deletion_auc"]) < 1e-6, (auc, f["deletion_auc"])
m = np.load(os.path.join(d, "unet.input.gradcam.npy"))
assert m.shape == (1, 1, 64, 64) and abs(m.max() - 1) < 1e-5 and m.min() >= 0, m.shape
ig = json.load(open(os.path.join(d, "unet.input.ig.json")))
s = ig["settings"]; g = np.load(os.path.join(d, "unet.input.ig.npy"))
assert g.shape == (1, 3, 64, 64)
delta = float(g.astype(np.float64).sum()) - (ig["score"] - s["baseline_score"])
assert abs(delta - s["completeness_delta"]) < 1e-3 * max(1, abs(ig["score"])), (delta, s)
assert s["precision"] == "float32", s
ig64 = json.load(open(os.path.join(d + "64", "unet.input.ig.json")))
g64 = np.load(os.path.join(d + "64", "unet.input.ig.npy"))
assert ig64["settings"]["precision"] == "float64", ig64["settings"]
# the same map up to float32 kink flips at the 16 path points (measured 2.5e-3)
assert np.abs(g64 - g).max() <= 1e-2 * np.abs(g64).max(), np.abs(g64 - g).max()
for name in ["unet.input.gradcam.png", "unet.input.gradcam.overlay.png", "unet.input.ig.png",
             "conv1d_reg.input.occlusion.png", "unet.input.rise.png"]:
    with open(os.path.join(d, name), "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n", name
print("ok   JSON, .npy and PNG outputs")
PYEOF
then fail=$((fail + 1)); fi
echo "explain cli: $fail failure(s)"
[ "$fail" -eq 0 ]
