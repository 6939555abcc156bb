#!/usr/bin/env bash
# cp -r a base model and four others into the mount: each ends ready with the right parent,
# verdict and score; .provenance and the database agree with the xattrs.
. "$(dirname "$0")/lib.sh"
need_mkmodel

S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 1 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 2 >/dev/null
"$MKMODEL" derive "$S/base" "$S/q8" --kind quant-int8 --seed 3 >/dev/null
"$MKMODEL" derive "$S/base" "$S/pruned" --kind prune-layers --seed 4 >/dev/null
"$MKMODEL" create "$S/other" --arch llama --seed 9 >/dev/null

start_provfs
mkdir "$M/bases" "$M/work"
cp -r "$S/base" "$M/bases/tiny"
wait_status "$M/bases/tiny" ready
for k in ft q8 pruned other; do
    cp -r "$S/$k" "$M/work/$k"
done
for k in ft q8 pruned other; do
    wait_status "$M/work/$k" ready
done

note "xattrs"
expect_eq "base verdict" "$(xattr "$M/bases/tiny" verdict)" none
expect_eq "base parent" "$(xattr "$M/bases/tiny" parent)" ""
expect_eq "base family" "$(xattr "$M/bases/tiny" family)" /bases/tiny
for k in ft q8 pruned; do
    expect_eq "$k parent" "$(xattr "$M/work/$k" parent)" /bases/tiny
    expect_eq "$k verdict" "$(xattr "$M/work/$k" verdict)" derived
    expect_eq "$k family" "$(xattr "$M/work/$k" family)" /bases/tiny
    score=$(xattr "$M/work/$k" score)
    [[ "$score" =~ ^[01]\.[0-9]{4}$ ]] || fail "$k score '$score' is not 4 decimals"
    python3 -c "import sys; sys.exit(0 if float('$score') >= 0.5 else 1)" || fail "$k score $score"
    # default policy (audit, unknown-lineage): derived from an unapproved base = would-be block
    expect_eq "$k approval" "$(xattr "$M/work/$k" approval)" unapproved
done
expect_eq "other parent" "$(xattr "$M/work/other" parent)" ""
expect_eq "other verdict" "$(xattr "$M/work/other" verdict)" none
expect_eq "file status" "$(xattr "$M/work/ft/model.safetensors" status)" ready
expect_eq "file sha256" "$(xattr "$M/work/ft/model.safetensors" sha256)" \
    "$(sha256sum "$S/ft/model.safetensors" | cut -d' ' -f1)"
expect_eq "file parent" "$(xattr "$M/work/ft/config.json" parent)" /bases/tiny
[ "$(xattr "$M/work/ft" sha256 | wc -c)" -eq 64 ] || fail "unit digest"
[ -n "$(xattr "$M/work/ft" id)" ] || fail "no id"
getfattr -d -m user.provenance "$M/work/ft" | has_match user.provenance.parent || fail "listxattr"
expect_eq "no error attr" "$(xattr "$M/work/ft" error)" ""
expect_eq "non-model dir" "$(xattr "$M/work" status)" ""

note ".provenance"
python3 - "$M" <<'EOF' || fail ".provenance content"
import json, sys
m = sys.argv[1]
p = json.load(open(m + "/work/ft/.provenance"))
for key in ["schema", "path", "status", "id", "format", "files", "architecture", "tokenizer",
            "lineage", "approval", "policy", "analyzed_at"]:
    assert key in p, key
assert p["schema"] == "provfs.provenance/1"
assert p["path"] == "/work/ft" and p["status"] == "ready"
assert {f["name"] for f in p["files"]} >= {"config.json", "model.safetensors"}
assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in p["files"])
assert "arch_hash" in p["architecture"]
lin = p["lineage"]
assert lin["parent"]["path"] == "/bases/tiny" and lin["parent"]["verdict"] == "derived"
assert "mfi" in lin["parent"]["signals"]
assert [a["path"] for a in lin["ancestors"]] == ["/bases/tiny"]
assert p["policy"]["decision"] in ("allow", "block")
b = json.load(open(m + "/bases/tiny/.provenance"))
kids = {c["path"] for c in b["lineage"]["children"] if c["is_parent"]}
assert kids == {"/work/ft", "/work/q8", "/work/pruned"}, kids
s = json.load(open(m + "/.provenance"))
assert s["schema"] == "provfs.store/1" and s["status"]["ready"] == 5, s
assert "blocked" in s and "policy" in s and isinstance(s["queued"], int), s
EOF
queued() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["queued"])' "$M/.provenance"; }
for _ in $(seq 100); do
    [ "$(queued)" = 0 ] && break
    sleep 0.1
done
expect_eq "nothing queued once all is analysed" "$(queued)" 0

note "database"
expect_eq "integrity" "$(DB 'PRAGMA integrity_check')" ok
expect_eq "parents in the db" "$(DB "SELECT c.path || '<-' || p.path FROM edges e
    JOIN model_paths c ON c.model_id = e.child_id JOIN model_paths p ON p.model_id = e.parent_id
    WHERE e.is_parent = 1 ORDER BY c.path" | tr '\n' ' ')" \
    "/work/ft<-/bases/tiny /work/pruned<-/bases/tiny /work/q8<-/bases/tiny "
expect_eq "db score" "$(printf '%.4f' "$(DB "SELECT e.score FROM edges e JOIN model_paths c
    ON c.model_id = e.child_id WHERE c.path = '/work/q8' AND e.is_parent = 1")")" \
    "$(xattr "$M/work/q8" score)"
expect_eq "unrelated has no edge" "$(DB "SELECT count(*) FROM edges e JOIN model_paths c
    ON c.model_id IN (e.child_id, e.parent_id) WHERE c.path = '/work/other'")" 0

note "same content at a second path is the same model"
cp -r "$S/ft" "$M/work/ft-copy"
wait_status "$M/work/ft-copy" ready
expect_eq "copy id" "$(xattr "$M/work/ft-copy" id)" "$(xattr "$M/work/ft" id)"
expect_eq "paths of that model" "$(DB "SELECT count(*) FROM model_paths WHERE model_id =
    (SELECT model_id FROM model_paths WHERE path = '/work/ft')")" 2

note "a model whose parent arrives later is linked when the parent lands"
rm -rf "$M/bases/tiny" "$M/work/ft" "$M/work/ft-copy" "$M/work/q8" "$M/work/pruned"
sleep 1
"$MKMODEL" derive "$S/other" "$S/other-ft" --kind finetune --seed 5 >/dev/null
expect_eq "models after delete" "$(DB 'SELECT count(*) FROM models')" 1
cp -r "$S/other-ft" "$M/work/other-ft"
wait_status "$M/work/other-ft" ready
expect_eq "late child parent" "$(xattr "$M/work/other-ft" parent)" /work/other

cd /
stop_provfs
echo "PASS lineage"
