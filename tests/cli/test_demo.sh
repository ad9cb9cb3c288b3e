#!/usr/bin/env bash
# Issue 7, acceptance 1 and 2: tools/demo.sh (with the already-built CLI, no
# bootstrap/build) writes index.html, the calibration report, overlays and
# maps into one folder and prints a summary; running it again into the same
# folder works; every local link and <img> in index.html resolves; index.html
# and report.html render in headless Chromium without console errors and the
# screenshots are not blank. Exit 77 without the CLI; the render part is
# skipped (77) without Chromium after the rest has passed.
set -u
CLI=${CANDOR_CLI:-}
[ -x "$CLI" ] || { echo "SKIP: candor CLI not built"; exit 77; }
SRC=${CANDOR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
WORK=${CANDOR_BINARY_DIR:-/tmp}/demo_test
rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
OUT=$WORK/out

start=$(date +%s)
CANDOR_CLI=$CLI "$SRC/tools/demo.sh" "$OUT" > "$WORK/stdout.txt" 2> "$WORK/stderr.txt" \
  || fail "demo.sh failed: $(tail -5 "$WORK/stderr.txt")"
echo "demo.sh took $(( $(date +%s) - start )) s"
# A second run into the existing folder must succeed too (--force etc.).
CANDOR_CLI=$CLI "$SRC/tools/demo.sh" "$OUT" > "$WORK/stdout2.txt" 2> "$WORK/stderr2.txt" \
  || fail "demo.sh failed on an existing folder: $(tail -5 "$WORK/stderr2.txt")"

for f in index.html calibration/report.html calibration/calib.json predict/mc.json \
         predict/mc.csv predict/ensemble.json predict/ensemble.csv predict/calibrated.json \
         explain/ambiguous_01305.gradcam.overlay.png explain/ambiguous_01305.ig.overlay.png \
         explain_mc/ambiguous_01305.gradcam.std.png explain_mc/sneaker_01473.mi_saliency.png \
         segmentation/scene_0.entropy.png segmentation/scene_0.mutual_information.overlay.png \
         segmentation/scene_1.entropy.npy; do
  [ -s "$OUT/$f" ] || fail "missing or empty: $f"
done

# Summary on stdout: every sample image, the calibration line and where to look.
for s in ambiguous_01305.png trouser_00064.png "Where to look" "index.html" \
         "calibration split n=" "report.html" "T-shirt/top, Shirt"; do
  grep -qF "$s" "$WORK/stdout.txt" || fail "summary lacks '$s': $(cat "$WORK/stdout.txt")"
done
# The JSON files parse and the MC summary covers the six classification images.
/usr/bin/python3 - "$OUT" <<'PY' || fail "JSON outputs"
import json, sys, os
out = sys.argv[1]
mc = json.load(open(os.path.join(out, "predict/mc.json")))
ens = json.load(open(os.path.join(out, "predict/ensemble.json")))
assert len(mc) == 6 and all(r["samples"] == 30 for r in mc), mc
assert len(ens) == 6 and all(r["members"] == 5 for r in ens)
seg = json.load(open(os.path.join(out, "segmentation/maps.json")))
assert len(seg) == 2 and all(r["kind"] == "segmentation" for r in seg)
json.load(open(os.path.join(out, "calibration/calib.json")))
print("json ok")
PY

# Every relative href/src in index.html exists; nothing points off the machine.
grep -qiE '(src|href)="(https?:)?//' "$OUT/index.html" && fail "index.html refers to the network"
links=$(grep -oE '(src|href)="[^"#]+"' "$OUT/index.html" | sed -E 's/^(src|href)="//; s/"$//' | sort -u)
n=0
for l in $links; do
  [ -e "$OUT/$l" ] || fail "index.html links to missing $l"
  n=$((n + 1))
done
[ "$n" -ge 30 ] || fail "only $n links in index.html"
grep -q 'href="calibration/report.html"' "$OUT/index.html" || fail "no link to the report"
echo "ok: demo output complete ($n local links resolve)"

CHROME=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROME" ] || { echo "SKIP: chromium not installed (render part)"; exit 77; }
render() { # render PAGE NAME
  local page=$1 name=$2
  timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --window-size=1200,2000 \
    --screenshot="$WORK/$name.png" --enable-logging=stderr --v=0 "file://$page" \
    > "$WORK/$name.chrome.log" 2>&1 || fail "$name: chromium failed: $(tail -3 "$WORK/$name.chrome.log")"
  # Chromium logs console.error() as INFO:CONSOLE without the word "error",
  # and neither page has scripts: any console message at all is a failure.
  if grep -q ":CONSOLE" "$WORK/$name.chrome.log"; then
    fail "$name: console messages: $(grep ':CONSOLE' "$WORK/$name.chrome.log")"
  fi
  timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --dump-dom "file://$page" \
    2> /dev/null > "$WORK/$name.dom.html"
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
distinct = len(set(raw[::97]))
stride = len(raw) // h
busy = sum(1 for r in range(h) if len(set(raw[r * stride + 1:(r + 1) * stride:7])) > 1)
assert distinct > 20 and busy > h // 20, (distinct, busy, h)
print("%s: %dx%d, %d distinct sampled values, %d non-uniform rows" % (sys.argv[1], w, h, distinct, busy))
PY
}
render "$OUT/index.html" index
grep -q '<img' "$WORK/index.dom.html" || fail "index: no images in the DOM"
render "$OUT/calibration/report.html" report
grep -q '<svg' "$WORK/report.dom.html" || fail "report: no SVG in the DOM"
echo "ok: index.html and report.html render without console errors"
