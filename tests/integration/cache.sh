#!/usr/bin/env bash
# The kernel's page cache across opens (fs/README.md, "Page cache"): a file read again, unchanged,
# is served from the pages the kernel kept (no READ request reaches the daemon); a change through
# the mount or in BACKING behind the daemon's back is read at the next open, by read() and by
# mmap; the .provenance files are never cached. READ requests are counted in the daemon's debug
# log (-d), one line per request.
. "$(dirname "$0")/lib.sh"
# -d logs every reply, failed lookups ("error: -2") among them
EXPECT_LOG_RE='unique: [0-9]+, error: -[0-9]+ \(|opcode: |^ +unique: '
start_provfs -d --passthrough=off
reads() { grep -c 'opcode: READ (15)' "$LOG" || true; }

note "a file read again, unchanged, is served from the page cache"
head -c 1048576 /dev/urandom >"$T/one"
cp "$T/one" "$M/f"
cmp "$T/one" "$M/f" || fail "first read differs"
r1=$(reads)
[ "$r1" -gt 0 ] || fail "no READ request seen in the debug log (the count proves nothing)"
cmp "$T/one" "$M/f" || fail "second read differs"
r2=$(reads)
expect_eq "READ requests of the second read" "$((r2 - r1))" 0

note "a change through the mount is read at the next open"
head -c 1048576 /dev/urandom >"$T/two"
dd if="$T/two" of="$M/f" bs=64k conv=notrunc status=none
cmp "$T/two" "$M/f" || fail "change through the mount not read"
cmp "$T/two" "$B/f" || fail "backing file differs"
truncate -s 4096 "$M/f"
cmp <(head -c 4096 "$T/two") "$M/f" || fail "truncate through the mount not read"
printf 'new bytes' | dd of="$M/f" bs=1 seek=10 conv=notrunc status=none
cmp <(head -c 10 "$T/two"; printf 'new bytes'; head -c 4096 "$T/two" | tail -c +20) "$M/f" ||
    fail "small write through the mount not read"

note "copy_file_range into a cached file and a punched hole are read at the next open"
cp "$T/one" "$M/h"
cat "$M/h" >/dev/null
cat "$M/h" >/dev/null
python3 - "$M/f" "$M/h" <<'PYEOF'
import os, sys
src = os.open(sys.argv[1], os.O_RDONLY)
dst = os.open(sys.argv[2], os.O_WRONLY)
n = os.copy_file_range(src, dst, 4096, 0, 0)
assert n == 4096, n
os.close(src); os.close(dst)
PYEOF
cmp <(cat "$M/f"; tail -c +4097 "$T/one") "$M/h" || fail "copy_file_range into a cached file not read"
if fallocate -p -o 8192 -l 4096 "$M/h" 2>/dev/null; then
    cmp <(cat "$M/f"; head -c 8192 "$T/one" | tail -c 4096; head -c 4096 /dev/zero; tail -c +12289 "$T/one") "$M/h" ||
        fail "punched hole not read"
fi

note "a change in BACKING behind the daemon's back is read at the next open (same size)"
cp "$T/one" "$M/g"
cat "$M/g" >/dev/null
cat "$M/g" >/dev/null # cached now (the second open kept the pages)
sleep 0.05            # a timestamp of its own for the change below
dd if="$T/two" of="$B/g" bs=1M conv=notrunc status=none
expect_eq "size unchanged" "$(stat -c %s "$B/g")" 1048576
r1=$(reads)
cmp "$T/two" "$M/g" || fail "change in BACKING not read: stale pages served"
r2=$(reads)
[ "$((r2 - r1))" -gt 0 ] || fail "no READ request after a change in BACKING"

note "mmap after a change sees the change"
cat "$M/g" >/dev/null
cmp <(mm "$M/g") "$T/two" || fail "mmap read differs"
sleep 0.05
dd if="$T/one" of="$B/g" bs=1M conv=notrunc status=none
cmp <(mm "$M/g") "$T/one" || fail "mmap after a change in BACKING: stale pages"
dd if="$T/two" of="$M/g" bs=1M conv=notrunc status=none
cmp <(mm "$M/g") "$T/two" || fail "mmap after a change through the mount: stale pages"

note "the .provenance file is never cached"
mkdir "$M/d"
cat "$M/d/.provenance" >/dev/null
r1=$(reads)
cat "$M/d/.provenance" >/dev/null
r2=$(reads)
[ "$((r2 - r1))" -gt 0 ] || fail ".provenance served from the page cache"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$M/d/.provenance" ||
    fail ".provenance is not whole JSON"

stop_provfs
