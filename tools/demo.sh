#!/usr/bin/env bash
# The README's first command: installs what is missing, builds candor, and
# shows everything it does on the bundled Fashion-MNIST models, writing all
# results into one folder with an index.html to open in a browser.
#
#   tools/demo.sh [OUTDIR]        default OUTDIR: ./out/demo (reused if present)
#
# Environment:
#   CANDOR_CLI=PATH   use this candor binary; skips bootstrap and build (tests)
#   CANDOR_DEMO_OUT   output folder when no OUTDIR argument is given
#   CANDOR_MODELS_DIR bundled models (default: models/ of this checkout)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-${CANDOR_DEMO_OUT:-out/demo}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
models=${CANDOR_MODELS_DIR:-$root/models}
start=$(date +%s)

if [ -n "${CANDOR_CLI:-}" ]; then
  cli=$CANDOR_CLI
else
  jobs=$(nproc 2>/dev/null || echo 2)
  "$root/tools/bootstrap.sh" --minimal
  # Its own build folder, without tests: the minimal bootstrap has no CMocka,
  # and build/ (tools/test.sh) must keep its tests enabled.
  cmake -S "$root" -B "$root/build-demo" -DCMAKE_BUILD_TYPE=Release \
    -DCANDOR_BUILD_TESTS=OFF >/dev/null
  cmake --build "$root/build-demo" -j"$jobs" --target candor_cli >&2
  cli=$root/build-demo/candor
fi
[ -x "$cli" ] || { echo "demo: candor binary not found at $cli" >&2; exit 1; }

cnn=$models/fmnist_cnn.onnx
ens=("$models"/fmnist_ens_{0..4}.onnx)
seg=$models/fmnist_seg.onnx
s=$models/samples
images=("$s/ambiguous_01305.png" "$s/trouser_00064.png" "$s/sneaker_01473.jpg"
        "$s/bag_00030.jpg" "$s/ankle_boot_09332.jpg" "$s/dress_07415.png")
explained=("$s/ambiguous_01305.png" "$s/sneaker_01473.jpg")
scenes=("$s/scene_0.png" "$s/scene_1.png")

# Start from a clean slate inside OUTDIR (only the files the demo writes), so
# a rerun never mixes old and new results.
rm -rf "$out/predict" "$out/explain" "$out/explain_mc" "$out/segmentation" \
       "$out/calibration" "$out/inputs" "$out/index.html" "$out/summary.txt"
mkdir -p "$out/predict" "$out/explain" "$out/explain_mc" "$out/segmentation" \
         "$out/calibration" "$out/inputs"
cp "${images[@]}" "${scenes[@]}" "$out/inputs/"
log=$out/demo.log
: > "$log"
step() { echo "demo: $*" >&2; }
# run NAME CMD...: runs a candor command, keeps its stderr in demo.log.
run() { echo "+ ${*}" >> "$log"; "$@" 2>> "$log"; }

step "model information"
run "$cli" info "$cnn" > "$out/predict/info.txt"

step "predict with MC dropout (30 samples per image)"
run "$cli" predict "$cnn" "${images[@]}" --mc 30 --seed 0 --json > "$out/predict/mc.json"
run "$cli" predict "$cnn" "${images[@]}" --mc 30 --seed 0 --csv "$out/predict/mc.csv" \
  --samples "$out/predict/mc_samples.npy" > "$out/predict/mc.txt"

step "predict with the 5-member ensemble"
run "$cli" predict "${ens[@]}" --ensemble "${images[@]}" --json > "$out/predict/ensemble.json"
run "$cli" predict "${ens[@]}" --ensemble "${images[@]}" --csv "$out/predict/ensemble.csv" \
  --samples "$out/predict/ensemble_samples.npy" > "$out/predict/ensemble.txt"

step "calibrate on models/calib (2,000 labelled images): temperature + conformal sets"
run "$cli" calibrate "$cnn" --data "$models/calib/fmnist_calib_images.npy" \
  --labels "$models/calib/fmnist_calib_labels.npy" --force --bootstrap 300 \
  -o "$out/calibration/calib.json" --report "$out/calibration/report.html" \
  --json "$out/calibration/report.json"
calib_line=$(grep '^calibrate: temperature;' "$log" | tail -1 || true)

step "predict with the calibration (calibrated probabilities + 90% prediction sets)"
run "$cli" predict "$cnn" "${images[@]}" --calibration "$out/calibration/calib.json" \
  --json > "$out/predict/calibrated.json"
run "$cli" predict "$cnn" "${images[@]}" --calibration "$out/calibration/calib.json" \
  > "$out/predict/calibrated.txt"

step "explain: Grad-CAM and Integrated Gradients (single pass and over 20 MC samples)"
for m in gradcam ig; do
  run "$cli" explain "$cnn" "${explained[@]}" --method "$m" -o "$out/explain" \
    > "$out/explain/$m.txt"
  run "$cli" explain "$cnn" "${explained[@]}" --method "$m" --mc 20 -o "$out/explain_mc" \
    > "$out/explain_mc/$m.txt"
done

step "segmentation with per-pixel uncertainty maps (MC dropout, 20 samples)"
run "$cli" predict "$seg" "${scenes[@]}" --mc 20 --maps "$out/segmentation" --overlay \
  --json > "$out/segmentation/maps.json"

# ------------------------------------------------------------------ index.html
esc() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }
# CSV columns: input,top_class,label,mean_probability,lower,upper,entropy,
# expected_entropy,mutual_information,variation_ratio,agreement
csv_rows() {
  awk -F, 'NR > 1 { n = split($1, p, "/");
    printf "<tr><td><img src=\"inputs/%s\" alt=\"\"> %s</td><td>%s</td><td>%.1f%%</td><td>%.1f%% – %.1f%%</td><td>%.3f</td><td>%.3f</td><td>%.0f%%</td></tr>\n",
      p[n], p[n], $3, 100 * $4, 100 * $5, 100 * $6, $7, $9, 100 * $11 }' "$1"
}
figure() { # figure SRC CAPTION
  printf '<figure><a href="%s"><img src="%s" alt="%s"></a><figcaption>%s</figcaption></figure>\n' \
    "$1" "$1" "$2" "$2"
}
table_head='<table><tr><th>image</th><th>prediction</th><th>mean p</th><th>95% interval</th><th>entropy (nats)</th><th>MI (epistemic)</th><th>agreement</th></tr>'

{
cat <<'HTML'
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>candor demo</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: middle; }
th { background: #f3f3f3; }
td img { width: 28px; height: 28px; image-rendering: pixelated; vertical-align: middle; margin-right: 0.4em; }
figure { display: inline-block; margin: 0.4em; text-align: center; }
figure img { height: 140px; width: auto; image-rendering: pixelated; border: 1px solid #ccc; }
figcaption { font-size: 0.8em; max-width: 180px; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.note { color: #555; font-size: 0.9em; }
</style></head><body>
<h1>candor demo</h1>
<p class="note">Bundled Fashion-MNIST models (see docs/models.md). Every number and picture on this
page was produced by the <code>candor</code> commands listed in <a href="demo.log">demo.log</a>.</p>
HTML

echo '<h2>1. Predictions with MC dropout (fmnist_cnn, 30 samples)</h2>'
echo '<p>Mean probability over the samples, a 95% interval, the predictive entropy and its epistemic part (mutual information).'
echo 'The first image is deliberately ambiguous (T-shirt or shirt). Files: <a href="predict/mc.json">mc.json</a>, <a href="predict/mc.csv">mc.csv</a>, <a href="predict/mc.txt">mc.txt</a>.</p>'
echo "$table_head"; csv_rows "$out/predict/mc.csv"; echo '</table>'

echo '<h2>2. Predictions with the 5-member ensemble</h2>'
echo '<p>Files: <a href="predict/ensemble.json">ensemble.json</a>, <a href="predict/ensemble.csv">ensemble.csv</a>, <a href="predict/ensemble.txt">ensemble.txt</a>.</p>'
echo "$table_head"; csv_rows "$out/predict/ensemble.csv"; echo '</table>'

echo '<h2>3. Calibration</h2>'
echo '<p>Temperature scaling and 90% conformal prediction sets fitted on half of the 2,000-image calibration sample, evaluated on the other half.</p>'
echo '<p><strong><a href="calibration/report.html">Open the calibration report</a></strong> (reliability diagram, metrics with bootstrap intervals, conformal coverage);'
echo 'calibration file: <a href="calibration/calib.json">calib.json</a>.</p>'
echo "<pre>$(printf '%s\n' "$calib_line" | esc)</pre>"
echo '<p>Calibrated predictions with prediction sets (<a href="predict/calibrated.json">calibrated.json</a>):</p>'
echo "<pre>$(sed "s|$s/||" "$out/predict/calibrated.txt" | esc)</pre>"

echo '<h2>4. Explanations</h2>'
echo '<p>Grad-CAM and Integrated Gradients for the predicted class; over 20 MC-dropout samples the mean map, its per-pixel standard deviation, and the saliency of the predictive entropy and of the mutual information.</p>'
for img in "${explained[@]}"; do
  b=$(basename "${img%.*}")
  echo "<h3>$b</h3><div>"
  figure "inputs/$(basename "$img")" "input"
  for m in gradcam ig; do
    figure "explain/$b.$m.overlay.png" "$m overlay"
    figure "explain_mc/$b.$m.mean.overlay.png" "$m, MC mean"
    figure "explain_mc/$b.$m.std.png" "$m, MC std"
  done
  figure "explain_mc/$b.entropy_saliency.overlay.png" "entropy saliency"
  figure "explain_mc/$b.mi_saliency.overlay.png" "MI saliency"
  echo '</div>'
done
echo "<pre>$(cat "$out/explain/gradcam.txt" "$out/explain/ig.txt" "$out/explain_mc/gradcam.txt" | sed "s|$s/||" | esc)</pre>"

echo '<h2>5. Segmentation with per-pixel uncertainty</h2>'
echo '<p>fmnist_seg (a small U-Net with dropout) on scenes of Fashion-MNIST items; 20 MC-dropout samples. Per-pixel predicted class, predictive entropy, mutual information (epistemic) and the winning class'"'"'s standard deviation, with overlays. Maps as .npy: <a href="segmentation/">segmentation/</a>, summary: <a href="segmentation/maps.json">maps.json</a>.</p>'
for img in "${scenes[@]}"; do
  b=$(basename "${img%.*}")
  echo "<h3>$b</h3><div>"
  figure "inputs/$(basename "$img")" "input"
  figure "segmentation/$b.argmax.png" "predicted class"
  for k in entropy mutual_information winning_std; do
    figure "segmentation/$b.$k.png" "$k"
    figure "segmentation/$b.$k.overlay.png" "$k overlay"
  done
  echo '</div>'
done

echo '<h2>Everything else</h2><ul>'
echo '<li><a href="predict/info.txt">candor info</a> of the CNN</li>'
echo '<li><a href="explain/">explain/</a> and <a href="explain_mc/">explain_mc/</a>: raw maps (.npy), PNGs and JSON per image and method</li>'
echo '<li><a href="predict/mc_samples.npy">mc_samples.npy</a>, <a href="predict/ensemble_samples.npy">ensemble_samples.npy</a>: every sampled probability vector</li>'
echo '<li><a href="demo.log">demo.log</a>: the exact commands and their messages</li></ul>'
echo '</body></html>'
} > "$out/index.html"

# ------------------------------------------------------------------ summary
elapsed=$(( $(date +%s) - start ))
{
echo "candor demo: results in $out ($elapsed s)"
echo
echo "MC dropout (30 samples) vs. 5-member ensemble, per sample image:"
paste -d, "$out/predict/mc.csv" "$out/predict/ensemble.csv" | awk -F, 'NR > 1 {
  n = split($1, p, "/");
  printf "  %-22s MC: %-12s %5.1f%% (MI %.3f)   ensemble: %-12s %5.1f%% (MI %.3f)\n",
    p[n], $3, 100 * $4, $9, $14, 100 * $15, $20 }'
echo
echo "Calibration (models/calib, 2,000 images, half fit / half test):"
echo "  ${calib_line#calibrate: }"
echo "  ambiguous image, $(grep -A4 'ambiguous_01305' "$out/predict/calibrated.txt" | grep 'prediction set' | sed 's/^ *//')"
echo
echo "Segmentation (20 MC samples): per-pixel entropy / mutual information maps for ${#scenes[@]} scenes"
echo
echo "Where to look:"
echo "  $out/index.html                    everything on one page (open in a browser)"
echo "  $out/calibration/report.html       the calibration report"
echo "  $out/explain/, explain_mc/         saliency maps and overlays (Grad-CAM, IG, MC mean/std)"
echo "  $out/segmentation/                 per-pixel uncertainty maps (.png, .npy)"
echo "  $out/demo.log                      the exact candor commands that made them"
} | tee "$out/summary.txt"
