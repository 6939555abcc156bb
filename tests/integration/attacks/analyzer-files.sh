#!/usr/bin/env bash
# The analyzer runs as root over files any user writes. Attacks on what it opens:
# - a symlink in a unit to a root-only file outside BACKING (config.json, README.md) once put that
#   file's fields in .provenance and its exact size and SHA-256 in the store (an oracle);
# - a symlink into BACKING/.provfs (the database, the policy);
# - weights that are not a regular file (a FIFO, a symlink to /dev/zero) were skipped silently;
# - a hostile sharded index (weight_map naming ../../etc/passwd) made the error message a
#   use-after-free; error messages echoed raw bytes (controls, invalid UTF-8) into xattrs.
# Relative symlinks that stay inside BACKING (a Hugging Face cache) keep working.
. "$(dirname "$0")/lib.sh"
EXPECT_LOG_RE=': failed'
write_policy enforce
start_provfs
S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 41 >/dev/null
"$MKMODEL" create "$S/sharded" --arch llama --seed 42 --shards 2 >/dev/null

# The secret: root's, outside BACKING, with fields and bytes that must appear nowhere.
X=$T/secret
mkdir -p "$X"
sed 's/"model_type": "llama"/"model_type": "secretfamily"/' "$S/base/config.json" >"$X/config.json"
grep -q secretfamily "$X/config.json" || fail "secret config not made"
head -c 4096 /dev/urandom >"$X/blob"
chmod 700 "$X"
chmod 755 "$T"
secret_sha=$(sha256sum "$X/config.json" | cut -d' ' -f1)
blob_sha=$(sha256sum "$X/blob" | cut -d' ' -f1)
mkdir -m 1777 "$M/up"

# nowhere WHAT...: none of the strings is in the database, the daemon log or any .provenance.
nowhere() {
    local dump
    dump=$(DB_DUMP; cat "$LOG";
           for d in "$M"/up/*/; do cat "$d/.provenance" 2>/dev/null; done; cat "$M/.provenance")
    for w in "$@"; do
        echo "$dump" | has_match -- "$w" && fail "'$w' leaked"
    done
    return 0
}

note "config.json -> a root-only file outside BACKING"
as_user mkdir "$M/up/a"
as_user cp "$S/base/model.safetensors" "$M/up/a/"
as_user ln -s "$X/config.json" "$M/up/a/config.json"
wait_status "$M/up/a" failed
xattr "$M/up/a" error | has_match "config.json: a symlink leads out of the store" ||
    fail "reason: $(xattr "$M/up/a" error)"

note "README.md -> a root-only blob: no size or digest published"
as_user mkdir "$M/up/b"
as_user cp "$S/base/model.safetensors" "$S/base/config.json" "$M/up/b/"
as_user ln -s "$X/blob" "$M/up/b/README.md"
wait_status "$M/up/b" failed
xattr "$M/up/b" error | has_match "README.md: a symlink leads out of the store" ||
    fail "reason: $(xattr "$M/up/b" error)"
note "a relative symlink that climbs out of BACKING"
as_user mkdir "$M/up/c"
as_user cp "$S/base/model.safetensors" "$M/up/c/"
as_user ln -s "../../../../secret/config.json" "$M/up/c/config.json"
wait_status "$M/up/c" failed
nowhere secretfamily "$secret_sha" "$blob_sha"

note "a symlink into the store's private directory"
as_user mkdir "$M/up/d"
as_user cp "$S/base/model.safetensors" "$M/up/d/"
as_user ln -s "../../.provfs/policy.json" "$M/up/d/config.json"
wait_status "$M/up/d" failed
xattr "$M/up/d" error | has_match "private directory" || fail "reason: $(xattr "$M/up/d" error)"

note "weights that are not regular files"
as_user mkdir "$M/up/e" "$M/up/f"
as_user mkfifo "$M/up/e/model.safetensors"
as_user cp "$S/base/config.json" "$M/up/e/"
as_user ln -s /dev/zero "$M/up/f/model.safetensors"
as_user cp "$S/base/config.json" "$M/up/f/"
wait_status "$M/up/e" failed
xattr "$M/up/e" error | has_match "model.safetensors: not a regular file" ||
    fail "reason: $(xattr "$M/up/e" error)"
wait_status "$M/up/f" failed
# provctl, as the user: a clear error, exit 2
rc=0; out=$(as_user "$PROVCTL" fingerprint "$M/up/e" 2>&1) || rc=$?
expect_eq "provctl exit on a FIFO" "$rc" 2
echo "$out" | has_match "not a regular file" || fail "provctl: $out"

note "a hostile sharded index: one clear line, no heap bytes"
as_user mkdir "$M/up/g"
as_user cp "$S/sharded/"* "$M/up/g/"
python3 - "$T/index.json" <<'PYEOF'
import json, sys
json.dump({"metadata": {}, "weight_map": {"model.embed_tokens.weight": "../../etc/passwd",
           "lm_head.weight": "model-00001-of-00002.safetensors"}}, open(sys.argv[1], "w"))
PYEOF
as_user cp "$T/index.json" "$M/up/g/model.safetensors.index.json"
wait_status "$M/up/g" failed
expect_eq "index error" "$(xattr "$M/up/g" error)" \
    "/up/g/model.safetensors.index.json: weight_map entry 'model.embed_tokens.weight' names no shard file"
rc=0; out=$("$PROVCTL" fingerprint "$B/up/g" 2>&1) || rc=$?
expect_eq "provctl exit" "$rc" 2
echo "$out" | has_match "weight_map entry 'model.embed_tokens.weight' names no shard file" ||
    fail "provctl: $out"

note "raw bytes from a file are escaped in errors"
as_user mkdir "$M/up/h"
as_user cp "$S/sharded/"* "$M/up/h/"
printf '{"weight_map": {"\\u001b[31mred\\u0007": "../x", "b": "c"}}' >"$T/ctl.json"
as_user cp "$T/ctl.json" "$M/up/h/model.safetensors.index.json"
wait_status "$M/up/h" failed
err=$(xattr "$M/up/h" error)
echo "$err" | has_match '\\x1b\[31mred\\x07' || fail "not escaped: $(echo "$err" | od -c | head)"
echo "$err" | LC_ALL=C grep -q $'[\x01-\x1f\x7f]' && fail "control bytes in the error"

note "a Hugging Face cache (snapshot symlinks into blobs/) still analyses"
HF=$M/up/hub/models--org--tiny
as_user mkdir -p "$HF/blobs" "$HF/snapshots/r1"
for f in config.json model.safetensors; do
    sum=$(sha256sum "$S/base/$f" | cut -d' ' -f1)
    as_user cp "$S/base/$f" "$HF/blobs/$sum"
    as_user ln -s "../../blobs/$sum" "$HF/snapshots/r1/$f"
done
wait_status "$HF/snapshots/r1" ready
nowhere secretfamily "$secret_sha" "$blob_sha"
ls "$M/up" >/dev/null || fail "the mount stopped serving"
stop_provfs
