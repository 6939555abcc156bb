#!/usr/bin/env bash
# Weight-file layouts transformers resolves: model.safetensors is loaded before
# model.safetensors.index.json (a folder re-saved unsharded after a sharded save keeps a stale
# index and stale shards), and variant files (model.fp16.safetensors, a sharded fp16 variant,
# pytorch_model.fp16.bin) are variants of one unit, not shards of it. Each single-file variant is
# a model of its own, linked to its directory and gated by itself.
. "$(dirname "$0")/lib.sh"
need_mkmodel

S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 31 >/dev/null
"$MKMODEL" derive "$S/base" "$S/sharded" --kind reshard --shards 2 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 32 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft2" --kind finetune --seed 34 >/dev/null
"$MKMODEL" derive "$S/ft" "$S/ft16" --kind convert --dtype f16 >/dev/null
"$MKMODEL" derive "$S/ft16" "$S/ft16sh" --kind reshard --shards 2 >/dev/null
"$MKMODEL" torch "$S/ft16" "$S/ft16.pt" >/dev/null
"$MKMODEL" torch "$S/ft2" "$S/ft2.pt" >/dev/null
"$MKMODEL" create "$S/other" --arch llama --seed 33 >/dev/null
"$MKMODEL" derive "$S/other" "$S/other16" --kind convert --dtype f16 >/dev/null

# notes PATH: the .provenance notes of the unit at PATH, one a line.
notes() {
    python3 -c "import json,sys; [print(n) for n in json.load(open(sys.argv[1] + '/.provenance')).get('notes', [])]" "$1"
}

write_policy() {
    mkdir -p "$B/.provfs"
    printf '{ "mode": "enforce", "require_approval": "unknown-lineage" }\n' >"$B/.provfs/policy.json"
}
write_policy
start_provfs
mkdir "$M/bases" "$M/m"
cp -r "$S/base" "$M/bases/base"
wait_status "$M/bases/base" ready
setfattr -n user.provenance.approve -v base "$M/bases/base" || fail "approve the base"

note "re-saved unsharded after a sharded save: the stale index is ignored"
cp -r "$S/sharded" "$M/m/resaved"
wait_status "$M/m/resaved" ready
cp "$S/ft2/model.safetensors" "$M/m/resaved/model.safetensors"
wait_status "$M/m/resaved" ready
expect_eq "resaved parent" "$(xattr "$M/m/resaved" parent)" /bases/base
expect_eq "resaved verdict" "$(xattr "$M/m/resaved" verdict)" derived
notes "$M/m/resaved" | has_match '^model.safetensors.index.json ignored: model.safetensors is loaded first' ||
    fail "no stale-index note: $(notes "$M/m/resaved")"
# the stale files stay in the digest: changing one is a change of the unit
python3 - "$M/m/resaved" <<'EOF' || fail "stale shards not listed in the unit's files"
import json, sys
files = {f["name"] for f in json.load(open(sys.argv[1] + "/.provenance"))["files"]}
assert {"model-00001-of-00002.safetensors", "model.safetensors.index.json"} <= files, files
EOF
before=$(xattr "$M/m/resaved" sha256)
printf ' ' >>"$M/m/resaved/model.safetensors.index.json"
wait_status "$M/m/resaved" ready
[ "$(xattr "$M/m/resaved" sha256)" != "$before" ] || fail "a stale index change kept the digest"
expect_eq "resaved parent after the change" "$(xattr "$M/m/resaved" parent)" /bases/base

note "a fine-tune saved with variants: ready, parent the base, each variant in the digest"
mkdir "$M/m/ftvar"
cp "$S"/ft/{config.json,tokenizer.json,tokenizer_config.json,model.safetensors} "$M/m/ftvar/"
wait_status "$M/m/ftvar" ready
cp "$S/ft16/model.safetensors" "$M/m/ftvar/model.fp16.safetensors"
cp "$S/ft16.pt" "$M/m/ftvar/pytorch_model.fp16.bin"
python3 - "$S/ft16sh/model.safetensors.index.json" "$M/m/ftvar/model.safetensors.index.fp16.json" <<'EOF'
import json, sys
idx = json.load(open(sys.argv[1]))
idx["weight_map"] = {k: v.replace(".safetensors", ".fp16.safetensors") for k, v in idx["weight_map"].items()}
json.dump(idx, open(sys.argv[2], "w"), indent=2)
EOF
for i in 1 2; do
    cp "$S/ft16sh/model-0000$i-of-00002.safetensors" "$M/m/ftvar/model-0000$i-of-00002.fp16.safetensors"
done
wait_status "$M/m/ftvar" ready
expect_eq "ftvar parent" "$(xattr "$M/m/ftvar" parent)" /bases/base
expect_eq "ftvar verdict" "$(xattr "$M/m/ftvar" verdict)" derived
expect_eq "ftvar error" "$(xattr "$M/m/ftvar" error)" ""
notes "$M/m/ftvar" | has_match '^5 file(s) of other variants' || fail "no variant note: $(notes "$M/m/ftvar")"
notes "$M/m/ftvar" | has_match 'model.fp16.safetensors (a model of its own)' || fail "variant unit not named"
python3 - "$M/m/ftvar" <<'EOF' || fail "variant files not in the unit's files"
import json, sys
d = json.load(open(sys.argv[1] + "/.provenance"))
files = {f["name"] for f in d["files"]}
assert {"model.fp16.safetensors", "pytorch_model.fp16.bin", "model.safetensors.index.fp16.json",
        "model-00002-of-00002.fp16.safetensors"} <= files, files
EOF
expect_eq "ftvar approval (derived from the approved base)" "$(xattr "$M/m/ftvar" approval)" not-required

note "each single-file variant is a model of its own, linked to its directory"
for v in model.fp16.safetensors pytorch_model.fp16.bin; do
    wait_status "$M/m/ftvar/$v" ready
    parent=$(xattr "$M/m/ftvar/$v" parent)
    # the directory, or the other variant holding the very same fp16 tensors
    case "$parent" in
    /m/ftvar | /m/ftvar/model.fp16.safetensors) ;;
    *) fail "$v parent '$parent', expected /m/ftvar" ;;
    esac
    verdict=$(xattr "$M/m/ftvar/$v" verdict)
    [ "$verdict" = identical ] || [ "$verdict" = derived ] || fail "$v verdict '$verdict'"
    expect_eq "$v approval" "$(xattr "$M/m/ftvar/$v" approval)" not-required
done
before=$(xattr "$M/m/ftvar" sha256)
cp "$S/ft2.pt" "$M/m/ftvar/pytorch_model.fp16.bin"
wait_status "$M/m/ftvar" ready
[ "$(xattr "$M/m/ftvar" sha256)" != "$before" ] || fail "a variant change kept the unit's digest"

note "an unrelated model smuggled in as a variant is blocked by itself"
mkdir "$M/m/smuggle"
cp "$S"/ft/{config.json,tokenizer.json,tokenizer_config.json,model.safetensors} "$M/m/smuggle/"
wait_status "$M/m/smuggle" ready
cp "$S/other16/model.safetensors" "$M/m/smuggle/model.fp16.safetensors"
wait_status "$M/m/smuggle" ready
wait_status "$M/m/smuggle/model.fp16.safetensors" ready
# the unit's own weights are those of /m/ftvar, stored earlier: an identical copy hangs off it
expect_eq "smuggle unit parent" "$(xattr "$M/m/smuggle" parent)" /m/ftvar
expect_eq "smuggle unit verdict" "$(xattr "$M/m/smuggle" verdict)" identical
expect_eq "smuggled variant parent" "$(xattr "$M/m/smuggle/model.fp16.safetensors" parent)" ""
expect_eq "smuggled variant approval" "$(xattr "$M/m/smuggle/model.fp16.safetensors" approval)" blocked
expect_eq "smuggle unit approval" "$(xattr "$M/m/smuggle" approval)" not-required

note "only variants: the lexically first is the unit's weights"
mkdir "$M/m/onlyvar"
cp "$S"/ft/{config.json,tokenizer.json,tokenizer_config.json} "$M/m/onlyvar/"
cp "$S/ft/model.safetensors" "$M/m/onlyvar/model.a32.safetensors"
cp "$S/ft16/model.safetensors" "$M/m/onlyvar/model.fp16.safetensors"
wait_status "$M/m/onlyvar" ready
# the same weights as /m/ftvar's, which was stored first
expect_eq "onlyvar parent" "$(xattr "$M/m/onlyvar" parent)" /m/ftvar
expect_eq "onlyvar verdict" "$(xattr "$M/m/onlyvar" verdict)" identical
notes "$M/m/onlyvar" | has_match 'the a32 variant is loaded' || fail "no variant-choice note"
expect_eq "the chosen variant is no unit of its own" \
    "$(xattr "$M/m/onlyvar/model.a32.safetensors" id)" "$(xattr "$M/m/onlyvar" id)"
wait_status "$M/m/onlyvar/model.fp16.safetensors" ready
[ -n "$(xattr "$M/m/onlyvar/model.fp16.safetensors" parent)" ] || fail "the other variant has no parent"
[ "$(xattr "$M/m/onlyvar/model.fp16.safetensors" id)" != "$(xattr "$M/m/onlyvar" id)" ] ||
    fail "the other variant is no unit of its own"
stop_provfs
