#!/usr/bin/env bash
# Benchmarks. Every number is reported next to a baseline measured in the same run.
#   BENCH_DIR   scratch directory (default /tmp/provfs-bench; needs ~5 GB)
#   BENCH_RUNS  repetitions per measurement, best is kept (default 3)
#   BENCH_ONLY  "analyzer", "gguf", "scan", "fs", "policy", "worker", "retrieve", "scale", "store"
#               or ""
#               for all sections
#   BENCH_RETRIEVE_MODELS  stored models of the synthetic candidate-retrieval store (100000)
#   BENCH_SCALE_MODELS     tiny models copied into one mount by the scale section (10000;
#                          tools/bench-scale.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=${BENCH_DIR:-/tmp/provfs-bench}
runs=${BENCH_RUNS:-3}
only=${BENCH_ONLY:-}
mkdir -p "$dir"

[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
mk=$root/build/tools/mkmodel
bt=$root/build/tools/benchtool

# best (lowest seconds) of $runs runs of a benchtool command; prints its output line
best_of() {
    local best="" bs=1e18 line s
    for _ in $(seq "$runs"); do
        line=$("$@")
        s=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$line")
        if awk -v a="$s" -v b="$bs" 'BEGIN{exit !(a<b)}'; then bs=$s; best=$line; fi
    done
    echo "$best"
}
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }

analyzer_bench() {
    local model=$dir/base2g ft=$dir/base2g-ft
    if [ ! -f "$model/model.safetensors" ]; then
        echo "generating a 2 GiB bf16 model (hidden 2048, 18 layers, vocab 32000) ..."
        rm -rf "$model"
        "$mk" create "$model" --arch llama --seed 7 --hidden 2048 --layers 18 --heads 16 \
            --inter 5632 --vocab 32000 --dtype bf16 >/dev/null
    fi
    [ -f "$ft/model.safetensors" ] || "$mk" derive "$model" "$ft" --kind finetune --seed 8 >/dev/null
    local f=$model/model.safetensors
    cat "$f" "$ft/model.safetensors" >/dev/null   # page cache
    echo
    echo "== analyzer: fingerprint of $(du -BM "$f" | cut -f1) bf16 safetensors in page cache (best of $runs)"
    local rd sh f1 f2
    rd=$(best_of "$bt" read "$f")
    sh=$(best_of "$bt" sha "$f")
    f1=$(best_of "$bt" fingerprint "$model" 1)
    f2=$(best_of "$bt" fingerprint "$model" 2)
    printf '%-34s %8s s %8s GB/s\n' "read()" "$(field seconds "$rd")" "$(field gbps "$rd")"
    printf '%-34s %8s s %8s GB/s\n' "read() + SHA-256 (EVP)" "$(field seconds "$sh")" "$(field gbps "$sh")"
    printf '%-34s %8s s %8s GB/s   %sx read+SHA   peak RSS %s MiB\n' "fingerprint, 1 thread" \
        "$(field seconds "$f1")" "$(field gbps "$f1")" "$(ratio "$(field seconds "$f1")" "$(field seconds "$sh")")" \
        "$(field peak_rss_mib "$f1")"
    printf '%-34s %8s s %8s GB/s   %sx read+SHA   peak RSS %s MiB\n' "fingerprint, 2 threads" \
        "$(field seconds "$f2")" "$(field gbps "$f2")" "$(ratio "$(field seconds "$f2")" "$(field seconds "$sh")")" \
        "$(field peak_rss_mib "$f2")"
    local n1 n2
    n1=$(best_of "$bt" fingerprint "$model" 1 nofilesha)
    n2=$(best_of "$bt" fingerprint "$model" 2 nofilesha)
    printf '%-34s %8s s %8s GB/s   %sx read+SHA\n' "  same, file SHA-256 supplied, 1t" \
        "$(field seconds "$n1")" "$(field gbps "$n1")" "$(ratio "$(field seconds "$n1")" "$(field seconds "$sh")")"
    printf '%-34s %8s s %8s GB/s   %sx read+SHA\n' "  same, file SHA-256 supplied, 2t" \
        "$(field seconds "$n2")" "$(field gbps "$n2")" "$(ratio "$(field seconds "$n2")" "$(field seconds "$sh")")"
    echo "  (a full fingerprint hashes every byte twice: whole-file SHA-256 for the files list and"
    echo "   per-tensor SHA-256 for byte-exact identity; the store supplies file hashes it already has,"
    echo "   taken while the file was written; each thread hashes two jobs at once on the SHA extensions)"
    local emb_mib
    emb_mib=$(awk 'BEGIN{printf "%.0f", 32000*2048*2/1048576}')
    echo "  (RSS budget: 128 MiB + embedding matrix ${emb_mib} MiB)"
    "$root/build/tools/provctl" fingerprint --json "$model" >"$dir/a.json"
    "$root/build/tools/provctl" fingerprint --json "$ft" >"$dir/b.json"
    echo "fingerprint size: $(field fingerprint_bytes "$f1") bytes stored (binary), $(stat -c %s "$dir/a.json") bytes as --json"
    # sketches are capped at 256 entries per axis, so a 7B layout (32 layers, 291 tensors, vocab
    # 32000) with small matrices has the fingerprint size of the real 7B model
    local s7=$dir/shape7b
    [ -f "$s7/model.safetensors" ] || "$mk" create "$s7" --seed 1 --hidden 512 --heads 8 --layers 32 \
        --inter 1376 --vocab 32000 --dtype bf16 >/dev/null
    local f7
    f7=$("$bt" fingerprint "$s7" 2)
    echo "fingerprint size of a 7B layout (291 tensors): $(field fingerprint_bytes "$f7") bytes stored (binary; target <= 131072), $(field json_bytes "$f7") bytes as JSON"
    local cmp
    cmp=$("$bt" compare "$dir/a.json" "$dir/b.json" 200)
    echo "compare of two fingerprints: $(field compare_ms "$cmp") ms ($(sed 's/.*\(verdict=[a-z]*\).*/\1/' <<<"$cmp"))"
}

scan_bench() {
    local d=$dir/scan
    mkdir -p "$d"
    if [ ! -f "$d/base.json" ]; then
        "$mk" create "$d/base" --seed 1 >/dev/null
        "$mk" derive "$d/base" "$d/ft" --kind finetune --seed 3 >/dev/null
        "$root/build/tools/provctl" fingerprint --json "$d/base" >"$d/base.json"
        "$root/build/tools/provctl" fingerprint --json "$d/ft" >"$d/ft.json"
        for s in 11 12 13 14 15 16 17 18 19; do
            "$mk" create "$d/c$s" --seed "$s" >/dev/null
            "$root/build/tools/provctl" fingerprint --json "$d/c$s" >"$d/c$s.json"
        done
    fi
    echo
    echo "== scan: one model against 10,000 stored fingerprints (10% of them its parent), in memory"
    local line
    line=$(best_of "$bt" scan "$d/ft.json" 10000 "$d"/c1?.json "$d/base.json")
    echo "$line"
}

gguf_bench() {
    local model=$dir/base2g g=$dir/base2g-q4_k.gguf
    [ -f "$model/model.safetensors" ] || analyzer_bench >/dev/null
    [ -f "$g" ] || "$mk" gguf "$model" "$g" --type q4_k >/dev/null
    cat "$g" >/dev/null
    echo
    echo "== GGUF: Q4_K file of the same model ($(du -BM "$g" | cut -f1)), in page cache (best of $runs)"
    local rd sh f1 f2
    rd=$(best_of "$bt" read "$g")
    sh=$(best_of "$bt" sha "$g")
    f1=$(best_of "$bt" fingerprint "$g" 1)
    f2=$(best_of "$bt" fingerprint "$g" 2 nofilesha)
    printf '%-34s %8s s %8s GB/s\n' "read()" "$(field seconds "$rd")" "$(field gbps "$rd")"
    printf '%-34s %8s s %8s GB/s\n' "read() + SHA-256" "$(field seconds "$sh")" "$(field gbps "$sh")"
    printf '%-34s %8s s %8s GB/s   %sx read\n' "dequantise + fingerprint, 1t" \
        "$(field seconds "$f1")" "$(field gbps "$f1")" "$(ratio "$(field seconds "$f1")" "$(field seconds "$rd")")"
    printf '%-34s %8s s %8s GB/s   %sx read\n' "  same, file SHA supplied, 2t" \
        "$(field seconds "$f2")" "$(field gbps "$f2")" "$(ratio "$(field seconds "$f2")" "$(field seconds "$rd")")"
}

case "$only" in
"" | analyzer) analyzer_bench; gguf_bench; scan_bench ;;
gguf) gguf_bench ;;
scan) scan_bench ;;
esac
if [ -z "$only" ] || [ "$only" = fs ]; then
    [ -x tools/bench-fs.sh ] && tools/bench-fs.sh "$dir" "$runs"
fi
if [ -z "$only" ] || [ "$only" = policy ]; then
    [ -x tools/bench-policy.sh ] && tools/bench-policy.sh "$dir" "$runs"
    # the same with many units: decisions must not rescan the store
    [ -x tools/bench-policy.sh ] && BENCH_POLICY_FILES=${BENCH_POLICY_SCALE_FILES:-100000} \
        BENCH_POLICY_UNITS=${BENCH_POLICY_SCALE_UNITS:-1000} tools/bench-policy.sh "$dir" "$runs"
fi
if [ -z "$only" ] || [ "$only" = worker ]; then
    [ -x tools/bench-worker.sh ] && tools/bench-worker.sh "$dir" "$runs"
fi
if [ -z "$only" ] || [ "$only" = retrieve ]; then
    # candidates of a new model from the store's index (fs/README.md "Candidate retrieval"):
    # time per retrieval and recall of the parent, against comparing every stored model
    n=${BENCH_RETRIEVE_MODELS:-100000}
    line=$("$bt" retrieve "$n" "$dir/retrieve.db" 1000)
    echo "retrieve: $line"
    echo "retrieve: an exhaustive candidate step would compare all $n models of the shape"
    rm -f "$dir/retrieve.db"
    # the store root's .provenance counts: store_stats rows against counting the tables
    for n in 1000 100000; do
        echo "counts: $("$bt" counts "$n" "$dir/counts.db")"
    done
    rm -f "$dir/counts.db"
fi
if [ -z "$only" ] || [ "$only" = store ]; then
    # the lineage database: SQLite against PostgreSQL (xattrs, close-to-ready, gated opens)
    [ -x tools/bench-store.sh ] && tools/bench-store.sh "$dir" "$runs"
fi
if [ -z "$only" ] || [ "$only" = scale ]; then
    # cost per model as the store grows: ingest per batch, RSS, .provenance, xattrs, lineage
    [ -x tools/bench-scale.sh ] && tools/bench-scale.sh "$dir"
fi
exit 0
