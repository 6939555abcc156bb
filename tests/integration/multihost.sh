#!/usr/bin/env bash
# Two daemons, one BACKING, one PostgreSQL database: what two hosts sharing a model store see.
# A throwaway PostgreSQL 15 (tests/pg.sh: initdb and pg_ctl as an unprivileged user, unix
# socket only) holds the lineage of both mounts. A model copied through mount A has its lineage
# through mount B; it was analysed once; an approval through A opens it through B, and a revoke
# through B closes it through A, each within a second; a rename through B is seen through A;
# kill -9 of A right after a copy, or in the middle of an analysis, and B analyses the unit;
# with the server stopped, gated opens fail closed on both mounts while other files stay
# readable, a model written meanwhile is analysed when it is back, which needs no remount;
# provctl graph, scan and log read the database; provctl store copy moves the
# database into a SQLite file and back, and a mount on the copy serves the same.
. "$(dirname "$0")/lib.sh"
need_mkmodel
PGSH=$(dirname "$0")/../pg.sh
for tool in setpriv useradd userdel psql python3 sqlite3 pgrep; do
    command -v "$tool" >/dev/null || { echo "SKIP: no $tool"; exit 77; }
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "SKIP: no PostgreSQL server"; exit 77; }

TU=provfs-it-$$
useradd -M -r -s /usr/sbin/nologin "$TU" >/dev/null || fail "useradd $TU"
M2=$T/mnt2
PID2=
stop_pg() { "$PGSH" stop "$T/pg"; }
trap 'rc_=$?; [ -n "$PID2" ] && { fusermount3 -u -z "$M2" 2>/dev/null; kill -9 "$PID2" 2>/dev/null; }
      stop_pg; userdel -f "$TU" >/dev/null 2>&1
      kill "$(cat "$T/watchdog.pid" 2>/dev/null)" "$WATCHDOG" 2>/dev/null || true; cleanup "$rc_"' EXIT
TUID=$(id -u "$TU")
as_user() { setpriv --reuid="$TUID" --regid="$(id -g "$TU")" --clear-groups -- "$@"; }
# the database is unreachable for a while on purpose
EXPECT_LOG_RE='PostgreSQL|server closed the connection|terminating connection'

note "a PostgreSQL server and a database for both mounts"
conn=$("$PGSH" start "$T/pg") || fail "PostgreSQL did not start"
psql -X -q "$conn" -c "CREATE DATABASE lineage ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'
    TEMPLATE template0" >/dev/null || fail "create database"
PGDB=lineage
DBARG="postgresql:///lineage?host=$T/pg&user=provfs"

mkdir -p "$B/.provfs" "$M2"
note "a UTF8 database is refused, naming the encoding to use"
psql -X -q "$conn" -c "CREATE DATABASE utf ENCODING 'UTF8' TEMPLATE template0" >/dev/null ||
    fail "create utf8 database"
out=$("$PROVFS" -f --db "postgresql:///utf?host=$T/pg&user=provfs" "$B" "$M2" 2>&1) &&
    fail "mounted on a UTF8 database"
echo "$out" | has_match "SQL_ASCII" || fail "message: $out"
out=$("$PROVFS" -f --db "postgresql://provfs:secret@/lineage?host=$T/pg" "$B" "$M2" 2>&1) &&
    fail "mounted with a password in the connection string"
echo "$out" | has_match "password" || fail "message: $out"

printf '{ "mode": "enforce", "require_approval": "unknown-lineage", "allow_families": [],\n  "deny_families": [], "block_pending": false }\n' >"$B/.provfs/policy.json"
start_provfs # A: --db "$DBARG" (lib.sh)
"$PROVFS" -f --quiet-ms 200 --db "$DBARG" "$B" "$M2" >>"$T/provfs2.log" 2>&1 &
PID2=$!
for _ in $(seq 100); do mountpoint -q "$M2" && break; sleep 0.05; done
mountpoint -q "$M2" || { cat "$T/provfs2.log" >&2; fail "mount B did not appear"; }

note "a model copied through A has its lineage through B"
"$MKMODEL" create "$T/base" --arch llama --seed 31 >/dev/null
mkdir -m 0755 "$M/models"
cp -r "$T/base" "$M/models/base"
echo "notes anyone may read" >"$M/models/README.txt"
chmod 0644 "$M/models/README.txt"
wait_status "$M/models/base" ready
# B's kernel may hold a negative entry for a moment: wait for the name, then the status
wait_status "$M2/models/base" ready 10
expect_eq "same digest through both" "$(xattr "$M2/models/base" sha256)" "$(xattr "$M/models/base" sha256)"
expect_eq "analysed once" "$(DB "SELECT count(*) FROM events WHERE kind = 'analyzed'
    AND path = '/models/base'")" 1
python3 -c "import json,sys; p=json.load(open(sys.argv[1])); assert p['status'] == 'ready', p" \
    "$M2/models/base/.provenance" || fail "B's .provenance"

# readable_within MOUNTPATH yes|no: the test user's open of the weights gives that within 1 s
readable_within() {
    local t0 now
    t0=$(date +%s%N)
    while :; do
        if as_user cat "$1/model.safetensors" >/dev/null 2>&1; then r=yes; else r=no; fi
        [ "$r" = "$2" ] && break
        now=$(date +%s%N)
        [ $(((now - t0) / 1000000)) -lt 1000 ] || fail "$1: readable=$r after 1 s, expected $2"
        sleep 0.05
    done
    echo "   $1: readable=$2 after $((($(date +%s%N) - t0) / 1000000)) ms"
}

note "an approval through A opens the model through B within a second"
readable_within "$M2/models/base" no
readable_within "$M/models/base" no
"$PROVCTL" approve "$M/models/base" --note "reviewed" >/dev/null || fail "approve through A"
readable_within "$M2/models/base" yes
note "a revoke through B closes it through A within a second"
"$PROVCTL" revoke "$M2/models/base" --note "withdrawn" >/dev/null || fail "revoke through B"
readable_within "$M/models/base" no
expect_eq "approval events" "$(DB "SELECT count(*) FROM events WHERE kind IN ('approve', 'revoke')")" 2

note "a rename through B is seen through A"
"$PROVCTL" approve "$M/models/base" >/dev/null || fail "approve again"
mv "$M2/models/base" "$M2/models/renamed"
for _ in $(seq 50); do [ "$(xattr "$M/models/renamed" status)" = ready ] && break; sleep 0.1; done
expect_eq "renamed, through A" "$(xattr "$M/models/renamed" status)" ready
expect_eq "path rows" "$(DB "SELECT string_agg(path, ' ') FROM model_paths")" /models/renamed
readable_within "$M/models/renamed" yes

# kill_a: kill -9 of daemon A, its mount detached
kill_a() {
    kill -9 "$PROVFS_PID"
    wait "$PROVFS_PID" 2>/dev/null || true
    fusermount3 -u -z "$M" 2>/dev/null || true
    PROVFS_PID=
}
"$MKMODEL" create "$T/late" --arch llama --seed 32 >/dev/null
"$MKMODEL" create "$T/mid" --arch llama --hidden 1024 --layers 8 --seed 33 >/dev/null

note "kill -9 of A right after a copy: B analyses the unit (table pending)"
stop_provfs
QUIET_MS=60000 start_provfs --claim-lease-ms 2000 # A would wait a minute before analysing
cp -r "$T/late" "$M/models/late"
expect_eq "recorded at once" "$(DB "SELECT count(*) FROM pending WHERE path = '/models/late'")" 1
kill_a
wait_status "$M2/models/late" ready 30
expect_eq "analysed once, by B" "$(DB "SELECT count(*) FROM events WHERE kind = 'analyzed'
    AND path = '/models/late'")" 1

note "kill -9 of A in the middle of an analysis: B finishes it when A's claim runs out"
start_provfs --claim-lease-ms 2000
cp -r "$T/mid" "$M/models/mid"
# A's worker for it (made per analysis), stopped once its sandbox is in place (the seccomp filter
# comes last, after the parent-death signal): the analysis hangs with A's claim taken
W=
for _ in $(seq 2000); do
    for p in $(pgrep -P "$PROVFS_PID" || true); do
        grep -q -- --analyzer-worker "/proc/$p/cmdline" 2>/dev/null &&
            grep -qE '^Seccomp:[[:space:]]+2$' "/proc/$p/status" 2>/dev/null && { W=$p; break; }
    done
    [ -n "$W" ] && break
    sleep 0.01
done
[ -n "$W" ] || fail "A started no analyzer worker"
kill -STOP "$W"
owner=
for _ in $(seq 100); do
    owner=$(DB "SELECT coalesce(owner, '') FROM pending WHERE path = '/models/mid'")
    [ -n "$owner" ] && break
    sleep 0.1
done
[ -n "$owner" ] || fail "A did not claim /models/mid"
expect_eq "status while A analyses" "$(xattr "$M2/models/mid" status)" analyzing
kill_a # its worker goes with it (parent-death signal), stopped as it is
alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ "$st" != Z ]; }
for _ in $(seq 100); do alive "$W" || break; sleep 0.05; done
alive "$W" && fail "A's stopped worker $W outlived A"
wait_status "$M2/models/mid" ready 30
expect_eq "claim released" "$(DB "SELECT count(*) FROM pending")" 0
start_provfs

note "the server stopped: gated opens fail closed on both mounts, other files stay readable"
stop_pg
readable_within "$M/models/renamed" no
readable_within "$M2/models/renamed" no
out_=$(as_user cat "$M/models/README.txt" 2>&1 >/dev/null) || fail "a file that is no model, through A: $out_"
as_user cat "$M2/models/README.txt" >/dev/null || fail "a file that is no model, through B"
"$MKMODEL" create "$T/offline" --arch llama --seed 34 >/dev/null
cp -r "$T/offline" "$M/models/offline" # written while the database is away
sleep 1
note "the server back: both recover without a remount; the model written meanwhile is analysed"
"$PGSH" restart "$T/pg" >/dev/null || fail "PostgreSQL did not start again"
for m in "$M" "$M2"; do
    for _ in $(seq 100); do as_user cat "$m/models/renamed/model.safetensors" >/dev/null 2>&1 && break; sleep 0.1; done
    as_user cat "$m/models/renamed/model.safetensors" >/dev/null || fail "$m: not readable after the server came back"
done
wait_status "$M/models/offline" ready 30
wait_status "$M2/models/offline" ready 10

note "provctl against the database: graph, scan, log"
"$PROVCTL" graph --db "$DBARG" >"$T/graph.txt" || fail "provctl graph --db URI"
grep -q "/models/renamed" "$T/graph.txt" || fail "graph: $(cat "$T/graph.txt")"
"$MKMODEL" derive "$T/base" "$T/ft" --kind finetune --seed 35 >/dev/null
"$PROVCTL" scan "$T/ft" --db "$DBARG" >"$T/scan.txt" 2>&1 || fail "provctl scan --db URI: $(cat "$T/scan.txt")"
grep -q "/models/renamed" "$T/scan.txt" || fail "scan does not find the stored base: $(cat "$T/scan.txt")"
"$PROVCTL" log --db "$DBARG" --kind revoke | has_match "withdrawn" || fail "provctl log --db URI"

fusermount3 -u "$M2" || fail "unmount B"
wait "$PID2" || fail "daemon B exited with an error"
PID2=
digest=$(xattr "$M/models/renamed" sha256)
stop_provfs
cat "$T/provfs2.log" >>"$LOG" # checked with A's at exit

note "provctl store copy: PostgreSQL into a SQLite file, and that into a new PostgreSQL database"
"$PROVCTL" store copy --from "$DBARG" --to "$T/copy.db" >"$T/copy.out" 2>&1 ||
    fail "copy into a file: $(cat "$T/copy.out")"
grep -q "count matches" "$T/copy.out" || fail "copy: $(cat "$T/copy.out")"
for table in models model_paths edges events approvals files lsh_bands; do
    expect_eq "$table copied" "$(sqlite3 "$T/copy.db" "SELECT count(*) FROM $table")" \
        "$(DB "SELECT count(*) FROM $table")"
done
psql -X -q "$conn" -c "CREATE DATABASE back ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'
    TEMPLATE template0" >/dev/null || fail "create database back"
BACK="postgresql:///back?host=$T/pg&user=provfs"
"$PROVCTL" store copy --from "$T/copy.db" --to "$BACK" >"$T/copy.out" 2>&1 ||
    fail "copy back: $(cat "$T/copy.out")"
expect_errno "not empty" "$PROVCTL" store copy --from "$T/copy.db" --to "$BACK"
note "a mount on the copy of the copy serves the same lineage and approvals, and writes on"
start_provfs --db "$BACK"
expect_eq "status on the copy" "$(xattr "$M/models/renamed" status)" ready
expect_eq "digest on the copy" "$(xattr "$M/models/renamed" sha256)" "$digest"
readable_within "$M/models/renamed" yes
"$PROVCTL" revoke "$M/models/renamed" --note "after the copy" >/dev/null || fail "revoke on the copy"
readable_within "$M/models/renamed" no
stop_provfs
