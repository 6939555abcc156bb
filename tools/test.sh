#!/usr/bin/env bash
# Build provfs and run the test suite: unit tests (plain and ASan+UBSan), integration tests on
# real FUSE mounts (also with an ASan+UBSan daemon), attack tests as a real unprivileged user, and
# time-boxed libFuzzer runs. Installs missing Debian packages first. See tests/README.md.
#   tools/test.sh                 everything (what CI runs)
#   tools/test.sh --quick         the in-process unit tests only
#   tools/test.sh --suite S       one meson suite: unit, integration, attacks, sanitized
#                                 (with the release daemon; the ASan run is part of everything)
#   tools/test.sh --only NAME     one case by its meson name (e.g. policy, attack-create-race)
#   tools/test.sh --list          the case names
#   tools/test.sh --backend pg ...  integration and attack tests keep their lineage in a
#                                 throwaway PostgreSQL server (tests/pg.sh) instead of SQLite
#                                 files; everything runs them on both
# Environment:
#   FUZZ_SECONDS=N      seconds per fuzz target (default 60; 0 skips fuzzing)
#   SKIP_INTEGRATION=1  unit and fuzz only
#   SKIP_ASAN_DAEMON=1  no run with the ASan+UBSan daemon (the PostgreSQL run then has all)
#   ASAN_DAEMON_ALL=1   that run over every integration test, not only suite "sanitized"
#                       (the attack tests and the tests that feed the daemon hostile files);
#                       it runs on PostgreSQL, the release run on SQLite files
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fuzz_seconds=${FUZZ_SECONDS:-60}
mode=all
only=
backend=sqlite
while [ $# -gt 0 ]; do
    case $1 in
    --quick) mode=quick ;;
    --suite) mode=suite; only=${2:?--suite needs a name}; shift ;;
    --only) mode=only; only=${2:?--only needs a test name}; shift ;;
    --list) mode=list ;;
    --backend) backend=${2:?--backend needs sqlite or pg}; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

need=(build-essential meson ninja-build pkg-config libfuse3-dev fuse3 libssl-dev libsqlite3-dev
      libcjson-dev libpq-dev postgresql attr sqlite3 rsync python3 clang libclang-rt-14-dev libseccomp-dev
      python3-jsonschema libprotobuf-c-dev protobuf-c-compiler python3-torch acl libcap2-bin)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

jobs=$(nproc)
# integration tests two at a time (each mostly waits on its daemon's quiet period and analysis);
# those that drop the kernel's caches or measure the page cache run alone (meson.build)
ijobs=${INTEG_JOBS:-$((jobs < 2 ? jobs : 2))}

# with_pg CMD...: CMD with PROVFS_TEST_PGHOST naming a throwaway PostgreSQL server's socket
# directory (each test makes its own database there), stopped and removed after.
with_pg() {
    local dir rc=0
    dir=$(mktemp -d /tmp/provfs-pgtest.XXXXXX)
    chmod 755 "$dir" # the server runs as nobody, in a 0700 directory of its own below
    tests/pg.sh start "$dir/pg" >/dev/null || { rm -rf "$dir"; return 1; }
    PROVFS_TEST_PGHOST=$dir/pg "$@" || rc=$?
    tests/pg.sh stop "$dir/pg"
    rm -rf "$dir"
    return $rc
}
run() { if [ "$backend" = pg ]; then with_pg "$@"; else "$@"; fi; }
case $backend in sqlite|pg) ;; *) echo "test.sh: --backend sqlite or pg" >&2; exit 2 ;; esac

start=$SECONDS
stamp() { echo "== [$((SECONDS - start))s] $*"; }
stamp "build (release checks, -Werror)"
[ -d build ] || meson setup build -Dwerror=true >/dev/null
ninja -C build -j"$jobs"

case $mode in
list) meson test -C build --list; exit 0 ;;
quick) stamp "unit tests"
    meson test -C build --suite unit --print-errorlogs --num-processes "$jobs"; exit 0 ;;
suite) stamp "suite $only ($backend)"
    run meson test -C build --suite "$only" --print-errorlogs --num-processes "$ijobs"; exit 0 ;;
only) stamp "test $only ($backend)"
    run meson test -C build "$only" --print-errorlogs --num-processes 1; exit 0 ;;
esac

stamp "unit tests"
# in-process, each in its own temp dir: one per core
meson test -C build --suite unit --print-errorlogs --num-processes "$jobs"
if [ "${SKIP_INTEGRATION:-0}" != 1 ]; then
    stamp "integration tests"
    meson test -C build --suite integration --print-errorlogs --num-processes "$ijobs"
    # Each test runs on both backends: those of suite "sanitized" on PostgreSQL below, with the
    # ASan+UBSan daemon (ASAN_DAEMON_ALL=1: all of them there, and none here).
    # Suite "service" mounts through fstab with a database file of its own: not repeated.
    pg_suite=(--suite integration --no-suite sanitized --no-suite service)
    [ "${SKIP_ASAN_DAEMON:-0}" = 1 ] && pg_suite=(--suite integration --no-suite service)
    [ "${ASAN_DAEMON_ALL:-0}" = 1 ] && pg_suite=()
    if [ ${#pg_suite[@]} -gt 0 ]; then
        stamp "integration tests on PostgreSQL"
        with_pg meson test -C build "${pg_suite[@]}" --print-errorlogs --num-processes "$ijobs"
    fi
fi

stamp "unit tests under ASan+UBSan"
# -O2 (debugoptimized) as the fuzz build: the sanitizers check the same, at about twice the speed
[ -d build-asan ] || meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debugoptimized -Dtest_mkmodel="$root/build/tools/mkmodel" \
    -Dtest_matrix_models="$root/build/tests/unit/matrix-models.stamp.d" >/dev/null
ninja -C build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    meson test -C build-asan --suite unit --print-errorlogs --num-processes "$jobs"
if [ "${SKIP_INTEGRATION:-0}" != 1 ] && [ "${SKIP_ASAN_DAEMON:-0}" != 1 ]; then
    # The daemon, provctl and mkmodel of the sanitizer build on real mounts: lib.sh fails a test
    # whose daemon log holds a sanitizer report.
    asan_suite=sanitized
    [ "${ASAN_DAEMON_ALL:-0}" = 1 ] && asan_suite=integration
    stamp "suite $asan_suite with the ASan+UBSan daemon, on PostgreSQL"
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        with_pg meson test -C build-asan --suite "$asan_suite" --no-suite service \
        --print-errorlogs --num-processes "$ijobs"
fi

if [ "$fuzz_seconds" -gt 0 ]; then
    stamp "fuzzing (${fuzz_seconds}s per target)"
    [ -d build-fuzz ] || CC=clang meson setup build-fuzz -Dfuzz=true \
        -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized >/dev/null
    # Only the fuzz targets, the libraries they link and the check that fails the build when one
    # of those has no coverage counters (tests/fuzz/check_instrumented.sh; the fuzz suite
    # repeats it): the daemon and tests of this build are not used here (half its build time).
    fuzz_targets=$(ninja -C build-fuzz -t targets all | grep -E '^tests/fuzz/fuzz[^/:]*:' |
        cut -d: -f1 || true)
    [ -n "$fuzz_targets" ] || { echo "build-fuzz: no fuzz target"; exit 1; }
    # shellcheck disable=SC2086 # one word per target
    ninja -C build-fuzz -j"$jobs" $fuzz_targets
    meson test -C build-fuzz --no-rebuild --suite fuzz --print-errorlogs --num-processes 1
    export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    # regression inputs (tests/fuzz/regress/NAME/): each replayed once, no fuzzing
    for dir in tests/fuzz/regress/*/; do
        [ -d "$dir" ] || continue
        name=$(basename "$dir")
        files=()
        for f in "$dir"*; do [ -f "$f" ] && files+=("$f"); done
        [ ${#files[@]} -gt 0 ] || continue
        if [ ! -x "build-fuzz/tests/fuzz/fuzz_$name" ]; then
            echo "fuzz regress $name: no target fuzz_$name"; exit 1
        fi
        if ! "build-fuzz/tests/fuzz/fuzz_$name" "${files[@]}" >"build-fuzz/regress-$name.log" 2>&1
        then
            echo "fuzz regress $name: FAILED"
            tail -40 "build-fuzz/regress-$name.log"
            exit 1
        fi
        echo "fuzz regress $name: ok (${#files[@]} inputs)"
    done
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    pids=()
    names=()
    for exe in build-fuzz/tests/fuzz/fuzz_*; do
        [ -f "$exe" ] && [ -x "$exe" ] || continue   # skip meson's fuzz_*.p object directories
        name=${exe##*/fuzz_}
        mkdir -p "$work/$name" "$root/build-fuzz/crashes/$name"
        cp -r "$root/tests/fuzz/corpus/$name/." "$work/$name/" 2>/dev/null || true
        dict=()
        [ -f "$root/tests/fuzz/dict/$name.dict" ] && dict=(-dict="$root/tests/fuzz/dict/$name.dict")
        # one fuzzer per core at a time; crash inputs are kept in build-fuzz/crashes/NAME/
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
        (cd "$work" && "$root/$exe" -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 \
            -timeout=10 -print_final_stats=1 "${dict[@]}" \
            -artifact_prefix="$root/build-fuzz/crashes/$name/" "$work/$name" \
            >"$work/$name.log" 2>&1) &
        pids+=($!)
        names+=("$name")
    done
    status=0
    for i in "${!pids[@]}"; do
        if wait "${pids[$i]}"; then
            echo "fuzz ${names[$i]}: ok ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' \
                "$work/${names[$i]}.log" | grep -o '[0-9]*$') runs," \
                "$(grep -o 'cov: [0-9]*' "$work/${names[$i]}.log" | tail -1))"
        else
            echo "fuzz ${names[$i]}: FAILED (inputs in build-fuzz/crashes/${names[$i]}/)"
            tail -40 "$work/${names[$i]}.log"
            status=1
        fi
    done
    [ $status -eq 0 ] || exit 1
fi
stamp "all tests passed"
