#!/usr/bin/env bash
# `candor robustness` on the bundled Fashion-MNIST CNN and calibration sample:
#  - clean inputs equal NumPy's preprocessing of the uint8 images;
#  - FGSM images equal a PyTorch FGSM (tools/fgsm_reference.py: the ONNX graph
#    rebuilt in torch, float64 autograd) on >= 99.9% of pixels, with the same
#    gradient sign on >= 99.9% (issue 9, acceptance 5);
#  - the reported accuracies and detection AUROCs equal the reference model's
#    accuracies and scikit-learn's roc_auc_score on the same inputs;
#  - PGD stays in the eps ball and the valid range and is at least as strong
#    as FGSM; --mc adds MC entropy/MI detection; usage errors and --help.
# Exit 77 (skip) when /usr/bin/python3 lacks torch, onnx, numpy or sklearn.
set -u
PY=/usr/bin/python3
SRC=${CANDOR_SOURCE_DIR:?}; CLI=${CANDOR_CLI:?}
if ! "$PY" -c 'import torch, onnx, numpy, sklearn' 2>/dev/null; then
  echo "SKIP: $PY lacks torch/onnx/numpy/sklearn"; exit 77; fi
M="$SRC/models/fmnist_cnn.onnx"
D="$SRC/models/calib/fmnist_calib_images.npy"; Y="$SRC/models/calib/fmnist_calib_labels.npy"
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
N=400; EPS=0.1

if "$CLI" robustness "$M" --data "$D" --labels "$Y" --attack fgsm --eps $EPS --limit $N \
     --save-arrays --examples 2 -o "$OUT/fgsm" >"$OUT/table" 2>"$OUT/err"; then
  ok "fgsm runs"; else bad "fgsm: $(tail -2 "$OUT/err")"; fi
grep -q "rows attacked" "$OUT/err" && ok "progress on stderr" || bad "no progress on stderr"
grep -q "accuracy attacked" "$OUT/table" && ok "table on stdout" || bad "no table"
for f in example_0.clean.png example_0.adv.png example_0.adv.saliency.png example_1.clean.saliency.png; do
  [ -s "$OUT/fgsm/$f" ] || bad "missing $f"
done

LO=$("$PY" -c "import json; print(repr(json.load(open('$OUT/fgsm/robustness.json'))['attack']['clip']['lo']))")
HI=$("$PY" -c "import json; print(repr(json.load(open('$OUT/fgsm/robustness.json'))['attack']['clip']['hi']))")
"$PY" "$SRC/tools/fgsm_reference.py" "$M" "$OUT/fgsm/clean.npy" "$Y" --eps $EPS --lo "$LO" --hi "$HI" \
  --out "$OUT/ref_adv.npy" --compare "$OUT/fgsm/adversarial.npy" --min-agreement 0.999 \
  && ok "FGSM == PyTorch FGSM (>= 99.9% of pixels)" || bad "FGSM differs from the PyTorch reference"

"$PY" - "$SRC" "$OUT" $N $EPS <<'EOF' || fail=$((fail + 1))
import json, sys
import numpy as np, torch
from sklearn.metrics import roc_auc_score
sys.path.insert(0, f"{sys.argv[1]}/tools")
import onnx
from fgsm_reference import run_graph
src, out, n, eps = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
bad = 0
def check(cond, what):
    global bad
    print(("ok   " if cond else "FAIL ") + what)
    bad += 0 if cond else 1
img = np.load(f"{src}/models/calib/fmnist_calib_images.npy")[:n].astype(np.float32)
y = np.load(f"{src}/models/calib/fmnist_calib_labels.npy")[:n]
x = ((img / np.float32(255) - np.float32(0.286)) / np.float32(0.353))[:, None]
clean = np.load(f"{out}/fgsm/clean.npy"); adv = np.load(f"{out}/fgsm/adversarial.npy")
check(np.abs(clean - x).max() < 1e-6, "clean inputs == NumPy preprocessing")
js = json.load(open(f"{out}/fgsm/robustness.json"))
lo, hi = js["attack"]["clip"]["lo"], js["attack"]["clip"]["hi"]
check(abs(lo - (-0.286 / 0.353)) < 1e-6 and abs(hi - (1 - 0.286) / 0.353) < 1e-6, "clip range from the sidecar")
check(np.abs(adv - clean).max() <= eps + 1e-6 and adv.min() >= lo - 1e-6 and adv.max() <= hi + 1e-6,
      "adversarial within eps and the valid range")
m = onnx.load(f"{src}/models/fmnist_cnn.onnx")
with torch.no_grad():
    pc = torch.softmax(run_graph(m, torch.from_numpy(clean.astype(np.float64))), 1).numpy()
    pa = torch.softmax(run_graph(m, torch.from_numpy(adv.astype(np.float64))), 1).numpy()
acc = js["accuracy"]
check(abs(acc["clean"] - (pc.argmax(1) == y).mean()) < 1e-9, f"clean accuracy {acc['clean']}")
check(abs(acc["attacked"] - (pa.argmax(1) == y).mean()) < 1e-9, f"attacked accuracy {acc['attacked']}")
lab = np.r_[np.zeros(n), np.ones(n)]
ent = lambda p: -(p * np.log(np.clip(p, 1e-300, 1))).sum(1)
ref = {"confidence": roc_auc_score(lab, np.r_[1 - pc.max(1), 1 - pa.max(1)]),
       "entropy": roc_auc_score(lab, np.r_[ent(pc), ent(pa)])}
for s in js["detection"]["scores"]:
    r = ref[s["score"]]
    check(abs(s["auroc_all"] - r) < 2e-3, f"AUROC {s['score']}: candor {s['auroc_all']:.4f} sklearn {r:.4f}")
ok = (pc.argmax(1) == y); succ = ok & (pa.argmax(1) != y)
r = roc_auc_score(np.r_[np.zeros(ok.sum()), np.ones(succ.sum())], np.r_[ent(pc)[ok], ent(pa)[succ]])
s = [s for s in js["detection"]["scores"] if s["score"] == "entropy"][0]
check(abs(s["auroc_successful"] - r) < 2e-3, f"AUROC entropy, successful attacks: {s['auroc_successful']:.4f} vs {r:.4f}")
sys.exit(1 if bad else 0)
EOF

# PGD on fewer rows, with MC dropout detection.
if "$CLI" robustness "$M" --data "$D" --labels "$Y" --attack pgd --eps $EPS --steps 5 --limit 64 \
     --mc 4 --examples 0 --json -o "$OUT/pgd" >"$OUT/pgd.json" 2>"$OUT/err"; then
  ok "pgd --mc runs"; else bad "pgd: $(tail -2 "$OUT/err")"; fi
"$CLI" robustness "$M" --data "$D" --labels "$Y" --attack fgsm --eps $EPS --limit 64 --examples 0 \
  --json -o "$OUT/fgsm64" >"$OUT/fgsm64.json" 2>/dev/null
"$PY" - "$OUT" $EPS <<'EOF' || fail=$((fail + 1))
import json, sys
out, eps = sys.argv[1], float(sys.argv[2])
p = json.load(open(f"{out}/pgd.json")); f = json.load(open(f"{out}/fgsm64.json"))
bad = 0
def check(cond, what):
    global bad
    print(("ok   " if cond else "FAIL ") + what)
    bad += 0 if cond else 1
check(p["attack"]["max_linf_measured"] <= eps + 1e-6, f"PGD L-inf {p['attack']['max_linf_measured']} <= eps")
check(p["accuracy"]["attacked"] <= f["accuracy"]["attacked"],
      f"PGD accuracy {p['accuracy']['attacked']} <= FGSM {f['accuracy']['attacked']}")
names = [s["score"] for s in p["detection"]["scores"]]
check(names == ["confidence", "entropy", "mc_confidence", "mc_entropy", "mc_mutual_information"], f"scores {names}")
check(all(0 <= s["auroc_all"] <= 1 for s in p["detection"]["scores"]), "AUROCs in [0, 1]")
check("mc_attacked" in p["accuracy"] and p["mc"]["samples"] == 4, "MC accuracy reported")
sys.exit(1 if bad else 0)
EOF

"$CLI" robustness "$M" --data "$D" --labels "$Y" -o "$OUT/x" >"$OUT/log" 2>&1
[ $? -eq 2 ] && grep -q "needs --eps" "$OUT/log" && ok "missing --eps: usage error" || bad "missing --eps"
"$CLI" robustness "$M" --data "$D" --labels "$Y" --eps 0.1 --attack magic -o "$OUT/x" >"$OUT/log" 2>&1
[ $? -eq 2 ] && ok "unknown attack: usage error" || bad "unknown attack"
"$CLI" robustness --help | grep -q "usage: candor robustness" && ok "help" || bad "help"
echo "robustness: $fail failed"
[ $fail -eq 0 ]
