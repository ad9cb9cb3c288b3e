#!/usr/bin/env bash
# Extra CI steps for reliability (issue 8), beyond the normal and ASan+UBSan
# test passes:
#   1. build the libFuzzer targets (clang) and run each for
#      $CANDOR_FUZZ_SECONDS seconds (default 60), two at a time;
#   2. build with ThreadSanitizer (-DCANDOR_TSAN=ON) and run test_threads;
#   3. run the CLI end-to-end test under valgrind memcheck;
#   4. the kernel unit tests under ASan+UBSan in a -march=native build: the
#      main sanitizer pass is built for the generic target, so the AVX-512
#      kernels (masked loads, whole-vector stores into later rows) would
#      otherwise never run under the sanitizers.
# Build trees go under $CANDOR_CI_DIR (default <source>/build-ci-extra).
# About 12-14 minutes on 2 cores with the default fuzz time.
#   tools/ci_extra.sh [fuzz|tsan|valgrind|native-asan]...   (default: all four)
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=${CANDOR_CI_DIR:-$SRC/build-ci-extra}
JOBS=${CANDOR_JOBS:-2}
export CANDOR_FUZZ_SECONDS=${CANDOR_FUZZ_SECONDS:-60}
export CANDOR_ONNX_TESTS=${CANDOR_ONNX_TESTS:-$SRC/../shared/onnx-tests}
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(fuzz tsan valgrind native-asan)
status=0
mkdir -p "$OUT"
stamp() { echo "== $(date +%H:%M:%S) $*"; }

for step in "${steps[@]}"; do
    case $step in
    fuzz)
        stamp "fuzz: build with clang"
        if ! "$SRC/tests/fuzz/build.sh" "$OUT/fuzz" >"$OUT/fuzz-build.log" 2>&1; then
            tail -20 "$OUT/fuzz-build.log"; echo "FAIL: fuzz build"; status=1; continue
        fi
        stamp "fuzz: ${CANDOR_FUZZ_SECONDS}s per target"
        "$SRC/tests/fuzz/run.sh" "$CANDOR_FUZZ_SECONDS" "$OUT/fuzz" || status=1
        ;;
    tsan)
        stamp "tsan: build test_threads"
        if ! { cmake -S "$SRC" -B "$OUT/tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCANDOR_TSAN=ON &&
               cmake --build "$OUT/tsan" -j"$JOBS" --target test_threads; } >"$OUT/tsan-build.log" 2>&1; then
            tail -20 "$OUT/tsan-build.log"; echo "FAIL: tsan build"; status=1; continue
        fi
        stamp "tsan: run test_threads"
        # halt_on_error: any data race report fails the step.
        if TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" CANDOR_SOURCE_DIR="$SRC" \
            CANDOR_BINARY_DIR="$OUT/tsan" "$OUT/tsan/tests/test_threads"; then
            echo "ok   tsan: test_threads"
        else
            echo "FAIL: tsan: test_threads"; status=1
        fi
        ;;
    valgrind)
        stamp "valgrind: build the CLI (Debug, no sanitizer)"
        if ! { cmake -S "$SRC" -B "$OUT/valgrind" -DCMAKE_BUILD_TYPE=Debug -DCANDOR_BUILD_TESTS=OFF &&
               cmake --build "$OUT/valgrind" -j"$JOBS" --target candor_cli; } >"$OUT/valgrind-build.log" 2>&1; then
            tail -20 "$OUT/valgrind-build.log"; echo "FAIL: valgrind build"; status=1; continue
        fi
        stamp "valgrind: CLI end to end"
        CANDOR_SOURCE_DIR="$SRC" CANDOR_BINARY_DIR="$OUT/valgrind" CANDOR_CLI="$OUT/valgrind/candor" \
            bash "$SRC/tests/cli/test_valgrind.sh" || status=1
        ;;
    native-asan)
        kernels=(test_conv_fast test_perf_plan test_grad_fast test_ops_conv test_ops_pool)
        stamp "native-asan: build ${kernels[*]} (Release -march=native, ASan+UBSan)"
        if ! { cmake -S "$SRC" -B "$OUT/native-asan" -DCMAKE_BUILD_TYPE=Release -DCANDOR_SANITIZE=ON &&
               cmake --build "$OUT/native-asan" -j"$JOBS" --target "${kernels[@]}"; } \
            >"$OUT/native-asan-build.log" 2>&1; then
            tail -20 "$OUT/native-asan-build.log"; echo "FAIL: native-asan build"; status=1; continue
        fi
        for t in "${kernels[@]}"; do
            if CANDOR_SOURCE_DIR="$SRC" CANDOR_BINARY_DIR="$OUT/native-asan" \
                "$OUT/native-asan/tests/$t" >"$OUT/native-asan-$t.log" 2>&1; then
                echo "ok   native-asan: $t"
            else
                tail -30 "$OUT/native-asan-$t.log"; echo "FAIL: native-asan: $t"; status=1
            fi
        done
        ;;
    *) echo "unknown step '$step' (fuzz, tsan, valgrind, native-asan)"; exit 2 ;;
    esac
done
stamp "ci_extra: $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status
