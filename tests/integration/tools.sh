#!/usr/bin/env bash
# Models arriving through rsync, tar, a Python writer and shard by shard; renames, hard links and
# deletes keep the database in step.
. "$(dirname "$0")/lib.sh"
need_mkmodel

S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 11 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 12 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft2" --kind finetune --seed 13 >/dev/null
"$MKMODEL" derive "$S/base" "$S/sharded" --kind reshard --shards 3 --seed 14 >/dev/null
"$MKMODEL" derive "$S/base" "$S/py" --kind finetune --seed 15 >/dev/null

start_provfs

note "rsync -a"
rsync -a "$S/base/" "$M/base/"
wait_status "$M/base" ready
expect_eq "rsync verdict" "$(xattr "$M/base" verdict)" none

note "tar -x"
tar -C "$S" -cf - ft | tar -C "$M" -xf -
wait_status "$M/ft" ready
expect_eq "tar parent" "$(xattr "$M/ft" parent)" /base

note "Python writing a shard in several write() calls"
mkdir "$M/py"
cp "$S/py/config.json" "$S/py/tokenizer.json" "$S/py/tokenizer_config.json" "$M/py/"
python3 - "$S/py/model.safetensors" "$M/py/model.safetensors" <<'EOF'
import sys
src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
with open(dst, "wb") as f:
    for i in range(0, len(data), 100003):  # odd-sized writes, not page aligned
        f.write(data[i:i + 100003])
EOF
wait_status "$M/py" ready
expect_eq "python parent" "$(xattr "$M/py" parent)" /base
cmp "$S/py/model.safetensors" "$M/py/model.safetensors" || fail "python copy differs"

note "shards arriving one by one: incomplete until the last"
mkdir "$M/sharded"
cp "$S/sharded/config.json" "$S/sharded/tokenizer.json" "$S/sharded/tokenizer_config.json" \
    "$S/sharded/model.safetensors.index.json" "$M/sharded/"
shards=("$S"/sharded/model-*.safetensors)
for ((i = 0; i < ${#shards[@]} - 1; i++)); do
    cp "${shards[$i]}" "$M/sharded/"
    wait_status "$M/sharded" incomplete
done
expect_eq "incomplete has no error attr" "$(xattr "$M/sharded" error)" ""
cp "${shards[-1]}" "$M/sharded/"
wait_status "$M/sharded" ready
expect_eq "sharded parent" "$(xattr "$M/sharded" parent)" /base
expect_eq "sharded verdict" "$(xattr "$M/sharded" verdict)" identical

note "status is visible at once, and a write during analysis restarts it"
cp -r "$S/ft2" "$M/ft2"
s=$(xattr "$M/ft2" status)
case "$s" in pending | analyzing | ready) ;; *) fail "status right after copy: '$s'" ;; esac
touch "$M/ft2/model.safetensors" # a new close of a written file
echo >>"$M/ft2/config.json"
expect_eq "pending after a write" "$(xattr "$M/ft2" status)" pending
wait_status "$M/ft2" ready
expect_eq "ft2 parent" "$(xattr "$M/ft2" parent)" /base

note "rename a model directory"
id=$(xattr "$M/ft" id)
mkdir "$M/archive"
mv "$M/ft" "$M/archive/ft-renamed"
expect_eq "renamed id" "$(xattr "$M/archive/ft-renamed" id)" "$id"
expect_eq "renamed status" "$(xattr "$M/archive/ft-renamed" status)" ready
expect_eq "old path gone from db" "$(DB "SELECT count(*) FROM model_paths WHERE path = '/ft'")" 0
mv "$M/base" "$M/base-v1"
expect_eq "children follow their parent's rename" "$(xattr "$M/py" parent)" /base-v1
mv "$M/archive" "$M/archive2"
expect_eq "parent dir rename" "$(xattr "$M/archive2/ft-renamed" id)" "$id"

note "hard link into a new unit"
mkdir "$M/linked"
cp "$M/ft2/config.json" "$M/ft2/tokenizer.json" "$M/ft2/tokenizer_config.json" "$M/linked/"
ln "$M/ft2/model.safetensors" "$M/linked/model.safetensors"
wait_status "$M/linked" ready
expect_eq "hard-linked unit is the same model" "$(xattr "$M/linked" id)" "$(xattr "$M/ft2" id)"

note "delete"
rm "$M/linked/model.safetensors"
for _ in $(seq 100); do
    [ "$(DB "SELECT count(*) FROM model_paths WHERE path = '/linked'")" = 0 ] && break
    sleep 0.1
done
expect_eq "unit without weights leaves the db" \
    "$(DB "SELECT count(*) FROM model_paths WHERE path = '/linked'")" 0
expect_eq "no xattrs on a non-model" "$(xattr "$M/linked" status)" ""
rm -rf "$M/ft2"
# the store follows the namespace right after the reply to rmdir, not before it
for _ in $(seq 100); do
    [ "$(DB "SELECT count(*) FROM model_paths WHERE path = '/ft2'")" = 0 ] && break
    sleep 0.1
done
expect_eq "rm -rf removes the path" "$(DB "SELECT count(*) FROM model_paths WHERE path = '/ft2'")" 0
expect_eq "model of the deleted content is gone" \
    "$(DB "SELECT count(*) FROM models m WHERE NOT EXISTS
        (SELECT 1 FROM model_paths p WHERE p.model_id = m.id)")" 0
expect_eq "integrity" "$(DB 'PRAGMA integrity_check')" ok

cd /
stop_provfs
echo "PASS tools"
