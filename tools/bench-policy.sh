#!/usr/bin/env bash
# Cost of the policy check on open(): open()+read()+close() of 1,000 small files inside one model
# unit, by a non-admin user (uid nobody, so the check runs), under "enforce" (the unit approved, so
# every open is allowed after the check) and under "off" (no check), on the same mount in the same
# run: the policy is switched with SIGHUP between rounds, rounds alternate, the best of RUNS is
# kept for each. Target: enforce at most 5% slower than off.
#   usage: tools/bench-policy.sh [SCRATCH_DIR [RUNS]]   (needs root, /dev/fuse; builds first)
#   BENCH_BUILD  build directory to use (default ./build)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scratch=${1:-/tmp/provfs-bench}
runs=${2:-3}
n_files=${BENCH_POLICY_FILES:-1000}

if [ "$(id -u)" -ne 0 ] || [ ! -c /dev/fuse ]; then
    echo "policy bench: skipped (needs root and /dev/fuse)"
    exit 0
fi
build=${BENCH_BUILD:-$root/build}
[ -d "$build" ] || meson setup "$build" >/dev/null
ninja -C "$build" >/dev/null
provfs=$build/fs/provfs
mk=$build/tools/mkmodel
py=/usr/bin/python3
user_uid=$(id -u nobody)
user_gid=$(id -g nobody)

mkdir -p "$scratch"
T=$(mktemp -d "$scratch/policy.XXXXXX")
chmod 755 "$T"
B=$T/private/backing # inside a root-only directory, as enforce requires (fs/SECURITY.md)
M=$T/mnt
mkdir -p "$B/.provfs" "$M"
chmod 700 "$T/private"
chmod 755 "$B"
pid=
cleanup() {
    set +e
    if mountpoint -q "$M" 2>/dev/null; then fusermount3 -u -z "$M"; fi
    if [ -n "$pid" ]; then
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$T"
}
trap cleanup EXIT

set_mode() {
    printf '{ "mode": "%s", "require_approval": "unknown-lineage" }\n' "$1" >"$B/.provfs/policy.json"
    if [ -n "$pid" ]; then
        kill -HUP "$pid"
        for _ in $(seq 100); do
            grep -Eq "\"mode\":[[:space:]]*\"$1\"" "$M/.provenance" 2>/dev/null && return 0
            sleep 0.02
        done
        echo "policy bench: mode $1 did not take effect" >&2
        exit 1
    fi
}

set_mode enforce
"$mk" create "$T/src" --arch llama --seed 7 >/dev/null
"$provfs" -f --quiet-ms 200 "$B" "$M" >"$T/provfs.log" 2>&1 &
pid=$!
for _ in $(seq 100); do mountpoint -q "$M" && break; sleep 0.05; done
mountpoint -q "$M" || { cat "$T/provfs.log" >&2; exit 1; }

# One unit: a model plus n small files (4 KiB each) next to its weights, all gated names.
cp -r "$T/src" "$M/unit"
"$py" - "$M/unit" "$n_files" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
block = os.urandom(4096)
for i in range(n):
    with open(os.path.join(d, "shard-%04d.bin" % i), "wb") as f:
        f.write(block)
EOF
for _ in $(seq 600); do
    [ "$(getfattr --only-values -n user.provenance.status "$M/unit" 2>/dev/null)" = ready ] && break
    sleep 0.1
done
setfattr -n user.provenance.approve -v "bench" "$M/unit"

# Prints the seconds for one pass over every file, as the non-admin user.
pass() {
    setpriv --reuid="$user_uid" --regid="$user_gid" --clear-groups -- "$py" - "$M/unit" "$n_files" <<'EOF'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
paths = [os.path.join(d, "shard-%04d.bin" % i) for i in range(n)]
for p in paths:  # warm: dentries, attributes and the daemon's decision cache
    with open(p, "rb") as f:
        f.read()
best = 1e9
for _ in range(3):  # the machine is shared: keep the quietest of three passes
    t = time.perf_counter()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        os.read(fd, 65536)
        os.close(fd)
    best = min(best, time.perf_counter() - t)
print("%.6f" % best)
EOF
}

best_off=1e9
best_enf=1e9
for _ in $(seq "$runs"); do
    set_mode off
    s=$(pass)
    best_off=$(awk -v a="$s" -v b="$best_off" 'BEGIN{print (a<b)?a:b}')
    set_mode enforce
    s=$(pass)
    best_enf=$(awk -v a="$s" -v b="$best_enf" 'BEGIN{print (a<b)?a:b}')
done
# The check ran and allowed: the unit is approved under enforce.
grep -Eq '"decision":[[:space:]]*"allow"' "$M/unit/.provenance" || { echo "policy bench: unit not allowed" >&2; exit 1; }

echo "policy check on open() ($n_files files of 4 KiB in one unit, uid nobody, best of $runs x 3 passes)"
awk -v off="$best_off" -v enf="$best_enf" -v n="$n_files" 'BEGIN{
    printf "  %-22s %8.4f s  %7.1f us/open\n", "mode off", off, off / n * 1e6
    printf "  %-22s %8.4f s  %7.1f us/open\n", "mode enforce (allowed)", enf, enf / n * 1e6
    printf "  enforce / off          %8.3fx  (target <= 1.05x)\n", enf / off
}'
