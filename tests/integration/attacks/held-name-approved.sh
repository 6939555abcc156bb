#!/usr/bin/env bash
# The weights of an approved unit changed unseen through names the daemon is made to hold. As in
# held-name-blocked.sh, the owner builds the unit with a second name that never held model bytes
# while marked (/lk/notes); an admin approves the unit. The owner links a third name (/lk/tmp),
# floods the mount so the daemon holds the inode by it, opens it for writing, unlinks it (the
# handle's name is gone: its marks reach no unit), writes other weights and closes, and floods
# again: the daemon holds the inode by /lk/notes, in no unit. A victim opening the unit's weights
# by the unit's name is decided by the unit whose analysis read the inode too, and its recorded
# identity of the file no longer matches: the unit is marked, the open refused (block_pending),
# and the new bytes are analysed.
. "$(dirname "$0")/lib.sh"
write_policy enforce true
start_provfs
mkdir -m 1777 "$M/up" "$M/lk" "$M/many"
"$MKMODEL" create "$T/src" --arch llama --seed 181 >/dev/null
"$MKMODEL" create "$T/other" --arch llama --seed 182 >/dev/null
held() { ls -l "/proc/$PROVFS_PID/fd" 2>/dev/null | grep -E "/up/a/model.safetensors|/lk/" | sed 's/.*-> .*backing//' | sort -u | tr '\n' ' ' || true; }

note "the owner builds a unit whose weights have a never-marked second name"
linked_unit "$M/up/a" "$M/lk/notes" "$T/src"
note "an admin approves it"
setfattr -n user.provenance.approve -v ok "$M/up/a"
wait_approval "$M/up/a" approved
readable "$M/up/a/model.safetensors"

note "a third link, newest: the daemon holds the inode by it after a flood"
as_user ln "$M/up/a/model.safetensors" "$M/lk/tmp" || fail "ln tmp"
sleep 1
wait_approval "$M/up/a" approved
flood "$M/many"
as_user stat "$M/lk/tmp" >/dev/null
note "a write handle by that name, the name unlinked, other weights written, closed"
as_user "$UPY" -c '
import os, sys
w = os.open(sys.argv[1], os.O_WRONLY)
print("held at open:", sys.argv[3])
os.unlink(sys.argv[1])
os.pwrite(w, open(sys.argv[2], "rb").read(), 0)
os.close(w)' "$M/lk/tmp" "$T/other/model.safetensors" "$(held)" || fail "write"
same_bytes "$B/up/a/model.safetensors" "$T/other/model.safetensors" || fail "not written"
note "held after the write: $(held)"
flood "$M/many"
note "a victim opens the unit's weights by the unit's name"
out=$(read_as_user "$M/up/a/model.safetensors" "$T/other/model.safetensors")
note "victim: $out; /up/a: $(xattr "$M/up/a" status) $(xattr "$M/up/a" approval); held: $(held)"
expect_eq "a read of /up/a after the unseen write" "$out" refused
stop_provfs
