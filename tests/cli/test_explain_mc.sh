#!/usr/bin/env bash
# Uncertainty-aware explanations and the randomisation sanity check, end to
# end on the parity fixtures (U-Net 64x64 with a declared site in the
# decoder; resnet18 224x224 with a declared site on layer4's output).
#
# For each model, `candor explain --mc T --dropout SITE:P --samples S.npy -o D`
# must give:
#  - mean/std maps equal to NumPy's mean/std (divisor S) of the saved
#    per-sample gradients;
#  - the predictive entropy and MI in the JSON equal to NumPy's, computed
#    from `candor predict --mc T --samples` (the MC engine's own sampled
#    probabilities with the same seed and site, i.e. the same masks);
#  - an entropy saliency that is the gradient of that H[mean p]: central
#    differences of predict's samples along the saliency direction (whole
#    image and left half only) equal the directional derivative within 5%.
#    (The per-sample maps against finite differences of each sample's score,
#    and the MI saliency, are checked on a tiny model in tests/test_explain.c.)
# Then the sanity check: `--sanity --sanity-layers 2` stores a Spearman rank
# correlation equal to scipy's on the saved original and randomised maps.
# Exit 77 (skip) when /usr/bin/python3 lacks torch, torchvision, onnx, numpy.
set -u
PY=/usr/bin/python3
SRC=${CANDOR_SOURCE_DIR:?CANDOR_SOURCE_DIR not set}
BIN=${CANDOR_BINARY_DIR:?CANDOR_BINARY_DIR not set}
CLI=${CANDOR_CLI:?CANDOR_CLI not set}
GEN="$SRC/tools/make_parity_fixtures.py"
DIR="$BIN/parity"
if ! [ -x "$PY" ] || ! "$PY" -c 'import torch, torchvision, onnx, numpy, scipy' 2>/dev/null; then
  echo "SKIP: $PY lacks torch/torchvision/onnx/numpy/scipy"; exit 77
fi
. "$SRC/tests/cli/explain_fixtures.inc"
ensure_fixtures || exit 1

OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
fail=0

# mc_case NAME T SITE REGION_ARGS...: explain + predict + NumPy checks.
mc_case() {
  local name=$1 T=$2 site=$3; shift 3
  local m="$DIR/$name.onnx" x="$DIR/$name.input.npy" d="$OUT/$name"
  mkdir -p "$d"
  if ! "$CLI" explain "$m" "$x" --method gradient --mc "$T" --dropout "$site" --seed 3 \
       --samples "$d/samples.npy" -o "$d" "$@" --threads 2 >"$d/log" 2>&1; then
    echo "FAIL $name: candor explain --mc exited non-zero:"; tail -3 "$d/log"
    fail=$((fail + 1)); return
  fi
  # Directions: the entropy saliency, and its left half, each of unit norm.
  "$PY" - "$d" "$x" <<'PYEOF'
import sys, numpy as np
d, xp = sys.argv[1], sys.argv[2]
x, e = np.load(xp).astype(np.float64), np.load(d + "/" + xp.split("/")[-1][:-4] + ".entropy_saliency.npy").astype(np.float64)
half = e.copy(); half[..., e.shape[-1] // 2:] = 0
h = 0.05
for k, v in enumerate([e, half]):
    v = v / np.linalg.norm(v)
    np.save("%s/dir%d.npy" % (d, k), v)
    np.save("%s/xp%d.npy" % (d, k), (x + h * v).astype(np.float32))
    np.save("%s/xm%d.npy" % (d, k), (x - h * v).astype(np.float32))
PYEOF
  local k
  for f in "$x" "$d/xp0.npy" "$d/xm0.npy" "$d/xp1.npy" "$d/xm1.npy"; do
    k=$(basename "$f" .npy)
    if ! "$CLI" predict "$m" "$f" --mc "$T" --dropout "$site" --seed 3 --samples "$d/p_$k.npy" \
         --threads 2 >"$d/plog" 2>&1; then
      echo "FAIL $name: candor predict --mc on $k:"; tail -3 "$d/plog"; fail=$((fail + 1)); return
    fi
  done
  if "$PY" - "$d" "$name" "$x" "$@" <<'PYEOF'
import sys, json, numpy as np
d, name, xp = sys.argv[1:4]
stem = xp.split("/")[-1][:-4]
region = None
if "--region" in sys.argv:
    r = sys.argv[sys.argv.index("--region") + 1]
    region = tuple(slice(*map(int, a.split(":"))) for a in r.split(","))
ok = True
S = np.load(d + "/samples.npy").astype(np.float64)
mean, std = np.load(d + "/%s.gradient.mean.npy" % stem), np.load(d + "/%s.gradient.std.npy" % stem)
em = np.abs(mean[0] - S.mean(0)).max() / np.abs(S).max()
es = np.abs(std[0] - S.std(0)).max() / max(S.std(0).max(), 1e-30)
print("     %s: %d samples; mean map vs NumPy %.2g, std map vs NumPy %.2g (relative)" % (name, S.shape[0], em, es))
ok &= em <= 1e-6 and es <= 1e-5 and S.std(0).max() > 0

def H(p):  # p: (S, C, ...) probabilities -> sum over region of H[mean p], MI
    p = p.astype(np.float64)
    pb = p.mean(0)
    ent = lambda q: -(np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0)).sum(0)
    hp, eh = ent(pb), np.mean([ent(q) for q in p], 0)
    if region is not None:
        hp, eh = hp[region], eh[region]
    return float(np.sum(hp)), float(np.sum(hp) - np.sum(eh))
j = json.load(open(d + "/%s.gradient.json" % stem))["uncertainty"]
h0, mi0 = H(np.load(d + "/p_%s.npy" % stem)[0])
dh = abs(j["predictive_entropy"] - h0) / max(abs(h0), 1e-12)
dmi = abs(j["mutual_information"] - mi0) / max(abs(mi0), 1e-12)
print("     %s: H[mean p] %.6g vs NumPy %.6g, MI %.4g vs %.4g" % (name, j["predictive_entropy"], h0, j["mutual_information"], mi0))
ok &= dh <= 1e-4 and (dmi <= 1e-3 or abs(j["mutual_information"] - mi0) < 1e-6)
e = np.load(d + "/%s.entropy_saliency.npy" % stem).astype(np.float64)
for k in range(2):
    v = np.load(d + "/dir%d.npy" % k)
    fd = (H(np.load(d + "/p_xp%d.npy" % k)[0])[0] - H(np.load(d + "/p_xm%d.npy" % k)[0])[0]) / (2 * 0.05)
    an = float((e * v).sum())
    rel = abs(fd - an) / abs(an)
    print("     %s: entropy saliency along direction %d: %.6g, central difference %.6g (rel %.2g)" % (name, k, an, fd, rel))
    ok &= rel <= 0.05
print(("ok   " if ok else "FAIL ") + name + " MC explanation")
sys.exit(0 if ok else 1)
PYEOF
  then :; else fail=$((fail + 1)); fi
}

mc_case unet 4 /dec2/dec2.2/Relu_output_0:0.3 --target 1 --region 16:48,16:48
mc_case resnet18 2 /layer4/layer4.1/relu_1/Relu_output_0:0.2

# Sanity check on the U-Net: Spearman vs scipy on the saved maps.
d="$OUT/sanity"; mkdir -p "$d"
if "$CLI" explain "$DIR/unet.onnx" "$DIR/unet.input.npy" --method gradient --target 1 \
     --region 16:48,16:48 --sanity --sanity-layers 2 --seed 4 -o "$d" >"$d/log" 2>&1 &&
   grep -q "Spearman" "$d/log" &&
   "$PY" - "$d" <<'PYEOF'
import sys, json, numpy as np
from scipy.stats import spearmanr
d = sys.argv[1]
a, b = np.load(d + "/unet.input.gradient.npy"), np.load(d + "/unet.input.gradient.randomised.npy")
j = json.load(open(d + "/unet.input.gradient.json"))["sanity"]
rho = spearmanr(np.abs(a[0]).sum(0).ravel(), np.abs(b[0]).sum(0).ravel()).correlation
ok = abs(rho - j["spearman"]) < 1e-6 and j["randomised_layers"] == 2 and j["nodes"].count(",") == 1
print("%s sanity check: Spearman %.6f vs scipy %.6f, nodes %s" % ("ok  " if ok else "FAIL", j["spearman"], rho, j["nodes"]))
sys.exit(0 if ok else 1)
PYEOF
then :; else echo "FAIL sanity check:"; tail -3 "$d/log"; fail=$((fail + 1)); fi

# Bad input: one-line messages, non-zero exit.
for args in "--dropout /dec2/dec2.2/Relu_output_0:0.3" "--mc 3" "--mc 2 --dropout nosuch:0.2" \
            "--samples $OUT/s.npy" "--mc 2 --dropout /dec2/dec2.2/Relu_output_0:1.5"; do
  # shellcheck disable=SC2086
  if "$CLI" explain "$DIR/unet.onnx" "$DIR/unet.input.npy" --target 1 $args --npy "$OUT/b.npy" \
       >"$OUT/blog" 2>&1; then
    echo "FAIL bad input '$args' accepted"; fail=$((fail + 1))
  else
    echo "ok   bad input '$args': $(head -1 "$OUT/blog" | cut -c1-110)"
  fi
done
echo "explain MC: $fail failed"
[ "$fail" -eq 0 ]
