#!/usr/bin/env bash
# Related models analysed at the same time: CONC_PAIRS (default 16) bases, each with a fine-tune,
# every base and its fine-tune copied in at once, all pairs together, with several analysis
# workers (and a second round that writes each pair again). Whatever order the workers commit
# in, every fine-tune ends with its base as parent: the xattr, the edges rows, and an edge from
# the base in the database.
. "$(dirname "$0")/lib.sh"
need_mkmodel
command -v sqlite3 >/dev/null || { echo "SKIP: no sqlite3"; exit 77; }
pairs=${CONC_PAIRS:-16}

S=$T/src
mkdir -p "$S"
for i in $(seq "$pairs"); do
    "$MKMODEL" create "$S/b$i" --arch llama --seed $((100 + i)) >/dev/null
    "$MKMODEL" derive "$S/b$i" "$S/f$i" --kind finetune --seed $((300 + i)) >/dev/null
done
QUIET_MS=50 start_provfs --workers 3

# copy_pair I: base and fine-tune at once. The base is a unit first (its config and an empty
# weights file), so it is the first seen of the two: a base and its fine-tune compare the same
# both ways, and with nothing else to tell them apart the first stored is the parent
# (fs/README.md).
copy_pair() {
    mkdir "$M/b$1"
    cp "$S/b$1/config.json" "$M/b$1/"
    : >"$M/b$1/model.safetensors"
    mkdir "$M/f$1"
    cp -r "$S/f$1/." "$M/f$1/" &
    local p1=$!
    cp -r "$S/b$1/." "$M/b$1/" || return 1
    wait "$p1"
}

# wait_all PID...: every one succeeded (a bare `wait` would wait for the daemon too).
wait_all() {
    local p
    for p in "$@"; do wait "$p" || fail "a writer failed"; done
}

check_pairs() {
    local i bad=0 p
    for i in $(seq "$pairs"); do
        wait_status "$M/b$i" ready 30
        wait_status "$M/f$i" ready 30
    done
    for i in $(seq "$pairs"); do
        p=$(xattr "$M/f$i" parent)
        if [ "$p" != "/b$i" ]; then
            echo "/f$i: parent '$p', expected /b$i" >&2
            bad=$((bad + 1))
        fi
        p=$(DB "SELECT count(*) FROM edges e JOIN model_paths c ON c.model_id = e.child_id
                JOIN model_paths p ON p.model_id = e.parent_id
                WHERE c.path = '/f$i' AND p.path = '/b$i' AND e.is_parent = 1")
        [ "$p" = 1 ] || { echo "/f$i: no parent edge from /b$i in the db" >&2; bad=$((bad + 1)); }
    done
    [ "$bad" = 0 ] || fail "$1: $bad fine-tune(s) without their base as parent"
}

note "$pairs pairs written at once"
pids=()
for i in $(seq "$pairs"); do copy_pair "$i" & pids+=($!); done
wait_all "${pids[@]}"
check_pairs "first round"

note "each pair written again at once"
pids=()
for i in $(seq "$pairs"); do
    ( cp "$S/f$i/model.safetensors" "$M/f$i/model.safetensors" & p1=$!
      cp "$S/b$i/model.safetensors" "$M/b$i/model.safetensors"; wait "$p1" ) &
    pids+=($!)
done
wait_all "${pids[@]}"
sleep 0.3
check_pairs "second round"
expect_eq "integrity" "$(DB 'PRAGMA integrity_check')" ok
