#!/usr/bin/env bash
# provfs as a system service: the Debian package built by tools/package.sh installs; an fstab line
# (`mount --fstab`) and `mount -t fuse.provfs` mount it with -o options that take effect; the man
# pages render; the systemd unit is valid; a refused open is one syslog line naming the user, the
# path and the fix, logged once per minute however often it is repeated, and a hostile directory
# name can neither break the line nor smuggle a shell command into the suggested fix.
. "$(dirname "$0")/lib.sh"
need_mkmodel
for tool in dpkg-deb dpkg mount umount man setpriv useradd python3; do
    command -v "$tool" >/dev/null || { echo "SKIP: no $tool"; exit 77; }
done
if dpkg-query -W -f='${Status}' provfs 2>/dev/null | has_match 'install ok installed'; then
    echo "SKIP: a provfs package is installed on this machine already"
    exit 77
fi
SRC=$(cd "$(dirname "$0")/../.." && pwd)
TU=provfs-sv-$$
useradd -M -r -s /usr/sbin/nologin "$TU" >/dev/null || fail "useradd $TU"
TUID=$(id -u "$TU")
TGID=$(id -g "$TU")
as_user() { setpriv --reuid="$TUID" --regid="$TGID" --clear-groups -- "$@"; }
LISTENER=
OWN_LOG_SOCKET=0
service_cleanup() {
    local rc=$1
    if mountpoint -q "$M" 2>/dev/null; then umount "$M" 2>/dev/null || fusermount3 -u -z "$M"; fi
    [ -n "$LISTENER" ] && kill "$LISTENER" 2>/dev/null
    [ "$OWN_LOG_SOCKET" = 1 ] && rm -f /dev/log
    dpkg -r provfs >/dev/null 2>&1
    userdel -f "$TU" >/dev/null 2>&1
    kill "$(cat "$T/watchdog.pid" 2>/dev/null)" "$WATCHDOG" 2>/dev/null || true
    cleanup "$rc"
}
trap 'service_cleanup $?' EXIT

# A syslog to read: when this machine has none, the test listens on /dev/log itself. A socket
# nobody listens on (left by a killed run) is no syslog: it goes.
if [ -S /dev/log ] && ! python3 -c 'import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.connect("/dev/log")' 2>/dev/null; then
    rm -f /dev/log
fi
if [ ! -e /dev/log ]; then
    python3 -u - "$T/syslog.txt" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
os.chmod("/dev/log", 0o666)
with open(sys.argv[1], "ab", buffering=0) as out:
    while True:
        msg = s.recv(65536)
        out.write(repr(msg).encode() + b"\n")   # one record per datagram, whatever it holds
PY
    LISTENER=$!
    for _ in $(seq 50); do [ -S /dev/log ] && break; sleep 0.1; done
    [ -S /dev/log ] || fail "no /dev/log listener"
    OWN_LOG_SOCKET=1
else
    note "/dev/log exists: the syslog part reads journalctl"
fi
syslog_lines() { # the daemon's syslog records so far
    if [ "$OWN_LOG_SOCKET" = 1 ]; then
        grep 'provfs\[' "$T/syslog.txt" || true
    else
        journalctl -q -o cat -t provfs 2>/dev/null || true
    fi
}

note "build and install the package"
deb=$("$SRC/tools/package.sh" "$T/pkg") || fail "tools/package.sh failed"
[ -f "$deb" ] || fail "no package at '$deb'"
dpkg -i "$deb" >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log" >&2; fail "dpkg -i"; }
[ -x /usr/sbin/provfs ] && [ -x /usr/bin/provctl ] || fail "binaries not installed"
[ -f /lib/systemd/system/provfs@.service ] || fail "no systemd unit"
[ -d /usr/share/provfs/refdb/cisco-mpk/entries ] || fail "no reference set"
[ "$(stat -c %a /etc/provfs/policy.json)" = 644 ] || fail "/etc/provfs/policy.json"
getent passwd provfs-analyzer >/dev/null || fail "postinst did not create provfs-analyzer"
man -P cat provfs 2>/dev/null | has_match "fuse.provfs" || fail "man provfs does not render"
man -P cat provctl 2>/dev/null | has_match "approve" || fail "man provctl does not render"
grep -q "^ExecStart=/usr/sbin/provfs -f " /lib/systemd/system/provfs@.service ||
    fail "unit ExecStart"
if command -v systemd-analyze >/dev/null; then
    # a template is verified through an instance
    cp /lib/systemd/system/provfs@.service "$T/provfs@models.service"
    if ! systemd-analyze verify "$T/provfs@models.service" >"$T/verify.log" 2>&1; then
        cat "$T/verify.log" >&2
        fail "systemd-analyze verify"
    fi
fi
# the installed daemon knows its installed reference set
/usr/sbin/provfs --help | has_match "/usr/share/provfs/refdb" || fail "installed refdb default"

note "fstab line: mount --fstab FILE MOUNTPOINT"
AG=4242
mkdir -p "$T/etc" "$T/db"
printf '{ "mode": "enforce", "require_approval": "unknown-lineage",\n  "allow_families": [], "deny_families": [], "block_pending": false }\n' >"$T/etc/enforce.json"
printf '{ "mode": "audit", "require_approval": "unknown-lineage",\n  "allow_families": [], "deny_families": [], "block_pending": false }\n' >"$T/etc/audit.json"
printf '%s %s fuse.provfs defaults,nofail,policy=%s,db=%s,quiet_ms=100,admin_gid=%s,workers=1 0 0\n' \
    "$B" "$M" "$T/etc/enforce.json" "$T/db/lineage.db" "$AG" >"$T/fstab"
mount --fstab "$T/fstab" "$M" 2>"$T/mount.err" || { cat "$T/mount.err" >&2; fail "mount via fstab"; }
mountpoint -q "$M" || fail "no mount after mount --fstab"
findmnt -n -o FSTYPE "$M" | has_match -x "fuse.provfs" || fail "fstype $(findmnt -n -o FSTYPE "$M")"
pid=$(pgrep -f -- "provfs $B $M" | head -1 || true)
[ -n "$pid" ] || fail "no daemon for $M: $(ps -eo args | grep provfs)"
[ -f "$T/db/lineage.db" ] || fail "db= did not take effect"
[ ! -e "$B/.provfs/lineage.db" ] || fail "database also in BACKING/.provfs"
expect_eq "policy= took effect" \
    "$(python3 -c "import json; print(json.load(open('$M/.provenance'))['policy']['mode'])")" enforce

note "a refused open is one syslog line with the uid, the path and the fix"
"$MKMODEL" create "$T/src" --arch llama --seed 31 >/dev/null
mkdir -p "$M/team"
cp -r "$T/src" "$M/team/llama"
wait_status "$M/team/llama" ready
expect_eq "approval" "$(xattr "$M/team/llama" approval)" blocked
for _ in $(seq 40); do
    as_user cat "$M/team/llama/model.safetensors" >/dev/null 2>&1 && fail "blocked weights read"
done
check=$(/usr/bin/provctl check "$M/team/llama/model.safetensors" 2>&1) && fail "check allowed"
reason=$(printf '%s\n' "$check" | sed -n '2s/^  //p')
[ -n "$reason" ] || fail "provctl check gave no reason: $check"
for _ in $(seq 50); do syslog_lines | has_match "team/llama" && break; sleep 0.1; done
lines=$(syslog_lines | grep -c "refused open of $M/team/llama/model.safetensors by uid $TUID " || true)
expect_eq "syslog lines for 40 refusals in one minute" "$lines" 1
line=$(syslog_lines | grep "refused open of $M/team/llama/model.safetensors")
case $line in *"provctl check '$M/team/llama/model.safetensors'"*) ;; *) fail "no check command: $line" ;; esac
case $line in *"provctl approve '$M/team/llama/model.safetensors'"*) ;; *) fail "no approve command: $line" ;; esac
case $line in *"$reason"*) ;; *) fail "syslog reason differs from provctl check's '$reason': $line" ;; esac

note "a hostile name cannot break the line or put a command into the fix"
evil="$M/x'; touch $T/pwned; echo '"$'\n'"forged"
mkdir -p "$evil"
cp -r "$T/src" "$evil/m"
chmod -R a+rX "$M"
wait_status "$evil/m" ready
as_user cat "$evil/m/model.safetensors" >/dev/null 2>&1 && fail "blocked weights read"
for _ in $(seq 50); do syslog_lines | has_match "pwned" && break; sleep 0.1; done
rec=$(syslog_lines | grep "pwned") || fail "no syslog line for the hostile name"
expect_eq "records for the hostile name" "$(printf '%s\n' "$rec" | wc -l)" 1
printf '%s' "$rec" | has_match 'forged' || fail "name cut"
# the record holds no raw newline before 'forged' (the listener writes repr(): a raw one is \n)
printf '%s' "$rec" | has_match "\\\\nforged" && fail "raw newline in the syslog line: $rec"
# the suggested command, run by a shell, is one argument and runs nothing
cmd=$(python3 -c "import ast,sys; m=ast.literal_eval(sys.argv[1]).decode(); print(m[m.index('provctl approve ')+16:])" "$rec")
(cd "$T" && eval "set -- $cmd" && [ $# -eq 1 ]) || fail "fix is not one argument: $cmd"
[ ! -e "$T/pwned" ] || fail "the suggested command ran a command"

umount "$M" || fail "umount"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null && fail "daemon still running after umount"

note "mount -t fuse.provfs -o ..."
mount -t fuse.provfs -o "policy=$T/etc/audit.json,db=$T/db/lineage.db,analyzer_worker=off" \
    "$B" "$M" 2>"$T/mount.err" || { cat "$T/mount.err" >&2; fail "mount -t fuse.provfs"; }
mountpoint -q "$M" || fail "no mount after mount -t"
expect_eq "policy= of mount -t" \
    "$(python3 -c "import json; print(json.load(open('$M/.provenance'))['policy']['mode'])")" audit
as_user cat "$M/team/llama/model.safetensors" >/dev/null || fail "audit mode refused a read"
# the same database: the model is known, not analysed again (a path that shares its content
# may be checked again at mount, which shows the shared model pending for a moment)
wait_status "$M/team/llama" ready 60
expect_eq "analysed once across mounts (db=)" "$(sqlite3 "$T/db/lineage.db" \
    "SELECT count(*) FROM events WHERE kind = 'analyzed' AND path = '/team/llama'")" 1
umount "$M" || fail "umount"

note "bad -o values refuse the mount"
if mount -t fuse.provfs -o workers=0 "$B" "$M" 2>"$T/bad.err"; then
    umount "$M"
    fail "workers=0 mounted"
fi
grep -q "bad value for -o workers" "$T/bad.err" || fail "message: $(cat "$T/bad.err")"
note "ok"
