#!/usr/bin/env bash
# Another name of an approved model's file is a way to write it that no mark follows: the
# owner hard-links the weights to a name outside the unit, and once the daemon holds the inode by
# that name (the kernel forgot it), writes other weights through it (same size, mtime set back
# afterwards) and closes. Marks follow the name the daemon holds the inode by, so the unit itself
# was never made pending. The gate compares the file on every open
# with the identity its analysis recorded (size, mtime, ctime, inode; ctime moves with any
# change and no user can set it back): a fresh open is decided as pending (block_pending
# refuses it), the new bytes are analysed, and the approval does not follow them. The same for
# a change made in BACKING itself (another host, a shared BACKING), by root here.
. "$(dirname "$0")/lib.sh"
write_policy enforce true
start_provfs
mkdir -m 1777 "$M/up" "$M/lk"
approved_rewrite "$M/up/a" 141

note "the owner links the weights outside the unit"
as_user ln "$f" "$M/lk/w" || fail "ln as $TU"
# the link itself changes the inode (ctime): at most one more analysis, of the same bytes
for _ in $(seq 150); do
    as_user cat "$f" >/dev/null 2>&1 && break
    sleep 0.1
done
wait_approval "$M/up/a" approved
readable "$f"

note "the kernel forgets the inode; the daemon meets it again by the other name"
# (the daemon's marks follow the name it holds the inode by: now the link's)
sync
echo 2 >/proc/sys/vm/drop_caches
as_user stat "$M/lk/w" >/dev/null

note "other weights written through the link, mtime set back"
overwrite_keep_mtime "$f" "$M/lk/w" <"$other"

note "the daemon meets the inode by the unit's name again; a fresh open"
sync
echo 2 >/proc/sys/vm/drop_caches
out=$(read_as_user "$f" "$other")
expect_eq "a fresh open by the unit's name after the write through the link" "$out" refused
wait_approval "$M/up/a" blocked
refused "$f"
refused "$M/lk/w"
same_bytes "$B/up/a/model.safetensors" "$other" || fail "the written bytes are not kept"

note "a change in BACKING itself, mtime set back"
approved_rewrite "$M/up/b" 143
cp "$B/up/b/model.safetensors" "$T/b-approved"
touch -r "$B/up/b/model.safetensors" "$T/b-approved"
dd if="$other" of="$B/up/b/model.safetensors" conv=notrunc status=none
touch -m -r "$T/b-approved" "$B/up/b/model.safetensors"
refused "$f"
refused "$M/up/b/model.safetensors"
wait_approval "$M/up/b" blocked
refused "$M/up/b/model.safetensors"
stop_provfs
