#!/usr/bin/env bash
# POSIX behaviour that once differed from ext4, each checked side by side with a native directory
# on the same filesystem: POSIX ACLs enforced (an ACL that grants, one that denies, default ACLs
# instead of the umask, no stale mode after setfacl), O_DIRECT writes, security.capability passed
# through (getcap, a copy out keeps it), xattrs of symlinks, POSIX locks released at close.
. "$(dirname "$0")/lib.sh"
for tool in setfacl getfacl setcap getcap setpriv useradd userdel dd; do
    command -v "$tool" >/dev/null || { echo "SKIP: no $tool"; exit 77; }
done
TU=provfs-px-$$
useradd -M -r -s /usr/sbin/nologin "$TU" >/dev/null || fail "useradd $TU"
trap 'rc_=$?; userdel -f "$TU" >/dev/null 2>&1; kill "$(cat "$T/watchdog.pid" 2>/dev/null)" "$WATCHDOG" 2>/dev/null || true; cleanup "$rc_"' EXIT
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
stop_provfs
