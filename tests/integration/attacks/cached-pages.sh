#!/usr/bin/env bash
# Pages the kernel kept of a gated file (fs/README.md, "Page cache") are never a way past the
# gate: an admin's reads of a blocked model, and the user's own reads while it was approved,
# leave its pages cached, yet every open the gate refuses stays refused (read and mmap), because
# cached pages are reached only through an open the gate allowed.
. "$(dirname "$0")/lib.sh"
write_policy enforce
start_provfs
mkdir -m 1777 "$M/up"
blocked_unit "$M/up/a" 130
f=$M/up/a/model.safetensors

note "an admin reads the blocked model twice (its pages are kept)"
cat "$f" >/dev/null
cat "$f" >/dev/null
refused "$f"
expect_errno "Permission denied" as_user "$UPY" -c '
import mmap, sys
f = open(sys.argv[1], "rb")
mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)' "$f"

note "approved, the user reads it (cached); revoked, the next open is refused"
setfattr -n user.provenance.approve -v ok "$M/up/a"
readable "$f"
readable "$f"
setfattr -n user.provenance.revoke -v no "$M/up/a"
refused "$f"
