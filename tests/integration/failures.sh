#!/usr/bin/env bash
# A malformed model fails with a reason; the mount keeps serving and other models still analyse.
. "$(dirname "$0")/lib.sh"
need_mkmodel
EXPECT_LOG_RE='(/bad|/notst|/trunc): failed'

S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 21 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 22 >/dev/null
start_provfs

note "malformed safetensors header"
mkdir "$M/bad"
cp "$S/base/config.json" "$M/bad/"
printf '\xff\xff\xff\xff\xff\xff\xff\x7f{"x":1}' >"$M/bad/model.safetensors"
wait_status "$M/bad" failed
err=$(xattr "$M/bad" error)
[ -n "$err" ] || fail "no user.provenance.error"
[ "$(echo "$err" | wc -l)" -eq 1 ] || fail "error is not one line"
echo "$err" | has_match "$B" && fail "error leaks the backing path: $err"
expect_eq "file of a failed unit" "$(xattr "$M/bad/model.safetensors" status)" failed
python3 -c "import json; p = json.load(open('$M/bad/.provenance')); assert p['status'] == 'failed' and p['error']" \
    || fail ".provenance of a failed unit"

note "a pickle named .safetensors, and a truncated file"
mkdir "$M/notst" "$M/trunc"
cp "$S/base/config.json" "$M/notst/"
python3 -c "import pickle; open('$M/notst/model.safetensors','wb').write(pickle.dumps({'w':[1,2,3]}))"
cp "$S/base/config.json" "$M/trunc/"
head -c 100000 "$S/base/model.safetensors" >"$M/trunc/model.safetensors"
wait_status "$M/notst" failed
wait_status "$M/trunc" failed

note "the mount keeps serving; good models still analyse"
cp -r "$S/base" "$M/base"
cp -r "$S/ft" "$M/ft"
# the two may be analysed at once, ft first: the base then adopts it when it is stored
wait_status "$M/base" ready
wait_status "$M/ft" ready
expect_eq "parent" "$(xattr "$M/ft" parent)" /base
ls "$M" >/dev/null

note "fixing a failed unit makes it ready"
cp "$S/base/model.safetensors" "$M/bad/model.safetensors"
wait_status "$M/bad" ready
expect_eq "fixed error gone" "$(xattr "$M/bad" error)" ""

note "refusals"
expect_errno "Operation not permitted" setfattr -n user.provenance.parent -v /x "$M/ft"
# root is an admin: the approve control works (tests/integration/policy.sh has the rest) ...
setfattr -n user.provenance.approve -v ok "$M/ft" || fail "root cannot approve"
expect_eq "approval of ft" "$(xattr "$M/ft" approval)" approved
# ... also for a unit the analyzer could not parse: it keeps a content digest, so it can be released
setfattr -n user.provenance.approve -v released "$M/bad" || fail "cannot approve a failed unit"
expect_eq "approval of a failed unit" "$(xattr "$M/bad" approval)" approved
expect_errno "Operation not permitted" setfattr -x user.provenance.status "$M/ft"
expect_errno "Permission denied" sh -c "echo {} >$M/ft/.provenance"
expect_errno "Permission denied" rm "$M/ft/.provenance"
expect_errno "No such file" ls "$M/.provfs/"
expect_errno "unable to open" sqlite3 "$M/.provfs/lineage.db" 'select 1'
expect_eq "integrity" "$(DB 'PRAGMA integrity_check')" ok

cd /
stop_provfs
echo "PASS failures"
