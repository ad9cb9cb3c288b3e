# Sourced by the MC CLI tests and bench/mc_cost.sh: finds or makes parity
# fixtures (tools/make_parity_fixtures.py) for the models in $1 (comma list)
# and sets FIX to their folder. Reuses $BIN/parity (test_parity.sh's cache)
# when it is current; otherwise generates the missing models one by one into
# $BIN/mc_fixtures (wiped when the generator changes; flock keeps parallel
# ctest runs from generating the same model twice).
# Needs PY, SRC, BIN. Exits 77 (skip) without torch/onnx/numpy.
mc_fixtures() {
  local want=$1 gen="$SRC/tools/make_parity_fixtures.py" hash m ok=1
  if ! [ -x "$PY" ] || ! "$PY" -c 'import torch, torchvision, onnx, numpy' 2>/dev/null; then
    echo "SKIP: $PY lacks torch/torchvision/onnx/numpy (tools/bootstrap.sh installs them)"
    exit 77
  fi
  hash=$(sha256sum "$gen" | cut -d' ' -f1)
  FIX="$BIN/parity"
  if [ "$(cat "$FIX/.script_sha256" 2>/dev/null)" = "$hash" ]; then
    for m in ${want//,/ }; do [ -f "$FIX/$m.onnx" ] && [ -f "$FIX/$m.input.npy" ] || ok=0; done
    [ "$ok" = 1 ] && return 0
  fi
  FIX="$BIN/mc_fixtures"
  mkdir -p "$FIX"
  (
    flock 9
    if [ "$(cat "$FIX/.script_sha256" 2>/dev/null)" != "$hash" ]; then
      rm -f "$FIX"/*.onnx "$FIX"/*.npy && echo "$hash" > "$FIX/.script_sha256"
    fi
    for m in ${want//,/ }; do
      [ -f "$FIX/$m.onnx" ] && [ -f "$FIX/$m.input.npy" ] && continue
      echo "generating fixture $m into $FIX"
      if ! "$PY" "$gen" "$FIX" --models "$m" >/dev/null 2>"$FIX/generate.log"; then
        echo "FAIL: fixture generation failed:"; tail -20 "$FIX/generate.log"
        rm -f "$FIX/$m.onnx"
        exit 1
      fi
    done
  ) 9>"$FIX/.lock" || exit 1
}
