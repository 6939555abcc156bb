#!/usr/bin/env bash
# A Hugging Face cache: snapshots/REV/FILE are symlinks into blobs/SHA. Loading a model through
# its snapshot opens the blob; the blob lay outside the snapshot unit and was never gated, so a
# snapshot reported blocked loaded anyway. Now the blob (a model file outside a directory unit)
# is a unit of its own and blocked, and approving the snapshot approves its bytes wherever they
# lie: the load then works.
. "$(dirname "$0")/lib.sh"
write_policy enforce
start_provfs
mkdir -m 1777 "$M/hub"
S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/m" --arch llama --seed 99 >/dev/null
chmod -R a+rX "$S"; chmod 755 "$T"
R=$M/hub/models--org--tiny
as_user mkdir -p "$R/blobs" "$R/snapshots/r1" "$R/refs"
as_user sh -c "echo r1 >$R/refs/main"
for f in config.json model.safetensors; do
    sum=$(sha256sum "$S/m/$f" | cut -d' ' -f1)
    as_user cp "$S/m/$f" "$R/blobs/$sum"
    as_user ln -s "../../blobs/$sum" "$R/snapshots/r1/$f"
done
wait_status "$R/snapshots/r1" ready
expect_eq "snapshot approval" "$(xattr "$R/snapshots/r1" approval)" blocked
load() { # load: what a loader does, through the snapshot's symlinks
    as_user "$UPY" -c "
import json, sys
d = sys.argv[1]
json.load(open(d + '/config.json'))
open(d + '/model.safetensors', 'rb').read()" "$R/snapshots/r1"
}
note "a blocked snapshot does not load through its blobs"
load 2>/dev/null && fail "loaded a blocked snapshot"
wsum=$(sha256sum "$S/m/model.safetensors" | cut -d' ' -f1)
refused "$R/blobs/$wsum"
refused "$R/snapshots/r1/model.safetensors"
note "approving the snapshot approves its bytes in blobs/"
"$PROVCTL" approve "$R/snapshots/r1" --note "hub model reviewed" >/dev/null || fail "approve"
load || fail "an approved snapshot does not load"
readable "$R/blobs/$wsum"
note "the same bytes copied elsewhere are approved content too; other bytes are not"
as_user cp "$S/m/model.safetensors" "$M/hub/copy.safetensors"
wait_status "$M/hub/copy.safetensors" ready
readable "$M/hub/copy.safetensors"
"$MKMODEL" create "$S/n" --arch llama --seed 100 >/dev/null
chmod -R a+rX "$S"
as_user cp "$S/n/model.safetensors" "$M/hub/other.safetensors"
wait_status "$M/hub/other.safetensors" ready
refused "$M/hub/other.safetensors"
stop_provfs
