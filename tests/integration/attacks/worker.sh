#!/usr/bin/env bash
# The daemon runs as root and parses model files any user writes: a parser bug was a root bug.
# Every unit is now parsed in a fresh worker process that holds no privilege (fs/worker.h):
# - it runs as an unprivileged uid (provfs-analyzer, else nobody) with no_new_privs and a seccomp
#   filter, and models still analyse and link as before;
# - a worker killed mid-analysis fails that unit ("analyzer crashed: signal 9") and the next
#   model is analysed by a new worker;
# - a worker over its --analyzer-mem or --analyzer-timeout fails the unit; the mount serves on.
. "$(dirname "$0")/lib.sh"
EXPECT_LOG_RE=': failed: analyzer (crashed|ran out of memory|took longer)'
write_policy enforce
S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 61 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 62 >/dev/null
"$MKMODEL" create "$S/other" --arch llama --seed 63 >/dev/null
"$MKMODEL" create "$S/big" --arch llama --hidden 1024 --layers 8 --seed 64 >/dev/null
"$MKMODEL" create "$S/vocab" --arch llama --vocab 120000 --hidden 64 --layers 2 --seed 65 >/dev/null

if id provfs-analyzer >/dev/null 2>&1; then
    WUID=$(id -u provfs-analyzer)
else
    WUID=$(id -u nobody)
fi

# user_copy SRC DIR: the user copies a model into the mount, the weights last: the directory
# becomes a unit with them, so the unit is analysed once, after the copy. (Weights copied before
# config.json would first be a unit of their own, a lone weights file, and the worker seen here
# could be the one analysing that.)
user_copy() {
    as_user mkdir "$2"
    for f in "$1"/*; do
        case $f in *.safetensors) ;; *) as_user cp "$f" "$2/" ;; esac
    done
    for f in "$1"/*.safetensors; do
        as_user cp "$f" "$2/"
    done
}

# worker_pid: the daemon's analysis worker once its sandbox is in place (the filter comes last),
# waited for (at most 20 s).
worker_pid() {
    local pid
    for _ in $(seq 2000); do
        pid=$(pgrep -P "$PROVFS_PID" | head -n1 || true)
        [ -n "$pid" ] && grep -q -- --analyzer-worker "/proc/$pid/cmdline" 2>/dev/null &&
            grep -qE '^Seccomp:[[:space:]]+2$' "/proc/$pid/status" 2>/dev/null &&
            { echo "$pid"; return 0; }
        sleep 0.01
    done
    fail "no analysis worker appeared"
}

start_provfs --workers 1
mkdir -m 1777 "$M/up"

note "a model and its fine-tune analyse and link through the worker"
user_copy "$S/base" "$M/up/base"
wait_status "$M/up/base" ready
user_copy "$S/ft" "$M/up/ft"
wait_status "$M/up/ft" ready
expect_eq "ft parent" "$(xattr "$M/up/ft" parent)" /up/base
expect_eq "ft verdict" "$(xattr "$M/up/ft" verdict)" derived
expect_eq "digest as provctl computes it" "$(xattr "$M/up/base" sha256)" \
    "$("$PROVCTL" fingerprint --json "$S/base" | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')"

note "the worker: unprivileged uid, no groups, no_new_privs, seccomp; then kill -9 mid-analysis"
user_copy "$S/big" "$M/up/big"
W=$(worker_pid)
kill -STOP "$W" # hold it while its status is read and it is killed
status=$(cat "/proc/$W/status")
grep -qE "^Uid:[[:space:]]+$WUID[[:space:]]+$WUID[[:space:]]+$WUID[[:space:]]+$WUID\$" <<<"$status" ||
    fail "worker uid: $(grep ^Uid: <<<"$status") (expected $WUID)"
grep -qE '^Groups:[[:space:]]*$' <<<"$status" || fail "worker groups: $(grep ^Groups: <<<"$status")"
grep -qE '^NoNewPrivs:[[:space:]]+1$' <<<"$status" || fail "worker: no_new_privs not set"
grep -qE '^CapEff:[[:space:]]+0+$' <<<"$status" || fail "worker: $(grep ^CapEff: <<<"$status")"
kill -9 "$W"
wait_status "$M/up/big" failed
xattr "$M/up/big" error | has_match "analyzer crashed: signal 9" ||
    fail "reason: $(xattr "$M/up/big" error)"
note "the next model gets a new worker"
user_copy "$S/other" "$M/up/other"
wait_status "$M/up/other" ready
readable "$M/up/base/config.json"
stop_provfs

note "--analyzer-mem: a large tokenizer exceeds it, the mount serves on"
# (not "ldd | grep -q": grep leaves at the first match, and ldd, still writing, dies of SIGPIPE,
# which pipefail makes the pipeline's status)
if [[ $(ldd "$PROVFS" 2>/dev/null) == *libasan* ]]; then
    note "(skipped: AddressSanitizer build, workers run without RLIMIT_AS)"
    start_provfs --workers 1 --analyzer-timeout 3
else
    start_provfs --workers 1 --analyzer-mem 40 --analyzer-timeout 3
    user_copy "$S/vocab" "$M/up/vocab"
    wait_status "$M/up/vocab" failed
    xattr "$M/up/vocab" error | has_match "analyzer ran out of memory (limit 40 MiB)" ||
        fail "reason: $(xattr "$M/up/vocab" error)"
fi
as_user rm -rf "$M/up/other"
user_copy "$S/other" "$M/up/other"
wait_status "$M/up/other" ready

note "--analyzer-timeout: a worker that stops making progress is killed"
as_user rm -rf "$M/up/big"
user_copy "$S/big" "$M/up/big"
W=$(worker_pid)
kill -STOP "$W"
wait_status "$M/up/big" failed 20
xattr "$M/up/big" error | has_match "analyzer took longer than 3 s" ||
    fail "reason: $(xattr "$M/up/big" error)"
kill -0 "$W" 2>/dev/null && fail "the stopped worker still exists"
as_user rm -rf "$M/up/other"
user_copy "$S/other" "$M/up/other"
wait_status "$M/up/other" ready
stop_provfs
