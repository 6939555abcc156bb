#!/usr/bin/env bash
# How the cost per model grows with the store: N tiny same-architecture Llama models (half
# independent bases, half fine-tunes, one of each base) are copied into one mount in batches,
# each batch waited for until every model of the store is analysed. Reported, each next to its
# target: per-model ingest time of every batch (last / first <= 2x), the daemon's RSS at the end
# (<= 256 MiB), reading the store root's .provenance (<= 50 ms), getxattr of user.provenance.status
# and .parent on 1,000 random units (p99 <= 1 ms), database bytes per model, and the lineage found:
# every fine-tune's parent must be its base, and no base may get a parent (a wrong lineage makes
# the script exit 1; the speed targets do not).
#   usage: tools/bench-scale.sh [SCRATCH_DIR]   (needs root, /dev/fuse; builds first)
#   BENCH_BUILD         build directory to use (default ./build)
#   BENCH_SCALE_MODELS  models in all, an even number (default 10000)
#   BENCH_SCALE_BATCH   models per batch (default 1000)
# The models are generated once, before the mount, under SCRATCH_DIR/scale-src (kept for the next
# run; their generation is not measured). Each base is copied just before its own fine-tune, so a
# fine-tune may be analysed while its base still is.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scratch=${1:-/tmp/provfs-bench}
n_models=${BENCH_SCALE_MODELS:-10000}
batch=${BENCH_SCALE_BATCH:-1000}
if [ $((n_models % 2)) -ne 0 ] || [ $((batch % 2)) -ne 0 ] || [ "$n_models" -lt 2 ] ||
    [ "$batch" -lt 2 ]; then
    echo "scale bench: BENCH_SCALE_MODELS and BENCH_SCALE_BATCH must be even and >= 2" >&2
    exit 2
fi
pairs=$((n_models / 2))

if [ "$(id -u)" -ne 0 ] || [ ! -c /dev/fuse ]; then
    echo "scale bench: skipped (needs root and /dev/fuse)"
    exit 0
fi
build=${BENCH_BUILD:-$root/build}
[ -d "$build" ] || meson setup "$build" >/dev/null
ninja -C "$build" >/dev/null
provfs=$build/fs/provfs
mk=$build/tools/mkmodel
py=/usr/bin/python3

# ---- the models, outside the mount: base b$i (seed 100000+i), fine-tune f$i of it (200000+i)
mkdir -p "$scratch"
src=$scratch/scale-src
mkdir -p "$src"
name() { printf '%s%05d' "$1" "$2"; }
gen_range() { # FIRST LAST: pairs FIRST..LAST, skipping those already made
    local i b f
    for ((i = $1; i <= $2; i++)); do
        b=$src/$(name b "$i")
        f=$src/$(name f "$i")
        if [ ! -d "$b" ]; then
            rm -rf "$b.tmp"
            "$mk" create "$b.tmp" --arch llama --seed $((100000 + i)) --hidden 64 --layers 2 \
                --heads 2 --inter 128 --vocab 512 --dtype bf16 >/dev/null
            mv "$b.tmp" "$b"
        fi
        if [ ! -d "$f" ]; then
            rm -rf "$f.tmp"
            "$mk" derive "$b" "$f.tmp" --kind finetune --seed $((200000 + i)) >/dev/null
            mv "$f.tmp" "$f"
        fi
    done
}
t_gen=$(date +%s.%N)
half=$(((pairs + 1) / 2))
gen_range 1 "$half" &
g1=$!
gen_range $((half + 1)) "$pairs" &
g2=$!
wait "$g1"
wait "$g2"
echo "scale bench: $n_models models in $src ($(du -sm "$src" | cut -f1) MiB in all there)," \
    "generated or found in $(awk -v a="$t_gen" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}') s"

# ---- the mount, as tools/bench-policy.sh makes it; policy off (not measured here)
T=$(mktemp -d "$scratch/scale.XXXXXX")
chmod 755 "$T"
B=$T/private/backing
M=$T/mnt
mkdir -p "$B/.provfs" "$M"
chmod 700 "$T/private"
chmod 755 "$B"
printf '{ "mode": "off" }\n' >"$B/.provfs/policy.json"
pid=
cleanup() {
    set +e
    if mountpoint -q "$M" 2>/dev/null; then fusermount3 -u -z "$M"; fi
    if [ -n "$pid" ]; then
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    if [ -n "${BENCH_SCALE_KEEP:-}" ]; then echo "scale bench: kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
"$provfs" -f "$B" "$M" >"$T/provfs.log" 2>&1 &
pid=$!
for _ in $(seq 100); do mountpoint -q "$M" && break; sleep 0.05; done
mountpoint -q "$M" || { cat "$T/provfs.log" >&2; exit 1; }
mkdir "$M/m"

rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status"; }
hwm_kib() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status"; }
# CPU seconds of the daemon itself and of the analysis workers it has reaped (one a unit):
# "OWN CHILDREN", from /proc/PID/stat (fields after the command name, which may hold spaces)
cpu_s() {
    local st
    st=$(<"/proc/$pid/stat")
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f %.3f\n", ($12 + $13) / hz, ($14 + $15) / hz}' \
        <<<"${st##*) }"
}
alive() {
    kill -0 "$pid" 2>/dev/null && return 0
    echo "scale bench: the daemon exited; its log:" >&2
    tail -n 50 "$T/provfs.log" >&2
    exit 1
}

# Waits until the store holds EXPECT models, none pending or analysing, EXPECT of them settled
# (ready, incomplete or failed) and EXPECT analyses logged; prints the store's counts. The root's
# .provenance is read at each poll (store_stats rows, no table scan): units still waiting out their
# quiet period are in the queue, not in the store yet, hence the count of models and not only
# pending == 0. A model is "ready" before its lineage is linked (store_finish_ready, then
# link_model), and its "analyzed" event follows the link: that event, read from the database
# (read-only, only once the counts are there), is the end of a model's ingest.
wait_settled() {
    "$py" - "$M/.provenance" "$1" "${BENCH_SCALE_TIMEOUT:-3600}" "$B/.provfs/lineage.db" <<'EOF'
import json, sqlite3, sys, time
path, expect, limit, db = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
t0 = time.monotonic()
while True:
    with open(path) as f:
        d = json.load(f)
    s = d["status"]
    settled = s["ready"] + s["incomplete"] + s["failed"]
    if d["models"] >= expect and s["pending"] == 0 and s["analyzing"] == 0 and settled >= expect:
        n = con.execute("SELECT count(*) FROM events"
                        " WHERE kind IN ('analyzed', 'store-failed')").fetchone()[0]
        if n >= expect:
            break
    if time.monotonic() - t0 > limit:
        print("timeout", file=sys.stderr)
        break
    time.sleep(0.05)
print(d["models"], d["edges"], s["ready"], s["incomplete"], s["failed"])
EOF
}

n_batches=$(((n_models + batch - 1) / batch))
declare -a b_models b_secs b_rss b_own b_kids b_load
read -r own0 kids0 < <(cpu_s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
copied=0
next=1 # next pair to copy
for ((k = 1; k <= n_batches; k++)); do
    alive
    want=$((k * batch > n_models ? n_models : k * batch))
    list=()
    while [ $((copied + 2)) -le "$want" ]; do
        list+=("$src/$(name b "$next")" "$src/$(name f "$next")")
        next=$((next + 1))
        copied=$((copied + 2))
    done
    t0=$(date +%s.%N)
    cp -r "${list[@]}" "$M/m/"
    read -r models edges ready incomplete failed < <(wait_settled "$copied")
    t1=$(date +%s.%N)
    alive
    if [ "$models" -lt "$copied" ] || [ $((ready + incomplete + failed)) -lt "$copied" ]; then
        echo "scale bench: batch $k not settled: models=$models ready=$ready" \
            "incomplete=$incomplete failed=$failed of $copied" >&2
        tail -n 30 "$T/provfs.log" >&2
        exit 1
    fi
    b_models[k]=${#list[@]}
    b_secs[k]=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
    b_rss[k]=$(rss_kib)
    read -r own kids < <(cpu_s)
    b_own[k]=$(awk -v a="$own" -v b="$own0" 'BEGIN{printf "%.3f", a-b}')
    b_kids[k]=$(awk -v a="$kids" -v b="$kids0" 'BEGIN{printf "%.3f", a-b}')
    own0=$own
    kids0=$kids
    b_load[k]=$(cut -d' ' -f1 /proc/loadavg)
    printf 'scale bench: batch %d: %d models in %s s (store: %d models, %d edges, %d ready, %d incomplete, %d failed; RSS %d MiB)\n' \
        "$k" "${#list[@]}" "${b_secs[k]}" "$models" "$edges" "$ready" "$incomplete" "$failed" \
        $((b_rss[k] / 1024))
done

# ---- at the end: .provenance, xattrs of random units, lineage found, database size, RSS
alive
rss=$(rss_kib)
hwm=$(hwm_kib)
res=$("$py" - "$M" "$pairs" "$B/.provfs/lineage.db" <<'EOF'
import os, random, sqlite3, statistics, subprocess, sys, time
mnt, pairs, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]
name = lambda k, i: "%s%05d" % (k, i)
# cat of the root's .provenance (a process each, as a user would), median of 5
cat = []
for _ in range(5):
    t = time.perf_counter()
    subprocess.run(["cat", os.path.join(mnt, ".provenance")], stdout=subprocess.DEVNULL, check=True)
    cat.append(time.perf_counter() - t)
opn = []
for _ in range(5):  # the same read in this process: open (renders), read, close
    t = time.perf_counter()
    with open(os.path.join(mnt, ".provenance"), "rb") as f:
        f.read()
    opn.append(time.perf_counter() - t)
print("cat_ms %.3f" % (statistics.median(cat) * 1e3))
print("open_ms %.3f" % (statistics.median(opn) * 1e3))
# getxattr on 1,000 random units (bases and fine-tunes); a pass to look the names up first,
# then one timed pass (each call reaches the daemon: the kernel does not cache xattrs)
units = [name(k, i) for i in range(1, pairs + 1) for k in "bf"]
rnd = random.Random(1)
sample = rnd.sample(units, min(1000, len(units)))
def get(p, x):
    try:
        return os.getxattr(p, x)
    except OSError:
        return None
for u in sample:
    os.stat(os.path.join(mnt, "m", u))
times = {"status": [], "parent": []}
for u in sample:
    p = os.path.join(mnt, "m", u)
    for x in times:
        t = time.perf_counter()
        get(p, "user.provenance." + x)
        times[x].append(time.perf_counter() - t)
for x, v in times.items():
    v.sort()
    print("xattr_%s %d %.1f %.1f %.1f" % (x, len(v), statistics.median(v) * 1e6, v[int(len(v) * 0.99)] * 1e6,
                                        v[-1] * 1e6))
# lineage: every unit's status and parent through the xattrs
wrong, none, base_par, not_ready = [], [], [], []
for i in range(1, pairs + 1):
    b, f = "/m/" + name("b", i), "/m/" + name("f", i)
    for u in (b, f):
        st = get(mnt + u, "user.provenance.status")
        if st != b"ready":
            not_ready.append("%s=%s" % (u, st.decode() if st else "none"))
    par = get(mnt + f, "user.provenance.parent")
    if par is None:
        none.append(f)
    elif par.decode() != b:
        wrong.append("%s->%s" % (f, par.decode()))
    par = get(mnt + b, "user.provenance.parent")
    if par is not None:
        base_par.append("%s->%s" % (b, par.decode()))
ok = pairs - len(wrong) - len(none)
print("lineage_ok %d" % ok)
print("lineage_none %d %s" % (len(none), " ".join(none[:10])))
print("lineage_wrong %d %s" % (len(wrong), " ".join(wrong[:10])))
print("base_parent %d %s" % (len(base_par), " ".join(base_par[:10])))
print("not_ready %d %s" % (len(not_ready), " ".join(not_ready[:10])))
# the same lineage read from the database itself (read-only, beside the daemon)
con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
rows = con.execute(
    "SELECT c.path, p.path FROM edges e"
    " JOIN model_paths c ON c.model_id = e.child_id"
    " JOIN model_paths p ON p.model_id = e.parent_id WHERE e.is_parent = 1").fetchall()
par = {c: p for c, p in rows}
db_ok = sum(1 for i in range(1, pairs + 1) if par.get("/m/" + name("f", i)) == "/m/" + name("b", i))
print("db_ok %d" % db_ok)
print("db_edges %d" % con.execute("SELECT count(*) FROM edges").fetchone()[0])
EOF
)
val() { sed -n "s/^$1 //p" <<<"$res"; }
db_bytes=0
for f in "$B/.provfs/lineage.db" "$B/.provfs/lineage.db-wal"; do
    [ -f "$f" ] && db_bytes=$((db_bytes + $(stat -c %s "$f")))
done
db_main=$(stat -c %s "$B/.provfs/lineage.db")

echo
echo "== scale: $n_models tiny Llama models ($pairs bases, $pairs fine-tunes), batches of $batch"
echo "  ($(nproc) CPUs; load average $load_start at the first copy, $(cut -d' ' -f1-3 /proc/loadavg) now)"
echo "  (ms/model: wall time of the batch, copy to all analysed, over its models; CPU ms/model of"
echo "   the daemon itself and of its analysis workers; load: 1-minute load average at its end)"
printf '  %-6s %7s %9s %9s %11s %11s %8s %6s\n' batch models "wall s" ms/model "daemon CPU" \
    "worker CPU" "RSS MiB" load
per() { awk -v s="$1" -v n="$2" 'BEGIN{printf "%.2f", s/n*1000}'; }
for ((k = 1; k <= n_batches; k++)); do
    printf '  %-6d %7d %9.3f %9.2f %11.2f %11.2f %8d %6s\n' "$k" "${b_models[k]}" "${b_secs[k]}" \
        "$(per "${b_secs[k]}" "${b_models[k]}")" "$(per "${b_own[k]}" "${b_models[k]}")" \
        "$(per "${b_kids[k]}" "${b_models[k]}")" $((b_rss[k] / 1024)) "${b_load[k]}"
done
first=$(per "${b_secs[1]}" "${b_models[1]}")
last=$(per "${b_secs[n_batches]}" "${b_models[n_batches]}")
own_first=$(per "${b_own[1]}" "${b_models[1]}")
own_last=$(per "${b_own[n_batches]}" "${b_models[n_batches]}")
read -r xs_n xs_med xs_p99 xs_max <<<"$(val xattr_status)"
read -r xp_n xp_med xp_p99 xp_max <<<"$(val xattr_parent)"
awk -v f="$first" -v l="$last" 'BEGIN{printf "  %-40s %10.2fx   (target <= 2x)\n", "ingest per model, last / first batch", l/f}'
awk -v f="$own_first" -v l="$own_last" 'BEGIN{printf "  %-40s %10.2fx   (the same, whatever the load)\n", "daemon CPU per model, last / first batch", l/f}'
printf '  %-40s %10d MiB (target <= 256 MiB; peak %d MiB)\n' "daemon RSS at the end (VmRSS)" \
    $((rss / 1024)) $((hwm / 1024))
printf '  %-40s %10s ms  (target <= 50 ms; open+read in-process %s ms)\n' \
    "cat MOUNT/.provenance, median of 5" "$(val cat_ms)" "$(val open_ms)"
printf '  %-40s %7s us med %7s us p99 (target p99 <= 1000 us; max %s us)\n' \
    "getxattr status, $xs_n random units" "$xs_med" "$xs_p99" "$xs_max"
printf '  %-40s %7s us med %7s us p99 (target p99 <= 1000 us; max %s us)\n' \
    "getxattr parent, $xp_n random units" "$xp_med" "$xp_p99" "$xp_max"
printf '  %-40s %10d B   (%d B without the WAL; %d B in all)\n' "database bytes per model" \
    $((db_bytes / n_models)) $((db_main / n_models)) "$db_bytes"
lin_ok=$(val lineage_ok)
read -r n_none none_ex <<<"$(val lineage_none)" || true
read -r n_wrong wrong_ex <<<"$(val lineage_wrong)" || true
read -r n_bpar bpar_ex <<<"$(val base_parent)" || true
read -r n_nr nr_ex <<<"$(val not_ready)" || true
printf '  %-40s %10s / %d (must be all; database says %s)\n' "fine-tunes whose parent is their base" \
    "$lin_ok" "$pairs" "$(val db_ok)"
printf '  %-40s %10s   (must be 0)\n' "bases given a parent" "$n_bpar"
printf '  %-40s %10s   (must be 0)\n' "units not ready" "$n_nr"
echo "  edges in the store: $(val db_edges)"
echo "scale: the synthetic 1,000,000-fingerprint retrieval row is" \
    "BENCH_ONLY=retrieve BENCH_RETRIEVE_MODELS=1000000 tools/bench.sh (not run here: it is long)"
fail=0
if [ "$n_none" -gt 0 ]; then echo "scale bench: FAIL: $n_none fine-tunes without a parent, e.g. $none_ex" >&2; fail=1; fi
if [ "$n_wrong" -gt 0 ]; then echo "scale bench: FAIL: $n_wrong fine-tunes with a wrong parent, e.g. $wrong_ex" >&2; fail=1; fi
if [ "$n_bpar" -gt 0 ]; then echo "scale bench: FAIL: $n_bpar bases with a parent, e.g. $bpar_ex" >&2; fail=1; fi
if [ "$n_nr" -gt 0 ]; then echo "scale bench: FAIL: $n_nr units not ready, e.g. $nr_ex" >&2; fail=1; fi
# the daemon's log and database of this run, for a look after the mount is gone
keep=$scratch/scale-last
rm -rf "$keep" && mkdir -p "$keep"
cp "$T/provfs.log" "$B/.provfs"/lineage.db* "$keep/" 2>/dev/null || true
if [ "$fail" -ne 0 ]; then
    echo "scale bench: daemon log and database copied to $keep; last lines of the log:" >&2
    tail -n 20 "$T/provfs.log" >&2
fi
exit "$fail"
