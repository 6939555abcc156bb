#!/usr/bin/env bash
# Longer libFuzzer campaigns than tools/test.sh runs, with corpus minimisation and a source
# coverage report. See tests/fuzz/README.md.
#   tools/fuzz.sh [--minutes N] [--target T]... [--jobs J] [--no-coverage]
#     --minutes N     fuzzing time per target (default 5)
#     --target T      only this target (fuzz_T; repeat for several); default: every target
#     --jobs J        targets fuzzed at once (default: number of cores, one target per core)
#     --no-coverage   skip the coverage build and report
# Output, in fuzz-out/:
#   corpus/T/       the minimised corpus (-merge=1 of the run's corpus and tests/fuzz/corpus/T)
#   crashes/T/      crash, leak, timeout and out-of-memory inputs (libFuzzer artifacts)
#   logs/T.log      the fuzzer's output; summary.txt one line per target (execs, cov, corpus,
#                   crash inputs of this run)
#   coverage/       report.txt (llvm-cov per file), unreached.txt (analyzer functions no input
#                   reached), from build-cov (clang -fprofile-instr-generate -fcoverage-mapping)
# Exit status 1 when a target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
minutes=5
jobs=$(nproc)
coverage=1
targets=()
while [ $# -gt 0 ]; do
    case $1 in
    --minutes) minutes=${2:?--minutes needs a number}; shift ;;
    --target) targets+=("${2:?--target needs a name}"); shift ;;
    --jobs) jobs=${2:?--jobs needs a number}; shift ;;
    --no-coverage) coverage=0 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case $minutes in ''|*[!0-9]*|0) echo "fuzz.sh: --minutes wants a whole number >= 1" >&2; exit 2 ;; esac
seconds=$((minutes * 60))
out=$root/fuzz-out

stamp() { echo "== [$SECONDS s] $*"; }
stamp "fuzz build (build-fuzz)"
[ -d build-fuzz ] || CC=clang meson setup build-fuzz -Dfuzz=true \
    -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized >/dev/null
ninja -C build-fuzz -j"$jobs" >/dev/null

if [ ${#targets[@]} -eq 0 ]; then
    for exe in build-fuzz/tests/fuzz/fuzz_*; do
        [ -f "$exe" ] && [ -x "$exe" ] && targets+=("${exe##*/fuzz_}")
    done
fi
for t in "${targets[@]}"; do
    [ -x "build-fuzz/tests/fuzz/fuzz_$t" ] || { echo "fuzz.sh: no target fuzz_$t" >&2; exit 2; }
done

mkdir -p "$out/logs" "$out/corpus" "$out/crashes"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_one() { # T: fuzz, then merge the corpus
    local t=$1 exe=$root/build-fuzz/tests/fuzz/fuzz_$1 work=$out/work/$1
    local dict=()
    [ -f "tests/fuzz/dict/$t.dict" ] && dict=(-dict="$root/tests/fuzz/dict/$t.dict")
    rm -rf "$work"
    mkdir -p "$work/run" "$out/crashes/$t"
    [ -d "$out/corpus/$t" ] && cp -r "$out/corpus/$t/." "$work/run/"
    cp -r "tests/fuzz/corpus/$t/." "$work/run/" 2>/dev/null || true
    local rc=0
    touch "$out/logs/$t.start"
    (cd "$work" && "$exe" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 "${dict[@]}" -artifact_prefix="$out/crashes/$t/" "$work/run" \
        >"$out/logs/$t.log" 2>&1) || rc=$?
    # minimise: the smallest set of inputs with the same coverage
    mkdir -p "$work/min"
    (cd "$work" && "$exe" -merge=1 -rss_limit_mb=2048 -timeout=10 "$work/min" "$work/run" \
        >"$out/logs/$t.merge.log" 2>&1) || true
    if [ -n "$(ls -A "$work/min")" ]; then
        rm -rf "$out/corpus/$t"
        mv "$work/min" "$out/corpus/$t"
    fi
    rm -rf "$work"
    local execs cov crashes
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/logs/$t.log" | grep -o '[0-9]*$' || true)
    cov=$(grep -o 'cov: [0-9]*' "$out/logs/$t.log" | tail -1 | grep -o '[0-9]*$' || true)
    crashes=$(find "$out/crashes/$t" -type f -newer "$out/logs/$t.start" | wc -l)
    printf '%-12s rc=%-3s execs=%-9s cov=%-6s corpus=%s files/%s new_crashes=%s\n' "$t" "$rc" \
        "${execs:-?}" "${cov:-?}" "$(find "$out/corpus/$t" -type f 2>/dev/null | wc -l)" \
        "$(du -sh "$out/corpus/$t" 2>/dev/null | cut -f1)" "$crashes" >"$out/logs/$t.summary"
    return $rc
}

stamp "fuzzing ${targets[*]}: ${minutes} min each, $jobs at a time"
pids=()
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
    run_one "$t" &
    pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || status=1
done
: >"$out/summary.txt"
for t in "${targets[@]}"; do cat "$out/logs/$t.summary" >>"$out/summary.txt"; done
cat "$out/summary.txt"

if [ $coverage = 1 ]; then
    stamp "coverage build (build-cov)"
    [ -d build-cov ] || CC=clang meson setup build-cov -Dfuzz=true -Db_sanitize=none \
        -Dbuildtype=debug -Dc_args='-fprofile-instr-generate -fcoverage-mapping' \
        -Dc_link_args='-fprofile-instr-generate' >/dev/null
    # only the fuzz targets: the other programs cannot link the libraries' fuzzer hooks
    # without a sanitizer runtime
    ninja -C build-cov -j"$jobs" "${targets[@]/#/tests/fuzz/fuzz_}" >/dev/null
    cov=$out/coverage
    rm -rf "$cov"
    mkdir -p "$cov/profraw"
    objects=()
    for t in "${targets[@]}"; do
        inputs=()
        for d in "$out/corpus/$t" "tests/fuzz/corpus/$t" "tests/fuzz/regress/$t"; do
            [ -d "$d" ] && [ -n "$(ls -A "$d")" ] && inputs+=("$d")
        done
        [ ${#inputs[@]} -gt 0 ] || continue
        # -runs=0: run every input once, no fuzzing (crash inputs stay out: they would abort)
        LLVM_PROFILE_FILE="$cov/profraw/$t-%p.profraw" "build-cov/tests/fuzz/fuzz_$t" -runs=0 \
            -rss_limit_mb=2048 -timeout=30 "${inputs[@]}" >"$cov/$t.run.log" 2>&1 || true
        objects+=(-object "build-cov/tests/fuzz/fuzz_$t")
    done
    llvm-profdata merge -sparse "$cov"/profraw/*.profraw -o "$cov/all.profdata"
    llvm-cov report "${objects[@]:1}" -instr-profile="$cov/all.profdata" \
        -ignore-filename-regex='tests/' >"$cov/report.txt"
    # functions of analyzer/ with an execution count of 0 (lcov FNDA records)
    llvm-cov export -format=lcov "${objects[@]:1}" -instr-profile="$cov/all.profdata" \
        -ignore-filename-regex='tests/' >"$cov/all.lcov"
    # (static functions are spelled FILE:NAME)
    awk '/^SF:/ { file = substr($0, 4); sub(".*/analyzer/", "analyzer/", file) }
        /^FNDA:0,/ && file ~ /^analyzer\// { fn = substr($0, 8); sub(/^[^:]*:/, "", fn)
            print file ": " fn }' "$cov/all.lcov" |
        sort -u >"$cov/unreached.txt"
    rm -rf "$cov/profraw"
    stamp "coverage (analyzer/ and fs/)"
    grep -E '^(Filename|-|.*analyzer/|.*fs/|TOTAL)' "$cov/report.txt" | cut -c1-150 || true
    echo "analyzer functions never reached: $(wc -l <"$cov/unreached.txt") (fuzz-out/coverage/unreached.txt)"
fi
rmdir "$out/work" 2>/dev/null || true
[ $status -eq 0 ] || echo "fuzz.sh: crashes kept in fuzz-out/crashes/ (see fuzz-out/logs/)"
exit $status
