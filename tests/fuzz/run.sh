#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS seconds on its seed corpus.
#
#   tests/fuzz/run.sh [SECONDS] [BUILD_DIR]
#
# SECONDS defaults to $CANDOR_FUZZ_SECONDS or 60; BUILD_DIR to build-fuzz
# (built first by tests/fuzz/build.sh when the binaries are missing). Each
# target first replays its regression inputs (tests/fuzz/regressions/<target>/,
# inputs that once crashed), then fuzzes from a copy of its seed corpus in
# the build tree, so the repository's corpus is never modified. Targets run
# $CANDOR_FUZZ_PARALLEL at a time (default 2). Any crash, leak, timeout or
# sanitizer report fails the script; the input is kept in
# BUILD_DIR/artifacts/<target>/ — copy it into regressions/<target>/ when fixed.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SECONDS_EACH=${1:-${CANDOR_FUZZ_SECONDS:-60}}
OUT=${2:-$HERE/../../build-fuzz}
PAR=${CANDOR_FUZZ_PARALLEL:-2}

if ! ls "$OUT"/bin/fuzz_* >/dev/null 2>&1; then
    "$HERE/build.sh" "$OUT" || exit $?
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_target() { # run_target NAME -> 0 ok, 1 failure
    local name=$1 bin=$OUT/bin/$1 work=$OUT/work/$1 art=$OUT/artifacts/$1 log=$OUT/logs/$1.log
    rm -rf "$work"; mkdir -p "$work" "$art" "$OUT/logs"
    cp "$HERE/corpus/$name"/* "$work"/ 2>/dev/null
    local regs=("$HERE/regressions/$name"/*)
    if [ -e "${regs[0]}" ]; then
        if ! "$bin" -rss_limit_mb=2048 -timeout=30 "${regs[@]}" >"$log.regressions" 2>&1; then
            echo "FAIL $name: a regression input fails again (see $log.regressions)"
            return 1
        fi
        cp "${regs[@]}" "$work"/
    fi
    if "$bin" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=20 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$art/" "$work" >"$log" 2>&1; then
        echo "ok   $name: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs in ${SECONDS_EACH}s"
        return 0
    fi
    echo "FAIL $name (log $log, input in $art):"
    grep -m3 -E 'ERROR|runtime error|SUMMARY|Test unit written' "$log" | sed 's/^/     /'
    return 1
}

targets=()
for b in "$OUT"/bin/fuzz_*; do targets+=("$(basename "$b")"); done
fail=0 running=0
pids=() names=()
for t in "${targets[@]}"; do
    run_target "$t" & pids+=($!); names+=("$t")
    running=$((running + 1))
    if [ "$running" -ge "$PAR" ]; then
        wait "${pids[0]}" || fail=1
        pids=("${pids[@]:1}"); running=$((running - 1))
    fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ "$fail" = 0 ] && echo "fuzz: all ${#targets[@]} targets clean" || echo "fuzz: FAILURES (see above)"
exit $fail
