#!/usr/bin/env bash
# `candor predict --mc` end to end (issue 4):
#  - summaries in --json and --csv equal a NumPy recomputation from the raw
#    samples saved with --samples (acceptance 3), and entropy = expected
#    entropy + MI;
#  - --threads 1 and 2 give bit-identical samples and summaries, inputs
#    alone or in a batch give bit-identical samples (acceptance 2);
#  - an ensemble of one model twice without --mc has MI = 0 and the single
#    model's probabilities;
#  - bad input: T = 0, p outside [0, 1), a site naming no tensor, ensemble
#    members with different shapes => one-line error, non-zero exit
#    (acceptance 6).
# Uses the squeezenet1_1 and unet parity fixtures (tests/cli/mc_fixtures.bash).
# Environment: CANDOR_SOURCE_DIR, CANDOR_BINARY_DIR, CANDOR_CLI (set by ctest).
set -u
PY=/usr/bin/python3
SRC=${CANDOR_SOURCE_DIR:?}
BIN=${CANDOR_BINARY_DIR:?}
CLI=${CANDOR_CLI:?}
. "$SRC/tests/cli/mc_fixtures.bash"
mc_fixtures squeezenet1_1,unet

W="$BIN/mc_cli_test"
rm -rf "$W" && mkdir -p "$W/in"
M="$FIX/squeezenet1_1.onnx"
SITE=/features/features.12/Concat_output_0
cp "$FIX/squeezenet1_1.input.npy" "$W/in/a.npy"
"$PY" -c 'import numpy as np, sys; x = np.load(sys.argv[1]); np.save(sys.argv[2], (0.5 * x + np.random.default_rng(1).normal(0, 1, x.shape)).astype(np.float32))' \
  "$W/in/a.npy" "$W/in/b.npy" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

mc() { "$CLI" predict "$M" "$W/in" --mc 24 --seed 5 --dropout "$SITE:0.3" "$@"; }
mc --threads 2 --samples "$W/s2.npy" --json --csv "$W/s2.csv" --level 0.9 >"$W/s2.json" 2>"$W/e2.txt" ||
  { cat "$W/e2.txt"; fail "predict --mc --json exited non-zero"; }
mc --threads 1 --samples "$W/s1.npy" --json --csv "$W/s1.csv" --level 0.9 >"$W/s1.json" 2>"$W/e1.txt" ||
  { cat "$W/e1.txt"; fail "predict --mc --threads 1 exited non-zero"; }
# Thread counts. The masks depend only on (seed, sample, site, element), so
# the dropped elements must be exactly the same with 1 and 2 threads: a site
# on the raw output, summarized as regression, shows them as exact zeros.
# The values must be bit-identical too: candor blocks every GEMM by shape
# alone and runs the blocks on its own pool over single-threaded OpenBLAS
# (core/parallel.h), so the thread count never changes the arithmetic.
for t in 1 2; do
  "$CLI" predict "$M" "$W/in" --mc 8 --seed 5 --dropout output:0.3 --regression --threads $t \
    --samples "$W/raw$t.npy" >/dev/null 2>&1 || fail "raw-output site, --threads $t"
done
"$PY" - "$W" <<'PYEOF' || fails=$((fails + 1))
import json, os, sys
import numpy as np
w = sys.argv[1]
a, b = (np.load(os.path.join(w, "raw%d.npy" % t)) for t in (1, 2))
ok = a.shape == b.shape == (2, 8, 1000) and ((a == 0) == (b == 0)).all()
print(("ok   " if ok else "FAIL ") + "--threads 1 and 2: identical dropout masks")
j1, j2 = (json.load(open(os.path.join(w, "s%d.json" % t))) for t in (1, 2))
s1, s2 = (np.load(os.path.join(w, "s%d.npy" % t)) for t in (1, 2))
close = bool((s1 == s2).all()) and j1 == j2 and (a == b).all()
print(("ok   " if close else "FAIL ") + "--threads 1 and 2: bit-identical samples and summaries")
sys.exit(0 if ok and close else 1)
PYEOF
# Batch composition: input a alone gives bit-identically the row it has in
# the folder run (rows are independent examples).
mc --threads 2 --samples "$W/alone.npy" "$W/in/a.npy" >/dev/null 2>&1 || fail "single input run"
"$PY" -c 'import numpy as np, sys; a = np.load(sys.argv[1]); b = np.load(sys.argv[2]); sys.exit(0 if (a[0] == b[0]).all() else 1)' \
  "$W/alone.npy" "$W/s2.npy" && echo "ok   input alone vs in a batch of two: bit-identical samples" ||
  fail "input alone vs in a batch of two differ"
mc --threads 2 >"$W/human.txt" 2>&1 || fail "human output exited non-zero"
grep -q "confidence:" "$W/human.txt" && grep -q "interval" "$W/human.txt" ||
  fail "human output lacks the interval / confidence line"

"$PY" - "$W" <<'PYEOF' || fails=$((fails + 1))
import csv, json, os, sys
import numpy as np
w = sys.argv[1]
s = np.load(os.path.join(w, "s2.npy")).astype(np.float64)
js = json.load(open(os.path.join(w, "s2.json")))
rows = list(csv.DictReader(open(os.path.join(w, "s2.csv"))))
bad = []
def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok: bad.append(what)
def close(a, b, what, tol=1e-6):
    err = float(np.max(np.abs(np.asarray(a, np.float64) - b)))
    check(err <= tol, "%s (max|diff| %.2g)" % (what, err))
check(s.shape == (2, 24, 1000), "samples shape %s == (2 inputs, 24, 1000)" % (s.shape,))
check(len(js) == 2 and len(rows) == 2, "two JSON objects and two CSV rows")
H = lambda p: -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=-1)
for i, (j, r) in enumerate(zip(js, rows)):
    p = s[i]
    m = p.mean(0)
    top = int(m.argmax())
    votes = np.bincount(p.argmax(1), minlength=1000)
    ref = {"mean": m, "std": p.std(0), "lower": np.percentile(p, 5, axis=0),
           "upper": np.percentile(p, 95, axis=0)}
    for k, v in ref.items():
        close(j[k], v, "input %d %s" % (i, k))
    h, eh = H(m), H(p).mean()
    close(j["predictive_entropy"], h, "input %d predictive entropy" % i)
    close(j["expected_entropy"], eh, "input %d expected entropy" % i)
    close(j["mutual_information"], max(h - eh, 0), "input %d mutual information" % i)
    close(j["predictive_entropy"], j["expected_entropy"] + j["mutual_information"],
          "input %d entropy = expected + MI" % i)
    close(j["variation_ratio"], 1 - votes.max() / 24, "input %d variation ratio" % i)
    close(j["agreement"], votes[top] / 24, "input %d agreement" % i)
    check(j["top_class"] == top and int(r["top_class"]) == top, "input %d top class" % i)
    check(j["samples"] == 24 and j["level"] == 0.9, "input %d samples/level recorded" % i)
    for k, v in (("mean_probability", m[top]), ("lower", ref["lower"][top]),
                 ("upper", ref["upper"][top]), ("entropy", h),
                 ("mutual_information", max(h - eh, 0))):
        close(float(r[k]), v, "input %d CSV %s" % (i, k))
check(float(np.max([j["mutual_information"] for j in js])) > 1e-4,
      "the site makes samples disagree")
sys.exit(1 if bad else 0)
PYEOF

# An ensemble of the same model twice, deterministic: MI = 0 and the
# probabilities of a plain predict.
"$CLI" predict --ensemble "$M" "$M" "$W/in/a.npy" --json >"$W/ens.json" 2>&1 ||
  fail "ensemble of copies exited non-zero"
"$CLI" predict "$M" "$W/in/a.npy" --json --top 1 >"$W/det.json" 2>&1 || fail "plain predict failed"
"$PY" - "$W" <<'PYEOF' || fails=$((fails + 1))
import json, os, sys
import numpy as np
w = sys.argv[1]
e = json.load(open(os.path.join(w, "ens.json")))[0]
d = json.load(open(os.path.join(w, "det.json")))[0]
ok = (e["samples"] == 2 and e["mutual_information"] == 0 and
      np.abs(np.array(e["mean"]) - d["probabilities"]).max() <= 1e-6 and max(e["std"]) == 0)
print(("ok   " if ok else "FAIL ") + "ensemble of 2 copies: MI 0, std 0, mean = single model")
sys.exit(0 if ok else 1)
PYEOF

# Bad input: non-zero exit and exactly one line on stderr naming the problem.
bad() { # bad WHAT PATTERN ARGS...
  local what=$1 pat=$2; shift 2
  if "$CLI" predict "$@" >"$W/bad.out" 2>"$W/bad.err"; then fail "$what: exit 0"; return; fi
  local n; n=$(wc -l <"$W/bad.err")
  if [ "$n" -ne 1 ] || ! grep -qiE "$pat" "$W/bad.err"; then
    fail "$what: expected one line matching /$pat/, got:"; cat "$W/bad.err"; return
  fi
  echo "ok   $what: $(cut -c1-150 "$W/bad.err")"
}
X="$W/in/a.npy"
bad "T = 0" "at least 1 sample" "$M" "$X" --mc 0 --dropout "$SITE:0.1"
bad "T = -3" "at least 1 sample" "$M" "$X" --mc -3 --dropout "$SITE:0.1"
bad "p = 1" "\[0, 1\)" "$M" "$X" --mc 4 --dropout "$SITE:1"
bad "p = -0.1" "\[0, 1\)" "$M" "$X" --mc 4 --dropout "$SITE:-0.1"
bad "p not a number" "not a probability" "$M" "$X" --mc 4 --dropout "$SITE:abc"
bad "unknown site" "names no tensor" "$M" "$X" --mc 4 --dropout "no_such_tensor:0.1"
bad "T > 1 without sites" "no Dropout node" "$M" "$X" --mc 4
bad "ensemble shape mismatch" "member 1" --ensemble "$M" "$FIX/unet.onnx" "$X"

[ "$fails" -eq 0 ] && echo "mc cli: all checks passed"
[ "$fails" -eq 0 ]
