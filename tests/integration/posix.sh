#!/usr/bin/env bash
# POSIX behaviour that once differed from ext4, each checked side by side with a native directory
# on the same filesystem: POSIX ACLs enforced (an ACL that grants, one that denies, default ACLs
# instead of the umask, no stale mode after setfacl), O_DIRECT writes, security.capability passed
# through (getcap, a copy out keeps it), xattrs of symlinks, POSIX locks released at close,
# set-ID bits and file capabilities dropped by a user's change and kept by root's, without a
# security.capability request per write.
. "$(dirname "$0")/lib.sh"
for tool in setfacl getfacl setcap getcap setpriv useradd userdel dd; do
    command -v "$tool" >/dev/null || { echo "SKIP: no $tool"; exit 77; }
done
TU=provfs-px-$$
useradd -M -r -s /usr/sbin/nologin "$TU" >/dev/null || fail "useradd $TU"
trap 'rc_=$?; [ -n "${pipe_max:-}" ] && echo "$pipe_max" >/proc/sys/fs/pipe-max-size; chattr -a "$N/sid" "$B/sid" 2>/dev/null; userdel -f "$TU" >/dev/null 2>&1; kill "$(cat "$T/watchdog.pid" 2>/dev/null)" "$WATCHDOG" 2>/dev/null || true; cleanup "$rc_"' EXIT
TUID=$(id -u "$TU"); TGID=$(id -g "$TU")
as_user() { setpriv --reuid="$TUID" --regid="$TGID" --clear-groups -- "$@"; }
N=$T/native
mkdir -p "$N"
chmod 755 "$N"
start_provfs
can_read() { as_user cat "$1" >/dev/null 2>&1 && echo yes || echo no; }

note "ACLs: a grant on a 0600 file, a denial on a 0644 file"
for d in "$N" "$M"; do
    echo a >"$d/grant"; chmod 600 "$d/grant"; setfacl -m "u:$TU:r" "$d/grant"
    echo b >"$d/deny"; chmod 644 "$d/deny"; setfacl -m "u:$TU:---" "$d/deny"
done
expect_eq "native grant" "$(can_read "$N/grant")" yes
expect_eq "mount grant" "$(can_read "$M/grant")" yes
expect_eq "native deny" "$(can_read "$N/deny")" no
expect_eq "mount deny" "$(can_read "$M/deny")" no

note "setfacl takes effect at once (no stale mode or ACL)"
for d in "$N" "$M"; do setfacl -x "u:$TU" "$d/deny"; done
expect_eq "mount after removing the denial" "$(can_read "$M/deny")" yes
for d in "$N" "$M"; do setfacl -m "u:$TU:---" "$d/deny"; done
expect_eq "mount after denying again" "$(can_read "$M/deny")" no
expect_eq "mode after setfacl" "$(stat -c %a "$M/deny")" "$(stat -c %a "$N/deny")"

note "default ACLs replace the umask; without one the umask applies"
for d in "$N" "$M"; do
    mkdir "$d/dacl" && chmod 777 "$d/dacl" && setfacl -d -m "u::rwx,g::rwx,o::rwx,u:$TU:rw" "$d/dacl"
    mkdir "$d/plain" && chmod 777 "$d/plain"
    (umask 077; echo c >"$d/dacl/f"; mkdir "$d/dacl/sub"; echo d >"$d/plain/f")
done
for f in dacl/f dacl/sub plain/f; do
    expect_eq "mode of $f" "$(stat -c %a "$M/$f")" "$(stat -c %a "$N/$f")"
    expect_eq "ACL of $f" "$(getfacl -c "$M/$f" 2>/dev/null)" "$(getfacl -c "$N/$f" 2>/dev/null)"
done
expect_eq "default ACL grant on a new file" "$(can_read "$M/dacl/f")" yes

note "O_DIRECT writes"
dd if=/dev/urandom of="$T/blk" bs=1M count=4 status=none
dd if="$T/blk" of="$M/direct" bs=1M oflag=direct status=none || fail "dd oflag=direct"
cmp "$T/blk" "$M/direct" || fail "O_DIRECT write corrupted the data"
dd if="$M/direct" of="$T/back" bs=1M iflag=direct status=none || fail "dd iflag=direct"
cmp "$T/blk" "$T/back" || fail "O_DIRECT read"

note "security.capability passes through"
cp /bin/true "$M/captrue"
setcap cap_net_bind_service+ep "$M/captrue" || fail "setcap"
getcap "$M/captrue" | has_match cap_net_bind_service || fail "getcap: $(getcap "$M/captrue")"
getfattr -d -m - "$M/captrue" >/dev/null || fail "getfattr -d -m - fails"
cp --preserve=xattr "$M/captrue" "$N/captrue"
getcap "$N/captrue" | has_match cap_net_bind_service || fail "the copy out lost the capability"

note "xattrs of symlinks"
for d in "$N" "$M"; do ln -s grant "$d/sl"; setfattr -h -n trusted.provfs.t -v v "$d/sl"; done
expect_eq "symlink xattr" "$(getfattr -h --only-values -n trusted.provfs.t "$M/sl" 2>/dev/null)" v
expect_eq "target untouched" "$(getfattr --only-values -n trusted.provfs.t "$M/grant" 2>/dev/null)" ""
expect_eq "in BACKING, on the link" "$(getfattr -h --only-values -n trusted.provfs.t "$B/sl" 2>/dev/null)" v

note "POSIX locks: held while an fd is open, gone at its close (read-only closes skip the daemon)"
# A process holds a shared lock through a read-only fd; another's exclusive lock is refused
# until the holder closes that fd.
lockstate() {
    python3 - "$1" <<'PY'
import fcntl, os, sys
p = sys.argv[1]
def try_excl():
    w = os.open(p, os.O_RDWR)
    try:
        fcntl.lockf(w, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return "free"
    except OSError:
        return "held"
    finally:
        os.close(w)
r, wpipe = os.pipe(); r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    fd = os.open(p, os.O_RDONLY)
    fcntl.lockf(fd, fcntl.LOCK_SH)
    os.write(wpipe, b"1"); os.read(r2, 1)
    os.close(fd)
    os.write(wpipe, b"2"); os.read(r2, 1)
    os._exit(0)
os.read(r, 1); a = try_excl()
os.write(w2, b"x"); os.read(r, 1); b = try_excl()
os.write(w2, b"x"); os.waitpid(pid, 0)
print(a, b)
PY
}
for d in "$N" "$M"; do echo lock >"$d/lockme"; done
expect_eq "native lock" "$(lockstate "$N/lockme")" "held free"
expect_eq "mount lock" "$(lockstate "$M/lockme")" "held free"

note "set-ID bits: a user's change drops them as on ext4, root's keeps them"
# Pipes may grow to 2 MiB, as for a daemon with CAP_SYS_RESOURCE: libfuse would then splice
# requests in past the daemon's read hook, which must see each one. A fresh mount takes it.
pipe_max=$(cat /proc/sys/fs/pipe-max-size)
echo 2097152 >/proc/sys/fs/pipe-max-size
stop_provfs
start_provfs
# The daemon changes files as root, which keeps the bits: it drops them itself when the kernel
# says the caller may not keep them (fs/README.md, "Set-ID bits"). Each case: a file of root's
# with MODE, changed by the user with CMD ($1 the file, $2 a file beside it), on both sides.
echo srcdata >"$N/src"; echo srcdata >"$M/src"
setid_case() {
    local what=$1 mode=$2 cmd=$3 d n m
    for d in "$N" "$M"; do
        rm -f "$d/sid"; echo hello >"$d/sid"; chmod "$mode" "$d/sid"
        as_user bash -c "$cmd" _ "$d/sid" "$d/src" || fail "$what: the user's change failed in $d"
    done
    n=$(stat -c %a "$N/sid")
    # the kernel's attributes of the mount's file are refreshed by a notification after the reply
    for _ in $(seq 50); do m=$(stat -c %a "$M/sid"); [ "$m" = "$n" ] && break; sleep 0.05; done
    expect_eq "$what: mode through the mount (native: $n)" "$m" "$n"
    expect_eq "$what: mode in BACKING" "$(stat -c %a "$B/sid")" "$n"
}
cfr='import os, sys
a = os.open(sys.argv[2], os.O_RDONLY); b = os.open(sys.argv[1], os.O_WRONLY)
if os.copy_file_range(a, b, 4, 0, 0) != 4: sys.exit(1)'
setid_case write 6777 'echo x >>"$1"'
setid_case "O_DIRECT write" 6777 'dd if=/dev/zero of="$1" bs=4096 count=1 oflag=direct conv=notrunc status=none'
setid_case "O_TRUNC open" 6777 ': >"$1"'
setid_case truncate 6777 'truncate -s 1 "$1"'
setid_case fallocate 6777 'fallocate -l 65536 "$1"'
setid_case copy_file_range 6777 "python3 -c '$cfr' \"\$1\" \"\$2\""
setid_case "set-group-ID, no group execute, caller not in the group" 2766 'echo x >>"$1"'
setid_case "set-group-ID with group execute" 2777 'echo x >>"$1"'
for d in "$N" "$M"; do
    rm -f "$d/sid"; echo hello >"$d/sid"; chmod 6777 "$d/sid"
    echo x >>"$d/sid"; : >"$d/sid"; truncate -s 5 "$d/sid"; fallocate -l 8192 "$d/sid"
done
expect_eq "root's changes keep the bits (native)" "$(stat -c %a "$N/sid")" 6777
expect_eq "root's changes keep the bits (mount)" "$(stat -c %a "$M/sid")" 6777
# An append-only set-user-ID file: the bit cannot go, so the user's append is refused, as natively.
rm -f "$N/sid" "$M/sid"
if echo a >"$N/sid" && chmod 6777 "$N/sid" && chattr +a "$N/sid" 2>/dev/null; then
    echo a >"$M/sid"; chmod 6777 "$M/sid"; chattr +a "$B/sid" || fail "chattr +a in BACKING"
    for d in "$N" "$M"; do
        as_user bash -c 'echo evil >>"$1"' _ "$d/sid" 2>/dev/null && fail "an append to $d/sid went through"
    done
    expect_eq "append-only file after the refused append" "$(cat "$M/sid")" a
    expect_eq "append-only file's mode" "$(stat -c %a "$B/sid")" 6777
    chattr -a "$N/sid" "$B/sid"
fi
echo "$pipe_max" >/proc/sys/fs/pipe-max-size
note "security.capability goes at a user's write"
for d in "$N" "$M"; do
    rm -f "$d/capw"; cp /bin/true "$d/capw"; chmod 777 "$d/capw"
    setcap cap_net_bind_service+ep "$d/capw" || fail "setcap in $d"
    as_user bash -c 'echo >>"$1"' _ "$d/capw" || fail "the user's write failed in $d"
done
expect_eq "native capability after the write" "$(getcap "$N/capw")" ""
expect_eq "mount capability after the write" "$(getcap "$M/capw")" ""
expect_eq "BACKING capability after the write" "$(getcap "$B/capw")" ""
stop_provfs

note "writes ask no security.capability of the daemon (FUSE_HANDLE_KILLPRIV_V2)"
# Without it the kernel asks before every buffered write: a round trip each (64 here). The
# other GETXATTR requests are ACL and capability looks of the opens. The debug log lists the
# requests; its error lines (ENODATA answers) are expected in this part.
LOG_MAIN=$LOG
LOG=$T/debug.log
start_provfs -d
touch "$M/many"; chmod 666 "$M/many"
# write-only (direct_io: no capability check at all) and read-write (the page cache's path)
as_user dd if=/dev/zero of="$M/many" bs=64k count=64 conv=notrunc status=none ||
    fail "dd as the user"
as_user /usr/bin/python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
for i in range(64): os.pwrite(fd, b"y" * 65536, i * 65536)
os.close(fd)' "$M/many" || fail "read-write writes as the user"
sync "$M/many"
stop_provfs
writes=$(grep -c 'opcode: WRITE' "$LOG" || true)
asks=$(grep -c 'opcode: GETXATTR' "$LOG" || true)
[ "$writes" -ge 128 ] || fail "the debug log shows $writes writes, not 128"
[ "$asks" -le 16 ] || fail "$asks GETXATTR requests for $writes writes"
note "$writes writes, $asks GETXATTR requests"
LOG=$LOG_MAIN
start_provfs

note "a write-only open's writes are seen at once by a reader's fd and mapping"
# Write-only opens are direct_io: the range they write leaves the kernel's cache of the file.
coherent() {
    python3 - "$1" <<'PY'
import mmap, os, sys
p = sys.argv[1]
with open(p, "wb") as f:
    f.write(b"a" * 20000)
r = os.open(p, os.O_RDONLY)
m = mmap.mmap(r, 0, prot=mmap.PROT_READ)
before = os.pread(r, 3, 8195) + m[8195:8198]
w = os.open(p, os.O_WRONLY)
os.pwrite(w, b"NEW", 8195)
os.close(w)
print(before.decode(), os.pread(r, 3, 8195).decode(), m[8195:8198].decode())
PY
}
expect_eq "native reader after the write" "$(coherent "$N/coh")" "aaaaaa NEW NEW"
expect_eq "mount reader after the write" "$(coherent "$M/coh")" "aaaaaa NEW NEW"
stop_provfs
