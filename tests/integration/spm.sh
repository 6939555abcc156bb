#!/usr/bin/env bash
# A Llama-style folder whose tokenizer is only a SentencePiece tokenizer.model (no tokenizer.json)
# gets tokenizer evidence: `.provenance` shows its tokenizer block, the architecture's
# tokenizer_hash equals that of a GGUF converted from it (and both share the arch_hash of the
# source), a fine-tune written the same way links to it, and a tokenizer.model that is not a
# SentencePiece file makes the unit failed with a one-line reason while the mount keeps serving.
. "$(dirname "$0")/lib.sh"
need_mkmodel
S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 41 --spm >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 42 >/dev/null
"$MKMODEL" gguf "$S/base" "$S/base-q8.gguf" --type q8_0 >/dev/null
[ -f "$S/base/tokenizer.model" ] && [ ! -e "$S/base/tokenizer.json" ] || fail "not an SPM-only folder"
[ -f "$S/ft/tokenizer.model" ] || fail "derive dropped tokenizer.model"

start_provfs
mkdir "$M/m"
cp -r "$S/base" "$M/m/base"
wait_status "$M/m/base" ready
prov() { python3 -c "import json,sys; p=json.load(open(sys.argv[1]+'/.provenance')); print($2)" "$1"; }
expect_eq "tokenizer vocab_size" "$(prov "$M/m/base" "p['tokenizer']['vocab_size']")" 1024
expect_eq "tokenizer kind" "$(prov "$M/m/base" "p['tokenizer']['model_kind']")" BPE
base_tok=$(prov "$M/m/base" "p['architecture']['tokenizer_hash']")
[[ "$base_tok" =~ ^[0-9a-f]{64}$ ]] || fail "tokenizer_hash '$base_tok'"

cp "$S/base-q8.gguf" "$M/m/base-q8.gguf"
wait_status "$M/m/base-q8.gguf" ready
gg() { python3 -c "import json,sys; d=json.load(open(sys.argv[1]+'/.provenance')); u=[u for u in d['units'] if u['path'].endswith('/base-q8.gguf')][0]; print($1)" "$M/m"; }
expect_eq "GGUF tokenizer_hash = source's" "$(gg "u['architecture']['tokenizer_hash']")" "$base_tok"
expect_eq "GGUF arch_hash = source's" "$(gg "u['architecture']['arch_hash']")" \
    "$(prov "$M/m/base" "p['architecture']['arch_hash']")"
expect_eq "GGUF parent" "$(xattr "$M/m/base-q8.gguf" parent)" /m/base

cp -r "$S/ft" "$M/m/ft"
wait_status "$M/m/ft" ready
expect_eq "fine-tune parent" "$(xattr "$M/m/ft" parent)" /m/base
expect_eq "fine-tune verdict" "$(xattr "$M/m/ft" verdict)" derived

note "a tokenizer.model that is not SentencePiece"
cp -r "$S/base" "$T/bad"
printf '\x0a\x7fnot a protobuf' >"$T/bad/tokenizer.model"
EXPECT_LOG_RE='tokenizer.model'
cp -r "$T/bad" "$M/m/bad"
wait_status "$M/m/bad" failed
reason=$(xattr "$M/m/bad" error)
case $reason in *tokenizer.model*SentencePiece*) ;; *) fail "reason: '$reason'" ;; esac
[ "$(printf '%s' "$reason" | wc -l)" -eq 0 ] || fail "reason is not one line"
cmp -s "$T/bad/tokenizer.model" "$M/m/bad/tokenizer.model" || fail "bytes of the failed unit changed"
expect_eq "store keeps serving" "$(xattr "$M/m/ft" status)" ready
stop_provfs
note "ok"
