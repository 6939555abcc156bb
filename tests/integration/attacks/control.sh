#!/usr/bin/env bash
# Approvals over the control socket. A member of --admin-gid could not approve a unit they may
# not write (the kernel checks write permission for user.* xattrs before provfs is asked);
# provctl approve|revoke now ask the daemon over its control socket and peer credentials decide.
# A non-admin is refused there too; a socket squatted by a user under the daemon's name is never
# talked to (provctl asks only a server running as root).
. "$(dirname "$0")/lib.sh"
AG=provfs-ag-$$
groupadd -r "$AG" || fail "groupadd"
ADM=provfs-adm-$$
useradd -M -r -s /usr/sbin/nologin -G "$AG" "$ADM" >/dev/null || fail "useradd $ADM"
trap 'rc_=$?; userdel -f "$TU" >/dev/null 2>&1; userdel -f "$ADM" >/dev/null 2>&1; groupdel "$AG" >/dev/null 2>&1; kill "$(cat "$T/watchdog.pid" 2>/dev/null)" "$WATCHDOG" 2>/dev/null || true; cleanup "$rc_"' EXIT
AGID=$(getent group "$AG" | cut -d: -f3)
as_admin() { setpriv --reuid="$(id -u "$ADM")" --regid="$(id -g "$ADM")" --groups="$AGID" -- "$@"; }
write_policy enforce
start_provfs --admin-gid "$AGID"
[ -S "$B/.provfs/control.sock" ] || fail "no control socket in .provfs"
expect_eq "control socket mode" "$(stat -c '%a %U' "$B/.provfs/control.sock")" "600 root"
mkdir -m 1777 "$M/up"
blocked_unit "$M/up/a" 120
chmod -R go-w "$M/up/a"

note "a non-admin is refused"
expect_errno "permission denied: only admins approve" as_user "$PROVCTL" approve "$M/up/a"
expect_eq "approval" "$(xattr "$M/up/a" approval)" blocked

note "an admin-group member who may not write the unit approves and revokes"
as_admin setfattr -n user.provenance.approve -v x "$M/up/a" 2>/dev/null &&
    fail "setfattr worked without write permission (the test premise is wrong)"
as_admin "$PROVCTL" approve "$M/up/a" --note "reviewed by the admin group" >/dev/null ||
    fail "admin approve over the socket"
expect_eq "approval" "$(xattr "$M/up/a" approval)" approved
readable "$M/up/a/model.safetensors"
[ "$(DB "SELECT count(*) FROM approvals WHERE by_uid = $(id -u "$ADM")")" -eq 1 ] ||
    fail "approval not recorded as the admin"
as_admin "$PROVCTL" revoke "$M/up/a" >/dev/null || fail "admin revoke"
refused "$M/up/a/model.safetensors"

note "a user squatting the abstract name is never asked"
stop_provfs
as_user "$UPY" - "$M" "$T/squat.log" <<'PYEOF' &
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(b"\0provfs-control:" + os.fsencode(os.path.realpath(sys.argv[1])))
s.listen(1)
s.settimeout(20)
try:
    c, _ = s.accept()
    c.settimeout(2)
    if c.recv(4096):  # provctl sent its request (and its note) to a user's socket
        open(sys.argv[2], "w").write("asked\n")
        c.sendall(b"0 approved\n")
except Exception:
    pass
PYEOF
squatter=$!
sleep 0.5
start_provfs --admin-gid "$AGID"
wait_status "$M/up/a" ready
rc=0; out=$(as_admin "$PROVCTL" approve "$M/up/a" 2>&1) || rc=$?
[ -e "$T/squat.log" ] && fail "provctl talked to the squatter"
kill "$squatter" 2>/dev/null || true; wait "$squatter" 2>/dev/null || true
# without the socket (the name was taken), an admin without write permission is refused
expect_eq "approve with the name squatted" "$rc" 2
refused "$M/up/a/model.safetensors"
stop_provfs
