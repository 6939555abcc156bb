#!/usr/bin/env bash
# provfs --refdb (issue 5 §1): a model without a parent in the store gets a reference entry with
# weights as its parent (ref:NAME, the entry's family); a metadata-only entry only ever gives a
# family hint in .provenance, never a parent or `derived`.
. "$(dirname "$0")/lib.sh"
need_mkmodel
[ -n "$PROVCTL" ] && [ -x "$PROVCTL" ] || { echo "SKIP: no provctl"; exit 77; }

S=$T/src
R=$T/refdb
H=$T/refdb-meta
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 41 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 42 >/dev/null
"$MKMODEL" gguf "$S/ft" "$S/ft-q8_0.gguf" --type q8_0 >/dev/null
"$MKMODEL" create "$S/other" --arch llama --seed 49 --hidden 192 --heads 6 >/dev/null
"$PROVCTL" refdb add "$S/base" --name base-ref --family acme --out "$R" >/dev/null
# a metadata-only entry: the base's config and tokenizer, no weights
mkdir "$S/base-meta"
cp "$S/base/config.json" "$S/base/tokenizer.json" "$S/base/tokenizer_config.json" "$S/base-meta/"
"$PROVCTL" refdb add "$S/base-meta" --name base-meta --family acme-meta --out "$H" >/dev/null

note "a fine-tune of a reference base: parent ref:NAME, the entry's family"
start_provfs --refdb "$R"
cp -r "$S/ft" "$M/ft"
cp "$S/ft-q8_0.gguf" "$M/"
cp -r "$S/other" "$M/other"
wait_status "$M/ft" ready
expect_eq "ft parent" "$(xattr "$M/ft" parent)" ref:base-ref
expect_eq "ft verdict" "$(xattr "$M/ft" verdict)" derived
expect_eq "ft family" "$(xattr "$M/ft" family)" acme
score=$(xattr "$M/ft" score)
[[ "$score" =~ ^[01]\.[0-9]{4}$ ]] || fail "ft score '$score'"
wait_status "$M/other" ready
expect_eq "unrelated parent" "$(xattr "$M/other" parent)" ""
expect_eq "unrelated verdict" "$(xattr "$M/other" verdict)" none
python3 - "$M" <<'EOF' || fail ".provenance of a reference parent"
import json, sys
p = json.load(open(sys.argv[1] + "/ft/.provenance"))
par = p["lineage"]["parent"]
assert par["path"] == "ref:base-ref" and par["family"] == "acme", par
assert par["verdict"] == "derived" and par["evidence"]["weights"] is True, par
assert "mfi" in par["signals"], par
assert p["lineage"]["reference_hint"] is None
EOF

note "a parent in the store outranks the reference entry: the fine-tune's GGUF links to it"
wait_status "$M/ft-q8_0.gguf" ready
expect_eq "gguf parent" "$(xattr "$M/ft-q8_0.gguf" parent)" /ft
expect_eq "gguf family" "$(xattr "$M/ft-q8_0.gguf" family)" acme

cd /
stop_provfs

note "a metadata-only entry is a hint, never a parent"
rm -rf "${B:?}"/* "$B/.provfs"
start_provfs --refdb "$H"
cp -r "$S/ft" "$M/ft"
wait_status "$M/ft" ready
expect_eq "hint: no parent" "$(xattr "$M/ft" parent)" ""
expect_eq "hint: verdict" "$(xattr "$M/ft" verdict)" none
expect_eq "hint: family" "$(xattr "$M/ft" family)" /ft
python3 - "$M" <<'EOF' || fail ".provenance reference_hint"
import json, sys
p = json.load(open(sys.argv[1] + "/ft/.provenance"))
h = p["lineage"]["reference_hint"]
assert p["lineage"]["parent"] is None
assert h["name"] == "base-meta" and h["family"] == "acme-meta", h
assert h["verdict"] in ("weak", "none") and h["evidence"]["weights"] is False, h
assert h["evidence"]["metadata"] is True and 0 <= h["score"] <= 1, h
EOF
expect_eq "no ref parent in the db" "$(DB "SELECT count(*) FROM model_refs WHERE kind = 'parent'")" 0
cd /
stop_provfs

note "an explicit --refdb that cannot be read refuses the mount"
if "$PROVFS" -f --refdb "$T/no-such-dir" "$B" "$M" >>"$T/bad.log" 2>&1; then
    fail "provfs started with a missing --refdb"
fi
mountpoint -q "$M" && fail "mounted with a missing --refdb"
echo "PASS refdb"
