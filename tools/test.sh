#!/usr/bin/env bash
# Builds candor and runs the whole test suite: the optimised build, then the
# unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
# Installs missing Debian packages first (tools/bootstrap.sh).
#   CANDOR_SKIP_SANITIZERS=1 tools/test.sh   skips the sanitizer pass
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

tools/bootstrap.sh

echo "== release build and tests" >&2
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

if [ "${CANDOR_SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== ASan+UBSan build and tests" >&2
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCANDOR_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest --output-on-failure -j"$jobs")
fi
