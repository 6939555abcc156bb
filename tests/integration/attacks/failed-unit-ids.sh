#!/usr/bin/env bash
# A unit the analyzer cannot parse, released by an admin (approved by its content digest,
# fs/POLICY.md), and then written through another hard link of its file (the route
# attacks/hard-link.sh takes against a ready unit). The files its digest covers are recorded
# with their identities as they were read, as a ready unit's are: after the write, a victim's
# open by the unit's name finds the file changed, the unit is analysed again and the approval
# does not follow the new bytes.
. "$(dirname "$0")/lib.sh"
# approval VALUE of the failed unit (within 15 s), else fail
failed_approval() {
    for _ in $(seq 150); do
        [ "$(xattr "$M/up/bad" status)" = failed ] && [ "$(xattr "$M/up/bad" approval)" = "$1" ] && return 0
        sleep 0.1
    done
    fail "approval of /up/bad: $(xattr "$M/up/bad" approval) ($(xattr "$M/up/bad" status)), expected $1"
}
EXPECT_LOG_RE='/up/bad: failed|/lk/w: '
write_policy enforce true
start_provfs
mkdir -m 1777 "$M/up" "$M/lk"
"$MKMODEL" create "$T/src" --arch llama --seed 151 >/dev/null
"$MKMODEL" create "$T/other" --arch llama --seed 152 >/dev/null

note "a unit the analyzer cannot parse, owned by the user; an admin releases it"
as_user mkdir "$M/up/bad"
as_user cp "$T/src/config.json" "$M/up/bad/" || fail "cp as $TU"
as_user sh -c "printf '\377\377\377\377\377\377\377\177{\"x\":1}' >'$M/up/bad/model.safetensors'" || fail "write as $TU"
wait_status "$M/up/bad" failed
refused "$M/up/bad/model.safetensors"
setfattr -n user.provenance.approve -v released "$M/up/bad"
failed_approval approved
readable "$M/up/bad/model.safetensors"

note "the owner links the file outside the unit"
as_user ln "$M/up/bad/model.safetensors" "$M/lk/w" || fail "ln as $TU"
sleep 1
failed_approval approved

note "the kernel forgets the inode; the daemon meets it again by the other name"
sync
echo 2 >/proc/sys/vm/drop_caches
as_user stat "$M/lk/w" >/dev/null

note "an unapproved model's weights written through the link"
as_user "$UPY" -c '
import os, sys
w = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
os.write(w, open(sys.argv[2], "rb").read())
os.close(w)' "$M/lk/w" "$T/other/model.safetensors" || fail "write through the link"
same_bytes "$B/up/bad/model.safetensors" "$T/other/model.safetensors" || fail "not written"

note "the daemon meets the inode by the unit's name again; the victim opens it"
sync
echo 2 >/proc/sys/vm/drop_caches
sleep 1
out=$(read_as_user "$M/up/bad/model.safetensors" "$T/other/model.safetensors")
note "victim: $out; approval: $(xattr "$M/up/bad" approval); status: $(xattr "$M/up/bad" status)"
expect_eq "a fresh open by the unit's name after the write through the link" "$out" refused
stop_provfs
