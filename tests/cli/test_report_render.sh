#!/usr/bin/env bash
# Issue 5, acceptance 5: calibration reports render in headless Chromium
# without console errors, the screenshot is not blank and the SVG plots are
# in the rendered DOM. Checks the `candor report` page (CSV input) and, when
# the bundled model is present, the `candor calibrate` page with its
# before/after, conformal and abstention sections. Exit 77 without Chromium.
set -u
CLI=${CANDOR_CLI:-}
[ -x "$CLI" ] || { echo "SKIP: candor CLI not built"; exit 77; }
CHROME=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROME" ] || { echo "SKIP: chromium not installed"; exit 77; }
SRC=${CANDOR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODELS=${CANDOR_MODELS_DIR:-$SRC/models}
WORK=${CANDOR_BINARY_DIR:-/tmp}/report_render_test
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
fail() { echo "FAIL: $*"; exit 1; }

# render PAGE MIN_SVGS REQUIRED_IDS...
render() {
  local page=$1 min=$2; shift 2
  local name; name=$(basename "$page" .html)
  timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --window-size=1200,3000 \
    --screenshot="$WORK/$name.png" --enable-logging=stderr --v=0 "file://$page" \
    > "$name.chrome.log" 2>&1 || fail "$name: chromium failed: $(tail -3 "$name.chrome.log")"
  if grep -i "CONSOLE" "$name.chrome.log" | grep -qi "error"; then
    fail "$name: console errors: $(grep -i console "$name.chrome.log")"
  fi
  timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --dump-dom "file://$page" \
    2> /dev/null > "$name.dom.html"
  local svgs; svgs=$(grep -o '<svg' "$name.dom.html" | wc -l)
  [ "$svgs" -ge "$min" ] || fail "$name: $svgs SVG elements in the DOM, want >= $min"
  for id in "$@"; do
    grep -q "<svg id=\"$id\"" "$name.dom.html" || fail "$name: SVG #$id missing from the DOM"
  done
  /usr/bin/python3 - "$WORK/$name.png" <<'PY' || fail "$name: screenshot is blank"
import sys, zlib, struct
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
chunks, i = [], 8
while i < len(data):
    n = struct.unpack(">I", data[i:i + 4])[0]
    chunks.append((data[i + 4:i + 8], data[i + 8:i + 8 + n])); i += 12 + n
w, h = struct.unpack(">II", chunks[0][1][:8])
raw = zlib.decompress(b"".join(d for t, d in chunks if t == b"IDAT"))
# A blank page decodes to (nearly) one value; count distinct sampled bytes
# and the share of rows that are not uniform.
distinct = len(set(raw[::97]))
stride = len(raw) // h
busy = sum(1 for r in range(h) if len(set(raw[r * stride + 1:(r + 1) * stride:7])) > 1)
assert distinct > 20 and busy > h // 20, (distinct, busy, h)
print("%s: %dx%d, %d distinct sampled values, %d non-uniform rows" % (sys.argv[1], w, h, distinct, busy))
PY
  echo "ok: $name renders ($svgs SVGs)"
}

# --- candor report on a CSV.
/usr/bin/python3 - <<'PY' || fail "fixture"
import random, math
random.seed(11)
with open("preds.csv", "w") as f:
    f.write("a,b,c,label\n")
    for i in range(2000):
        z = [random.gauss(0, 2) for _ in range(3)]
        m = max(z); e = [math.exp(v - m) for v in z]; s = sum(e)
        p = [v / s for v in e]
        y = max(range(3), key=lambda j: p[j] + random.gauss(0, 0.3))
        f.write(",".join("%.17g" % v for v in p) + ",%d\n" % y)
PY
"$CLI" report --predictions preds.csv -o "$WORK/csv_report.html" --bootstrap 50 \
  || fail "candor report failed"
render "$WORK/csv_report.html" 3 reliability confidence-histogram risk-coverage

# --- candor calibrate on the bundled sample (skipped without the model).
MODEL=$MODELS/fmnist_cnn.onnx
if [ -f "$MODEL" ] && [ -f "$MODELS/calib/fmnist_calib_images.npy" ]; then
  "$CLI" calibrate "$MODEL" --data "$MODELS/calib/fmnist_calib_images.npy" \
    --labels "$MODELS/calib/fmnist_calib_labels.npy" --bootstrap 50 --conformal raps \
    --abstain-target 0.1 -o calib.json --report "$WORK/calibrate_report.html" 2> calibrate.log \
    || fail "candor calibrate failed: $(tail -3 calibrate.log)"
  render "$WORK/calibrate_report.html" 8 reliability confidence-histogram risk-coverage \
    reliability-0-before reliability-0-after reliability-1-before reliability-1-after \
    set-size-histogram
else
  echo "note: $MODEL missing, calibrate report render skipped"
fi
echo "PASS"
