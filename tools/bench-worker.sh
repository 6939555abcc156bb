#!/usr/bin/env bash
# tools/bench-worker.sh DIR RUNS — the "worker" rows of tools/bench.sh (issue 9), a ~1 GiB bf16
# model in the page cache:
# 1. fingerprint in one process vs through an analysis worker (benchtool worker: the files are
#    opened by the caller and passed to a sandboxed provfs worker, JSON back), rounds alternating,
#    wall clock and CPU time (the worker's included);
# 2. through the mount: time from the last close() (cp into the mount) to status=ready with the
#    worker (the default) vs in the daemon (--analyzer-worker=off), both mounts up at once, runs
#    alternating. Needs root and /dev/fuse.
# Target: the worker costs <= 5% more.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=$(realpath -m "${1:?usage: bench-worker.sh DIR RUNS}")
runs=${2:-3}
provfs=$root/build/fs/provfs
mk=$root/build/tools/mkmodel
[ "$(id -u)" -eq 0 ] && [ -c /dev/fuse ] || { echo "bench-worker: needs root and /dev/fuse (skipped)"; exit 0; }
quiet=${QUIET_MS:-100}
b=$dir/wkb
rm -rf "$b" && mkdir -p "$b/p" && chmod 700 "$b/p"
pids=()
cleanup() {
    for m in "$b"/mnt-*; do mountpoint -q "$m" && fusermount3 -u -z "$m" 2>/dev/null; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$b"
}
trap cleanup EXIT

model=$dir/base1g
if [ ! -f "$model/model.safetensors" ]; then
    "$mk" create "$model" --arch llama --seed 9 --hidden 2048 --layers 7 --heads 16 \
        --inter 5632 --vocab 32000 --dtype bf16 >/dev/null
fi
cat "$model"/* >/dev/null
echo
echo "== analyzer worker: fingerprint of a $(du -BM "$model/model.safetensors" | cut -f1) bf16 model in the page cache, 2 threads, $runs rounds"
r=$("$root/build/tools/benchtool" worker "$model" 2 "$provfs" "$runs")
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
printf '%-44s %8s s best %8s s mean %8s s CPU\n' "in this process" "$(field inprocess_best "$r")" \
    "$(field inprocess_mean "$r")" "$(field inprocess_cpu "$r")"
printf '%-44s %8s s best %8s s mean %8s s CPU\n' "through a worker (open, pass fds, JSON back)" \
    "$(field worker_best "$r")" "$(field worker_mean "$r")" "$(field worker_cpu "$r")"
echo "worker / in-process: best $(field ratio_best "$r")x, mean $(field ratio_mean "$r")x, CPU $(field ratio_cpu "$r")x (target <= 1.05); same fingerprint: $(field same_fingerprint "$r")"

modes=(worker inprocess)
for mode in "${modes[@]}"; do
    mkdir -p "$b/p/back-$mode" "$b/mnt-$mode"
    extra=()
    [ "$mode" = inprocess ] && extra=(--analyzer-worker=off)
    "$provfs" -f --quiet-ms "$quiet" "${extra[@]}" "$b/p/back-$mode" "$b/mnt-$mode" \
        >"$b/$mode.log" 2>&1 &
    pids+=($!)
done
for mode in "${modes[@]}"; do
    for _ in $(seq 100); do mountpoint -q "$b/mnt-$mode" && break; sleep 0.05; done
    mountpoint -q "$b/mnt-$mode" || { echo "bench-worker: mount did not appear" >&2; exit 1; }
done
now() { date +%s.%N; }
declare -A best all
for i in $(seq "$runs"); do
    for mode in "${modes[@]}"; do
        m=$b/mnt-$mode/m$i
        mkdir -p "$m"
        for f in "$model"/*; do cp "$f" "$m/"; done
        t0=$(now) # cp has returned: its last close() is done
        while [ "$(getfattr --only-values -n user.provenance.status "$m" 2>/dev/null)" != ready ]; do
            sleep 0.005
        done
        t1=$(now)
        s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
        all[$mode]="${all[$mode]:-}${all[$mode]:+ }$s"
        best[$mode]=$(awk -v a="$s" -v b="${best[$mode]:-}" 'BEGIN{print (b=="" || a<b) ? a : b}')
        rm -rf "$m"
    done
done
echo
echo "== analyzer worker: last close() of a $(du -BM "$model/model.safetensors" | cut -f1) bf16 model to status=ready (quiet period ${quiet} ms), best of $runs"
printf '%-44s %8s s   (runs: %s)\n' "in the daemon (--analyzer-worker=off)" "${best[inprocess]}" "${all[inprocess]}"
printf '%-44s %8s s   (runs: %s)\n' "in the unprivileged worker (default)" "${best[worker]}" "${all[worker]}"
echo "worker / in-process: $(awk -v w="${best[worker]}" -v p="${best[inprocess]}" 'BEGIN{printf "%.3f", w/p}')x (target <= 1.05);" \
    "minus the quiet period: $(awk -v w="${best[worker]}" -v p="${best[inprocess]}" -v q="$quiet" 'BEGIN{printf "%.3f", (w-q/1000)/(p-q/1000)}')x"
