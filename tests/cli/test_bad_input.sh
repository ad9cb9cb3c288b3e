#!/usr/bin/env bash
# Bad input must give a one-line error naming the problem and a non-zero exit
# (never a signal): truncated/garbled models, an unsupported operator, a wrong
# input shape, corrupt .npy/PNG/JPEG files, missing files.
set -u
CLI=${CANDOR_CLI:?}
CORPUS=${CANDOR_ONNX_TESTS:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0; passes=0

# npy FILE SHAPE_TUPLE COUNT: float32 zeros in .npy v1.0 format.
npy() {
  local hdr="{'descr': '<f4', 'fortran_order': False, 'shape': $2, }"
  local total=$(( (10 + ${#hdr} + 1 + 63) / 64 * 64 ))
  local pad=$(( total - 10 - ${#hdr} - 1 ))
  local hlen=$(( total - 10 ))
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $((hlen & 255)))\\x$(printf %02x $((hlen >> 8)))";
    printf '%s' "$hdr"; printf "%${pad}s" ''; printf '\n'; head -c $(( $3 * 4 )) /dev/zero; } > "$1"
}

# expect NAME PATTERN CMD...: CMD must fail (exit 1..125), print exactly one
# line on stderr, and that line must match PATTERN (extended regex).
expect() {
  local name=$1 pat=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  local lines; lines=$(wc -l < "$T/err")
  if [ $rc -eq 0 ] || [ $rc -gt 125 ]; then
    echo "FAIL $name: exit status $rc"; fails=$((fails + 1)); return
  fi
  if [ "$lines" -ne 1 ] || ! grep -Eq "$pat" "$T/err"; then
    echo "FAIL $name: expected one line matching /$pat/, got:"; sed 's/^/    /' "$T/err"
    fails=$((fails + 1)); return
  fi
  echo "ok   $name: $(cat "$T/err")"; passes=$((passes + 1))
}

relu="$CORPUS/node/test_relu/model.onnx"
if ! [ -f "$relu" ]; then echo "SKIP: ONNX corpus not found at $CORPUS"; exit 77; fi
npy "$T/x.npy" "(3, 4, 5)" 60
npy "$T/bad_shape.npy" "(2, 2)" 4
head -c 40 "$relu" > "$T/truncated.onnx"
head -c 4096 /dev/urandom > "$T/garbage.onnx"
printf '\x93NUMPY\x01\x00\x10\x00{garbage header}' > "$T/corrupt.npy"
npy "$T/short.npy" "(3, 4, 5)" 10
{ printf '\x89PNG\r\n\x1a\n'; head -c 300 /dev/urandom; } > "$T/corrupt.png"
{ printf '\xff\xd8\xff\xe0'; head -c 300 /dev/urandom; } > "$T/corrupt.jpg"

"$CLI" run "$relu" "$T/x.npy" -o "$T/ok.npy" >/dev/null 2>&1 || { echo "FAIL: valid run failed"; exit 1; }

expect missing-model     "No such file|cannot open|not found" "$CLI" run "$T/nope.onnx" "$T/x.npy"
expect truncated-model   "parse" "$CLI" run "$T/truncated.onnx" "$T/x.npy"
expect garbage-model     "parse|unsupported" "$CLI" info "$T/garbage.onnx"
expect unsupported-op    "unsupported.*ConvInteger" "$CLI" info "$CORPUS/node/test_convinteger_with_padding/model.onnx"
expect wrong-shape       "shape.*\[3,4,5\]" "$CLI" run "$relu" "$T/bad_shape.npy" -o "$T/o1.npy"
expect corrupt-npy       "parse" "$CLI" run "$relu" "$T/corrupt.npy" -o "$T/o2.npy"
expect short-npy         "parse" "$CLI" run "$relu" "$T/short.npy" -o "$T/o3.npy"
expect missing-input     "nope.npy" "$CLI" run "$relu" "$T/nope.npy" -o "$T/o4.npy"
expect corrupt-png       "corrupt.png" "$CLI" predict "$relu" "$T/corrupt.png"
expect corrupt-jpeg      "corrupt.jpg" "$CLI" predict "$relu" "$T/corrupt.jpg"
expect unknown-output    "no tensor named" "$CLI" run "$relu" "$T/x.npy" --output nope="$T/o5.npy"
for f in o1 o2 o3 o4 o5; do
  if [ -e "$T/$f.npy" ]; then echo "FAIL: $f.npy written despite the error"; fails=$((fails + 1)); fi
done

echo "bad input: $passes passed, $fails failed"
[ $fails -eq 0 ]
