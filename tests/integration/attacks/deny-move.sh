#!/usr/bin/env bash
# deny_families globs match paths. A user moved a denied base's directory out of the denied path
# (/vendor/denied-x -> /up/x): the base and every fine-tune of it then had a known, undenied
# lineage and were served. The path a model was first stored at now stays its origin, and deny
# globs match it too.
. "$(dirname "$0")/lib.sh"
mkdir -p "$B/.provfs"
printf '{ "mode": "enforce", "require_approval": "unknown-lineage",\n  "allow_families": [], "deny_families": ["/vendor/denied*"], "block_pending": false }\n' \
    >"$B/.provfs/policy.json"
start_provfs
mkdir -m 1777 "$M/up" "$M/vendor"
S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 130 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 131 >/dev/null
chmod -R a+rX "$S"; chmod 755 "$T"
as_user cp -r "$S/base" "$M/vendor/denied-llama"
wait_status "$M/vendor/denied-llama" ready
as_user cp -r "$S/ft" "$M/up/ft"
wait_status "$M/up/ft" ready
expect_eq "parent" "$(xattr "$M/up/ft" parent)" /vendor/denied-llama
refused "$M/up/ft/model.safetensors"

note "the user moves the denied base out of the denied path"
as_user mv "$M/vendor/denied-llama" "$M/up/llama"
expect_eq "parent after the move" "$(xattr "$M/up/ft" parent)" /up/llama
refused "$M/up/ft/model.safetensors"
refused "$M/up/llama/model.safetensors"
reason=$(as_user "$UPY" -c "import json; print(json.load(open('$M/up/ft/.provenance'))['policy']['reason'])")
echo "$reason" | has_match "first stored at /vendor/denied-llama" || fail "reason: $reason"
note "a fresh copy of the denied bytes is the same model, denied too"
as_user cp -r "$S/base" "$M/up/copy"
wait_status "$M/up/copy" ready
refused "$M/up/copy/model.safetensors"
stop_provfs
