#!/usr/bin/env bash
# GGUF files are model units of their own (issue 5): quantisations of a stored base link to it,
# a quantisation of a fine-tune links to the fine-tune, an unrelated one gets none, malformed ones
# fail with a reason while the mount keeps serving.
. "$(dirname "$0")/lib.sh"
need_mkmodel
EXPECT_LOG_RE='(badmagic|badversion|pasteof|trunc)\.gguf: failed'

S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 31 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --drift 0.2 --seed 32 >/dev/null
"$MKMODEL" create "$S/other" --arch llama --seed 39 >/dev/null
for t in q8_0 q4_k q6_k; do
    "$MKMODEL" gguf "$S/base" "$S/base-$t.gguf" --type "$t" >/dev/null
done
"$MKMODEL" gguf "$S/ft" "$S/ft-q8_0.gguf" --type q8_0 >/dev/null
"$MKMODEL" gguf "$S/other" "$S/other-q8_0.gguf" --type q8_0 >/dev/null

start_provfs
mkdir "$M/models"
cp -r "$S/base" "$M/models/base"
wait_status "$M/models/base" ready

note "quantisations next to the base, and one inside the base's own directory"
cp "$S/base-q4_k.gguf" "$S/base-q6_k.gguf" "$M/models/"
cp "$S/base-q8_0.gguf" "$M/models/base/"
# the base directory lists the new file too: it is analysed again (release reaches the daemon
# after cp returns, hence the pause before waiting)
sleep 0.5
wait_status "$M/models/base" ready
for g in models/base-q4_k.gguf models/base-q6_k.gguf models/base/base-q8_0.gguf; do
    wait_status "$M/$g" ready
    expect_eq "$g parent" "$(xattr "$M/$g" parent)" /models/base
    expect_eq "$g verdict" "$(xattr "$M/$g" verdict)" derived
    expect_eq "$g family" "$(xattr "$M/$g" family)" /models/base
    score=$(xattr "$M/$g" score)
    [[ "$score" =~ ^[01]\.[0-9]{4}$ ]] || fail "$g score '$score'"
    expect_eq "$g sha256" "$(xattr "$M/$g" sha256)" \
        "$(sha256sum "$S/$(basename "$g")" | cut -d' ' -f1)"
    [ -n "$(xattr "$M/$g" id)" ] || fail "$g: no id"
done
wait_status "$M/models/base" ready
expect_eq "the HF unit is still its own model" "$(xattr "$M/models/base" verdict)" none
[ "$(xattr "$M/models/base" id)" != "$(xattr "$M/models/base/base-q8_0.gguf" id)" ] \
    || fail "the GGUF inside the base shares its id"
getfattr -d -m user.provenance "$M/models/base-q4_k.gguf" | has_match user.provenance.parent \
    || fail "listxattr of a GGUF unit"
expect_eq "format in the db" "$(DB "SELECT m.format FROM models m JOIN model_paths p ON
    p.model_id = m.id WHERE p.path = '/models/base-q4_k.gguf'")" gguf
# models whose stored (binary) fingerprint holds the text $1
fp_holding() {
    if [ -n "$PGDB" ]; then
        DB "SELECT count(*) FROM models WHERE position(convert_to('$1', 'SQL_ASCII') in fpbin) > 0"
    else
        DB "SELECT count(*) FROM models WHERE instr(fpbin, CAST('$1' AS BLOB)) > 0"
    fi
}
[ "$(fp_holding '"format":"gguf"')" -gt 0 ] || fail "the fingerprint query finds nothing"
expect_eq "no backing path in stored fingerprints" "$(fp_holding "$B")" 0

note ".provenance lists the GGUF units of a directory"
python3 - "$M" <<'EOF' || fail ".provenance of GGUF units"
import json, sys
m = sys.argv[1]
p = json.load(open(m + "/models/.provenance"))
units = {u["path"]: u for u in p["units"]}
assert set(units) == {"/models/base-q4_k.gguf", "/models/base-q6_k.gguf"}, units
u = units["/models/base-q6_k.gguf"]
assert u["status"] == "ready" and u["format"] == "gguf", u
assert u["lineage"]["parent"]["path"] == "/models/base"
assert u["lineage"]["parent"]["verdict"] == "derived"
assert [f["name"] for f in u["files"]] == ["base-q6_k.gguf"]
b = json.load(open(m + "/models/base/.provenance"))
assert [x["path"] for x in b["units"]] == ["/models/base/base-q8_0.gguf"], b["units"]
kids = {c["path"] for c in b["lineage"]["children"] if c["is_parent"]}
assert kids == {"/models/base-q4_k.gguf", "/models/base-q6_k.gguf",
                "/models/base/base-q8_0.gguf"}, kids
EOF

note "an unrelated base's GGUF gets none"
cp "$S/other-q8_0.gguf" "$M/models/"
wait_status "$M/models/other-q8_0.gguf" ready
expect_eq "unrelated parent" "$(xattr "$M/models/other-q8_0.gguf" parent)" ""
expect_eq "unrelated verdict" "$(xattr "$M/models/other-q8_0.gguf" verdict)" none

note "a fine-tune's GGUF links to the fine-tune, not the base"
cp -r "$S/ft" "$M/models/ft"
wait_status "$M/models/ft" ready
expect_eq "ft parent" "$(xattr "$M/models/ft" parent)" /models/base
cp "$S/ft-q8_0.gguf" "$M/models/"
wait_status "$M/models/ft-q8_0.gguf" ready
expect_eq "ft gguf parent" "$(xattr "$M/models/ft-q8_0.gguf" parent)" /models/ft
expect_eq "ft gguf family" "$(xattr "$M/models/ft-q8_0.gguf" family)" /models/base

note "rename and delete of a GGUF unit"
id=$(xattr "$M/models/base-q4_k.gguf" id)
mv "$M/models/base-q4_k.gguf" "$M/models/renamed-q4_k.gguf"
wait_status "$M/models/renamed-q4_k.gguf" ready
expect_eq "renamed id" "$(xattr "$M/models/renamed-q4_k.gguf" id)" "$id"
expect_eq "renamed parent" "$(xattr "$M/models/renamed-q4_k.gguf" parent)" /models/base
rm "$M/models/renamed-q4_k.gguf"
expect_eq "deleted from the db" "$(DB "SELECT count(*) FROM model_paths
    WHERE path LIKE '%q4_k.gguf'")" 0

note "malformed GGUF files fail with a reason"
mkdir "$M/bad"
printf 'GGUXxxxxxxxxxxxxxxxxxxxxxxxxxxxx' >"$M/bad/badmagic.gguf"
python3 - "$M/bad" <<'EOF'
import struct, sys
d = sys.argv[1]
# version 99
open(d + "/badversion.gguf", "wb").write(b"GGUF" + struct.pack("<IQQ", 99, 0, 0))
# v3, 2^40 tensors and 2^40 key/values: counts past the end of the file
open(d + "/pasteof.gguf", "wb").write(b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 1 << 40) + b"\0" * 64)
EOF
head -c 200000 "$S/base-q8_0.gguf" >"$M/bad/trunc.gguf"
for g in badmagic badversion pasteof trunc; do
    wait_status "$M/bad/$g.gguf" failed
    err=$(xattr "$M/bad/$g.gguf" error)
    [ -n "$err" ] || fail "$g: no user.provenance.error"
    [ "$(echo "$err" | wc -l)" -eq 1 ] || fail "$g: error is not one line"
    echo "$err" | has_match "$B" && fail "$g: error leaks the backing path: $err"
done
note "the mount keeps serving"
ls "$M/models" >/dev/null
cmp "$M/models/base-q6_k.gguf" "$S/base-q6_k.gguf" || fail "read back"
expect_eq "status still served" "$(xattr "$M/models/base-q6_k.gguf" status)" ready

note "hash while writing: a sequential copy is hashed once, an out-of-order write still right"
cp "$S/base-q6_k.gguf" "$M/bad/seq.gguf"
wait_status "$M/bad/seq.gguf" ready
expect_eq "sequential sha256" "$(xattr "$M/bad/seq.gguf" sha256)" \
    "$(sha256sum "$S/base-q6_k.gguf" | cut -d' ' -f1)"
expect_eq "taken while written" "$(DB "SELECT count(*) FROM events WHERE path = '/bad/seq.gguf'
    AND kind = 'analyzed' AND detail LIKE '%, 1 file hash(es) taken while written'")" 1
python3 - "$S/base-q6_k.gguf" "$M/bad/ooo.gguf" <<'EOF'
import os, sys
data = open(sys.argv[1], "rb").read()
half = len(data) // 2
fd = os.open(sys.argv[2], os.O_CREAT | os.O_WRONLY, 0o644)
os.pwrite(fd, data[half:], half)   # the second half first (hashed in file order once the gap closes)
os.pwrite(fd, data[:half], 0)
os.pwrite(fd, data[:4096], 0)      # an overwrite: not a sequential write any more
os.close(fd)
EOF
wait_status "$M/bad/ooo.gguf" ready
expect_eq "out-of-order sha256" "$(xattr "$M/bad/ooo.gguf" sha256)" \
    "$(sha256sum "$S/base-q6_k.gguf" | cut -d' ' -f1)"
expect_eq "not taken while written" "$(DB "SELECT count(*) FROM events WHERE path = '/bad/ooo.gguf'
    AND kind = 'analyzed' AND detail LIKE '%, 0 file hash(es) taken while written'")" 1

note "a GGUF copied in while unmounted is found on mount"
stop_provfs
cp "$S/base-q4_k.gguf" "$B/models/late-q4_k.gguf"
start_provfs
wait_status "$M/models/late-q4_k.gguf" ready
expect_eq "late parent" "$(xattr "$M/models/late-q4_k.gguf" parent)" /models/base
expect_eq "integrity" "$(DB 'PRAGMA integrity_check')" ok

cd /
stop_provfs
echo "PASS gguf"
