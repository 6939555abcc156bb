#!/usr/bin/env bash
# A write handle held open past an analysis is no way to change an approved model unseen. The
# user opens their approved model for writing and writes one unchanged byte: the unit goes
# pending, and --max-delay-ms later it is analysed while the handle is still open (same bytes:
# the approval binds again). Then the user writes other weights through the same handle and
# keeps it open. A change after an analysis began marks the unit again (fs/README.md, "Hash while
# writing"), so a fresh open is refused (block_pending) until the new bytes are analysed, and
# the approval does not follow them.
. "$(dirname "$0")/lib.sh"
write_policy enforce true
start_provfs --max-delay-ms 1500
mkdir -m 1777 "$M/up"
blocked_unit "$M/up/a" 135
f=$M/up/a/model.safetensors
setfattr -n user.provenance.approve -v ok "$M/up/a"
readable "$f"
"$MKMODEL" create "$T/other" --arch llama --seed 136 >/dev/null
expect_eq "same size" "$(stat -c %s "$T/other/model.safetensors")" "$(stat -c %s "$f")"

note "the user writes an unchanged byte, waits for the analysis, then writes other weights"
out=$(as_user "$UPY" -c '
import os, sys, time
f, unit = sys.argv[1], sys.argv[2]
new = sys.stdin.buffer.read()
w = os.open(f, os.O_RDWR)
os.pwrite(w, os.pread(w, 1, 0), 0)
def xa(name):
    try:
        return os.getxattr(unit, "user.provenance." + name).decode()
    except OSError:
        return ""
for _ in range(300):  # the analysis while the handle is open binds the approval again
    if xa("status") == "ready" and xa("approval") == "approved":
        break
    time.sleep(0.05)
else:
    print("no analysis while open: status %s approval %s" % (xa("status"), xa("approval")))
    sys.exit(0)
os.pwrite(w, new, 0)
try:
    os.close(os.open(f, os.O_RDONLY))
    print("open allowed after the rewrite")
except PermissionError:
    print("refused after the rewrite")
os.close(w)' "$f" "$M/up/a" <"$T/other/model.safetensors")
expect_eq "a fresh open while the rewriting handle is open" "$out" "refused after the rewrite"

note "after the close the new bytes are analysed; the approval does not follow them"
wait_status "$M/up/a" ready
for _ in $(seq 100); do
    [ "$(xattr "$M/up/a" approval)" = blocked ] && break
    sleep 0.1
done
expect_eq "approval after the rewrite" "$(xattr "$M/up/a" approval)" blocked
refused "$f"
stop_provfs
