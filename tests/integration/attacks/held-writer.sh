#!/usr/bin/env bash
# A write handle held open past an analysis is no way to change an approved model unseen. The
# user opens their approved model for writing and writes one unchanged byte: the unit goes
# pending, and --max-delay-ms later it is analysed while the handle is still open (same bytes:
# the approval binds again). Then the user writes other weights through the same handle and
# keeps it open. A change after an analysis began marks the unit again (fs/README.md, "Hash while
# writing"), so a fresh open is refused (block_pending) until the new bytes are analysed, and
# the approval does not follow them. The same through a handle whose first change found no unit:
# made outside any unit, renamed over the model while open, then written.
. "$(dirname "$0")/lib.sh"
write_policy enforce true
start_provfs --max-delay-ms 1500
mkdir -m 1777 "$M/up"
approved_rewrite "$M/up/a" 135

note "the user writes an unchanged byte, waits for the analysis, then writes other weights"
out=$(as_user "$UPY" -c "$PY_WAIT_APPROVED"'
import sys
f, unit = sys.argv[1], sys.argv[2]
new = sys.stdin.buffer.read()
w = os.open(f, os.O_RDWR)
os.pwrite(w, os.pread(w, 1, 0), 0)
if not wait_approved(unit):  # the analysis while the handle is open binds the approval again
    print("no analysis while open")
    sys.exit(0)
os.pwrite(w, new, 0)
try:
    os.close(os.open(f, os.O_RDONLY))
    print("open allowed after the rewrite")
except PermissionError:
    print("refused after the rewrite")
os.close(w)' "$f" "$M/up/a" <"$other")
expect_eq "a fresh open while the rewriting handle is open" "$out" "refused after the rewrite"

note "after the close the new bytes are analysed; the approval does not follow them"
wait_approval "$M/up/a" blocked
refused "$f"

note "a handle made outside any unit, renamed over the approved model, written past an analysis"
setfattr -n user.provenance.approve -v ok "$M/up/a"
wait_approval "$M/up/a" approved
cp "$B/up/a/model.safetensors" "$T/approved2"
"$MKMODEL" create "$T/third" --arch llama --seed 139 >/dev/null
out=$(as_user "$UPY" -c "$PY_WAIT_APPROVED"'
import sys
f, unit, up = sys.argv[1:4]
appr = open(sys.argv[4], "rb").read()
new = sys.stdin.buffer.read()
os.mkdir(up + "/tmp")
w = os.open(up + "/tmp/x", os.O_CREAT | os.O_RDWR | os.O_EXCL, 0o644)  # marks nothing
os.rename(up + "/tmp/x", f)
os.pwrite(w, appr, 0)  # the approved bytes again: analysed, approved
if not wait_approved(unit):
    print("no analysis while open")
    sys.exit(0)
os.pwrite(w, new[:len(appr)], 0)
try:
    os.close(os.open(f, os.O_RDONLY))
    print("open allowed after the rewrite")
except PermissionError:
    print("refused after the rewrite")
os.close(w)' "$f" "$M/up/a" "$M/up" "$T/approved2" <"$T/third/model.safetensors")
expect_eq "a fresh open while the renamed handle is open" "$out" "refused after the rewrite"
stop_provfs
