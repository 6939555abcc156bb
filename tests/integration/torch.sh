#!/usr/bin/env bash
# PyTorch checkpoints (torch.save's zip format) are read without running their pickle: a
# directory with config.json and pytorch_model.bin (or sharded with its index) is a model unit, a
# lone .pt is a file unit, and both fingerprint like their safetensors originals (a copy is
# identical, a fine-tune links to the safetensors base). Hostile pickles, legacy checkpoints and
# truncated archives fail with a reason while the mount keeps serving. When PyTorch is importable,
# a checkpoint written by the real torch.save is checked too.
. "$(dirname "$0")/lib.sh"
need_mkmodel
[ -n "$PROVCTL" ] && [ -x "$PROVCTL" ] || { echo "SKIP: no provctl"; exit 77; }
EXPECT_LOG_RE='(evil|eval|legacy|trunc)\.pt: failed'
SAVE=$(dirname "$0")/torch_save.py

S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 41 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --drift 0.2 --seed 42 >/dev/null
"$MKMODEL" derive "$S/base" "$S/resharded" --kind reshard --shards 3 --seed 43 >/dev/null
"$MKMODEL" create "$S/other" --arch llama --seed 49 >/dev/null
"$MKMODEL" torch "$S/base" "$S/base-torch" >/dev/null
"$MKMODEL" torch "$S/ft" "$S/ft-torch" >/dev/null
"$MKMODEL" torch "$S/resharded" "$S/sharded-torch" >/dev/null
"$MKMODEL" torch "$S/other" "$S/other.pt" >/dev/null
python3 "$SAVE" "$S/ft" "$S/ft-pickle.pt"
python3 "$SAVE" "$S/base" "$S/base-shared.pt" --protocol 4 --one-storage
ls "$S"/sharded-torch/pytorch_model-0000{1,2,3}-of-00003.bin >/dev/null || fail "torch shards"

start_provfs
mkdir "$M/models"
cp -r "$S/base" "$M/models/base"
wait_status "$M/models/base" ready

note "a torch copy of the base is a directory unit, identical to the safetensors base"
cp -r "$S/base-torch" "$M/models/base-torch"
wait_status "$M/models/base-torch" ready
expect_eq "torch copy parent" "$(xattr "$M/models/base-torch" parent)" /models/base
expect_eq "torch copy verdict" "$(xattr "$M/models/base-torch" verdict)" identical
expect_eq "the .bin belongs to the directory's unit" \
    "$(xattr "$M/models/base-torch/pytorch_model.bin" id)" "$(xattr "$M/models/base-torch" id)"
expect_eq "the .bin is no unit of its own" "$(DB "SELECT count(*) FROM model_paths
    WHERE path = '/models/base-torch/pytorch_model.bin'")" 0
expect_eq "format in the db" "$(DB "SELECT m.format FROM models m JOIN model_paths p ON
    p.model_id = m.id WHERE p.path = '/models/base-torch'")" torch
"$PROVCTL" compare "$M/models/base" "$M/models/base-torch" >"$T/cmp.txt" || fail "provctl compare"
grep -q '^verdict: *identical' "$T/cmp.txt" || { cat "$T/cmp.txt"; fail "compare base/torch copy"; }

note "a fine-tune written as torch links to the safetensors base"
cp -r "$S/ft-torch" "$M/models/ft-torch"
wait_status "$M/models/ft-torch" ready
expect_eq "ft parent" "$(xattr "$M/models/ft-torch" parent)" /models/base
expect_eq "ft verdict" "$(xattr "$M/models/ft-torch" verdict)" derived
"$PROVCTL" compare "$M/models/base" "$M/models/ft-torch" >"$T/cmp.txt" || fail "provctl compare"
grep -q '^verdict: *derived' "$T/cmp.txt" || { cat "$T/cmp.txt"; fail "compare base/ft-torch"; }
"$PROVCTL" lineage "$M/models/ft-torch" --json | python3 -c '
import json, sys
l = json.load(sys.stdin)
assert l["status"] == "ready", l
assert l["parent"]["path"] == "/models/base" and l["parent"]["verdict"] == "derived", l
' || fail "provctl lineage of the torch fine-tune"
"$PROVCTL" lineage "$M/models/base" --json | python3 -c '
import json, sys
kids = {c["path"] for c in json.load(sys.stdin)["children"]}
assert {"/models/base-torch", "/models/ft-torch"} <= kids, kids
' || fail "the base lists its torch children"

note "torch shards arriving one by one: incomplete until the last"
mkdir "$M/models/sharded"
cp "$S"/sharded-torch/{config.json,tokenizer.json,tokenizer_config.json} \
    "$S/sharded-torch/pytorch_model.bin.index.json" "$M/models/sharded/"
shards=("$S"/sharded-torch/pytorch_model-*.bin)
for ((i = 0; i < ${#shards[@]} - 1; i++)); do
    cp "${shards[$i]}" "$M/models/sharded/"
    wait_status "$M/models/sharded" incomplete
done
cp "${shards[-1]}" "$M/models/sharded/"
wait_status "$M/models/sharded" ready
expect_eq "sharded parent" "$(xattr "$M/models/sharded" parent)" /models/base
expect_eq "sharded verdict" "$(xattr "$M/models/sharded" verdict)" identical

note "lone checkpoints are file units: mkmodel's, Python pickle's, an unrelated one"
# (without a config.json, a lone weights file's candidates are the stored models of its
# embedding's shape; the weights decide)
mkdir "$M/loose"
cp "$S/ft-pickle.pt" "$S/base-shared.pt" "$S/other.pt" "$M/loose/"
for f in ft-pickle base-shared other; do
    wait_status "$M/loose/$f.pt" ready
    expect_eq "$f sha256" "$(xattr "$M/loose/$f.pt" sha256)" \
        "$(sha256sum "$S/$f.pt" | cut -d' ' -f1)"
    expect_eq "$f format" "$(DB "SELECT m.format FROM models m JOIN model_paths p ON
        p.model_id = m.id WHERE p.path = '/loose/$f.pt'")" torch
done
expect_eq "lone fine-tune verdict" "$(xattr "$M/loose/ft-pickle.pt" verdict)" identical
case $(xattr "$M/loose/ft-pickle.pt" parent) in
/models/ft | /models/ft-torch) ;;
*) fail "lone fine-tune parent: '$(xattr "$M/loose/ft-pickle.pt" parent)'" ;;
esac
expect_eq "lone base verdict" "$(xattr "$M/loose/base-shared.pt" verdict)" identical
expect_eq "lone unrelated parent" "$(xattr "$M/loose/other.pt" parent)" ""
expect_eq "tensors of the lone fine-tune" "$(DB "SELECT m.n_tensors FROM models m JOIN
    model_paths p ON p.model_id = m.id WHERE p.path = '/loose/ft-pickle.pt'")" \
    "$(DB "SELECT m.n_tensors FROM models m JOIN model_paths p ON p.model_id = m.id
    WHERE p.path = '/models/ft-torch'")"
compare_verdict() { # A B: the verdict provctl compare gives
    "$PROVCTL" compare "$1" "$2" | sed -n 's/^verdict: *//p'
}
expect_eq "pickle ft vs torch ft" \
    "$(compare_verdict "$M/models/ft-torch" "$M/loose/ft-pickle.pt")" identical
expect_eq "pickle ft vs base" "$(compare_verdict "$M/models/base" "$M/loose/ft-pickle.pt")" derived
expect_eq "shared storages vs base" \
    "$(compare_verdict "$M/models/base" "$M/loose/base-shared.pt")" identical
expect_eq "unrelated vs base" "$(compare_verdict "$M/models/base" "$M/loose/other.pt")" none

note "hostile and unreadable checkpoints fail with a reason, and nothing runs"
mkdir "$M/bad"
python3 - "$M/bad" "$T/pwned" <<'EOF'
import pickle, sys, zipfile
d, marker = sys.argv[1], sys.argv[2]
class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch " + marker,))
class Eval:  # protocol 2 names builtins __builtin__, as Python 2 did
    def __reduce__(self):
        return (eval, ("__import__('os').system('touch %s')" % marker,))
for name, obj in (("evil", Evil()), ("eval", Eval())):
    with zipfile.ZipFile("%s/%s.pt" % (d, name), "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": obj}, protocol=2))
        z.writestr("archive/version", "3\n")
# torch.save before 1.6: the magic number pickled first
open(d + "/legacy.pt", "wb").write(
    pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2) + pickle.dumps(1001, protocol=2))
EOF
head -c 40000 "$S/other.pt" >"$M/bad/trunc.pt"
declare -A why=([evil]='imports posix.system' [eval]='imports __builtin__.eval'
    [legacy]='legacy torch.save' [trunc]='truncated archive')
for f in evil eval legacy trunc; do
    wait_status "$M/bad/$f.pt" failed
    err=$(xattr "$M/bad/$f.pt" error)
    [ "$(echo "$err" | wc -l)" -eq 1 ] || fail "$f: error is not one line"
    echo "$err" | has_match "${why[$f]}" || fail "$f: error '$err' lacks '${why[$f]}'"
    echo "$err" | has_match "$B" && fail "$f: error leaks the backing path: $err"
done
[ ! -e "$T/pwned" ] || fail "a pickle ran"
ls "$M/models" >/dev/null
cmp "$M/models/base-torch/pytorch_model.bin" "$S/base-torch/pytorch_model.bin" || fail "read back"

# Debian's python3-torch (for /usr/bin/python3; tools/test.sh installs it): the real torch.save,
# of one file and of shards with their index
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    note "a checkpoint written by the real torch.save"
    /usr/bin/python3 "$SAVE" "$S/ft" "$S/real.pt" --torch
    mkdir "$M/models/ft-real"
    cp "$S"/ft/{config.json,tokenizer.json,tokenizer_config.json} "$M/models/ft-real/"
    cp "$S/real.pt" "$M/models/ft-real/pytorch_model.bin"
    wait_status "$M/models/ft-real" ready
    expect_eq "real torch parent" "$(xattr "$M/models/ft-real" parent)" /models/ft-torch
    expect_eq "real torch verdict" "$(xattr "$M/models/ft-real" verdict)" identical
    note "shards with their index, each written by the real torch.save"
    /usr/bin/python3 "$SAVE" "$S/base" "$S/real-sharded" --torch --shards 3
    ls "$S"/real-sharded/pytorch_model-0000{1,2,3}-of-00003.bin >/dev/null || fail "real shards"
    cp "$S"/base/{config.json,tokenizer.json,tokenizer_config.json} "$S/real-sharded/"
    cp -r "$S/real-sharded" "$M/models/base-real-sharded"
    wait_status "$M/models/base-real-sharded" ready
    expect_eq "real shards verdict" "$(xattr "$M/models/base-real-sharded" verdict)" identical
    expect_eq "real shards tensors" "$(DB "SELECT n_tensors FROM models m JOIN model_paths p ON
        p.model_id = m.id WHERE p.path = '/models/base-real-sharded'")" "$(DB "SELECT n_tensors
        FROM models m JOIN model_paths p ON p.model_id = m.id WHERE p.path = '/models/base'")"
else
    note "PyTorch is not importable: the real torch.save check is skipped"
fi

stop_provfs
