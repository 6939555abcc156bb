#!/usr/bin/env bash
# Writes the kernel serves by passthrough never reach the daemon (fs/README.md, "Passthrough"):
# they are no way to change an approved model unseen. The user holds their approved model open
# for reading (so the kernel serves every open of it by passthrough), opens it again for writing
# and puts an unrelated model's weights in place. The write open itself makes the unit pending:
# while it is open, a fresh open is refused (block_pending); after the close the analysis reads
# the new bytes, the approval (bound to the old digest) no longer applies, and the file stays
# refused.
. "$(dirname "$0")/lib.sh"
write_policy enforce true
start_provfs
mkdir -m 1777 "$M/up"
blocked_unit "$M/up/a" 133
f=$M/up/a/model.safetensors
setfattr -n user.provenance.approve -v ok "$M/up/a"
readable "$f"
d1=$(DB "SELECT m.digest FROM models m JOIN model_paths p ON p.model_id = m.id WHERE p.path = '/up/a'")
"$MKMODEL" create "$T/other" --arch llama --seed 134 >/dev/null
expect_eq "same size" "$(stat -c %s "$T/other/model.safetensors")" "$(stat -c %s "$f")"

note "the user rewrites the approved file through a second open while reading it"
out=$(as_user "$UPY" -c '
import errno, mmap, os, sys
new = sys.stdin.buffer.read()
r = os.open(sys.argv[1], os.O_RDONLY)
m = mmap.mmap(r, 0, prot=mmap.PROT_READ)
w = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(w, new, 0)
assert m[:len(new)] == new, "mapping misses the write"
try:
    os.close(os.open(sys.argv[1], os.O_RDONLY))
    print("open allowed while writing")
except PermissionError:
    print("refused while writing")
os.close(w); m.close(); os.close(r)' "$f" <"$T/other/model.safetensors")
expect_eq "a fresh open while the rewrite is open" "$out" "refused while writing"
cmp -s "$T/other/model.safetensors" "$B/up/a/model.safetensors" || fail "the write did not land"

note "after the close the analysis sees the new bytes; the approval does not follow them"
for _ in $(seq 150); do
    d2=$(DB "SELECT m.digest FROM models m JOIN model_paths p ON p.model_id = m.id WHERE p.path = '/up/a' AND m.status = 'ready'")
    [ -n "$d2" ] && [ "$d2" != "$d1" ] && break
    sleep 0.1
done
[ "$d2" != "$d1" ] || fail "the rewrite was not analysed: digest $d1 stays"
expect_eq "approval after the rewrite" "$(xattr "$M/up/a" approval)" blocked
refused "$f"
stop_provfs
