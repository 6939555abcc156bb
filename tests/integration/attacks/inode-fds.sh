#!/usr/bin/env bash
# Attack: an unprivileged user makes the daemon hold one O_PATH fd per file the kernel remembers
# (create and stat many files, keep some open) to exhaust the daemon's descriptors. With
# --inode-fds the inode table keeps at most that many open and reopens the others from their file
# handles. Asserts: the daemon's fd count stays within budget + what it had at start + the files
# held open + a small slack; every file still stats, reads, renames and unlinks right through the
# mount; an inode whose fd was closed is reopened as that very file, never another one at its
# name; root can still create files.
. "$(dirname "$0")/lib.sh"
write_policy enforce
BUDGET=64
NFILES=${INODE_FDS_FILES:-3000}
NDIRS=10
HELD=20
start_provfs --inode-fds "$BUDGET"
if grep -q "no file handles" "$LOG"; then
    echo "SKIP: BACKING's filesystem has no file handles"
    exit 77
fi
fds() { ls "/proc/$PROVFS_PID/fd" | wc -l; }
BASE=$(fds)
# Besides the inode fds: the files held open, and per FUSE thread (libfuse starts up to 10 under
# load) a splice pipe; a little more for the store and the analysis workers.
SLACK=32
LIMIT=$((BASE + BUDGET + HELD + SLACK))

mkdir "$M/u"
chown "$TU" "$M/u"

note "the user creates and stats $NFILES files in $NDIRS directories, $HELD held open"
cat >"$T/make.py" <<'PYEOF'
import os, sys
top, n, ndirs, held = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
keep = []
for d in range(ndirs):
    os.mkdir(f"{top}/d{d}")
for i in range(n):
    p = f"{top}/d{i % ndirs}/f{i}"
    with open(p, "w") as f:
        f.write(f"content of {i}\n")
    os.stat(p)
    if len(keep) < held:
        keep.append(open(p, "a"))
# every file once more: lookups and getattrs of inodes whose fds were closed meanwhile
for i in range(n):
    os.stat(f"{top}/d{i % ndirs}/f{i}")
for f in keep:
    f.write("appended\n")
    f.close()
print("made")
PYEOF
as_user "$UPY" "$T/make.py" "$M/u" "$NFILES" "$NDIRS" "$HELD" >"$T/make.out" 2>&1 &
MAKER=$!
max=0
while kill -0 "$MAKER" 2>/dev/null; do
    n=$(fds)
    [ "$n" -gt "$max" ] && max=$n
    sleep 0.05
done
wait "$MAKER" || { cat "$T/make.out" >&2; fail "the user's files could not be made"; }
n=$(fds)
[ "$n" -gt "$max" ] && max=$n
echo "daemon fds: at start $BASE, at most $max while $NFILES files were made (limit $LIMIT)"
[ "$max" -le "$LIMIT" ] || fail "the daemon held $max fds (limit $LIMIT)"

note "every file still stats, reads, renames and unlinks right"
# Past the attribute timeout every stat asks the daemon again (inodes whose fds were closed).
sleep 1.2
cat >"$T/check.py" <<'PYEOF'
import os, sys
top, n, ndirs, held = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
bad = []
def want(i):
    return f"content of {i}\n" + ("appended\n" if i < held else "")
for i in range(n):
    p = f"{top}/d{i % ndirs}/f{i}"
    st = os.stat(p)
    with open(p) as f:
        data = f.read()
    if data != want(i) or st.st_size != len(want(i)):
        bad.append(f"{p}: {data!r} size {st.st_size}")
for i in range(0, n, 3):
    os.rename(f"{top}/d{i % ndirs}/f{i}", f"{top}/d{(i + 1) % ndirs}/r{i}")
for i in range(1, n, 5):
    if i % 3 != 0:
        os.unlink(f"{top}/d{i % ndirs}/f{i}")
for i in range(n):
    p = f"{top}/d{i % ndirs}/f{i}"
    r = f"{top}/d{(i + 1) % ndirs}/r{i}"
    if i % 3 == 0:
        if os.path.exists(p) or open(r).read() != want(i):
            bad.append(f"{r}: rename")
    elif i % 5 == 1:
        if os.path.exists(p):
            bad.append(f"{p}: still there")
    elif open(p).read() != want(i):
        bad.append(f"{p}: changed")
for b in bad[:20]:
    print(b)
print(f"{len(bad)} bad")
sys.exit(1 if bad else 0)
PYEOF
as_user "$UPY" "$T/check.py" "$M/u" "$NFILES" "$NDIRS" "$HELD" >"$T/check.out" 2>&1 ||
    { cat "$T/check.out" >&2; fail "files through the mount are not what was written"; }
n=$(fds)
[ "$n" -le "$LIMIT" ] || fail "the daemon holds $n fds after the checks (limit $LIMIT)"
# What BACKING holds is what the user wrote.
expect_eq "content in BACKING" "$(cat "$B/u/d1/r30")" "content of 30"
[ ! -e "$B/u/d1/f1" ] || fail "an unlinked file is still in BACKING"

note "a closed inode fd is reopened as that very file, not the file now at its name"
cat >"$T/stale.py" <<'PYEOF'
import os, sys, time
top, flag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(f"{top}/old", os.O_RDWR | os.O_CREAT, 0o600)
os.write(fd, b"old\n")
# push the inode's fd out of the table: many other inodes used meanwhile
for i in range(n):
    os.stat(f"{top}/d{i % 10}/f{i}") if os.path.exists(f"{top}/d{i % 10}/f{i}") else None
open(flag, "w").close()
while os.path.exists(flag):
    time.sleep(0.01)
# by now root replaced BACKING's file at that name; fchmod goes by the inode, not the name
os.fchmod(fd, 0o644)
os.lseek(fd, 0, 0)
print(os.read(fd, 100).decode().strip(), oct(os.fstat(fd).st_mode & 0o777))
PYEOF
mkdir "$T/flags"
chown "$TU" "$T/flags"
as_user "$UPY" "$T/stale.py" "$M/u" "$T/flags/ready" 400 >"$T/stale.out" 2>&1 &
STALE=$!
for _ in $(seq 600); do [ -e "$T/flags/ready" ] && break; sleep 0.05; done
[ -e "$T/flags/ready" ] || { cat "$T/stale.out" >&2; fail "the user's process did not get ready"; }
rm "$B/u/old"
for i in $(seq 50); do : >"$B/u/fill$i"; done # ext4 hands freed inode numbers out again
echo new >"$B/u/old"
chmod 600 "$B/u/old"
rm "$T/flags/ready"
wait "$STALE" || { cat "$T/stale.out" >&2; fail "the user's fd on the replaced file failed"; }
expect_eq "the user's view of its file" "$(cat "$T/stale.out")" "old 0o644"
expect_eq "root's new file at that name" "$(stat -c '%U %a' "$B/u/old"):$(cat "$B/u/old")" "root 600:new"

note "root can still create files"
echo root-made >"$M/rootfile"
expect_eq "root's file" "$(cat "$M/rootfile")" "root-made"
n=$(fds)
[ "$n" -le "$LIMIT" ] || fail "the daemon holds $n fds at the end (limit $LIMIT)"
stop_provfs
