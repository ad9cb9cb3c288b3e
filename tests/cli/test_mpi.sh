#!/usr/bin/env bash
# MPI scale-out (issue 10, docs/scale-out.md):
#  1. `predict --csv` (MC dropout and an ensemble, with --json and --samples),
#     `calibrate` (plain, MC dropout, ensemble; calibration file + report
#     JSON), `report --json` and `explain` give byte-identical outputs with 1,
#     2 and 4 ranks, and the same as the CLI run without mpirun;
#  2. a bad input on one rank (or a bad model) gives a clear error naming the
#     rank and the input, a non-zero exit from mpirun, and no output file.
# Skips (77) when mpirun is missing or the CLI was built without MPI.
set -u
CLI=${CANDOR_CLI:-}
[ -x "$CLI" ] || { echo "SKIP: candor CLI not built"; exit 77; }
command -v mpirun >/dev/null 2>&1 || { echo "SKIP: mpirun not installed (openmpi-bin)"; exit 77; }
ldd "$CLI" 2>/dev/null | grep -q libmpi || { echo "SKIP: candor built without MPI (CANDOR_MPI=OFF)"; exit 77; }
# Open MPI's launcher and libraries are not sanitizer-clean; the Release pass
# runs this test.
if ldd "$CLI" 2>/dev/null | grep -qE 'lib(a|t)san'; then echo "SKIP: sanitizer build"; exit 77; fi
SRC=${CANDOR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
M=$SRC/models
IMAGES=$M/calib/fmnist_calib_images.npy
LABELS=$M/calib/fmnist_calib_labels.npy
for f in "$M/fmnist_cnn.onnx" "$M/fmnist_ens_0.onnx" "$M/fmnist_ens_1.onnx" "$M/fmnist_ens_2.onnx" \
         "$IMAGES" "$LABELS"; do
  [ -f "$f" ] || { echo "SKIP: $f missing"; exit 77; }
done
WORK=${CANDOR_BINARY_DIR:-/tmp}/mpi_cli_test
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
# Root in containers/CI; ranks may outnumber the cores (4 ranks on 2 cores).
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
export OMPI_MCA_rmaps_base_oversubscribe=1

# Inputs: the bundled Fashion-MNIST samples (classification ones only) and
# a few more rows of the calibration sample written as PNGs, so 4 ranks get
# uneven blocks.
mkdir -p imgs
cp "$M"/samples/*_[0-9]*.png "$M"/samples/*_[0-9]*.jpg imgs/ 2>/dev/null
rm -f imgs/scene_*
/usr/bin/python3 - "$IMAGES" <<'EOF' || fail "could not write the PNG inputs"
import sys, zlib, struct, numpy as np
a = np.load(sys.argv[1])
def png(path, img):  # 8-bit grayscale PNG, written by hand (no PIL needed)
    h, w = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
for i in range(7):
    png("imgs/calib_%04d.png" % i, np.ascontiguousarray(a[i].reshape(a.shape[-2:]), dtype=np.uint8))
EOF
N_IMG=$(ls imgs | wc -l)
[ "$N_IMG" -ge 9 ] || fail "expected at least 9 inputs, got $N_IMG"

# Runs "$@" (a candor command line) with N ranks inside folder rN/NAME, so
# every output has the same relative name (the command line is recorded in
# the calibration file and the report).
run_in() {
  local name=$1 n=$2; shift 2
  mkdir -p "r$n/$name"
  (cd "r$n/$name" && "${MPIRUN[@]}" -n "$n" "$CLI" "$@" > stdout.txt 2> stderr.txt) ||
    fail "$name with $n rank(s) failed: $(tail -5 "r$n/$name/stderr.txt")"
}
run_serial() {
  local name=$1; shift
  mkdir -p "r0/$name"
  (cd "r0/$name" && "$CLI" "$@" > stdout.txt 2> stderr.txt) ||
    fail "$name without mpirun failed: $(tail -5 "r0/$name/stderr.txt")"
}
# Byte-identical outputs (every file but stderr) across 0 (no mpirun), 1, 2, 4.
same() {
  local name=$1 f
  for f in $(cd "r1/$name" && ls | grep -v '^stderr.txt$'); do
    [ -f "r1/$name/$f" ] || continue
    for n in 0 2 4; do
      [ -d "r$n/$name" ] || continue
      cmp -s "r1/$name/$f" "r$n/$name/$f" || fail "$name: $f differs between 1 and $n rank(s)"
    done
  done
  echo "ok: $name identical across 1, 2, 4 ranks ($(cd "r1/$name" && ls | grep -v stderr | tr '\n' ' '))"
}

I=$WORK/imgs
CAL=(--data "$IMAGES" --labels "$LABELS" --threads 1 --bootstrap 30 --seed 3)
ENS=("$M/fmnist_ens_0.onnx" "$M/fmnist_ens_1.onnx" "$M/fmnist_ens_2.onnx")
/usr/bin/python3 - <<'EOF' > preds.csv || fail "could not write preds.csv"
import numpy as np
r = np.random.default_rng(5)
p = r.dirichlet(np.ones(4) * 0.7, 500)
y = np.array([r.choice(4, p=row) for row in p])
print("a,b,c,d,label")
for row, lab in zip(p, y):
    print(",".join("%.6f" % v for v in row) + ",%d" % lab)
EOF

# --threads 1 everywhere: OpenBLAS may round differently with another thread
# count (docs/uncertainty.md), and the default thread count depends on N.
for n in 1 2 4; do
  run_in predict_mc $n predict "$M/fmnist_cnn.onnx" "$I" --mc 6 --seed 11 --threads 1 --json \
    --csv out.csv --samples samples.npy
  run_in predict_ens $n predict --ensemble "${ENS[@]}" "$I" --threads 1 --csv out.csv
  run_in predict_plain $n predict "$M/fmnist_cnn.onnx" "$I" --threads 1 --json
  run_in calibrate $n calibrate "$M/fmnist_cnn.onnx" "${CAL[@]}" --batch 48 -o calib.json \
    --json report.json
  run_in calibrate_mc $n calibrate "$M/fmnist_cnn.onnx" "${CAL[@]}" --mc 4 --batch 100 \
    --conformal aps -o calib.json --json report.json
  run_in calibrate_ens $n calibrate "${ENS[0]}" --ensemble "${ENS[1]}" "${ENS[2]}" "${CAL[@]}" \
    -o calib.json --json report.json
  run_in report $n report --predictions "$WORK/preds.csv" --json report.json --bootstrap 200
  run_in explain $n explain "$M/fmnist_cnn.onnx" "$I" --method gradient --threads 1 -o maps
  run_in explain_mc $n explain "$M/fmnist_cnn.onnx" "$I" --mc 3 --method gradient \
    --threads 1 -o maps
done
run_serial predict_mc predict "$M/fmnist_cnn.onnx" "$I" --mc 6 --seed 11 --threads 1 --json \
  --csv out.csv --samples samples.npy
run_serial calibrate calibrate "$M/fmnist_cnn.onnx" "${CAL[@]}" --batch 48 -o calib.json \
  --json report.json
for t in predict_mc predict_ens predict_plain calibrate calibrate_mc calibrate_ens report; do
  same $t
done
for t in explain explain_mc; do
  same $t
  for n in 2 4; do
    diff -r "r1/$t/maps" "r$n/$t/maps" > /dev/null || fail "$t: map files differ with $n ranks"
  done
done

# The outputs are complete and in input order.
[ "$(($(wc -l < r4/predict_mc/out.csv) - 1))" -eq "$N_IMG" ] || fail "CSV rows != inputs"
diff <(tail -n +2 r4/predict_mc/out.csv | cut -d, -f1 | sed 's|.*/||') <(ls imgs) \
  || fail "CSV rows not in input order"
/usr/bin/python3 -c "
import json, numpy as np, sys
j = json.load(open('r4/predict_mc/stdout.txt'))
s = np.load('r4/predict_mc/samples.npy')
assert len(j) == $N_IMG and s.shape[0] == $N_IMG, (len(j), s.shape)
" || fail "JSON/samples do not hold one entry per input"
grep -q "ran the model on 2000/2000 rows" r4/calibrate/stderr.txt || fail "no global progress"
[ "$(grep -c "ran the model on 2000/2000" r4/calibrate/stderr.txt)" -eq 1 ] ||
  fail "the final progress line is printed more than once"
grep -q "calibrate: wrote" r4/calibrate/stderr.txt || fail "rank 0 did not report writing"
[ "$(grep -c "calibrate: fitting" r4/calibrate/stderr.txt)" -eq 1 ] ||
  fail "the fit ran on more than one rank"

# --- failures: a bad input on the last rank, no output file.
mkdir -p bad && cp imgs/* bad/ && echo "not an image" > bad/zz_broken.png
rm -f bad.csv
"${MPIRUN[@]}" -n 2 "$CLI" predict "$M/fmnist_cnn.onnx" bad --mc 3 --threads 1 --csv bad.csv \
  > bad.out 2> bad.err && fail "mpirun succeeded with a broken input"
[ -e bad.csv ] && fail "partial CSV written"
[ -s bad.out ] && fail "partial stdout written"
grep -q "rank 1: 1 input(s) failed, the first: bad/zz_broken.png" bad.err ||
  fail "the error does not name the rank and the input: $(cat bad.err)"
echo "ok: bad input -> $(grep 'rank 1' bad.err)"

# calibrate on a CSV dataset whose last file is broken (on the last rank).
{ echo "path,label"; for f in $(ls bad); do echo "bad/$f,0"; done; } > badcal.csv
"${MPIRUN[@]}" -n 2 "$CLI" calibrate "$M/fmnist_cnn.onnx" --data badcal.csv --batch 2 \
  --threads 1 -o cb.json --json cbr.json 2> cb.err && fail "calibrate accepted a broken input"
[ -e cb.json ] || [ -e cbr.json ] && fail "calibrate left an output file"
grep -q "rank 1: .*zz_broken.png" cb.err || fail "calibrate error does not name the rank: $(cat cb.err)"
echo "ok: calibrate bad input -> $(grep 'rank 1' cb.err | head -1)"

# A bad model: every rank fails before the inputs; still no output.
echo "garbage" > bad.onnx
"${MPIRUN[@]}" -n 2 "$CLI" predict bad.onnx imgs --mc 2 --csv bm.csv > bm.out 2> bm.err &&
  fail "mpirun succeeded with a bad model"
[ -e bm.csv ] && fail "bad model: CSV written"
grep -q "bad.onnx" bm.err || fail "bad model error does not name the file: $(cat bm.err)"
grep -q "rank 0" bm.err || fail "bad model error does not name a rank: $(cat bm.err)"
echo "ok: bad model -> non-zero exit, no output"
echo "PASS"
