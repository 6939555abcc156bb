#!/usr/bin/env bash
# A close marks the unit: once close() of a written file returns, the unit is pending until the
# analysis of what was written, even while another process still holds the file open (the
# kernel's release comes only when the last holder closes, later and unordered). That holder's
# release, with nothing written since, does not make the unit pending again: a status read as
# ready after the close stays ready, with its parent. A change through another hard link of a
# unit's file, or through one unlinked while open, marks that unit too.
. "$(dirname "$0")/lib.sh"
need_mkmodel
S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 61 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 62 >/dev/null
"$MKMODEL" derive "$S/base" "$S/q8" --kind quant-int8 --seed 63 >/dev/null
start_provfs
cp -r "$S/base" "$M/base"
cp -r "$S/ft" "$M/m"
wait_status "$M/base" ready
wait_status "$M/m" ready
expect_eq "m parent" "$(xattr "$M/m" parent)" /base

# holder.py SRC DST FLAG HOLD LATE: DST opened for writing; unless LATE, SRC's bytes written over
# it at once; a forked child inherits the fd and holds it HOLD seconds (with LATE, then truncates
# it and writes SRC's bytes through it); the parent closes its fd, touches FLAG and waits.
cat >"$T/holder.py" <<'EOF'
import os, sys, time
src, dst, flag, hold, late = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5] == "1"
data = open(src, "rb").read()
fd = os.open(dst, os.O_WRONLY | (0 if late else os.O_TRUNC))
if not late:
    os.write(fd, data)
if os.fork() == 0:
    time.sleep(hold)
    if late:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    os._exit(0)
os.close(fd)
open(flag, "w").close()
os.wait()
EOF
# holder SRC FLAG HOLD LATE: holder.py over m's weights in the background; waits for the close.
holder() {
    python3 "$T/holder.py" "$1" "$M/m/model.safetensors" "$2" "$3" "$4" &
    holder_pid=$!
    for _ in $(seq 100); do [ -e "$2" ] && return 0; sleep 0.05; done
    fail "the writer did not close"
}

# The weights of q8 written over m's; the child holds the fd HOLD seconds after the close.
HOLD=6
holder "$S/q8/model.safetensors" "$T/closed" "$HOLD" 0
s=$(xattr "$M/m" status)
case "$s" in pending|analyzing) ;; *) fail "status right after the close: '$s', expected pending" ;; esac

# ready while the child still holds the fd (the analysis follows the close, not the last holder)
wait_status "$M/m" ready $((HOLD - 2))
kill -0 "$holder_pid" 2>/dev/null || fail "the holder exited before the unit was ready"
expect_eq "m parent after the close" "$(xattr "$M/m" parent)" /base
want=$(sha256sum "$S/q8/model.safetensors" | cut -d' ' -f1)
expect_eq "m digest is of the new weights" "$(xattr "$M/m/model.safetensors" sha256)" "$want"

# the holder's release changes nothing: the status stays ready through it
wait "$holder_pid" || fail "the writer failed"
for _ in $(seq 30); do
    s=$(xattr "$M/m" status)
    [ "$s" = ready ] || fail "status after the holder's release: '$s', expected ready"
    sleep 0.05
done

# A holder that writes after the close marks again: its release analyses the new bytes.
holder "$S/ft/model.safetensors" "$T/closed2" 1.5 1
wait "$holder_pid" || fail "the second writer failed"
wait_status "$M/m" ready
want=$(sha256sum "$S/ft/model.safetensors" | cut -d' ' -f1)
expect_eq "m digest after the holder wrote" "$(xattr "$M/m/model.safetensors" sha256)" "$want"
expect_eq "m parent after the holder wrote" "$(xattr "$M/m" parent)" /base

# A change through another hard link of a unit's file marks the unit, at once, through a name
# outside every unit and through one unlinked while open (the store's inode index names it).
# The kernel forgets the inode first, so the daemon meets it again by the link's name.
for how in link unlinked; do
    ln "$M/m/model.safetensors" "$M/lk"
    sync
    echo 2 >/proc/sys/vm/drop_caches
    stat "$M/lk" >/dev/null
    python3 - "$M/lk" "$how" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
if sys.argv[2] == "unlinked":
    os.unlink(sys.argv[1])
os.pwrite(fd, b"\x01", os.fstat(fd).st_size - 1)
os.close(fd)
EOF
    s=$(xattr "$M/m" status)
    case "$s" in pending|analyzing) ;; *) fail "$how: m's status after the write: '$s'" ;; esac
    wait_status "$M/m" ready
    want=$(sha256sum "$B/m/model.safetensors" | cut -d' ' -f1)
    expect_eq "$how: m digest is of the changed weights" \
        "$(xattr "$M/m/model.safetensors" sha256)" "$want"
    rm -f "$M/lk"
done

cd /
stop_provfs
echo "PASS close"
