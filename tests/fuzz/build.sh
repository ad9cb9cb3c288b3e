#!/usr/bin/env bash
# Builds the libFuzzer targets with clang.
#
#   tests/fuzz/build.sh [BUILD_DIR]      (default: <source>/build-fuzz)
#
# The library objects are compiled by CMake with coverage instrumentation
# (-fsanitize=fuzzer-no-link) plus ASan+UBSan; each tests/fuzz/fuzz_*.c is
# then linked against those objects (not an archive, so every operator and
# the sidecar module are always present) with -fsanitize=fuzzer. fuzz_image.c
# is linked twice, as fuzz_png and fuzz_jpeg, so each format keeps its own
# seed corpus. Binaries land in BUILD_DIR/bin.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$SRC/build-fuzz}
CC=${CANDOR_FUZZ_CC:-clang}
JOBS=${CANDOR_FUZZ_JOBS:-2}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

command -v "$CC" >/dev/null || { echo "build.sh: $CC not found" >&2; exit 77; }

cmake -S "$SRC" -B "$OUT/lib" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCANDOR_BUILD_TESTS=OFF -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link $SAN" >/dev/null
cmake --build "$OUT/lib" -j"$JOBS" --target candor_obj >/dev/null

mapfile -t OBJS < <(find "$OUT/lib/CMakeFiles/candor_obj.dir" -name '*.o' | sort)
LIBS="$(pkg-config --libs openblas libprotobuf-c libcjson gsl libpng) -ljpeg -lpthread -lm"
CFLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -I$SRC/include -I$SRC -I$OUT/lib/generated"
mkdir -p "$OUT/bin"

link() { # link NAME SOURCE
    "$CC" $CFLAGS -fsanitize=fuzzer $SAN "$2" "${OBJS[@]}" $LIBS -o "$OUT/bin/$1"
}
for src in "$SRC"/tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    if [ "$name" = fuzz_image ]; then
        link fuzz_png "$src" & link fuzz_jpeg "$src" & wait
    else
        link "$name" "$src"
    fi
done
echo "build.sh: fuzz targets in $OUT/bin:" $(ls "$OUT/bin")
