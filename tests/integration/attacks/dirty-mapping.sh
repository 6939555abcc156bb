#!/usr/bin/env bash
# Bytes written into a shared writable mapping sit in the kernel's dirty pages, and reach the
# daemon only at writeback, seconds later; a reader on the same mount reads them at once. The
# owner of an approved model maps it writable, closes the fd, writes other bytes into the
# mapping (no msync) and has a victim open it: a read open beside a handle open for writing (a
# mapping keeps its handle) marks the unit first, so it is decided as pending (block_pending
# refuses it). After the mapping goes, the new bytes are analysed; the approval does not
# follow them.
. "$(dirname "$0")/lib.sh"
write_policy enforce true
start_provfs --max-delay-ms 1500
mkdir -m 1777 "$M/up"
approved_rewrite "$M/up/a" 137

note "a write into the mapping, then a fresh open before any writeback"
out=$(as_user "$UPY" -c '
import mmap, os, sys
f = sys.argv[1]
w = os.open(f, os.O_RDWR)
m = mmap.mmap(w, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
os.close(w)
m[8192:8200] = b"EVILEVIL"
try:
    r = os.open(f, os.O_RDONLY)
    print("open allowed, reads %r" % os.pread(r, 8, 8192))
    os.close(r)
except PermissionError:
    print("refused")
m.close()' "$f")
expect_eq "a fresh open beside the dirty mapping" "$out" refused
wait_approval "$M/up/a" blocked
refused "$f"
stop_provfs
