#!/usr/bin/env bash
# Smuggling: an unrelated model's tensors stored beside an approved base's tensors under other
# names scored `derived` from the base and rode on its approval (a fine-tune of an approved base
# is allowed). The parent now has to explain the child's parameters: a substantial unexplained
# share is an origin of its own, shown in .provenance, and the model needs its own approval.
. "$(dirname "$0")/lib.sh"
write_policy enforce
start_provfs
mkdir -m 1777 "$M/up"
S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 140 >/dev/null
"$MKMODEL" create "$S/other" --arch llama --seed 141 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 142 >/dev/null
"$MKMODEL" derive "$S/base" "$S/smug" --kind smuggle --with "$S/other" --seed 143 >/dev/null
chmod -R a+rX "$S"; chmod 755 "$T"
cp -r "$S/base" "$M/up/base"
wait_status "$M/up/base" ready
setfattr -n user.provenance.approve -v "reviewed" "$M/up/base" || fail "approve base"

note "an honest fine-tune of the approved base is allowed"
as_user cp -r "$S/ft" "$M/up/ft"
wait_status "$M/up/ft" ready
readable "$M/up/ft/model.safetensors"

note "the base with an unrelated model's tensors smuggled in is not"
as_user cp -r "$S/smug" "$M/up/smug"
wait_status "$M/up/smug" ready
expect_eq "parent" "$(xattr "$M/up/smug" parent)" /up/base
refused "$M/up/smug/model.safetensors"
prov() { as_user "$UPY" -c "import json,sys; p=json.load(open(sys.argv[1]+'/.provenance')); print($2)" "$1"; }
expect_eq "unknown_origin" "$(prov "$M/up/smug" "p['lineage']['unknown_origin']")" True
expect_eq "rule" "$(prov "$M/up/smug" "p['policy']['rule']")" unknown_origin
expect_eq "ft unknown_origin" "$(prov "$M/up/ft" "p['lineage']['unknown_origin']")" False
note "its own approval releases it"
setfattr -n user.provenance.approve -v "smuggled parts reviewed" "$M/up/smug" || fail "approve"
readable "$M/up/smug/model.safetensors"
stop_provfs
