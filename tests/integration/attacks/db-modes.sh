#!/usr/bin/env bash
# Database file modes: BACKING/.provfs left 0755 with a 0644 lineage.db, -wal, -shm and
# policy.json (an older provfs, a restored backup, an admin's cp) is made 0700 with every file
# 0600 at mount, owned by root; files SQLite creates while mounted are 0600 too; the user can read
# neither the audit log nor the lineage. A fresh BACKING gets the same modes.
. "$(dirname "$0")/lib.sh"
sqlite_only "the modes of the SQLite database file"

# modes: "MODE OWNER NAME" for .provfs and everything in it.
modes() {
    (cd "$B/.provfs" && stat -c '%a %U %n' . * | sort -k3)
}
check_modes() { # check_modes STEP
    local bad
    bad=$(modes | awk '($3 == "." && $1 != "700") || ($3 != "." && $1 != "600") || $2 != "root"')
    [ -z "$bad" ] || { modes >&2; fail "$1: modes: $bad"; }
    expect_errno "Permission denied" as_user cat "$B/.provfs/lineage.db"
    expect_errno "Permission denied" as_user ls "$B/.provfs"
    expect_errno "unable to open database" as_user sqlite3 "file:$B/.provfs/lineage.db?mode=ro" \
        "SELECT count(*) FROM events"
}

note "a fresh BACKING"
# The user must reach BACKING for this test to mean anything: a shared BACKING.
chmod 755 "$T/private"
write_policy enforce
chmod 755 "$B/.provfs" # write_policy's mkdir made it with the umask's mode
start_provfs -o allow_shared_backing
blocked_unit "$M/m" 91
refused "$M/m/model.safetensors"
[ -f "$B/.provfs/lineage.db-wal" ] || fail "no -wal while mounted"
check_modes "fresh"

note "a .provfs left 0755 with 0644 files and a foreign owner"
stop_provfs
[ -f "$B/.provfs/lineage.db-wal" ] || : >"$B/.provfs/lineage.db-wal"
[ -f "$B/.provfs/lineage.db-shm" ] || : >"$B/.provfs/lineage.db-shm"
chmod 755 "$B/.provfs"
chmod 644 "$B/.provfs/lineage.db" "$B/.provfs/lineage.db-wal" "$B/.provfs/lineage.db-shm" \
    "$B/.provfs/policy.json"
chown "$TU" "$B/.provfs/policy.json"
as_user sqlite3 "file:$B/.provfs/lineage.db?mode=ro" "SELECT count(*) FROM events" >/dev/null ||
    fail "setup: the loose database is not readable by the user"
start_provfs -o allow_shared_backing
check_modes "remount"
wait_status "$M/m" ready
refused "$M/m/model.safetensors"
expect_eq "events still written" \
    "$(DB "SELECT count(*) FROM events WHERE kind = 'policy' AND uid = $TUID")" 1

note "while mounted: new analyses, a policy reload"
blocked_unit "$M/m2" 92
write_policy enforce
kill -HUP "$PROVFS_PID"
sleep 0.5
refused "$M/m2/model.safetensors"
EXPECT_LOG_RE='policy reloaded'
# An admin's editor may write a new policy.json with its own mode; the next mount fixes it.
chmod 644 "$B/.provfs/policy.json"
stop_provfs
start_provfs -o allow_shared_backing
check_modes "after a reload and a remount"

note "a symlinked lineage.db refuses the mount"
stop_provfs
mv "$B/.provfs/lineage.db" "$B/.provfs/real.db"
rm -f "$B/.provfs/lineage.db-wal" "$B/.provfs/lineage.db-shm"
ln -s real.db "$B/.provfs/lineage.db"
rc=0
"$PROVFS" -f -o allow_shared_backing "$B" "$M" >"$T/symlink.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "mounted over a symlinked database"
grep -q "lineage.db: is a symbolic link" "$T/symlink.log" || { cat "$T/symlink.log" >&2; fail "message"; }
mountpoint -q "$M" && fail "still mounted"
echo "PASS [$TEST_NAME]"
