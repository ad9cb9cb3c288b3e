#!/usr/bin/env bash
# candor calibrate on the bundled Fashion-MNIST calibration sample (issue 5,
# acceptance 4): the fitted temperature scaling never raises the
# calibration-split NLL (asserted); the test-split ECE before/after is shown
# in the report and printed, but not asserted (see the NOTE below).
# The numbers are checked against an independent NumPy/SciPy pipeline: images
# preprocessed in NumPy, logits from `candor run`, the same seeded split
# re-implemented, metrics and the temperature fitted in Python.
# Also: CSV/folder inputs agree with the .npy input, `predict --calibration`,
# and bad inputs fail clearly with no output file.
set -u
CLI=${CANDOR_CLI:-}
[ -x "$CLI" ] || { echo "SKIP: candor CLI not built"; exit 77; }
SRC=${CANDOR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODELS=${CANDOR_MODELS_DIR:-$SRC/models}
MODEL=$MODELS/fmnist_cnn.onnx
IMAGES=$MODELS/calib/fmnist_calib_images.npy
LABELS=$MODELS/calib/fmnist_calib_labels.npy
for f in "$MODEL" "$IMAGES" "$LABELS"; do
  [ -f "$f" ] || { echo "SKIP: $f missing (tools/train_fmnist.py makes it)"; exit 77; }
done
/usr/bin/python3 -c 'import numpy, scipy' 2>/dev/null || { echo "SKIP: numpy/scipy missing"; exit 77; }
WORK=${CANDOR_BINARY_DIR:-/tmp}/calibrate_cli_test
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
export MODEL IMAGES LABELS

# --- the bundled sample: temperature scaling, APS sets, abstention rule.
"$CLI" calibrate "$MODEL" --data "$IMAGES" --labels "$LABELS" --seed 7 --bootstrap 200 \
  --conformal aps --alpha 0.1 --abstain-target 0.1 --abstain-confidence 0.9 \
  -o calib.json --report report.html --json report.json 2> calibrate.log \
  || fail "calibrate failed: $(tail -3 calibrate.log)"
cat calibrate.log
grep -q "ran the model on 2000/2000" calibrate.log || fail "no progress on stderr"
[ -s calib.json ] && [ -s report.html ] && [ -s report.json ] || fail "outputs missing"
"$CLI" calibrate "$MODEL" --data "$IMAGES" --labels "$LABELS" -o calib.json 2> exists.err \
  && fail "overwrote calib.json without --force"
grep -q "force" exists.err || fail "no hint about --force: $(cat exists.err)"

# Logits from `candor run` on NumPy-preprocessed images (the sidecar's
# (x/255 - mean)/std), for the independent pipeline below.
/usr/bin/python3 - <<'PY' || fail "could not preprocess"
import json, os, numpy as np
side = json.load(open(os.environ["MODEL"][:-5] + ".candor.json"))
pp = side["preprocess"]
x = np.load(os.environ["IMAGES"]).astype(np.float32)
x = (x / np.float32(pp.get("scale", 255)) - np.float32(pp["mean"][0])) / np.float32(pp["std"][0])
np.save("x.npy", x[:, None, :, :].astype(np.float32))
PY
"$CLI" run "$MODEL" x.npy -o logits.npy > /dev/null || fail "candor run failed"

/usr/bin/python3 - <<'PY' || fail "calibrate differs from the independent pipeline"
import json, numpy as np
from scipy.optimize import minimize_scalar
z = np.load("logits.npy").astype(np.float64)
y = np.load(__import__("os").environ["LABELS"]).astype(np.int64)
n = len(y)
# splitmix64 Fisher-Yates, as documented in docs/calibration.md.
M = (1 << 64) - 1
state = 7
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
ncal = int(round(0.5 * n))
cal, test = np.array(perm[:ncal]), np.array(perm[ncal:])
def softmax(a):
    a = a - a.max(1, keepdims=True); e = np.exp(a); return e / e.sum(1, keepdims=True)
def nll(p, t): return -np.mean(np.log(np.maximum(p[np.arange(len(t)), t], 1e-12)))
def ece(p, t, M=15):
    c = p.max(1); ok = (p.argmax(1) == t).astype(float); e = 0.0
    b = np.clip(np.ceil(c * M).astype(int) - 1, 0, M - 1)
    for m in range(M):
        s = b == m
        if s.any(): e += s.sum() / len(t) * abs(ok[s].mean() - c[s].mean())
    return e
res = minimize_scalar(lambda lt: nll(softmax(z[cal] / np.exp(lt)), y[cal]),
                      bounds=(-3, 3), method="bounded", options={"xatol": 1e-10})
T = float(np.exp(res.x))
calib = json.load(open("calib.json")); rep = json.load(open("report.json"))
print("T: candor %.6f, scipy %.6f" % (calib["temperature"], T))
assert abs(calib["temperature"] - T) <= 1e-3 * T, (calib["temperature"], T)
splits = {s["name"]: s for s in rep["calibration"]["splits"]}
def metric(split, side, name):
    return next(m["value"] for m in splits[split][side]["metrics"] if m["name"] == name)
Tc = calib["temperature"]
want = {("calibration", "before"): softmax(z[cal]), ("calibration", "after"): softmax(z[cal] / Tc),
        ("test", "before"): softmax(z[test]), ("test", "after"): softmax(z[test] / Tc)}
for (split, side), p in want.items():
    t = y[cal] if split == "calibration" else y[test]
    for name, ref in (("nll", nll(p, t)), ("ece", ece(p, t)),
                      ("accuracy", float((p.argmax(1) == t).mean()))):
        got = metric(split, side, name)
        # float32 logits from two runs of the same engine: tiny differences only
        assert abs(got - ref) <= 1e-5, (split, side, name, got, ref)
nb, na = metric("calibration", "before", "nll"), metric("calibration", "after", "nll")
eb, ea = metric("test", "before", "ece"), metric("test", "after", "ece")
print("calibration-split NLL %.5f -> %.5f; test-split ECE %.5f -> %.5f" % (nb, na, eb, ea))
assert na <= nb, "calibration raised the calibration-split NLL"
# Test-split ECE: reported, not asserted. The bundled model is already well
# calibrated (ECE ~0.85% on 8,000 images) and a 1,000-row test split has ECE
# noise of the same size: over seeds 0-9 the test-split ECE fell in 5 of 10.
print("NOTE: test-split ECE %s after calibration (%.5f -> %.5f)" %
      ("fell" if ea < eb else "did NOT fall", eb, ea))
# Conformal on the test split: coverage near 1 - alpha (finite n = 1000:
# allow 3 binomial standard deviations), histogram sums to n.
c = rep["conformal"]
assert c["n_eval"] == len(test) and sum(c["set_size_histogram"]) == len(test)
assert abs(c["empirical_coverage"] - 0.9) <= 3 * (0.09 / len(test)) ** 0.5 + 1 / (ncal + 1), c
a = rep["abstention"]
assert a["evaluation"]["n"] == len(test) and 0 <= a["evaluation"]["coverage"] <= 1
assert rep["data"]["sha256"] == calib["provenance"]["data_sha256"]
print("calibrate matches the independent pipeline")
PY

# On the 8,000 Fashion-MNIST test images outside the calibration sample
# (when the Debian dataset is installed): candor's uncalibrated ECE equals
# the PyTorch figure in models/train_results.json, and the effect of the
# fitted temperature on ECE is printed (informational, see above).
DS=/usr/share/datasets/fashion-mnist
if [ -f "$DS/t10k-images-idx3-ubyte.gz" ] && [ -f "$MODELS/calib/fmnist_calib_index.npy" ] \
   && [ -f "$MODELS/train_results.json" ]; then
  export DS MODELS
  /usr/bin/python3 - <<'PY' || fail "could not build the evaluation set"
import gzip, json, os, numpy as np
def idx(p):
    b = gzip.open(p).read(); nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(b[4 + 4 * nd:], np.uint8).reshape(dims)
x = idx(os.environ["DS"] + "/t10k-images-idx3-ubyte.gz"); y = idx(os.environ["DS"] + "/t10k-labels-idx1-ubyte.gz")
keep = np.ones(len(y), bool); keep[np.load(os.environ["MODELS"] + "/calib/fmnist_calib_index.npy")] = False
pp = json.load(open(os.environ["MODEL"][:-5] + ".candor.json"))["preprocess"]
xe = ((x[keep].astype(np.float32) / np.float32(pp.get("scale", 255)) - np.float32(pp["mean"][0])) / np.float32(pp["std"][0]))
np.save("eval_x.npy", xe[:, None].astype(np.float32)); np.save("eval_y.npy", y[keep].astype(np.int64))
PY
  "$CLI" run "$MODEL" eval_x.npy -o eval_logits.npy > /dev/null || fail "candor run on the evaluation set"
  /usr/bin/python3 - <<'PY' || fail "evaluation-set ECE differs from the PyTorch reference"
import json, os, numpy as np
z = np.load("eval_logits.npy").astype(np.float64); y = np.load("eval_y.npy")
T = json.load(open("calib.json"))["temperature"]
ref = json.load(open(os.environ["MODELS"] + "/train_results.json"))["results"]["fmnist_cnn"]
def sm(a): a = a - a.max(1, keepdims=True); e = np.exp(a); return e / e.sum(1, keepdims=True)
def ece(p, t, M=15):
    c = p.max(1); ok = p.argmax(1) == t; b = np.clip(np.ceil(c * M).astype(int) - 1, 0, M - 1); e = 0.0
    for m in range(M):
        s = b == m
        if s.any(): e += s.sum() / len(t) * abs(ok[s].mean() - c[s].mean())
    return e
e0, e1 = ece(sm(z), y), ece(sm(z / T), y)
assert abs(e0 - ref["ece"]) < 1e-4, (e0, ref["ece"])
print("evaluation set (%d images): uncalibrated ECE %.5f (PyTorch %.5f); with T = %.4f: %.5f (%s)"
      % (len(y), e0, ref["ece"], T, e1, "lower" if e1 < e0 else "NOT lower"))
PY
fi

# The report shows both numbers, before and after, for both splits.
for id in before-after-0 before-after-1 reliability-0-before reliability-0-after \
          reliability-1-before reliability-1-after set-size-histogram conformal abstention; do
  grep -q "id=\"$id\"" report.html || fail "report lacks #$id"
done
grep -q "Before and after calibration" report.html || fail "no before/after section"

# --- the same rows as PNG files listed in a CSV (same order => same split):
# identical metrics show uint8 arrays are preprocessed as image files are.
/usr/bin/python3 - <<'PY' || fail "could not write PNGs"
import numpy as np, os, zlib, struct
x = np.load(os.environ["IMAGES"]); y = np.load(os.environ["LABELS"])
os.makedirs("png", exist_ok=True)
def png(path, a):
    raw = b"".join(b"\x00" + a[r].tobytes() for r in range(a.shape[0]))
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    hdr = struct.pack(">IIBBBBB", a.shape[1], a.shape[0], 8, 0, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", hdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
with open("data.csv", "w") as f:
    f.write("path,label\n")
    for i in range(len(y)):
        png("png/%04d.png" % i, x[i]); f.write("png/%04d.png,%d\n" % (i, y[i]))
PY
"$CLI" calibrate "$MODEL" --data data.csv --seed 7 --bootstrap 0 --conformal none \
  -o calib_csv.json --json report_csv.json 2> csv.log || fail "CSV input failed: $(tail -2 csv.log)"
/usr/bin/python3 - <<'PY' || fail "CSV and .npy inputs disagree"
import json
a = json.load(open("calib.json")); b = json.load(open("calib_csv.json"))
assert abs(a["temperature"] - b["temperature"]) <= 1e-6 * a["temperature"], (a["temperature"], b["temperature"])
print("CSV of PNGs gives the same temperature as the .npy array")
PY

# --- an "ensemble" of the model with itself: the mean of identical softmax
# rows is the softmax, whose log is the logits up to a per-row constant, so
# the probabilities-based fit must find the same temperature (and say that
# it fitted on probabilities).
"$CLI" calibrate "$MODEL" --data "$IMAGES" --labels "$LABELS" --seed 7 --bootstrap 0 \
  --conformal none --ensemble "$MODEL" -o calib_ens.json 2> ens.log \
  || fail "ensemble calibrate failed: $(tail -2 ens.log)"
grep -q "warning: calibrating the mean" ens.log || fail "no probabilities warning on stderr"
/usr/bin/python3 - <<'PY' || fail "ensemble-of-one temperature differs"
import json
a = json.load(open("calib.json")); b = json.load(open("calib_ens.json"))
assert b["input"] == "probabilities" and "log-probabilities" in b["warning"], b
assert abs(a["temperature"] - b["temperature"]) <= 1e-4 * a["temperature"], (a["temperature"], b["temperature"])
print("ensemble of the model with itself: same temperature, flagged as probabilities-based")
PY

# --- a class-folder dataset (small): names matched to the sidecar labels.
/usr/bin/python3 - <<'PY' || fail "could not build the folder dataset"
import json, os, shutil
side = json.load(open(os.environ["MODEL"][:-5] + ".candor.json"))
labels = side["labels"]
rows = [l.strip().split(",") for l in open("data.csv")][1:]
for p, y in rows[:300]:
    d = os.path.join("folder", labels[int(y)].replace("/", "_"))
    os.makedirs(d, exist_ok=True); shutil.copy(p, d)
PY
"$CLI" calibrate "$MODEL" --data folder --bootstrap 0 -o calib_folder.json 2> folder.log \
  || fail "folder input failed: $(tail -2 folder.log)"
grep -q "sorted subfolder names\|matched to the sidecar labels" folder.log || fail "folder mapping not reported"

# --- predict --calibration: calibrated output, prediction set, decision.
"$CLI" predict "$MODEL" png/0000.png png/0001.png --calibration calib.json > pred.txt \
  || fail "predict --calibration failed"
grep -q "prediction set (90% coverage)" pred.txt || fail "no prediction set: $(cat pred.txt)"
grep -q "decision: " pred.txt || fail "no decision: $(cat pred.txt)"
"$CLI" predict "$MODEL" png/0000.png --calibration calib.json --alpha 0.5 --json > pred.json \
  || fail "predict --json --calibration failed"
/usr/bin/python3 - <<'PY' || fail "predict JSON"
import json
r = json.load(open("pred.json"))[0]
assert r["alpha"] == 0.5 and len(r["prediction_set"]) >= 0 and r["decision"] in ("predict", "abstain - refer")
assert abs(sum(r["probabilities"]) - 1) < 1e-4
PY

# --- candor report --calibration: a CSV of the logits, the fitted map applied.
/usr/bin/python3 -c "
import numpy as np, os
z = np.load('logits.npy'); y = np.load(os.environ['LABELS'])
with open('logits.csv', 'w') as f:
    f.write(','.join('c%d' % i for i in range(z.shape[1])) + ',label\n')
    for r, l in zip(z, y): f.write(','.join(repr(float(v)) for v in r) + ',%d\n' % l)"
"$CLI" report --predictions logits.csv --logits --calibration calib.json --bootstrap 20 \
  -o report_cal.html --json report_cal.json || fail "report --calibration failed"
grep -q 'id="before-after-0"' report_cal.html || fail "report --calibration: no before/after table"
/usr/bin/python3 - <<'PY' || fail "report --calibration numbers"
import json, numpy as np, os
z = np.load("logits.npy").astype(np.float64); y = np.load(os.environ["LABELS"])
T = json.load(open("calib.json"))["temperature"]; r = json.load(open("report_cal.json"))
def nll(zz):
    zz = zz - zz.max(1, keepdims=True); lp = zz - np.log(np.exp(zz).sum(1, keepdims=True))
    return -lp[np.arange(len(y)), y].mean()
s = r["calibration"]["splits"][0]
got = {side: next(m["value"] for m in s[side]["metrics"] if m["name"] == "nll") for side in ("before", "after")}
assert abs(got["before"] - nll(z)) < 1e-6 and abs(got["after"] - nll(z / T)) < 1e-6, got
assert r["conformal"]["n_eval"] == len(y)
PY
"$CLI" report --predictions logits.csv --calibration calib.json -o nolog.html 2> /dev/null \
  && fail "report --calibration accepted logits read as probabilities"
[ -e nolog.html ] && fail "report wrote output on error"

# --- bad inputs: clear error, non-zero exit, no output file.
bad() { # name expected-substring args...
  local name=$1 want=$2; shift 2
  if "$CLI" calibrate "$MODEL" "$@" -o "$name.json" --report "$name.html" 2> "$name.err"; then
    fail "$name: accepted"
  fi
  grep -qi -- "$want" "$name.err" || fail "$name: message lacks '$want': $(cat "$name.err")"
  [ -e "$name.json" ] || [ -e "$name.html" ] && fail "$name: output file written"
  ls "$name".*.tmp.* 2>/dev/null && fail "$name: temp file left"
  echo "ok: $name -> $(cat "$name.err")"
}
/usr/bin/python3 -c "
import numpy as np, os
y = np.load(os.environ['LABELS'])
np.save('labels_range.npy', np.where(np.arange(len(y)) == 17, 10, y).astype(np.int64))
np.save('labels_short.npy', y[:-1])"
printf 'png/0000.png,3\npng/0001.png,12\n' > range.csv
printf 'png/0000.png,3\nno_such.png,1\n' > missing.csv
printf '' > empty.csv
mkdir -p emptydir/a emptydir/b
bad no_labels "labels" --data "$IMAGES"
bad label_range "row 17" --data "$IMAGES" --labels labels_range.npy
bad label_count "labels" --data "$IMAGES" --labels labels_short.npy
bad csv_range "line 2" --data range.csv
bad csv_missing "line 2" --data missing.csv
bad empty_csv "no data rows" --data empty.csv
bad empty_folder "no images" --data emptydir
bad no_data "cannot read" --data does_not_exist
bad bad_split "split" --data "$IMAGES" --labels "$LABELS" --split 1.5
bad bad_method "method" --data "$IMAGES" --labels "$LABELS" --method banana
echo "PASS"
