#!/usr/bin/env bash
# Weights outside a directory unit were never gated: a unit dissolved by renaming its config.json
# away, a lone .safetensors, a pickle checkpoint (.bin) with nothing around it, weights in a
# subdirectory of a unit. Every file in a model format is a unit of its own when no directory unit
# holds it: analysed, stored, and blocked under enforce until approved.
. "$(dirname "$0")/lib.sh"
EXPECT_LOG_RE=': failed'
write_policy enforce
start_provfs
mkdir -m 1777 "$M/up"
S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/x" --arch llama --seed 95 >/dev/null
chmod -R a+rX "$S"; chmod 755 "$T"

note "a unit dissolved by renaming config.json away"
blocked_unit "$M/up/a" 96
as_user mv "$M/up/a/config.json" "$M/up/a/cfg.txt"
refused "$M/up/a/model.safetensors"
wait_status "$M/up/a/model.safetensors" ready
expect_eq "approval of the loose weights" "$(xattr "$M/up/a/model.safetensors" approval)" blocked
refused "$M/up/a/model.safetensors"
readable "$M/up/a/cfg.txt"

note "a lone .safetensors, and the same bytes under a name without a suffix"
as_user mkdir "$M/up/lone"
as_user cp "$S/x/model.safetensors" "$M/up/lone/w.safetensors"
as_user cp "$S/x/model.safetensors" "$M/up/lone/w.dat"
wait_status "$M/up/lone/w.safetensors" ready
wait_status "$M/up/lone/w.dat" ready
refused "$M/up/lone/w.safetensors"
refused "$M/up/lone/w.dat"

note "a pickle checkpoint with nothing around it"
"$UPY" -c "import pickle; open('$T/ckpt.bin','wb').write(pickle.dumps({'w': [1.0] * 64}, protocol=4))"
chmod 644 "$T/ckpt.bin"
as_user cp "$T/ckpt.bin" "$M/up/lone/ckpt.bin"
wait_status "$M/up/lone/ckpt.bin" failed
refused "$M/up/lone/ckpt.bin"

note "weights in a subdirectory of a unit"
blocked_unit "$M/up/b" 97
as_user mkdir "$M/up/b/extra"
as_user cp "$S/x/model.safetensors" "$M/up/b/extra/more.safetensors"
wait_status "$M/up/b/extra/more.safetensors" ready
refused "$M/up/b/extra/more.safetensors"

note "weights first, then config.json: the directory unit takes the weights over"
# The loose file's record goes when its directory becomes a unit: the unit never takes that stale
# record of its own weights for a parent (unknown lineage dressed up as known).
"$MKMODEL" create "$T/src-98" --arch llama --seed 98 >/dev/null
chmod -R a+rX "$T/src-98"
as_user mkdir "$M/up/late"
as_user cp "$T/src-98/model.safetensors" "$M/up/late/model.safetensors"
wait_status "$M/up/late/model.safetensors" ready
refused "$M/up/late/model.safetensors"
for f in "$T/src-98"/*; do
    [ "$(basename "$f")" = model.safetensors ] || as_user cp "$f" "$M/up/late/"
done
wait_status "$M/up/late" ready
expect_eq "parent of the late unit" "$(xattr "$M/up/late" parent)" ""
expect_eq "approval of the late unit" "$(xattr "$M/up/late" approval)" blocked
refused "$M/up/late/model.safetensors"
expect_eq "records of the loose file" \
    "$(DB "SELECT count(*) FROM model_paths WHERE path = '/up/late/model.safetensors'")" 0

note "an admin approves a loose file; plain files stay open"
setfattr -n user.provenance.approve -v ok "$M/up/lone/w.safetensors" || fail "approve"
readable "$M/up/lone/w.safetensors"
as_user sh -c "echo hello >$M/up/lone/notes.txt"
readable "$M/up/lone/notes.txt"
expect_eq "status of a plain file" "$(xattr "$M/up/lone/notes.txt" status)" ""
stop_provfs
