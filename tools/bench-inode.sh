#!/usr/bin/env bash
# tools/bench-inode.sh DIR RUNS PROVFS_A PROVFS_B [provfs options...] — the small-file row of
# tools/bench-fs.sh (create+stat+unlink 20,000 files) and a re-stat row (15,000 live files stat'ed
# again once their attributes expired: lookups and getattrs of inodes the kernel remembers) for two
# provfs binaries mounted one after the other in the same run, e.g. a build before and after a
# change of the inode table. Options after the binaries go to both mounts (e.g. --inode-fds 1024:
# most inode fds closed and reopened from file handles); OPTS_A and OPTS_B add options to one of
# them (e.g. OPTS_B="--inode-fds 1024" with the same binary twice). Needs root and /dev/fuse.
# Best of RUNS; ratio = B's time / A's time (below 1: B faster).
set -euo pipefail
dir=$(realpath -m "${1:?usage: bench-inode.sh DIR RUNS PROVFS_A PROVFS_B [options...]}")
runs=${2:-3}
a=$(realpath "${3:?}")
bb=$(realpath "${4:?}")
shift 4
[ "$(id -u)" -eq 0 ] && [ -c /dev/fuse ] || { echo "bench-inode: needs root and /dev/fuse (skipped)"; exit 0; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
b=$dir/inob
rm -rf "$b" && mkdir -p "$b"/{back,mnt}
pid=
cleanup() {
    mountpoint -q "$b/mnt" && fusermount3 -u -z "$b/mnt" 2>/dev/null
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$b"
}
trap cleanup EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN{print (b=="" || a<b) ? a : b}'; }

declare -A res
for which in A B; do
    exe=$a extra=${OPTS_A:-}
    [ "$which" = B ] && exe=$bb extra=${OPTS_B:-}
    for _ in $(seq "$runs"); do
        rm -rf "$b/back" && mkdir -p "$b/back"
        # shellcheck disable=SC2086
        "$exe" -f $extra "$@" "$b/back" "$b/mnt" >"$b/provfs.log" 2>&1 &
        pid=$!
        for _ in $(seq 100); do mountpoint -q "$b/mnt" && break; sleep 0.05; done
        mountpoint -q "$b/mnt" || { cat "$b/provfs.log" >&2; exit 1; }
        mkdir -p "$b/mnt/small"
        t0=$(now)
        python3 - "$b/mnt/small" <<'PYEOF'
import os, sys
d = sys.argv[1]
for r in range(4):
    names = [f"{d}/f{r}_{i}" for i in range(5000)]
    for n in names:
        fd = os.open(n, os.O_CREAT | os.O_WRONLY, 0o644); os.close(fd)
    for n in names:
        os.stat(n)
    for n in names:
        os.unlink(n)
PYEOF
        t1=$(now)
        res[$which,small]=$(min "$(secs "$t0" "$t1")" "${res[$which,small]:-}")
        python3 - "$b/mnt/small" <<'PYEOF'
import os, sys
d = sys.argv[1]
for i in range(15000):
    fd = os.open(f"{d}/g{i}", os.O_CREAT | os.O_WRONLY, 0o644); os.close(fd)
PYEOF
        sleep 1.2 # past the attribute and entry timeouts: every stat asks the daemon
        t0=$(now)
        python3 - "$b/mnt/small" <<'PYEOF'
import os, sys
d = sys.argv[1]
for r in range(2):
    for i in range(15000):
        os.stat(f"{d}/g{i}")
PYEOF
        t1=$(now)
        res[$which,restat]=$(min "$(secs "$t0" "$t1")" "${res[$which,restat]:-}")
        fusermount3 -u "$b/mnt"
        wait "$pid" 2>/dev/null || true
        pid=
    done
done
echo "== inode table: A=$a ${OPTS_A:-} B=$bb ${OPTS_B:-} ${*:+(both: $*)}, best of $runs, seconds"
printf '%-44s %9s %9s %7s\n' row A B B/A
for k in small restat; do
    name="create+stat+unlink 20,000 files"
    [ "$k" = restat ] && name="stat 15,000 live files twice (expired attrs)"
    printf '%-44s %9s %9s %7s\n' "$name" "${res[A,$k]}" "${res[B,$k]}" \
        "$(awk -v x="${res[A,$k]}" -v y="${res[B,$k]}" 'BEGIN{printf "%.2f", y/x}')"
done
