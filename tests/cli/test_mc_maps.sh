#!/usr/bin/env bash
# Dense uncertainty maps (issue 4, acceptance 5): `candor predict --mc T
# --dropout SITE:P --maps DIR` on the U-Net parity fixture writes per-pixel
# entropy / expected entropy / mutual information / winning-class std as
# (H, W) float32 .npy, the argmax as int64, and PNG maps with a legend (plus
# overlays with --overlay). Every map must equal a NumPy recomputation from
# the raw samples saved with --samples; PNGs must be valid with the expected
# sizes; the maps must be bit-identical with --threads 1 and 2.
# Environment: CANDOR_SOURCE_DIR, CANDOR_BINARY_DIR, CANDOR_CLI (set by ctest).
set -u
PY=/usr/bin/python3
SRC=${CANDOR_SOURCE_DIR:?}
BIN=${CANDOR_BINARY_DIR:?}
CLI=${CANDOR_CLI:?}
. "$SRC/tests/cli/mc_fixtures.bash"
mc_fixtures unet

W="$BIN/mc_maps_test"
rm -rf "$W" && mkdir -p "$W"
SITE=/dec1/dec1.2/Relu_output_0:0.3
run() { # run THREADS DIR [extra args]
  local t=$1 d=$2; shift 2
  "$CLI" predict "$FIX/unet.onnx" "$FIX/unet.input.npy" --mc 16 --seed 7 --dropout "$SITE" \
    --threads "$t" --maps "$d" "$@"
}
if ! run 2 "$W/maps" --overlay --samples "$W/samples.npy" --json >"$W/out.json" 2>"$W/err.txt"; then
  echo "FAIL: predict --maps exited non-zero:"; cat "$W/err.txt"; exit 1
fi
if ! run 1 "$W/maps1" >"$W/out1.txt" 2>&1; then
  echo "FAIL: predict --maps --threads 1 exited non-zero:"; cat "$W/out1.txt"; exit 1
fi
cat "$W/out1.txt"

"$PY" - "$W" <<'PYEOF' || exit 1
import json, os, struct, sys, zlib
import numpy as np
w = sys.argv[1]
d = os.path.join(w, "maps")
fail = []
def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok: fail.append(what)

s = np.load(os.path.join(w, "samples.npy")).astype(np.float64)
check(s.shape == (1, 16, 3, 64, 64), "samples shape %s == (1, 16, 3, 64, 64)" % (s.shape,))
p = s[0]                                   # (S, C, H, W) probabilities
check(np.allclose(p.sum(1), 1, atol=1e-5), "samples are probabilities over the class axis")
def ent(q):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(q > 0, q * np.log(q), 0).sum(axis=-3)
mean = p.mean(0)
H = ent(mean)
EH = ent(p).mean(0)
MI = np.maximum(H - EH, 0)
win = mean.argmax(0)
std = np.take_along_axis(p, win[None, None], 1)[:, 0].std(0)
ref = {"entropy": H, "expected_entropy": EH, "mutual_information": MI, "winning_std": std}
for name, r in ref.items():
    a = np.load(os.path.join(d, "unet.input.%s.npy" % name))
    check(a.shape == (64, 64) and a.dtype == np.float32, "%s.npy is (64, 64) float32" % name)
    err = float(np.abs(a - r).max())
    check(err <= 1e-5, "%s matches NumPy (max|diff| %.2g)" % (name, err))
check(MI.max() > 1e-3, "the site makes the samples disagree (max MI %.3g)" % MI.max())
check(np.abs(H - (EH + MI)).max() <= 1e-6 or (H - EH).min() < 0,
      "entropy = expected entropy + MI")
am = np.load(os.path.join(d, "unet.input.argmax.npy"))
check(am.shape == (64, 64) and (am == win).all(), "argmax.npy equals argmax of the mean")

def png_size(path):
    b = open(path, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    wd, ht, depth, ctype = struct.unpack(">IIBB", b[16:26])
    pos, data = 8, b""
    while pos < len(b):          # decompress all IDAT chunks: a truncated file fails here
        n, typ = struct.unpack(">I4s", b[pos:pos + 8])
        if typ == b"IDAT": data += b[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = zlib.decompress(data)
    assert len(raw) == ht * (1 + wd * 3) and depth == 8 and ctype == 2, "bad RGB8 payload"
    return wd, ht
for name in ref:
    wd, ht = png_size(os.path.join(d, "unet.input.%s.png" % name))
    check(ht == 64 and wd > 64, "%s.png is 64 high with a legend to the right (%dx%d)" % (name, wd, ht))
    wd, ht = png_size(os.path.join(d, "unet.input.%s.overlay.png" % name))
    check((wd, ht) == (64, 64), "%s.overlay.png is 64x64" % name)
check(png_size(os.path.join(d, "unet.input.argmax.png")) == (64, 64), "argmax.png is 64x64")

for name in list(ref) + ["argmax"]:
    a = open(os.path.join(d, "unet.input.%s.npy" % name), "rb").read()
    b = open(os.path.join(w, "maps1", "unet.input.%s.npy" % name), "rb").read()
    check(a == b, "%s.npy bit-identical with --threads 1 and 2" % name)

j = json.load(open(os.path.join(w, "out.json")))
check(len(j) == 1 and j[0]["kind"] == "segmentation" and j[0]["height"] == 64 and
      j[0]["classes"] == 3, "JSON describes one 64x64 3-class segmentation")
for name, r in ref.items():
    got = j[0][name]
    check(abs(got["mean"] - r.mean()) <= 1e-5 and abs(got["max"] - r.max()) <= 1e-5,
          "JSON %s mean/max match NumPy" % name)
    check(os.path.exists(got["npy"]) and os.path.exists(got["png"]), "JSON %s paths exist" % name)
sys.exit(1 if fail else 0)
PYEOF

# Bad use: --maps on a classifier output, --overlay without --maps.
if "$CLI" predict "$FIX/unet.onnx" "$FIX/unet.input.npy" --mc 4 --dropout "$SITE" --overlay \
     >/dev/null 2>"$W/e1.txt"; then echo "FAIL: --overlay without --maps accepted"; exit 1; fi
[ "$(wc -l <"$W/e1.txt")" -eq 1 ] || { echo "FAIL: expected one error line:"; cat "$W/e1.txt"; exit 1; }
echo "ok   --overlay without --maps: $(cat "$W/e1.txt")"
echo "mc maps: all checks passed"
