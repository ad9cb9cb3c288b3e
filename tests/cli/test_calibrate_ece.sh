#!/usr/bin/env bash
# Issue 5, acceptance 4, on real data: `candor calibrate` (temperature
# scaling, --split 0.5) on all 10,000 Fashion-MNIST test images with the
# bundled unregularised CNN models/fmnist_plain.onnx (tools/
# train_fmnist_plain.py; overconfident, PyTorch: T ~ 1.44 on the test set)
#   - never raises the calibration-split NLL,
#   - lowers the test-split ECE below the uncalibrated test-split ECE,
#   - and the report (HTML and JSON) shows both before and after.
# Checked for three split seeds. Independent references: the uncalibrated
# 10,000-image accuracy/ECE equal PyTorch's (models/fmnist_plain_results.json,
# computed by the training script on the PyTorch model), and the report's
# split metrics equal a NumPy recomputation from `candor run` logits with the
# documented splitmix64 split.
set -u
CLI=${CANDOR_CLI:-}
[ -x "$CLI" ] || { echo "SKIP: candor CLI not built"; exit 77; }
SRC=${CANDOR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODELS=${CANDOR_MODELS_DIR:-$SRC/models}
MODEL=$MODELS/fmnist_plain.onnx
RESULTS=$MODELS/fmnist_plain_results.json
DS=${CANDOR_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
for f in "$MODEL" "$RESULTS" "$DS/t10k-images-idx3-ubyte.gz" "$DS/t10k-labels-idx1-ubyte.gz"; do
  [ -f "$f" ] || { echo "SKIP: $f missing"; exit 77; }
done
/usr/bin/python3 -c 'import numpy' 2>/dev/null || { echo "SKIP: /usr/bin/python3 lacks numpy"; exit 77; }
WORK=${CANDOR_BINARY_DIR:-/tmp}/calibrate_ece_test
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
export MODEL DS RESULTS

# The test split as uint8 images (preprocessed by candor from the sidecar)
# and, for the independent pipeline, as NumPy-preprocessed float inputs.
/usr/bin/python3 - <<'PY' || fail "could not convert the dataset"
import gzip, json, os, numpy as np
def idx(p):
    b = gzip.open(p).read(); nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(b[4 + 4 * nd:], np.uint8).reshape(dims)
x = idx(os.environ["DS"] + "/t10k-images-idx3-ubyte.gz")
y = idx(os.environ["DS"] + "/t10k-labels-idx1-ubyte.gz").astype(np.int64)
assert x.shape == (10000, 28, 28) and y.shape == (10000,)
np.save("images.npy", x); np.save("labels.npy", y)
pp = json.load(open(os.environ["MODEL"][:-5] + ".candor.json"))["preprocess"]
xf = (x.astype(np.float32) / np.float32(pp["scale"]) - np.float32(pp["mean"][0])) / np.float32(pp["std"][0])
np.save("x.npy", xf[:, None])
PY
"$CLI" run "$MODEL" x.npy -o logits.npy > /dev/null 2> run.log || fail "candor run failed: $(cat run.log)"

for seed in 7 1 2; do
  extra=(--bootstrap 0 --conformal none)
  [ "$seed" = 7 ] && extra=(--bootstrap 200 --report report.html)
  "$CLI" calibrate "$MODEL" --data images.npy --labels labels.npy --split 0.5 \
    --method temperature --seed "$seed" "${extra[@]}" \
    -o "calib$seed.json" --json "report$seed.json" 2> "calibrate$seed.log" \
    || fail "calibrate (seed $seed) failed: $(tail -3 "calibrate$seed.log")"
  SEED=$seed /usr/bin/python3 - <<'PY' || fail "seed $seed: see above"
import json, os, numpy as np
seed = int(os.environ["SEED"])
rep = json.load(open("report%d.json" % seed)); T = json.load(open("calib%d.json" % seed))["temperature"]
splits = {s["name"]: s for s in rep["calibration"]["splits"]}
def metric(split, side, name):
    return next(m["value"] for m in splits[split][side]["metrics"] if m["name"] == name)
nb, na = metric("calibration", "before", "nll"), metric("calibration", "after", "nll")
eb, ea = metric("test", "before", "ece"), metric("test", "after", "ece")
print("seed %d: T = %.4f; calibration split (n=%d) NLL %.5f -> %.5f; test split (n=%d) ECE %.3f%% -> %.3f%%"
      % (seed, T, splits["calibration"]["n"], nb, na, splits["test"]["n"], 100 * eb, 100 * ea))
assert splits["calibration"]["n"] == 5000 and splits["test"]["n"] == 5000
assert na <= nb, "calibration raised the calibration-split NLL"
assert ea < eb, "test-split ECE did not fall"

# Independent recomputation from candor-run logits: the documented split
# (splitmix64 Fisher-Yates, docs/calibration.md), softmax, NLL, 15-bin ECE.
z = np.load("logits.npy").astype(np.float64); y = np.load("labels.npy"); n = len(y)
M = (1 << 64) - 1; state = seed
def nxt():
    global state
    state = (state + 0x9E3779B97F4A7C15) & M
    v = state
    v = ((v ^ (v >> 30)) * 0xBF58476D1CE4E5B9) & M
    v = ((v ^ (v >> 27)) * 0x94D049BB133111EB) & M
    return v ^ (v >> 31)
perm = list(range(n))
for i in range(n, 1, -1):
    j = nxt() % i
    perm[i - 1], perm[j] = perm[j], perm[i - 1]
cal, test = np.array(perm[:n // 2]), np.array(perm[n // 2:])
def sm(a): a = a - a.max(1, keepdims=True); e = np.exp(a); return e / e.sum(1, keepdims=True)
def nll(p, t): return -np.mean(np.log(np.maximum(p[np.arange(len(t)), t], 1e-12)))
def ece(p, t, B=15):
    c = p.max(1); ok = p.argmax(1) == t; b = np.clip(np.ceil(c * B).astype(int) - 1, 0, B - 1); e = 0.0
    for m in range(B):
        s = b == m
        if s.any(): e += s.sum() / len(t) * abs(ok[s].mean() - c[s].mean())
    return e
for got, ref in ((nb, nll(sm(z[cal]), y[cal])), (na, nll(sm(z[cal] / T), y[cal])),
                 (eb, ece(sm(z[test]), y[test])), (ea, ece(sm(z[test] / T), y[test]))):
    assert abs(got - ref) <= 1e-5, (got, ref)
if seed == 7:
    # candor's inference against the PyTorch model (training script's numbers).
    ref = json.load(open(os.environ["RESULTS"]))["uncalibrated"]
    acc, e_all = float((z.argmax(1) == y).mean()), ece(sm(z), y)
    print("all 10,000 images: accuracy %.4f (PyTorch %.4f), ECE %.3f%% (PyTorch %.3f%%)"
          % (acc, ref["accuracy"], 100 * e_all, 100 * ref["ece"]))
    assert abs(acc - ref["accuracy"]) <= 2e-4 and abs(e_all - ref["ece"]) <= 1e-4, (acc, e_all, ref)
PY
done

# The HTML report shows the before/after table and both reliability diagrams
# for both splits, with the numbers the JSON holds.
for id in before-after-0 before-after-1 reliability-0-before reliability-0-after \
          reliability-1-before reliability-1-after; do
  grep -q "id=\"$id\"" report.html || fail "report lacks #$id"
done
grep -q "Before and after calibration" report.html || fail "no before/after section"
/usr/bin/python3 - <<'PY' || fail "the HTML report's numbers differ from the JSON"
import json, re
html = open("report.html").read(); rep = json.load(open("report7.json"))
splits = {s["name"]: s for s in rep["calibration"]["splits"]}
for idx, split, name in ((0, "calibration", "nll"), (1, "test", "ece")):
    table = re.search(r'id="before-after-%d">(.*?)</table>' % idx, html, re.S).group(1)
    row = re.search(r"<code>%s</code></td><td>([0-9.]+).*?</td><td>([0-9.]+)" % name, table).groups()
    want = [splits[split][side]["metrics"] for side in ("before", "after")]
    want = [next(m["value"] for m in w if m["name"] == name) for w in want]
    assert all(abs(float(g) - w) <= 5.001e-5 for g, w in zip(row, want)), (split, name, row, want)
    print("HTML report, %s split %s: %s -> %s" % (split, name, row[0], row[1]))
PY
echo "PASS"
