#!/usr/bin/env bash
# Path case and wildcards: a root-owned, blocked unit /pub/team/llama; the user, in the shared
# 1777 directory /pub, creates, renames and removes directories whose names equal the victim's
# directory but for case (/pub/TEAM, /pub/Team) or hold SQL LIKE wildcards (/pub/te_m,
# /pub/te%). The store must keep the victim's unit at its path with its model, still blocked, and
# the user still cannot read its weights.
. "$(dirname "$0")/lib.sh"

write_policy enforce
start_provfs
mkdir -m 1777 "$M/pub"
chmod 1777 "$M/pub"
mkdir "$M/pub/team"
"$MKMODEL" create "$T/victim" --arch llama --seed 61 >/dev/null
cp -r "$T/victim" "$M/pub/team/llama"
V=$M/pub/team/llama
W=$V/model.safetensors
wait_status "$V" ready
expect_eq "victim approval" "$(xattr "$V" approval)" blocked
refused "$W"
VID=$(DB "SELECT model_id FROM model_paths WHERE path = '/pub/team/llama'")
[ -n "$VID" ] || fail "victim not in the store"
VDIGEST=$(DB "SELECT digest FROM models WHERE id = $VID")

# check_victim STEP: the victim is stored at its path with its model, blocked, unreadable.
check_victim() {
    expect_eq "$1: victim rows" \
        "$(DB "SELECT count(*) FROM model_paths WHERE path = '/pub/team/llama' AND model_id = $VID")" 1
    expect_eq "$1: rows of the victim's model" \
        "$(DB "SELECT group_concat(path, ' ') FROM model_paths WHERE model_id = $VID")" /pub/team/llama
    expect_eq "$1: victim digest" "$(DB "SELECT digest FROM models WHERE id = $VID")" "$VDIGEST"
    expect_eq "$1: victim status" "$(xattr "$V" status)" ready
    expect_eq "$1: victim approval" "$(xattr "$V" approval)" blocked
    refused "$W"
    expect_errno "PermissionError" as_user "$UPY" -c "open('$W', 'rb').read()"
    same_bytes "$W" "$T/victim/model.safetensors" || fail "$1: victim weights changed"
}

note "rename of a directory differing only in case"
as_user mkdir "$M/pub/TEAM"
as_user mkdir "$M/pub/TEAM/llama"
as_user mv "$M/pub/TEAM" "$M/pub/TEAM2"
check_victim "mv /pub/TEAM"
as_user mv "$M/pub/TEAM2" "$M/pub/Team"
check_victim "mv to /pub/Team"

note "removal of a directory differing only in case"
as_user rm -r "$M/pub/Team"
check_victim "rm -r /pub/Team"

note "LIKE wildcards in the attacker's names"
for name in te_m 'te%' '%' '_eam' 'te\'; do
    as_user mkdir "$M/pub/$name"
    as_user mv "$M/pub/$name" "$M/pub/moved"
    check_victim "mv /pub/$name"
    as_user rmdir "$M/pub/moved"
    check_victim "rmdir after /pub/$name"
done

note "the attacker's own unit under /pub/TEAM moves exactly"
as_user mkdir "$M/pub/TEAM"
blocked_unit "$M/pub/TEAM/llama" 62
AID=$(DB "SELECT model_id FROM model_paths WHERE path = '/pub/TEAM/llama'")
[ -n "$AID" ] && [ "$AID" != "$VID" ] || fail "attacker's unit: '$AID': $(DB "SELECT path, model_id FROM model_paths"; DB "SELECT id,status,digest FROM models"; DB "SELECT kind,path,detail,count FROM events")"
as_user mv "$M/pub/TEAM" "$M/pub/TEAM3"
expect_eq "attacker's unit moved" \
    "$(DB "SELECT group_concat(path, ' ') FROM model_paths WHERE model_id = $AID")" /pub/TEAM3/llama
expect_eq "attacker's unit still blocked" "$(xattr "$M/pub/TEAM3/llama" approval)" blocked
refused "$M/pub/TEAM3/llama/model.safetensors"
check_victim "mv /pub/TEAM with a unit"
as_user rm -r "$M/pub/TEAM3"
expect_eq "attacker's unit forgotten" "$(DB "SELECT count(*) FROM model_paths WHERE model_id = $AID")" 0
check_victim "rm -r /pub/TEAM3 with a unit"
expect_eq "paths in the store" "$(DB "SELECT group_concat(path, ' ') FROM model_paths")" /pub/team/llama

note "after a remount"
stop_provfs
start_provfs
wait_status "$V" ready
check_victim "remount"
echo "PASS [$TEST_NAME]"
