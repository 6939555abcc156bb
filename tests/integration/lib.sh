# Shared setup for the integration tests: sourced, not run.
#
# Each test gets a fresh temp dir with BACKING ($B) and MOUNTPOINT ($M), a provfs started in the
# foreground with its log in $LOG, a hard timeout, and a trap that force-unmounts and fails the
# test when the daemon log holds a sanitizer report or an unexpected error line.
# Environment: PROVFS, PROVCTL, MKMODEL (binaries; meson passes them), TEST_TIMEOUT (seconds),
# PROVFS_TEST_PGHOST (the socket directory of a PostgreSQL server, tests/pg.sh: each test then
# keeps its lineage in a new database of its own there instead of BACKING/.provfs/lineage.db).
set -euo pipefail

: "${PROVFS:?PROVFS must point at the provfs binary}"
: "${MKMODEL:=}"
: "${PROVCTL:=}"
TEST_NAME=$(basename "$0" .sh)

if [ "$(id -u)" -ne 0 ] || [ ! -c /dev/fuse ] || ! command -v fusermount3 >/dev/null; then
    echo "SKIP: needs root, /dev/fuse and fusermount3"
    exit 77
fi

T=$(mktemp -d "/tmp/provfs-it-$TEST_NAME.XXXXXX")
# BACKING inside a root-only directory, as provfs requires under enforce (fs/SECURITY.md): users
# reach the models through the mount only.
B=$T/private/backing
M=$T/mnt
LOG=$T/provfs.log
mkdir -p "$B" "$M"
chmod 700 "$T/private"
chmod 755 "$T" "$B" # other users reach the mount in some tests
PROVFS_PID=
EXPECT_LOG_RE='^$' # log lines matching this are expected (tests extend it)

# The lineage database of this test's mounts: DBARG is what start_provfs passes as --db (empty:
# the default file), DB runs one SQL query on it, with sqlite3's output form either way.
DBARG=
PGDB=
if [ -n "${PROVFS_TEST_PGHOST:-}" ]; then
    PGDB="t_$(basename "$T" | tr -c 'a-zA-Z0-9\n' _ | tr 'A-Z' 'a-z')"
    psql -X -q "host=$PROVFS_TEST_PGHOST user=provfs dbname=postgres" \
        -c "CREATE DATABASE $PGDB ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" >/dev/null || { echo "cannot create database $PGDB" >&2; exit 1; }
    DBARG="postgresql:///$PGDB?host=$PROVFS_TEST_PGHOST&user=provfs"
fi

# What provctl's --db takes for this test's database.
LINEAGE_DB=${DBARG:-$B/.provfs/lineage.db}

# sqlite_only REASON: skips a test that is about the SQLite file itself.
sqlite_only() {
    if [ -n "$PGDB" ]; then
        echo "SKIP: $1 (SQLite only; this run uses PostgreSQL)"
        exit 77
    fi
}

fail() {
    echo "FAIL [$TEST_NAME]: $*" >&2
    exit 1
}

note() {
    echo "-- $*"
}

unmount_all() {
    if mountpoint -q "$M" 2>/dev/null; then
        fusermount3 -u -z "$M" 2>/dev/null || true
    fi
    if [ -n "$PROVFS_PID" ]; then
        for _ in $(seq 50); do kill -0 "$PROVFS_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$PROVFS_PID" 2>/dev/null || true
        wait "$PROVFS_PID" 2>/dev/null || true
        PROVFS_PID=
    fi
}

check_log() {
    [ -f "$LOG" ] || return 0
    if grep -E 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:|ThreadSanitizer' "$LOG" >/dev/null; then
        cat "$LOG" >&2
        fail "sanitizer report in the daemon log"
    fi
    local bad
    bad=$(grep -Ei 'error|abort|assert' "$LOG" | grep -Ev "$EXPECT_LOG_RE" || true)
    if [ -n "$bad" ]; then
        echo "$bad" >&2
        fail "unexpected lines in the daemon log"
    fi
}

cleanup() {
    local rc=${1:-$?} # the EXIT trap passes the test's status in
    set +e
    unmount_all
    if [ $rc -eq 0 ]; then
        check_log
        rc=$?
    fi
    if [ $rc -ne 0 ] && [ -f "$LOG" ]; then
        echo "---- daemon log ($LOG)" >&2
        tail -n 50 "$LOG" >&2
    fi
    [ $rc -eq 0 ] && rm -rf "$T"
    exit $rc
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

# Hard timeout: the whole test, mounts included.
# On expiry a hung daemon is killed (that fails every request waiting on it) and the mount is
# detached, so the test itself can no longer block.
# The watchdog must not hold the test's stdout/stderr (meson waits for them to close) and must
# not outlive the test (its kill would hit a reused pid): its sleep is killed with it.
( exec >/dev/null 2>>"$T/watchdog.log"
  sleep "${TEST_TIMEOUT:-240}" &
  echo $! >"$T/watchdog.pid"
  wait $! || exit 0
  echo "TIMEOUT [$TEST_NAME]" >&2
  [ -f "$T/pid" ] && kill -9 "$(cat "$T/pid")" 2>/dev/null
  fusermount3 -u -z "$M" 2>/dev/null; kill -TERM $$ 2>/dev/null ) &
WATCHDOG=$!
disown "$WATCHDOG" 2>/dev/null || true
# (the test's exit status is passed to cleanup: `set -e` would end a trap at a failing `(exit N)`)
trap 'rc_=$?; kill "$(cat "$T/watchdog.pid" 2>/dev/null)" "$WATCHDOG" 2>/dev/null || true; cleanup "$rc_"' EXIT

# start_provfs [extra options...]: mounts $B at $M and waits for the mount.
start_provfs() {
    # PROVFS_OPTS: options added to every mount of a run (e.g. --inode-fds 16 to run a suite with
    # the inode fds closed and reopened all the time).
    # shellcheck disable=SC2086
    local db=()
    if [ -n "$DBARG" ]; then
        db=(--db "$DBARG")
        for a in "$@"; do case "$a" in --db|--db=*) db=() ;; esac; done
    fi
    "$PROVFS" -f --quiet-ms "${QUIET_MS:-200}" ${PROVFS_OPTS:-} "${db[@]}" "$@" "$B" "$M" >>"$LOG" 2>&1 &
    PROVFS_PID=$!
    echo "$PROVFS_PID" >"$T/pid"
    for _ in $(seq 100); do
        mountpoint -q "$M" && return 0
        kill -0 "$PROVFS_PID" 2>/dev/null || { cat "$LOG" >&2; fail "provfs exited at start"; }
        sleep 0.05
    done
    fail "mount did not appear"
}

stop_provfs() {
    fusermount3 -u "$M" || fail "unmount failed"
    for _ in $(seq 100); do kill -0 "$PROVFS_PID" 2>/dev/null || break; sleep 0.05; done
    wait "$PROVFS_PID" 2>/dev/null || fail "provfs exited with an error"
    PROVFS_PID=
}

# mm PATH: PATH's bytes read through a read-only shared mapping (to stdout).
mm() {
    python3 - "$1" <<'PYEOF'
import mmap, sys
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    sys.stdout.buffer.write(m[:])
    m.close()
PYEOF
}

# xattr PATH NAME: value of user.provenance.NAME, empty when absent.
xattr() {
    getfattr --only-values -n "user.provenance.$2" "$1" 2>/dev/null || true
}

# wait_status PATH STATUS [SECONDS]
wait_status() {
    local s
    for _ in $(seq $((${3:-60} * 10))); do
        s=$(xattr "$1" status)
        [ "$s" = "$2" ] && return 0
        sleep 0.1
    done
    fail "$1: status '$s', expected '$2'"
}

expect_eq() { # expect_eq WHAT ACTUAL EXPECTED
    [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"
}

# ... | has_match GREP_ARGS...: grep -q that reads all its input. With pipefail, a writer still
# writing when grep -q leaves at its first match dies of SIGPIPE, and the pipeline is false.
has_match() {
    grep -c "$@" >/dev/null
}

# expect_errno EXPECTED_TEXT COMMAND...: the command fails with that strerror text.
expect_errno() {
    local want=$1 out
    shift
    if out=$("$@" 2>&1); then
        fail "'$*' succeeded, expected '$want'"
    fi
    echo "$out" | has_match "$want" || fail "'$*': '$out', expected '$want'"
}

need_mkmodel() {
    [ -n "$MKMODEL" ] && [ -x "$MKMODEL" ] || { echo "SKIP: no mkmodel"; exit 77; }
}

# DB_DUMP: the whole database as SQL text.
DB_DUMP() {
    if [ -z "$PGDB" ]; then
        sqlite3 "$B/.provfs/lineage.db" .dump
    else
        pg_dump --no-owner "$DBARG"
    fi
}

DB() {
    if [ -z "$PGDB" ]; then
        sqlite3 -bail "$B/.provfs/lineage.db" "$@"
        return
    fi
    # the few SQLite spellings the tests use, in PostgreSQL's; booleans as 1/0
    local sql=$1
    case "$sql" in
    "PRAGMA integrity_check") sql="SELECT 'ok'" ;; # PostgreSQL checks as it writes
    "PRAGMA foreign_key_check") sql="SELECT 1 WHERE false" ;; # and always enforces them
    esac
    sql=$(printf '%s' "$sql" | sed -e 's/group_concat(/string_agg(/g' -e 's/instr(/strpos(/g')
    psql -X -q -At -v ON_ERROR_STOP=1 "$DBARG" -c "$sql" | sed -e 's/^t$/1/' -e 's/^f$/0/'
}
