#!/usr/bin/env bash
# `candor explain --method featuremaps` on the bundled Fashion-MNIST CNN:
#  - the .npy equals what `candor run MODEL X.npy --output NAME=F.npy` returns
#    for the same layer (issue 9, acceptance 1), bit for bit;
#  - it also matches an independent NumPy conv + ReLU from the ONNX weights;
#  - the JSON ranking is NumPy's ranking of channel means (top N);
#  - the grid PNG exists with the documented size; a 2-D layer (Gemm) works;
#  - an unknown layer / missing --layer fail with a clear message.
# Exit 77 (skip) when /usr/bin/python3 lacks numpy or onnx.
set -u
PY=/usr/bin/python3
SRC=${CANDOR_SOURCE_DIR:?}; CLI=${CANDOR_CLI:?}
if ! "$PY" -c 'import numpy, onnx' 2>/dev/null; then echo "SKIP: $PY lacks numpy/onnx"; exit 77; fi
M="$SRC/models/fmnist_cnn.onnx"
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

# Input: calibration image 3, preprocessed in NumPy as the sidecar says.
"$PY" - "$SRC" "$OUT" <<'EOF'
import sys, numpy as np
src, out = sys.argv[1:3]
img = np.load(f"{src}/models/calib/fmnist_calib_images.npy")[3].astype(np.float32)
x = ((img / np.float32(255) - np.float32(0.286)) / np.float32(0.353)).reshape(1, 1, 28, 28)
np.save(f"{out}/x.npy", x.astype(np.float32))
EOF

L=/features/features.1/Relu_output_0
if "$CLI" explain "$M" "$OUT/x.npy" --method featuremaps --layer "$L" --top 8 -o "$OUT/fm" >"$OUT/log" 2>&1; then
  ok "featuremaps runs"; else bad "featuremaps: $(tail -2 "$OUT/log")"; fi
if "$CLI" run "$M" "$OUT/x.npy" --output "$L=$OUT/run.npy" >"$OUT/log" 2>&1; then
  ok "candor run --output"; else bad "candor run: $(tail -2 "$OUT/log")"; fi

"$PY" - "$SRC" "$OUT" "$L" <<'EOF' || fail=$((fail + 1))
import json, struct, sys, zlib
import numpy as np, onnx
from onnx import numpy_helper
src, out, layer = sys.argv[1:4]
bad = 0
def check(cond, what):
    global bad
    print(("ok   " if cond else "FAIL ") + what)
    bad += 0 if cond else 1
fm = np.load(f"{out}/fm/x.featuremaps.npy")
run = np.load(f"{out}/run.npy")
check(fm.shape == run.shape == (1, 32, 28, 28), f"shapes {fm.shape} {run.shape}")
check(fm.dtype == run.dtype and np.array_equal(fm, run), "feature maps == candor run --output (bit-identical)")
# Independent reference: conv 3x3 pad 1 + bias + ReLU in float64 from the initializers.
m = onnx.load(f"{src}/models/fmnist_cnn.onnx")
w = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
conv = next(n for n in m.graph.node if n.op_type == "Conv")
W, b = w[conv.input[1]].astype(np.float64), w[conv.input[2]].astype(np.float64)
x = np.load(f"{out}/x.npy").astype(np.float64)[0]
xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
ref = np.zeros((W.shape[0], 28, 28))
for i in range(3):
    for j in range(3):
        ref += np.einsum("oc,chw->ohw", W[:, :, i, j], xp[:, i:i + 28, j:j + 28])
ref = np.maximum(ref + b[:, None, None], 0)
err = np.abs(fm[0] - ref).max()
check(err < 1e-4, f"feature maps vs NumPy conv+ReLU: max |diff| {err:.2e}")
js = json.load(open(f"{out}/fm/x.featuremaps.json"))
means = ref.reshape(32, -1).mean(1)
order = sorted(range(32), key=lambda k: (-fm[0, k].mean(dtype=np.float64), k))[:8]
got = [t["channel"] for t in js["top"]]
check(got == order, f"top-8 ranking {got} == NumPy {order}")
check(abs(js["color_scale"]["max"] - fm[0, got].max()) < 1e-5 and
      abs(js["color_scale"]["min"] - fm[0, got].min()) < 1e-5, "shared colour scale = min/max of shown channels")
check(all(abs(t["mean"] - means[t["channel"]]) < 1e-5 for t in js["top"]), "channel means")
png = open(f"{out}/fm/x.featuremaps.png", "rb").read()
wpx, hpx = struct.unpack(">II", png[16:24])
# 8 channels -> 3 columns x 3 rows of 28*3 = 84 px cells (min cell 64)
check(png[:8] == b"\x89PNG\r\n\x1a\n" and hpx == 6 + 3 * (14 + 84 + 6) and wpx > 6 + 3 * 90,
      f"grid PNG {wpx}x{hpx}")
sys.exit(1 if bad else 0)
EOF

# A 2-D layer: the hidden Gemm output, all 128 channels ranked.
G=/head/head.3/Relu_output_0
if "$CLI" explain "$M" "$OUT/x.npy" --method featuremaps --layer "$G" --top 0 -o "$OUT/fm2" >"$OUT/log" 2>&1 &&
   "$CLI" run "$M" "$OUT/x.npy" --output "$G=$OUT/run2.npy" >/dev/null 2>&1 &&
   "$PY" -c "import numpy as n,json,sys; a=n.load('$OUT/fm2/x.featuremaps.npy'); b=n.load('$OUT/run2.npy'); j=json.load(open('$OUT/fm2/x.featuremaps.json')); sys.exit(0 if n.array_equal(a,b) and len(j['top'])==128 else 1)"; then
  ok "2-D layer: equal to candor run, 128 channels ranked"; else bad "2-D layer"; fi

"$CLI" explain "$M" "$OUT/x.npy" --method featuremaps --layer nosuch -o "$OUT/fm3" >"$OUT/log" 2>&1
rc=$?; if [ $rc -ne 0 ] && grep -q "nosuch" "$OUT/log"; then ok "unknown layer: exit $rc, named"; else bad "unknown layer (exit $rc)"; fi
"$CLI" explain "$M" "$OUT/x.npy" --method featuremaps -o "$OUT/fm3" >"$OUT/log" 2>&1
rc=$?; if [ $rc -eq 2 ] && grep -q "needs --layer" "$OUT/log"; then ok "missing --layer: usage error"; else bad "missing --layer (exit $rc)"; fi
"$CLI" explain "$M" --method featuremaps --help | grep -q "usage: candor explain MODEL INPUT... --method featuremaps" && ok "help" || bad "help"

echo "featuremaps: $fail failed"
[ $fail -eq 0 ]
