#!/usr/bin/env bash
# Units being written never carry an older decision, and pending cannot be stretched for ever:
# - before the first close: a unit whose weights are still open for writing is pending at once
#   (refused under block_pending: true);
# - writes after approval through an fd opened before it: the unit stops being approved at the
#   first write (ftruncate), not at the close;
# - a writer that keeps the unit pending (a write and close every 0.1 s, under the quiet period) cannot keep the old
#   decision: the unit is analysed --max-delay-ms after its first change and its new weights
#   are blocked while the writes go on.
. "$(dirname "$0")/lib.sh"
EXPECT_LOG_RE=': failed'
write_policy enforce true
start_provfs --max-delay-ms 3000
mkdir -m 1777 "$M/up"
S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/a" --arch llama --seed 81 >/dev/null
"$MKMODEL" create "$S/other" --arch llama --seed 82 >/dev/null
chmod -R a+rX "$S"; chmod 755 "$T"
F=$T/flags # the user's and the test's signals to each other
mkdir -p "$F"; chown "$TU" "$F"

note "before the first close: pending at once, refused under block_pending"
as_user mkdir "$M/up/w"
as_user cp "$S/a/config.json" "$M/up/w/"
# the uploader writes half the weights and keeps the file open
as_user "$UPY" - "$S/a/model.safetensors" "$M/up/w/model.safetensors" "$F/w.ready" "$F/w.go" <<'PYEOF' &
import os, sys, time
data = open(sys.argv[1], "rb").read()
with open(sys.argv[2], "wb") as f:
    f.write(data[: len(data) // 2])
    f.flush()
    open(sys.argv[3], "w").close()
    while not os.path.exists(sys.argv[4]):
        time.sleep(0.05)
    f.write(data[len(data) // 2:])
PYEOF
writer=$!
for _ in $(seq 100); do [ -e "$F/w.ready" ] && break; sleep 0.05; done
[ -e "$F/w.ready" ] || fail "the writer did not start"
expect_eq "status while the writer holds the file" "$(xattr "$M/up/w" status)" pending
refused "$M/up/w/model.safetensors"
touch "$F/w.go"; wait "$writer"
wait_status "$M/up/w" ready
refused "$M/up/w/model.safetensors"

note "approved, then rewritten through an fd opened before the approval"
write_policy enforce false
kill -HUP "$PROVFS_PID"; sleep 0.5
blocked_unit "$M/up/a" 83
as_user "$UPY" - "$M/up/a/model.safetensors" "$S/other/model.safetensors" "$F/a.opened" \
    "$F/a.approved" "$F/a.written" "$F/a.close" <<'PYEOF' &
import os, sys, time
def wait(p):
    while not os.path.exists(p):
        time.sleep(0.05)
fd = os.open(sys.argv[1], os.O_WRONLY)  # writes are not gated
open(sys.argv[3], "w").close()
wait(sys.argv[4])
os.ftruncate(fd, 0)
os.pwrite(fd, open(sys.argv[2], "rb").read(), 0)
open(sys.argv[5], "w").close()
wait(sys.argv[6])
os.close(fd)
PYEOF
writer=$!
for _ in $(seq 100); do [ -e "$F/a.opened" ] && break; sleep 0.05; done
setfattr -n user.provenance.approve -v ok "$M/up/a" || fail "approve"
expect_eq "approval" "$(xattr "$M/up/a" approval)" approved
touch "$F/a.approved"
for _ in $(seq 100); do [ -e "$F/a.written" ] && break; sleep 0.05; done
[ -e "$F/a.written" ] || fail "the writer did not write"
[ "$(xattr "$M/up/a" approval)" != approved ] || fail "still approved after the first write"
expect_eq "status after the first write" "$(xattr "$M/up/a" status)" pending
# analysed within the bound while the fd is still open: the new bytes are not approved
for _ in $(seq 150); do [ "$(xattr "$M/up/a" approval)" = blocked ] && break; sleep 0.1; done
expect_eq "approval of the new bytes, fd still open" "$(xattr "$M/up/a" approval)" blocked
refused "$M/up/a/model.safetensors"
touch "$F/a.close"; wait "$writer"

note "pending stretched by a write every 0.1 s: analysed within the bound anyway"
# ft is allowed by its lineage (a fine-tune of an approved base); its weights are then replaced
# by an unrelated model's while a writer keeps the unit pending with small writes.
"$MKMODEL" create "$S/base" --arch llama --seed 85 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 86 >/dev/null
chmod -R a+rX "$S"
cp -r "$S/base" "$M/up/base"
wait_status "$M/up/base" ready
setfattr -n user.provenance.approve -v ok "$M/up/base" || fail "approve base"
as_user cp -r "$S/ft" "$M/up/ft"
wait_status "$M/up/ft" ready
expect_eq "parent of ft" "$(xattr "$M/up/ft" parent)" /up/base
readable "$M/up/ft/model.safetensors"
as_user cp "$S/other/model.safetensors" "$M/up/ft/model.safetensors"
# (stopped by a file: killing the background job would leave the user's sh appending, and the
# mount busy at the unmount below)
as_user sh -c "for i in \$(seq 200); do [ -e '$F/ft.stop' ] && exit; echo \$i >>'$M/up/ft/notes.txt'; sleep 0.1; done" &
toucher=$!
start=$SECONDS
while [ "$(xattr "$M/up/ft" approval)" != blocked ] && [ $((SECONDS - start)) -lt 12 ]; do sleep 0.2; done
took=$((SECONDS - start))
still=$(kill -0 "$toucher" 2>/dev/null && echo yes || echo no)
touch "$F/ft.stop"; wait "$toucher" 2>/dev/null || true
expect_eq "approval while a writer keeps the unit busy" "$(xattr "$M/up/ft" approval)" blocked
expect_eq "the writer was still writing" "$still" yes
note "blocked after $took s of continuous writes (bound: 3 s + analysis)"
refused "$M/up/ft/model.safetensors"
stop_provfs
