#!/usr/bin/env bash
# Non-ASCII directory names: the user uploads a model (blocked: unknown lineage) below a directory
# with a multi-byte name in the shared 1777 directory /pub and renames that directory, to other
# non-ASCII names and to ASCII. Every stored path must follow byte for byte (a character-counted
# substring used to cut the new path in the wrong place, leaving the unit unknown at its real
# path, so its weights became readable). A root-owned unit whose name shares the prefix stays.
. "$(dirname "$0")/lib.sh"
export LC_ALL=C.UTF-8

write_policy enforce
start_provfs
mkdir "$M/pub"
chmod 1777 "$M/pub"

# stored DIR: the store's rows for DIR (mount-relative) and below, one per line.
stored() {
    DB "SELECT path FROM model_paths WHERE path = '$1' OR substr(path, 1, length('$1/')) = '$1/'
        ORDER BY path"
}
# check_unit DIR MODEL_ID: DIR is stored with that model, blocked, its weights refused.
check_unit() {
    expect_eq "$1: stored" "$(DB "SELECT count(*) FROM model_paths WHERE path = '$1' AND model_id = $2")" 1
    expect_eq "$1: approval" "$(xattr "$M$1" approval)" blocked
    refused "$M$1/model.safetensors"
    expect_errno "PermissionError" as_user "$UPY" -c "open('$M$1/model.safetensors', 'rb').read()"
}

note "a blocked unit below /pub/модели-ü"
D1='/pub/модели-ü'
as_user mkdir "$M$D1"
blocked_unit "$M$D1/m" 71
blocked_unit "$M$D1/sub/deep-ä" 72
ID1=$(DB "SELECT model_id FROM model_paths WHERE path = '$D1/m'")
ID2=$(DB "SELECT model_id FROM model_paths WHERE path = '$D1/sub/deep-ä'")
[ -n "$ID1" ] && [ -n "$ID2" ] || fail "units not stored"
check_unit "$D1/m" "$ID1"
# A root-owned neighbour whose name starts with the same bytes.
mkdir "$M/pub/модели-üü"
"$MKMODEL" create "$T/root-unit" --arch llama --seed 73 >/dev/null
cp -r "$T/root-unit" "$M/pub/модели-üü/r"
wait_status "$M/pub/модели-üü/r" ready
ID3=$(DB "SELECT model_id FROM model_paths WHERE path = '/pub/модели-üü/r'")
[ -n "$ID3" ] || fail "root unit not stored"

# Each step: rename as the user, then the rows must be exactly the new paths.
step() { # step FROM TO
    as_user mv "$M$1" "$M$2"
    expect_eq "rows left at $1" "$(stored "$1")" ""
    expect_eq "rows at $2" "$(stored "$2")" "$(printf '%s\n%s' "$2/m" "$2/sub/deep-ä")"
    check_unit "$2/m" "$ID1"
    check_unit "$2/sub/deep-ä" "$ID2"
    expect_eq "root unit after $1 -> $2" \
        "$(DB "SELECT group_concat(path, ' ') FROM model_paths WHERE model_id = $ID3")" /pub/модели-üü/r
    expect_eq "$2: analysed again" "$(DB "SELECT count(*) FROM models WHERE status != 'ready'")" 0
}
note "non-ASCII to non-ASCII (different byte lengths)"
step "$D1" '/pub/模型-🦙'
note "to a 1-byte-per-character name"
step '/pub/模型-🦙' '/pub/plain'
note "back to a name longer in bytes than in characters"
step '/pub/plain' '/pub/ééééééééé'
note "a name that differs from the root unit's only by its last byte"
step '/pub/ééééééééé' '/pub/модели-üý'

expect_eq "paths in the store" "$(DB "SELECT count(*) FROM model_paths")" 3
expect_eq "models in the store" "$(DB "SELECT count(*) FROM models")" 3

note "after a remount"
stop_provfs
start_provfs
wait_status "$M/pub/модели-üý/m" ready
check_unit '/pub/модели-üý/m' "$ID1"
check_unit '/pub/модели-üý/sub/deep-ä' "$ID2"
expect_eq "paths after the remount" "$(DB "SELECT count(*) FROM model_paths")" 3
echo "PASS [$TEST_NAME]"
