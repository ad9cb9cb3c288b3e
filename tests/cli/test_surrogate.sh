#!/usr/bin/env bash
# candor surrogate (issue 9, acceptance 4): the CART tree distilled from the
# bundled Fashion-MNIST CNN matches scikit-learn's DecisionTreeClassifier
# fitted on the same features, labels, split and settings within 2
# percentage points of held-out fidelity (tools/surrogate_reference.py; it
# also re-walks candor's saved tree to check the reported fidelity). Grid
# features are checked against NumPy on the raw images; `candor predict
# --surrogate` must fire the leaf the saved tree gives for the same input.
set -u
CLI=${CANDOR_CLI:-}
[ -x "$CLI" ] || { echo "SKIP: candor CLI not built"; exit 77; }
SRC=${CANDOR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL=$SRC/models/fmnist_cnn.onnx
IMAGES=$SRC/models/calib/fmnist_calib_images.npy
LABELS=$SRC/models/calib/fmnist_calib_labels.npy
for f in "$MODEL" "$IMAGES" "$LABELS"; do
  [ -f "$f" ] || { echo "SKIP: $f missing"; exit 77; }
done
/usr/bin/python3 -c 'import numpy, sklearn' 2>/dev/null || { echo "SKIP: numpy/sklearn missing"; exit 77; }
WORK=${CANDOR_BINARY_DIR:-/tmp}/surrogate_cli_test
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
fail() { echo "FAIL: $*"; exit 1; }

compare() { # DIR: sklearn vs candor
  /usr/bin/python3 "$SRC/tools/surrogate_reference.py" "$1" > "$1/reference.json" \
    || fail "reference failed for $1"
  cat "$1/reference.json"
  /usr/bin/python3 - "$1/reference.json" <<'PY' || exit 1
import json, sys
r = json.load(open(sys.argv[1]))
assert abs(r["candor_fidelity_test"] - r["reported_fidelity_test"]) < 1e-9, "reported test fidelity != saved tree's"
assert abs(r["candor_fidelity_train"] - r["reported_fidelity_train"]) < 1e-9, "reported train fidelity != saved tree's"
d = abs(r["sklearn_fidelity_test"] - r["candor_fidelity_test"])
assert d <= 0.02, f"held-out fidelity differs from sklearn by {100*d:.2f} pp"
d = abs(r["sklearn_fidelity_train"] - r["candor_fidelity_train"])
assert d <= 0.02, f"training fidelity differs from sklearn by {100*d:.2f} pp"
print(f"OK: sklearn within {100*d:.2f} pp, trees agree on {100*r['tree_agreement_test']:.1f}% of held-out rows")
PY
}

# 1. pooled channel means at the default layer, depth 4.
"$CLI" surrogate "$MODEL" --data "$IMAGES" --labels "$LABELS" --depth 4 -o pooled \
  > pooled.txt 2> pooled.log || fail "surrogate failed: $(tail -3 pooled.log)"
head -3 pooled.txt
grep -q "fitting a tree" pooled.log || fail "no progress on stderr"
grep -q "^leaf .*: IF .* THEN " pooled.txt || fail "no rules printed"
for f in surrogate.json rules.txt features.npy predictions.npy labels.npy train.npy; do
  [ -s "pooled/$f" ] || fail "pooled/$f missing"
done
compare pooled

# 2. grid features, deeper tree, leaf minimum, other split; features vs NumPy.
"$CLI" surrogate "$MODEL" --data "$IMAGES" --labels "$LABELS" --features grid --grid 7 \
  --depth 6 --min-leaf 5 --split 0.6 --seed 3 --json -o grid > grid.json 2> grid.log \
  || fail "grid surrogate failed: $(tail -3 grid.log)"
compare grid
/usr/bin/python3 - "$IMAGES" grid <<'PY' || fail "grid features differ from NumPy"
import json, sys
import numpy as np
u8, d = np.load(sys.argv[1]), sys.argv[2]
x = (u8.astype(np.float64) / 255 - 0.286) / 0.353        # the sidecar preprocessing
ref = np.stack([x[:, 4*i:4*i+4, 4*j:4*j+4].mean(axis=(1, 2)) for i in range(7) for j in range(7)], 1)
got = np.load(f"{d}/features.npy")
err = np.abs(got - ref).max()
print(f"grid features: max |candor - numpy| = {err:.2e}")
assert got.shape == (len(u8), 49) and err < 1e-4
rep = json.load(open(f"{d}/surrogate.json"))
assert rep["n_train"] == round(0.6 * len(u8)) and rep["n_train"] + rep["n_test"] == len(u8)
s = json.load(open(sys.argv[2] + "/../grid.json"))
assert s["fidelity"] == rep["fidelity"] and "accuracy" in s and s["rules"], "--json summary"
PY

# 3. predict --surrogate fires the leaf the saved tree gives for those rows.
/usr/bin/python3 - "$IMAGES" <<'PY' || fail "cannot write rows"
import sys, os
import numpy as np
u8 = np.load(sys.argv[1])
os.makedirs("rows", exist_ok=True)
for i in [0, 1, 2, 3, 4]:
    np.save(f"rows/row{i}.npy", ((u8[i:i+1].astype(np.float32) / 255 - 0.286) / 0.353)[None])
PY
"$CLI" predict "$MODEL" rows --surrogate pooled/surrogate.json > predict.txt 2>&1 \
  || fail "predict --surrogate failed: $(cat predict.txt)"
grep -q "rule:      IF" predict.txt || fail "no rule shown: $(head predict.txt)"
"$CLI" predict "$MODEL" rows --json --surrogate pooled/surrogate.json > predict.json \
  || fail "predict --surrogate --json failed"
/usr/bin/python3 - <<'PY' || fail "predict --surrogate fired another leaf"
import json
import numpy as np
rep = json.load(open("pooled/surrogate.json"))
nodes, X = rep["tree"]["nodes"], np.load("pooled/features.npy")
pred = np.load("pooled/predictions.npy")
out = json.load(open("predict.json"))
assert len(out) == 5
for r in out:
    i = int(r["input"].split("row")[-1].split(".")[0])
    n = 0
    while nodes[n]["feature"] >= 0:
        n = nodes[n]["left"] if X[i, nodes[n]["feature"]] <= nodes[n]["threshold"] else nodes[n]["right"]
    assert r["leaf"] == n, (i, r["leaf"], n)
    assert r["model_class"] == pred[i]
    assert r["agrees"] == (r["surrogate_class"] == r["model_class"])
print("predict --surrogate: leaves and model classes match")
PY

# 4. bad usage and bad files.
"$CLI" surrogate "$MODEL" --data "$IMAGES" --labels "$LABELS" --features nope -o x 2>/dev/null
[ $? -eq 2 ] || fail "--features nope should be a usage error"
"$CLI" surrogate "$MODEL" -o x 2>/dev/null; [ $? -eq 2 ] || fail "missing --data should exit 2"
"$CLI" surrogate "$MODEL" --data "$IMAGES" --labels "$LABELS" --layer nope -o bad 2> bad.err
[ $? -eq 1 ] && grep -q "nope" bad.err || fail "unknown layer: $(cat bad.err)"
echo '{"features":{}}' > broken.json
"$CLI" predict "$MODEL" rows/row0.npy --surrogate broken.json 2> broken.err
[ $? -eq 1 ] && grep -q "broken.json" broken.err || fail "broken surrogate file: $(cat broken.err)"
"$CLI" surrogate --help | grep -q "min-leaf" || fail "--help"
echo "surrogate: all checks passed"
