#!/usr/bin/env bash
# PEFT adapters: a folder with adapter_config.json and adapter_model.safetensors is a unit,
# linked to its base by declaration (base_model_name_or_path: a mount path, a store path, a name)
# only when its LoRA shapes fit the base's modules (edge verdict "adapter"). An adapter of a
# blocked base is blocked; one whose base is unknown or does not fit is of unknown lineage.
. "$(dirname "$0")/lib.sh"
need_mkmodel

S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 41 >/dev/null
"$MKMODEL" create "$S/wide" --arch llama --seed 42 --hidden 96 >/dev/null
"$MKMODEL" create "$S/base2" --arch llama --seed 45 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ad" --kind peft --rank 4 --seed 43 >/dev/null
"$MKMODEL" derive "$S/wide" "$S/adwide" --kind peft --rank 4 --seed 44 >/dev/null

# declare ADAPTER_DIR NAME: rewrites base_model_name_or_path.
declare_base() {
    python3 - "$1/adapter_config.json" "$2" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["base_model_name_or_path"] = sys.argv[2]
json.dump(c, open(sys.argv[1], "w"), indent=2)
EOF
}
lineage_kind() {
    python3 -c "import json,sys; p=json.load(open(sys.argv[1] + '/.provenance'))['lineage']['parents']; print(p[0]['kind'] if p else '')" "$1"
}

note "provctl compare BASE ADAPTER"
"$PROVCTL" compare "$S/base" "$S/ad" >"$T/cmp.txt" || fail "provctl compare"
grep -q '^verdict: *adapter-of$' "$T/cmp.txt" || fail "compare: $(cat "$T/cmp.txt")"
grep -q 'names the first model' "$T/cmp.txt" || fail "compare: declaration not checked"
"$PROVCTL" compare "$S/wide" "$S/ad" >"$T/cmp2.txt" || fail "provctl compare (wide)"
grep -q '^verdict: *none$' "$T/cmp2.txt" || fail "compare wide: $(cat "$T/cmp2.txt")"
grep -q 'shape mismatches: *[1-9]' "$T/cmp2.txt" || fail "compare wide: no mismatch counted"

mkdir -p "$B/.provfs"
printf '{ "mode": "enforce", "require_approval": "unknown-lineage", "deny_families": ["/denied/*"] }\n' \
    >"$B/.provfs/policy.json"
start_provfs
mkdir "$M/bases" "$M/denied" "$M/ad"
cp -r "$S/base" "$M/bases/base"
cp -r "$S/base2" "$M/denied/base2"
cp -r "$S/wide" "$M/bases/wide"
wait_status "$M/bases/base" ready
wait_status "$M/denied/base2" ready
wait_status "$M/bases/wide" ready
setfattr -n user.provenance.approve -v base "$M/bases/base" || fail "approve the base"

note "an adapter declaring its base by mount path, by store path, by name"
i=0
for decl in "$M/bases/base" "/bases/base" "bases/base"; do
    i=$((i + 1))
    cp -r "$S/ad" "$T/ad$i"
    declare_base "$T/ad$i" "$decl"
    cp -r "$T/ad$i" "$M/ad/a$i"
    wait_status "$M/ad/a$i" ready
    expect_eq "a$i parent" "$(xattr "$M/ad/a$i" parent)" /bases/base
    expect_eq "a$i verdict" "$(xattr "$M/ad/a$i" verdict)" adapter
    expect_eq "a$i lineage kind" "$(lineage_kind "$M/ad/a$i")" adapter
    expect_eq "a$i approval (adapter of an approved base)" "$(xattr "$M/ad/a$i" approval)" not-required
done

note "a later model of the base's family leaves the adapter's lineage alone"
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 46 >/dev/null
cp -r "$S/ft" "$M/bases/ft"
wait_status "$M/bases/ft" ready
expect_eq "ft parent" "$(xattr "$M/bases/ft" parent)" /bases/base
expect_eq "a1 parent after the fine-tune" "$(xattr "$M/ad/a1" parent)" /bases/base
expect_eq "a1 verdict after the fine-tune" "$(xattr "$M/ad/a1" verdict)" adapter

note "an adapter of a blocked base is blocked"
cp -r "$S/ad" "$T/adden"
declare_base "$T/adden" /denied/base2
cp -r "$T/adden" "$M/ad/den"
wait_status "$M/ad/den" ready
expect_eq "den parent" "$(xattr "$M/ad/den" parent)" /denied/base2
expect_eq "den approval" "$(xattr "$M/ad/den" approval)" blocked
python3 -c "import json,sys; p=json.load(open(sys.argv[1] + '/.provenance'))['policy']; assert p['rule'] == 'deny_families', p" \
    "$M/ad/den" || fail "den: not blocked by deny_families"

note "an unknown base, or shapes that do not fit: unknown lineage"
cp -r "$S/ad" "$T/adunk"
declare_base "$T/adunk" "someorg/nothing-here"
cp -r "$T/adunk" "$M/ad/unk"
wait_status "$M/ad/unk" ready
expect_eq "unknown base parent" "$(xattr "$M/ad/unk" parent)" ""
expect_eq "unknown base approval" "$(xattr "$M/ad/unk" approval)" blocked
cp -r "$S/ad" "$T/admis"
declare_base "$T/admis" /bases/wide
cp -r "$T/admis" "$M/ad/mis"
wait_status "$M/ad/mis" ready
expect_eq "mismatched parent" "$(xattr "$M/ad/mis" parent)" ""
expect_eq "mismatched approval" "$(xattr "$M/ad/mis" approval)" blocked
DB "SELECT detail FROM events WHERE kind = 'adapter' AND path = '/ad/mis'" |
    has_match 'does not fit' || fail "no 'does not fit' event for the mismatched adapter"

note "an adapter stored before its base is linked when the base arrives"
"$MKMODEL" create "$S/late" --arch llama --seed 47 >/dev/null
"$MKMODEL" derive "$S/late" "$T/adlate" --kind peft --rank 4 --seed 48 >/dev/null
declare_base "$T/adlate" late/base
cp -r "$T/adlate" "$M/ad/early"
wait_status "$M/ad/early" ready
expect_eq "early adapter parent before its base" "$(xattr "$M/ad/early" parent)" ""
expect_eq "early adapter approval before its base" "$(xattr "$M/ad/early" approval)" blocked
mkdir "$M/late"
cp -r "$S/late" "$M/late/base"
wait_status "$M/late/base" ready
for _ in $(seq 100); do
    [ "$(xattr "$M/ad/early" parent)" = /late/base ] && break
    sleep 0.1
done
expect_eq "early adapter parent once its base is stored" "$(xattr "$M/ad/early" parent)" /late/base
expect_eq "early adapter verdict" "$(xattr "$M/ad/early" verdict)" adapter
setfattr -n user.provenance.approve -v late "$M/late/base" || fail "approve the late base"
expect_eq "early adapter approval once its base is approved" \
    "$(xattr "$M/ad/early" approval)" not-required
note "... and by a second path of content already stored"
"$MKMODEL" derive "$S/late" "$T/adlate2" --kind peft --rank 4 --seed 49 >/dev/null
declare_base "$T/adlate2" copies/late
cp -r "$T/adlate2" "$M/ad/early2"
wait_status "$M/ad/early2" ready
expect_eq "early2 parent before" "$(xattr "$M/ad/early2" parent)" ""
mkdir "$M/copies"
cp -r "$S/late" "$M/copies/late"
wait_status "$M/copies/late" ready
for _ in $(seq 100); do
    [ -n "$(xattr "$M/ad/early2" parent)" ] && break
    sleep 0.1
done
expect_eq "early2 verdict once a copy of its base is stored" "$(xattr "$M/ad/early2" verdict)" adapter
expect_eq "the declarations are kept" "$(DB "SELECT count(*) FROM adapter_bases a JOIN model_paths p
    ON p.model_id = a.model_id WHERE p.path IN ('/ad/early', '/ad/early2')")" 2
expect_eq "the late link is the daemon's doing (uid 0)" "$(DB "SELECT uid FROM events
    WHERE kind = 'adapter' AND path = '/ad/early' ORDER BY id DESC LIMIT 1")" 0

note "a second stored model its declaration names: the adapter parent goes (unknown lineage)"
mkdir -p "$M/other/late"
cp -r "$S/base2" "$M/other/late/base"
wait_status "$M/other/late/base" ready
for _ in $(seq 100); do
    [ -z "$(xattr "$M/ad/early" parent)" ] && break
    sleep 0.1
done
expect_eq "early adapter parent once its declaration is ambiguous" "$(xattr "$M/ad/early" parent)" ""
expect_eq "early adapter approval once its declaration is ambiguous" \
    "$(xattr "$M/ad/early" approval)" blocked
DB "SELECT detail FROM events WHERE kind = 'adapter' AND path = '/ad/early'" |
    has_match 'names several stored models' || fail "no event for the ambiguous declaration"
expect_eq "early2 keeps its base" "$(xattr "$M/ad/early2" verdict)" adapter

note "a late base that does not fit leaves the adapter unlinked"
cp -r "$S/ad" "$T/adwide2"
declare_base "$T/adwide2" wide2/x
cp -r "$T/adwide2" "$M/ad/notfit"
wait_status "$M/ad/notfit" ready
mkdir "$M/wide2"
cp -r "$S/wide" "$M/wide2/x"
wait_status "$M/wide2/x" ready
sleep 0.5
expect_eq "not fitting late base: parent" "$(xattr "$M/ad/notfit" parent)" ""
expect_eq "not fitting late base: approval" "$(xattr "$M/ad/notfit" approval)" blocked

note "a hostile adapter_config.json fails nothing but its own lineage"
cp -r "$S/ad" "$T/adbad"
printf '{"base_model_name_or_path": ["x"], "r": -1}' >"$T/adbad/adapter_config.json"
cp -r "$T/adbad" "$M/ad/bad"
wait_status "$M/ad/bad" ready
expect_eq "hostile config parent" "$(xattr "$M/ad/bad" parent)" ""
expect_eq "hostile config approval" "$(xattr "$M/ad/bad" approval)" blocked
stop_provfs
