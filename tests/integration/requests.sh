#!/usr/bin/env bash
# The request loop (fs/loop.c): one worker serves requests while the next one is watched for, and
# a request that takes long does not hold up the others. A copy_file_range of 1 GiB is one
# request, served here in 0.16 to 1.3 s; a create and a stat made meanwhile by another thread
# (about 1 ms with the handover) return before it ends, where they would wait for it without
# the handover. Then the same with --spin-us 0 (libfuse's loop), and a mount that answered
# thousands of requests in a row unmounts cleanly.
. "$(dirname "$0")/lib.sh"

# slow_and_quick SRC DST DIR: prints "quick-first" when the first create and stat in DIR
# returned before the copy of SRC to DST (one request), "copy-first" otherwise, after the count
# the copy returned. 19 more creates and stats follow, in or after the copy.
slow_and_quick() {
    python3 - "$@" <<'PYEOF'
import os, sys, threading, time
src, dst, d = sys.argv[1:4]
fi = os.open(src, os.O_RDONLY)
fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
began = threading.Event()
end = {}
def copy():
    began.set()
    end["n"] = os.copy_file_range(fi, fo, os.fstat(fi).st_size)
    end["copy"] = time.monotonic()
t = threading.Thread(target=copy)
t.start()
began.wait()
time.sleep(0.01)  # the copy is in the daemon by now
for i in range(20):
    p = f"{d}/quick{i}"
    os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
    os.stat(p)
    if i == 0:
        end["quick"] = time.monotonic()
t.join()
print(end["n"], "quick-first" if end["quick"] < end["copy"] else "copy-first")
PYEOF
}

size=$((1 << 30))
for opts in "" "--spin-us 0"; do
    # shellcheck disable=SC2086 # options are words
    start_provfs $opts
    mkdir "$M/d"
    head -c "$size" /dev/zero | dd of="$M/d/data.bin" bs=1M iflag=fullblock status=none
    read -r n order < <(slow_and_quick "$M/d/data.bin" "$M/d/copy.bin" "$M/d")
    expect_eq "copy_file_range count (${opts:-default loop})" "$n" "$size"
    expect_eq "order (${opts:-default loop})" "$order" quick-first
    expect_eq "copy's bytes" "$(cmp "$M/d/data.bin" "$M/d/copy.bin" && echo same)" same
    for i in $(seq 0 19); do
        [ -f "$M/d/quick$i" ] || fail "quick$i missing"
    done
    # many requests one after another, then an unmount while the loop still watches
    python3 - "$M/d" <<'PYEOF'
import os, sys
d = sys.argv[1]
for i in range(2000):
    p = f"{d}/n{i}"
    os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
    os.stat(p)
    os.unlink(p)
PYEOF
    expect_eq "files left (${opts:-default loop})" "$(find "$B/d" -name 'n*' | wc -l)" 0
    rm -rf "${M:?}/d"
    stop_provfs
done
echo "requests: OK"
