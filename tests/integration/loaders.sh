#!/usr/bin/env bash
# Models loaded through the mount (fs/README.md, "Passthrough"): a file opened read-only is read
# by the kernel from BACKING itself, so its reads and page faults reach no READ request; it is
# never stale (a change in BACKING is seen by a fresh open and by a mapping made before it); an
# open for writing is refused (ETXTBSY) while a reader has the file so, and a file replaced by
# rename is read new while the old reader keeps the old bytes; a reader beside a writer is served
# through the daemon; and the analysis sees a model replaced under a loader. READ requests are
# counted in the daemon's debug log (-d). cache.sh covers the page-cache path (--passthrough=off).
. "$(dirname "$0")/lib.sh"
need_mkmodel
EXPECT_LOG_RE='unique: [0-9]+, error: -[0-9]+ \(|opcode: |^ +unique: |NOTIFY: '
start_provfs -d
reads() { grep -c 'opcode: READ (15)' "$LOG" || true; }

note "a file opened read-only is read without READ requests, by read() and by mmap"
# bytes that announce a model format (a safetensors header length, then '{'): only such files
# are read by passthrough
{ printf '\x10\0\0\0\0\0\0\0{'; head -c 4194304 /dev/urandom; } >"$T/one"
{ printf '\x10\0\0\0\0\0\0\0{'; head -c 4194304 /dev/urandom; } >"$T/two"
cp "$T/one" "$M/f"
r1=$(reads)
cmp "$T/one" "$M/f" || fail "read differs"
cmp <(mm "$M/f") "$T/one" || fail "mmap read differs"
r2=$(reads)
expect_eq "READ requests of read() and mmap" "$((r2 - r1))" 0
# the count can move: with --passthrough=off the same reads are READ requests (cache.sh)

note "a change in BACKING is seen by a fresh open and by a mapping made before it"
python3 - "$M/f" "$B/f" "$T/one" "$T/two" <<'PYEOF'
import mmap, os, sys
mnt, back, one, two = sys.argv[1:]
one, two = open(one, "rb").read(), open(two, "rb").read()
with open(mnt, "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    assert m[:] == one, "mapping before the change"
    fd = os.open(back, os.O_WRONLY)  # behind the daemon's back, same size, same inode
    os.pwrite(fd, two, 0)
    os.close(fd)
    assert m[:] == two, "a mapping made before a change in BACKING reads stale bytes"
    m.close()
with open(mnt, "rb") as f:
    assert f.read() == two, "a fresh open after a change in BACKING reads stale bytes"
PYEOF
[ $? -eq 0 ] || fail "stale read after a change in BACKING"

note "a writer while a reader holds the file: refused in place, a rename replaces it"
python3 - "$M/f" "$M/f.tmp" "$T/one" "$T/two" <<'PYEOF'
import errno, mmap, os, sys
mnt, tmp, one, two = sys.argv[1], sys.argv[2], open(sys.argv[3], "rb").read(), open(sys.argv[4], "rb").read()
r = os.open(mnt, os.O_RDONLY)
m = mmap.mmap(r, 0, prot=mmap.PROT_READ)
assert m[:] == two
try:
    os.open(mnt, os.O_RDWR)
    raise SystemExit("a write open beside a passthrough reader was allowed")
except OSError as e:
    assert e.errno == errno.ETXTBSY, e
with open(tmp, "wb") as f:  # the way model files are replaced: a new file, renamed over
    f.write(one)
os.rename(tmp, mnt)
assert m[:] == two, "the reader's mapping of the old file changed"
with open(mnt, "rb") as f:
    assert f.read() == one, "a fresh open after the rename reads the old file"
m.close(); os.close(r)
w = os.open(mnt, os.O_RDWR)  # no reader left: allowed
os.close(w)
PYEOF
[ $? -eq 0 ] || fail "writer beside a reader"
cmp "$T/one" "$B/f" || fail "backing file differs"

note "a file whose bytes announce no model format is not read by passthrough"
head -c 65536 /dev/urandom >"$T/notes"
cp "$T/notes" "$M/notes"
r1=$(reads)
cmp "$T/notes" "$M/notes" || fail "read differs"
r2=$(reads)
[ "$((r2 - r1))" -gt 0 ] || fail "a file of no model format was read by passthrough"
python3 - "$M/notes" <<'PYEOF'
import os, sys
r = os.open(sys.argv[1], os.O_RDONLY)
w = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)  # no ETXTBSY: not passthrough
os.write(w, b"more")
os.close(w); os.close(r)
PYEOF
[ $? -eq 0 ] || fail "append beside a reader of a plain file"

note "a read, close and rewrite in one program: the reader's release is waited for"
python3 - "$M/f" <<'PYEOF'
import os, sys
for _ in range(300):
    with open(sys.argv[1], "rb") as f:
        f.read(4096)
    with open(sys.argv[1], "r+b") as f:  # ETXTBSY if the release were not waited for
        f.write(f.read(16))
PYEOF
[ $? -eq 0 ] || fail "read then rewrite"

note "a reader while a writer holds the file: served through the daemon, correct"
python3 - "$M/g" "$T/one" "$T/two" <<'PYEOF'
import os, sys
mnt, one, two = sys.argv[1], open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
w = os.open(mnt, os.O_WRONLY | os.O_CREAT, 0o644)
os.write(w, one)
with open(mnt, "rb") as f:
    assert f.read() == one
os.pwrite(w, two, 0)
with open(mnt, "rb") as f:
    assert f.read() == two, "a reader opened while a writer is open reads stale bytes"
os.close(w)
with open(mnt, "rb") as f:
    assert f.read() == two
PYEOF
[ $? -eq 0 ] || fail "reader while a writer is open"

note "the analysis sees a model replaced while a loader holds it open"
"$MKMODEL" create "$T/a" --arch llama --seed 41 >/dev/null
"$MKMODEL" create "$T/b" --arch llama --seed 42 >/dev/null
cmp -s "$T/a/model.safetensors" "$T/b/model.safetensors" && fail "two seeds gave the same weights"
cp -r "$T/a" "$M/m"
wait_status "$M/m" ready
d1=$(DB "SELECT m.digest FROM models m JOIN model_paths p ON p.model_id = m.id WHERE p.path = '/m'")
[ -n "$d1" ] || fail "no digest for /m"
python3 - "$M/m/model.safetensors" "$T/b/model.safetensors" <<'PYEOF'
import os, shutil, sys
r = os.open(sys.argv[1], os.O_RDONLY)        # a loader holds the old weights (passthrough)
shutil.copyfile(sys.argv[2], sys.argv[1] + ".part")
os.rename(sys.argv[1] + ".part", sys.argv[1])
os.close(r)
PYEOF
for _ in $(seq 100); do
    d2=$(DB "SELECT m.digest FROM models m JOIN model_paths p ON p.model_id = m.id WHERE p.path = '/m' AND m.status = 'ready'")
    [ -n "$d2" ] && [ "$d2" != "$d1" ] && break
    sleep 0.1
done
[ "$d2" != "$d1" ] || fail "replacement not analysed (digest $d1 stays)"
cmp "$T/b/model.safetensors" "$B/m/model.safetensors" || fail "backing file differs"

stop_provfs
