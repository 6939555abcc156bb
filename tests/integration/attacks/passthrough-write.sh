#!/usr/bin/env bash
# Writes never go around the daemon (fs/README.md, "Passthrough"). Reads of a file opened
# read-only are served by the kernel from BACKING itself (FUSE passthrough), and the kernel
# serves every open of such a file so while one is open; a write open, or a shared writable
# mapping that outlives its release, would then change the bytes unseen. So:
#  1. while a reader has the approved model open, the owner's open for writing is refused
#     (ETXTBSY) and the bytes and the approval stay;
#  2. a shared writable mapping made before any reader, kept past its close and past an
#     analysis, is written through the daemon: the unit goes pending again (block_pending
#     refuses a fresh open), and after the mapping goes the new bytes are analysed and the
#     approval does not follow them.
. "$(dirname "$0")/lib.sh"
write_policy enforce true
start_provfs --max-delay-ms 1500
mkdir -m 1777 "$M/up"
approved_rewrite "$M/up/a" 133
cp "$f" "$T/approved"

note "1. a write open while the user reads the approved file is refused"
out=$(as_user "$UPY" -c '
import errno, os, sys
r = os.open(sys.argv[1], os.O_RDONLY)
os.pread(r, 4096, 0)
try:
    w = os.open(sys.argv[1], os.O_RDWR)
    os.pwrite(w, sys.stdin.buffer.read(), 0)
    print("write open allowed")
except OSError as e:
    print(errno.errorcode[e.errno])
os.close(r)' "$f" <"$other")
expect_eq "a write open beside a passthrough reader" "$out" ETXTBSY
cmp -s "$T/approved" "$B/up/a/model.safetensors" || fail "the bytes changed"
expect_eq "approval" "$(xattr "$M/up/a" approval)" approved

note "2. a shared writable mapping kept past its close and an analysis"
out=$(as_user "$UPY" -c "$PY_WAIT_APPROVED"'
import mmap, sys
f, unit = sys.argv[1], sys.argv[2]
new = sys.stdin.buffer.read()
w = os.open(f, os.O_RDWR)
m = mmap.mmap(w, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
os.close(w)
m[0:1] = m[0:1]  # unchanged: pending, then analysed while mapped
m.flush()
if not wait_approved(unit):
    print("no analysis while mapped")
    sys.exit(0)
m[:len(new)] = new
m.flush()
try:
    os.close(os.open(f, os.O_RDONLY))
    print("open allowed after the rewrite")
except PermissionError:
    print("refused after the rewrite")
m.close()' "$f" "$M/up/a" <"$other")
expect_eq "a fresh open while the mapping holds new bytes" "$out" "refused after the rewrite"
cmp -s "$other" "$B/up/a/model.safetensors" || fail "the mapping's write did not land"
wait_approval "$M/up/a" blocked
refused "$f"
stop_provfs
