# Shared setup for the attack tests: sourced, not run. Each attack script runs as a real
# unprivileged user ($TU, created here and removed in the trap) against an `enforce` mount and
# asserts that the attack fails: the blocked bytes stay unreadable, root's files keep their owner
# and mode, the store stays right.
. "$(dirname "$0")/../lib.sh"
need_mkmodel
[ -n "$PROVCTL" ] && [ -x "$PROVCTL" ] || { echo "SKIP: no provctl"; exit 77; }
for tool in setpriv useradd userdel setfattr python3 sqlite3; do
    command -v "$tool" >/dev/null || { echo "SKIP: no $tool"; exit 77; }
done

TU=provfs-at-$$
useradd -M -r -s /usr/sbin/nologin "$TU" >/dev/null || fail "useradd $TU"
trap 'rc_=$?; userdel -f "$TU" >/dev/null 2>&1; kill "$(cat "$T/watchdog.pid" 2>/dev/null)" "$WATCHDOG" 2>/dev/null || true; cleanup "$rc_"' EXIT
TUID=$(id -u "$TU")
TGID=$(id -g "$TU")
UPY=/usr/bin/python3
[ -x "$UPY" ] || { echo "SKIP: no /usr/bin/python3"; exit 77; }

as_user() {
    setpriv --reuid="$TUID" --regid="$TGID" --clear-groups -- "$@"
}

# write_policy MODE [BLOCK_PENDING]: enforce/audit with approval required for unknown lineage.
write_policy() {
    mkdir -p "$B/.provfs"
    printf '{ "mode": "%s", "require_approval": "unknown-lineage",\n  "allow_families": [], "deny_families": [], "block_pending": %s }\n' \
        "$1" "${2:-false}" >"$B/.provfs/policy.json"
}

# refused PATH: the user cannot read PATH (EACCES).
refused() {
    expect_errno "Permission denied" as_user cat "$1"
}

# unreadable PATH: the user cannot read PATH, for whatever reason (refused, gone).
unreadable() {
    if as_user cat "$1" >/dev/null 2>&1; then
        fail "$1: readable by $TU"
    fi
}

readable() {
    as_user cat "$1" >/dev/null 2>&1 || fail "$1: not readable by $TU"
}

# blocked_unit DIR SEED: a fresh unrelated model (unknown lineage: blocked under enforce) at DIR
# in the mount, owned by the user, ready.
blocked_unit() {
    local src=$T/src-$2
    "$MKMODEL" create "$src" --arch llama --seed "$2" >/dev/null
    mkdir -p "$(dirname "$1")"
    cp -r "$src" "$1"
    chown -R "$TU" "$1"
    wait_status "$1" ready
    expect_eq "approval of $1" "$(xattr "$1" approval)" blocked
}

# approved_rewrite DIR SEED: as blocked_unit, then approved by root and read by the user; sets
# f (its weights) and other ($T/other: another model's weights of the same size, to put there).
approved_rewrite() {
    blocked_unit "$1" "$2"
    f=$1/model.safetensors
    setfattr -n user.provenance.approve -v ok "$1"
    readable "$f"
    "$MKMODEL" create "$T/other" --arch llama --seed "$(($2 + 1))" >/dev/null
    other=$T/other/model.safetensors
    expect_eq "same size" "$(stat -c %s "$other")" "$(stat -c %s "$f")"
}

# wait_approval DIR VALUE: DIR ready with user.provenance.approval VALUE (within 15 s), else fail.
wait_approval() {
    wait_status "$1" ready
    for _ in $(seq 150); do
        [ "$(xattr "$1" approval)" = "$2" ] && return 0
        sleep 0.1
    done
    expect_eq "approval of $1" "$(xattr "$1" approval)" "$2"
}

# PY_WAIT_APPROVED: Python that defines wait_approved(unit) (ready and approved again, within
# 15 s; False when not) for scripts run as the user.
PY_WAIT_APPROVED='
import os, time
def xa(unit, name):
    try:
        return os.getxattr(unit, "user.provenance." + name).decode()
    except OSError:
        return ""
def wait_approved(unit):
    for _ in range(300):
        if xa(unit, "status") == "ready" and xa(unit, "approval") == "approved":
            return True
        time.sleep(0.05)
    return False
'

# linked_unit DIR LINK SRC: as the user, a model unit DIR whose weights have a second name LINK
# that never held model bytes while marked: a neutral file in DIR, hard-linked out to LINK while
# it is in no unit, renamed within DIR to the weights' name, then SRC's weights written into it
# and its config added. Waits for DIR to be ready and blocked (no approval yet).
linked_unit() {
    as_user mkdir "$1"
    as_user sh -c "echo notes >'$1/data'" || fail "create"
    as_user ln "$1/data" "$2" || fail "ln as $TU"
    sleep 1
    as_user mv "$1/data" "$1/model.safetensors" || fail "mv"
    as_user sh -c "cat '$3/model.safetensors' >'$1/model.safetensors'" || fail "write"
    as_user cp "$3/config.json" "$1/" || fail "cp"
    wait_status "$1" ready
    expect_eq "approval of $1" "$(xattr "$1" approval)" blocked
}

# overwrite_keep_mtime FILE NAME: as the user, writes stdin over the start of NAME (FILE itself
# or another name of it), without truncating, then sets NAME's times back to FILE's before;
# fails unless FILE's size and mtime are then as before.
overwrite_keep_mtime() {
    as_user "$UPY" -c '
import os, sys
f, name = sys.argv[1], sys.argv[2]
new = sys.stdin.buffer.read()
st = os.stat(f)
w = os.open(name, os.O_WRONLY)
os.pwrite(w, new, 0)
os.close(w)
os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns))
assert os.stat(f).st_mtime_ns == st.st_mtime_ns and os.stat(f).st_size == st.st_size
' "$1" "$2" || fail "overwrite of $2 as $TU"
}

# flood DIR: as the user, creates more new files in DIR than the daemon keeps inode fds open
# (its --inode-fds budget, from the log): the inodes it held fds of are reopened by file handle
# when next used, under whichever name the kernel finds first.
FLOODS=0
flood() {
    local budget
    budget=$(sed -n 's/.*inode fd budget \([0-9]*\).*/\1/p' "$LOG" | head -1)
    FLOODS=$((FLOODS + 1))
    as_user "$UPY" -c '
import os, sys
d, n, k = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    os.close(os.open("%s/f%d-%s" % (d, i, k), os.O_CREAT | os.O_WRONLY, 0o644))
' "$1" "$((${budget:-65536} * 11 / 10 + 100))" "$FLOODS" || fail "flood"
}

# read_as_user FILE BYTES: the user opens and reads FILE; prints "refused" (EACCES), or
# "read, those bytes: True" when it read the bytes of BYTES (read as root), else "...: False".
read_as_user() {
    as_user "$UPY" -c '
import sys
try:
    data = open(sys.argv[1], "rb").read()
    print("read, those bytes: %s" % (data == sys.stdin.buffer.read()))
except PermissionError:
    print("refused")' "$1" <"$2" 2>&1
}

# same_bytes A B: true when the two files hold the same bytes (read as root).
same_bytes() {
    cmp -s "$1" "$2"
}
