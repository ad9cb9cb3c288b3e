#!/usr/bin/env bash
# candor global (issue 9): class-average saliency and channel importance on
# a real model (the planted-concept CNN, trained once into the build tree by
# tools/train_planted_concept.py and cached) against PyTorch autograd in
# float64 on the same weights (read from the ONNX initializers), over 300
# Fashion-MNIST images of the bundled calibration sample.
set -u
CLI=${CANDOR_CLI:-}
[ -x "$CLI" ] || { echo "SKIP: candor CLI not built"; exit 77; }
SRC=${CANDOR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
IMAGES=$SRC/models/calib/fmnist_calib_images.npy
LABELS=$SRC/models/calib/fmnist_calib_labels.npy
[ -f "$IMAGES" ] && [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
  || { echo "SKIP: data missing"; exit 77; }
/usr/bin/python3 -c 'import torch, onnx, numpy' 2>/dev/null \
  || { echo "SKIP: torch/onnx/numpy missing"; exit 77; }
. "$SRC/tests/cli/planted_concept.inc"
planted_model
MODEL=$CACHE/planted.onnx
WORK=${CANDOR_BINARY_DIR:-/tmp}/global_cli_test
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
/usr/bin/python3 -c "
import numpy as np
np.save('x.npy', np.load('$IMAGES')[:300]); np.save('y.npy', np.load('$LABELS')[:300])" || exit 1

for layer in default /Relu_output_0; do
  opt=(); [ "$layer" = default ] || opt=(--layer "$layer")
  d=out_${layer//\//_}
  "$CLI" global "$MODEL" --data x.npy --labels y.npy "${opt[@]}" --batch 16 -o "$d" \
    > out.txt 2> out.log || fail "global failed: $(tail -3 out.log)"
  grep -q "class-average saliency" out.log || fail "no progress on stderr"
  grep -q "^channel importance at " out.txt || fail "no text ranking"
  for f in class_saliency.npy class_saliency.png channel_importance.npy \
           channel_importance.json channel_importance.txt global.json; do
    [ -s "$d/$f" ] || fail "$d/$f missing"
  done
  /usr/bin/python3 - "$MODEL" "$d" <<'PY' || fail "global vs PyTorch ($layer)"
import json, sys
import numpy as np, onnx, torch
from onnx import numpy_helper
torch.set_default_dtype(torch.float64)
w = {t.name: torch.from_numpy(numpy_helper.to_array(t).astype(np.float64))
     for t in onnx.load(sys.argv[1]).graph.initializer}
F = torch.nn.functional
out = sys.argv[2]
imp_json = json.load(open(f"{out}/channel_importance.json"))
layer = imp_json["layer"]
u8, y = np.load("x.npy"), np.load("y.npy")
x = torch.from_numpy((u8.astype(np.float64) / 255 - 0.2860) / 0.3530).unsqueeze(1)
x.requires_grad_(True)
a1 = F.relu(F.conv2d(x, w["conv1.weight"], w["conv1.bias"], padding=1))
a2 = F.relu(F.conv2d(F.max_pool2d(a1, 2), w["conv2.weight"], w["conv2.bias"], padding=1))
z = F.linear(torch.flatten(F.max_pool2d(a2, 2), 1), w["fc.weight"], w["fc.bias"])
act = {"/Relu_output_0": a1, "/Relu_1_output_0": a2}[layer]
sal = np.zeros((10, 28, 28)); imp = np.zeros((10, act.shape[1]))
for k in range(10):
    rows = np.where(y == k)[0]
    if len(rows) == 0:
        continue
    gx, ga = torch.autograd.grad(z[rows, k].sum(), [x, act], retain_graph=True)
    sal[k] = gx[rows].abs().sum(1).mean(0).numpy()
    imp[k] = (ga[rows] * act[rows]).abs().mean((2, 3)).mean(0).detach().numpy()
got_s, got_i = np.load(f"{out}/class_saliency.npy"), np.load(f"{out}/channel_importance.npy")
es = np.abs(got_s - sal).max() / np.abs(sal).max()
ei = np.abs(got_i - imp).max() / np.abs(imp).max()
print(f"{layer}: class saliency rel. error {es:.2e}, channel importance rel. error {ei:.2e}")
assert got_s.shape == sal.shape and got_i.shape == imp.shape
assert es < 1e-4 and ei < 1e-4
for c in imp_json["classes"]:
    v = c["importance"]
    assert all(v[i] >= v[i + 1] for i in range(len(v) - 1)), "ranking not descending"
    assert c["ranking"][0] == int(np.argmax(imp[c["class"]])) or \
        abs(imp[c["class"]][c["ranking"][0]] - imp[c["class"]].max()) < 1e-6 * imp.max()
    assert c["rows"] == int((y == c["class"]).sum())
PY
done
head -c 8 out_default/class_saliency.png | grep -q PNG \
  || fail "class_saliency.png is not a PNG"
"$CLI" global "$MODEL" --data x.npy --labels y.npy --layer nope -o bad 2> bad.err
[ $? -eq 1 ] && grep -q "nope" bad.err || fail "unknown layer: $(cat bad.err)"
"$CLI" global "$MODEL" -o bad 2>/dev/null; [ $? -eq 2 ] || fail "missing --data must exit 2"
"$CLI" global --help | grep -q -- "--concept" || fail "--help"
echo "global: all checks passed"
