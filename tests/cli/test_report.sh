#!/usr/bin/env bash
# candor report: a good CSV gives HTML + JSON whose numbers match the
# independent NumPy/sklearn reference, the fingerprint matches sha256sum, and
# the page renders in headless Chromium; bad CSVs fail with the row number,
# a non-zero exit and no output file.
set -u
CLI=${CANDOR_CLI:-}
[ -x "$CLI" ] || { echo "SKIP: candor CLI not built"; exit 77; }
SRC=${CANDOR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
WORK=${CANDOR_BINARY_DIR:-/tmp}/report_cli_test
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
fail() { echo "FAIL: $*"; exit 1; }

# --- a good file: 3 classes named in the header, labels as names and indices.
/usr/bin/python3 - <<'PY' || fail "could not generate the fixture"
import random, math
random.seed(5)
with open("good.csv", "w") as f:
    f.write("cat,dog,bird,label\n")
    for i in range(3000):
        z = [random.gauss(0, 2) for _ in range(3)]
        m = max(z); e = [math.exp(v - m) for v in z]; s = sum(e); p = [v / s for v in e]
        u, acc, y = random.random(), 0.0, 2
        q = [v ** 0.7 for v in p]; qs = sum(q)
        for j in range(3):
            acc += q[j] / qs
            if u < acc:
                y = j; break
        lab = ["cat", "dog", "bird"][y] if i % 2 else str(y)
        f.write(",".join("%.17g" % v for v in p) + "," + lab + "\n")
PY
"$CLI" report --predictions good.csv -o good.html --json good.json --bootstrap 100 --seed 3 \
  || fail "good input rejected"
[ -s good.html ] && [ -s good.json ] || fail "outputs missing"
ls good.html.tmp* good.json.tmp* 2>/dev/null && fail "temp files left behind"
grep -q '<svg id="reliability"' good.html || fail "no reliability SVG"
grep -q '<svg id="confidence-histogram"' good.html || fail "no histogram SVG"
grep -q '<svg id="risk-coverage"' good.html || fail "no risk-coverage SVG"
grep -q 'id="per-class"' good.html || fail "no per-class table"
grep -qi '<script\|http://[a-z]*\.[a-z]*/[a-z]' good.html && fail "HTML is not self-contained"
SHA=$(sha256sum good.csv | cut -d' ' -f1)
grep -q "\"sha256\":[[:space:]]*\"$SHA\"" good.json || fail "fingerprint differs from sha256sum"

# Numbers against the reference (which reads integer labels: convert names).
if /usr/bin/python3 -c 'import sklearn' 2>/dev/null; then
  /usr/bin/python3 - <<'PY' || fail "metrics differ from the reference"
import csv, json, subprocess, sys, os
names = ["cat", "dog", "bird"]
rows = list(csv.reader(open("good.csv")))[1:]
with open("ref.csv", "w") as f:
    f.write("p0,p1,p2,label\n")
    for r in rows:
        lab = r[3] if r[3].isdigit() else str(names.index(r[3]))
        f.write(",".join(r[:3] + [lab]) + "\n")
ref = json.loads(subprocess.check_output(
    ["/usr/bin/python3", os.path.join(os.environ.get("CANDOR_SOURCE_DIR", "."), "tools/calib_reference.py"), "ref.csv", "15"]))
rep = json.load(open("good.json"))
assert rep["data"]["n"] == 3000 and rep["data"]["num_classes"] == 3
for m in rep["metrics"]:
    want = ref[m["name"]]
    assert abs(m["value"] - want) <= 1e-9, (m["name"], m["value"], want)
    assert m["ci_low"] <= m["ci_high"], m
assert sum(b["count"] for b in rep["reliability"]) == 3000
print("report metrics match the reference")
PY
else
  echo "note: sklearn missing, reference comparison skipped"
fi

# Logits input: softmax is applied, the report says so.
/usr/bin/python3 -c "
import math
print('a,b,label')
for i in range(200): print('%g,%g,%d' % (i/50.0, -i/70.0, i % 2))" > logits.csv
"$CLI" report --predictions logits.csv --logits -o logits.html --bootstrap 0 || fail "logits rejected"
grep -q "logits (softmax applied)" logits.html || fail "logits not labelled"

# Renormalize: refused by default, accepted with the flag.
printf 'a,b,label\n0.5,0.5,0\n0.6,0.6,1\n' > unnorm.csv
"$CLI" report --predictions unnorm.csv -o unnorm.html 2> err.txt && fail "unnormalised accepted"
grep -q "line 3" err.txt || fail "sum error without row number: $(cat err.txt)"
[ -e unnorm.html ] && fail "output written on error"
"$CLI" report --predictions unnorm.csv --renormalize -o unnorm.html --bootstrap 0 || fail "--renormalize refused"

# --- bad inputs: error with the line number, exit != 0, no output file.
bad() { # name expected-substring content
  printf "$3" > "$1.csv"
  if "$CLI" report --predictions "$1.csv" -o "$1.html" --json "$1.json" 2> "$1.err"; then
    fail "$1: accepted"
  fi
  grep -q -- "$2" "$1.err" || fail "$1: message lacks '$2': $(cat "$1.err")"
  [ -e "$1.html" ] || [ -e "$1.json" ] && fail "$1: output file written"
  ls "$1".*.tmp.* 2>/dev/null && fail "$1: temp file left"
  echo "ok: $1 -> $(cat "$1.err")"
}
bad missing_col "line 3" 'a,b,label\n0.5,0.5,0\n0.5,1\n'
bad extra_col "line 2" 'a,b,label\n0.5,0.5,0,7\n'
bad nan_row "line 3" 'a,b,label\n0.5,0.5,0\nnan,0.5,1\n'
bad label_range "line 2" 'a,b,label\n0.5,0.5,2\n'
bad label_name "line 2" 'a,b,label\n0.5,0.5,zebra\n'
bad negative "line 2" 'a,b,label\n-0.5,1.5,0\n'
bad no_label "no label column" 'a,b,c\n0.5,0.5,0\n'
bad empty "empty" ''
bad header_only "no data rows" 'a,b,label\n'
bad not_number "line 2" 'a,b,label\n0.5,abc,0\n'
"$CLI" report --predictions does_not_exist.csv -o x.html 2>/dev/null && fail "missing file accepted"
[ -e x.html ] && fail "output for missing file"
"$CLI" report --predictions good.csv --bins 0 -o x.html 2>/dev/null && fail "--bins 0 accepted"

# --- headless Chromium render (acceptance 5), when available.
CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$CHROME" ]; then
  timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --window-size=1000,1600 \
    --screenshot="$WORK/shot.png" --enable-logging=stderr --v=0 "file://$WORK/good.html" \
    > chrome.log 2>&1 || fail "chromium failed: $(tail -3 chrome.log)"
  grep -i "CONSOLE" chrome.log | grep -iq "error" && fail "console errors: $(grep -i console chrome.log)"
  timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --dump-dom "file://$WORK/good.html" \
    2>/dev/null > dom.html
  [ "$(grep -o '<svg' dom.html | wc -l)" -ge 3 ] || fail "rendered DOM lacks the SVGs"
  /usr/bin/python3 - "$WORK/shot.png" <<'PY' || fail "screenshot is blank"
import sys, zlib, struct
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
# Decode IDAT enough to count distinct byte values: a blank page is uniform.
idat = b"".join(data[i + 8:i + 8 + struct.unpack(">I", data[i:i + 4])[0]]
                for i in range(8, len(data)) if data[i + 4:i + 8] == b"IDAT")
raw = zlib.decompress(idat)
distinct = len(set(raw[::97]))
assert distinct > 20, distinct
print("screenshot has", distinct, "distinct sampled byte values")
PY
else
  echo "note: chromium not found, render check skipped"
fi
echo "PASS"
