#!/usr/bin/env bash
# tools/bench-cache.sh DIR [RUNS] [BUILD] — page cache, large I/O and metadata rows: provfs vs the
# native directory vs libfuse's passthrough_ll example (built from /usr/share/doc into DIR), same
# mount options (allow_other, default_permissions). Smaller than tools/bench-fs.sh (512 MiB file,
# 20,000 small files), so it can run after each change. Needs root and /dev/fuse. Best of RUNS
# (default 3); x-native and x-pt are provfs's throughput over native's and passthrough_ll's.
#   warm read     dd of a 512 MiB file opened a second time (page cache kept across opens?)
#   warm mmap     page walk of the same file through mmap, second open
#   stat          os.stat of 20,000 existing files (fresh names: no dentry cached)
#   create+write  create, write 64 B, close: 5,000 files
#   seq write     dd 512 MiB bs=1M conv=fsync
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=$(realpath -m "${1:?usage: bench-cache.sh DIR [RUNS] [BUILD]}")
runs=${2:-3}
build=${3:-build}
provfs=${PROVFS:-$root/$build/fs/provfs}
[ "$(id -u)" -eq 0 ] && [ -c /dev/fuse ] || { echo "bench-cache: needs root and /dev/fuse (skipped)"; exit 0; }
mkdir -p "$dir"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
b=$dir/cb
rm -rf "$b" && mkdir -p "$b"/{native,pf-back,pf-mnt,pt-back,pt-mnt}
pids=()
cleanup() {
    for m in "$b/pf-mnt" "$b/pt-mnt"; do mountpoint -q "$m" && fusermount3 -u -z "$m" 2>/dev/null; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$b"
}
trap cleanup EXIT
ex=/usr/share/doc/libfuse3-dev/examples
pt=$dir/passthrough_ll
if [ ! -x "$pt" ]; then
    src=$ex/passthrough_ll.c
    [ -f "$src" ] || { [ -f "$src.gz" ] && gunzip -c "$src.gz" >"$dir/passthrough_ll.c" && src=$dir/passthrough_ll.c; }
    cc -O2 -Wall -o "$pt" "$src" $(pkg-config --cflags --libs fuse3) -lpthread
fi
# shellcheck disable=SC2086
"$provfs" -f ${PROVFS_OPTS:-} "$b/pf-back" "$b/pf-mnt" >"$b/provfs.log" 2>&1 &
pids+=($!)
"$pt" -f -o allow_other,default_permissions,source="$b/pt-back" "$b/pt-mnt" >"$b/pt.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    mountpoint -q "$b/pf-mnt" && mountpoint -q "$b/pt-mnt" && break
    sleep 0.05
done
mountpoint -q "$b/pf-mnt" && mountpoint -q "$b/pt-mnt" || { echo "bench-cache: no mounts" >&2; exit 1; }
fsdir() { case $1 in native) echo "$b/native" ;; provfs) echo "$b/pf-mnt" ;; pt) echo "$b/pt-mnt" ;; esac; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

declare -A res
for fs in native provfs pt; do
    d=$(fsdir "$fs")
    dd if=/dev/urandom of="$d/big" bs=1M count=512 status=none
    drop
    out=$(python3 - "$d" "$runs" <<'PY'
import mmap, os, subprocess, sys, time
d, runs = sys.argv[1], int(sys.argv[2])
def best(f):
    return min(f() for _ in range(runs))
def warm_read():
    with open(f"{d}/big", "rb") as f:  # warm the cache through one open
        while f.read(1 << 20): pass
    t0 = time.perf_counter()
    with open(f"{d}/big", "rb", buffering=0) as f:
        while f.read(1 << 20): pass
    return time.perf_counter() - t0
def warm_mmap():
    with open(f"{d}/big", "rb") as f:
        while f.read(1 << 20): pass
    t0 = time.perf_counter()
    with open(f"{d}/big", "rb") as f:
        m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        s = 0
        for off in range(0, len(m), 4096): s += m[off]
        m.close()
    return time.perf_counter() - t0
# 4 directories of 5,000, the kernel's dentries and inodes dropped after each (passthrough_ll
# holds an fd per inode the kernel remembers; this machine's hard RLIMIT_NOFILE is 20,000)
n_stat = 20000
def forget():
    subprocess.run(["sh", "-c", "sync; echo 2 >/proc/sys/vm/drop_caches"], check=True)
for r in range(4):
    os.makedirs(f"{d}/s{r}", exist_ok=True)
    for i in range(5000):
        os.close(os.open(f"{d}/s{r}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
    forget()
def stat_all():
    t = 0
    for r in range(4):
        forget()
        t0 = time.perf_counter()
        for i in range(5000): os.stat(f"{d}/s{r}/f{i}")
        t += time.perf_counter() - t0
    return t
rnd = [0]
def create_write():
    rnd[0] += 1
    p = f"{d}/c{rnd[0]}"
    os.mkdir(p)
    t0 = time.perf_counter()
    for i in range(5000):
        fd = os.open(f"{p}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b"x" * 64); os.close(fd)
    t = time.perf_counter() - t0
    forget()
    return t
def seq_write():
    t0 = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={d}/w", "bs=1M", "count=512", "conv=fsync",
                    "status=none"], check=True)
    t = time.perf_counter() - t0
    os.unlink(f"{d}/w")
    return t
print("read", 512 / best(warm_read))
print("mmap", 512 / best(warm_mmap))
print("stat", n_stat / best(stat_all))
print("create", 5000 / best(create_write))
print("write", 512 / best(seq_write))
PY
)
    while read -r k v; do res[$fs,$k]=$v; done <<<"$out"
    rm -rf "$d"/big "$d"/s? "$d"/c*
done
echo "== bench-cache: best of $runs (MiB/s or ops/s; higher is better)"
printf '%-26s %10s %10s %10s %9s %9s\n' row native provfs pt x-native x-pt
for k in read mmap stat create write; do
    case $k in read) n="warm read 512 MiB" ;; mmap) n="warm mmap page walk" ;;
        stat) n="stat 20,000 files" ;; create) n="create+64 B write" ;; write) n="seq write 512 MiB" ;; esac
    printf '%-26s %10.0f %10.0f %10.0f %9.2f %9.2f\n' "$n" "${res[native,$k]}" "${res[provfs,$k]}" \
        "${res[pt,$k]}" "$(awk -v a="${res[provfs,$k]}" -v b="${res[native,$k]}" 'BEGIN{print a/b}')" \
        "$(awk -v a="${res[provfs,$k]}" -v b="${res[pt,$k]}" 'BEGIN{print a/b}')"
done
