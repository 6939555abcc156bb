#!/usr/bin/env bash
# A hash taken while a file was written saves the analysis reading it again, as long as the file
# is still that file. The owner of an approved model (its weights were hashed while copied in)
# overwrites them in place with other weights of the same size, without truncating, and sets
# mtime back: size and mtime are as the kept hash was taken. The write open voids every hash
# kept for the inode (queue_known_written), so the analysis hashes the new bytes and the
# approval does not follow them.
. "$(dirname "$0")/lib.sh"
write_policy enforce true
start_provfs
mkdir -m 1777 "$M/up"
approved_rewrite "$M/up/a" 145
# (with PostgreSQL a kept hash also needs the same ctime, which the chown after the copy moved)
[ -n "$PGDB" ] || expect_eq "the weights' hash was taken while copied" \
    "$(DB "SELECT count(*) FROM events WHERE path = '/up/a' AND kind = 'analyzed' AND detail LIKE '%1 file hash(es) taken while written%'")" 1

note "an overwrite in place, mtime set back"
overwrite_keep_mtime "$f" "$f" <"$other"
wait_approval "$M/up/a" blocked
refused "$f"
same_bytes "$B/up/a/model.safetensors" "$other" || fail "the written bytes are not kept"
stop_provfs
