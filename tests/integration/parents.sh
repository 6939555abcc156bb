#!/usr/bin/env bash
# Several parents, end to end, and the true parent whatever the order models arrive in:
#  - a layer stitch of two independent bases A and B: user.provenance.parents names both,
#    .provenance lineage.parents has two entries (shares >= 10 % each, summing to <= 1), the
#    edges rows agree; under enforce with A approved and B not, a real unprivileged user is
#    refused the stitch's weights (rule parents) until B is approved;
#  - a weight soup of two fine-tunes of one base: its parents are those two fine-tunes;
#  - a base, three fine-tunes of it, a fine-tune of one of them, and an int8 and a GGUF copy of
#    each, written in three seeded shuffled orders (a fresh store each): every unit's main
#    parent is the true one.
. "$(dirname "$0")/lib.sh"
need_mkmodel
[ -n "$PROVCTL" ] && [ -x "$PROVCTL" ] || { echo "SKIP: no provctl"; exit 77; }
for tool in setpriv useradd userdel setfattr python3 sqlite3; do
    command -v "$tool" >/dev/null || { echo "SKIP: no $tool"; exit 77; }
done

TU=provfs-it-$$
useradd -M -r -s /usr/sbin/nologin "$TU" >/dev/null || fail "useradd $TU"
trap 'rc_=$?; userdel -f "$TU" >/dev/null 2>&1; kill "$(cat "$T/watchdog.pid" 2>/dev/null)" "$WATCHDOG" 2>/dev/null || true; cleanup "$rc_"' EXIT
TUID=$(id -u "$TU")
TGID=$(id -g "$TU")
as_user() {
    setpriv --reuid="$TUID" --regid="$TGID" --clear-groups -- "$@"
}
UPY=/usr/bin/python3
[ -x "$UPY" ] || { echo "SKIP: no /usr/bin/python3"; exit 77; }
refused() { expect_errno "Permission denied" as_user cat "$1"; }
readable() { as_user cat "$1" >/dev/null 2>&1 || fail "$1: not readable by $TU"; }
# parents_of PATH: the parents xattr, one line per parent, as "a,b"
parents_of() { xattr "$1" parents | paste -sd, -; }

S=$T/src
mkdir -p "$S" "$B/.provfs"
chmod 755 "$S"
"$MKMODEL" create "$S/a" --arch llama --seed 41 >/dev/null
"$MKMODEL" create "$S/b" --arch llama --seed 42 >/dev/null
"$MKMODEL" derive "$S/a" "$S/stitch" --kind stitch --with "$S/b" >/dev/null
"$MKMODEL" create "$S/c" --arch llama --seed 43 >/dev/null
for k in 1 2 3; do
    "$MKMODEL" derive "$S/c" "$S/c-ft$k" --kind finetune --seed $((50 + k)) >/dev/null
done
"$MKMODEL" derive "$S/c-ft1" "$S/soup" --kind soup --with "$S/c-ft2" >/dev/null

printf '{ "mode": "enforce", "require_approval": "unknown-lineage",\n  "allow_families": [], "deny_families": [], "block_pending": false }\n' \
    >"$B/.provfs/policy.json"
start_provfs
mkdir "$M/bases" "$M/work"
cp -r "$S/a" "$M/bases/a"
cp -r "$S/b" "$M/bases/b"
wait_status "$M/bases/a" ready
wait_status "$M/bases/b" ready
"$PROVCTL" approve "$M/bases/a" --note "base A reviewed" >/dev/null || fail "approve A"
cp -r "$S/stitch" "$M/work/stitch"
wait_status "$M/work/stitch" ready

note "a stitch of A and B has both as parents"
expect_eq "stitch parents" "$(parents_of "$M/work/stitch")" "/bases/a,/bases/b"
expect_eq "stitch main parent" "$(xattr "$M/work/stitch" parent)" /bases/a
getfattr -d -m user.provenance "$M/work/stitch" 2>/dev/null | has_match '^user.provenance.parents=' ||
    fail "listxattr lacks user.provenance.parents"
expect_eq "a base has no parents" "$(xattr "$M/bases/a" parents)" ""
python3 - "$M/work/stitch/.provenance" <<'EOF' || fail ".provenance lineage.parents"
import json, sys
lin = json.load(open(sys.argv[1]))["lineage"]
ps = lin["parents"]
assert [p["path"] for p in ps] == ["/bases/a", "/bases/b"], ps
assert [p["main"] for p in ps] == [True, False], ps
assert all(p["share"] >= 0.10 for p in ps), ps
assert sum(p["share"] for p in ps) <= 1.0, ps
assert all(p["verdict"] == "derived" for p in ps), ps
# each parent contributes its own blocks (A the lower ones, B the upper ones)
assert ps[0]["layers"] and ps[1]["layers"], ps
assert not set(ps[0]["layers"]) & set(ps[1]["layers"]), ps
assert max(ps[0]["layers"]) < min(ps[1]["layers"]), ps
assert lin["parent"]["path"] == "/bases/a"
assert lin["unknown_origin"] is False, lin
EOF
expect_eq "parents in the db" "$(DB "SELECT p.path || ':' || e.is_parent FROM edges e
    JOIN model_paths c ON c.model_id = e.child_id JOIN model_paths p ON p.model_id = e.parent_id
    WHERE c.path = '/work/stitch' AND e.share IS NOT NULL ORDER BY p.path" | paste -sd' ' -)" \
    "/bases/a:1 /bases/b:0"
expect_eq "db shares" "$(DB "SELECT sum(e.share) <= 1.0 AND min(e.share) >= 0.10 FROM edges e
    JOIN model_paths c ON c.model_id = e.child_id WHERE c.path = '/work/stitch'
    AND e.share IS NOT NULL")" 1
"$PROVCTL" lineage "$M/work/stitch" | has_match '/bases/b' || fail "provctl lineage lacks /bases/b"

note "enforce: A approved, B not: the stitch is refused; approving B allows it"
refused "$M/work/stitch/model.safetensors"
readable "$M/bases/a/model.safetensors"
refused "$M/bases/b/model.safetensors"
expect_eq "stitch rule" "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['policy']['rule'])" \
    "$M/work/stitch/.provenance")" parents
python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['policy']['reason']; assert '/bases/b' in r, r" \
    "$M/work/stitch/.provenance" || fail "the reason names the blocked parent"
expect_eq "stitch label" "$(xattr "$M/work/stitch" approval)" blocked
"$PROVCTL" approve "$M/bases/b" --note "base B reviewed" >/dev/null || fail "approve B"
readable "$M/work/stitch/model.safetensors"
expect_eq "stitch label after B" "$(xattr "$M/work/stitch" approval)" not-required
"$PROVCTL" revoke "$M/bases/b" --note "withdrawn" >/dev/null || fail "revoke B"
refused "$M/work/stitch/model.safetensors"

note "a soup of two fine-tunes of one base has those two as parents"
mkdir "$M/ft"
cp -r "$S/c" "$M/ft/c"
wait_status "$M/ft/c" ready
for k in 1 2 3; do
    cp -r "$S/c-ft$k" "$M/ft/c-ft$k"
    wait_status "$M/ft/c-ft$k" ready
done
cp -r "$S/soup" "$M/ft/soup"
wait_status "$M/ft/soup" ready
expect_eq "soup parents" "$(xattr "$M/ft/soup" parents | sort | paste -sd, -)" "/ft/c-ft1,/ft/c-ft2"
python3 - "$M/ft/soup/.provenance" <<'EOF' || fail "soup .provenance"
import json, sys
ps = json.load(open(sys.argv[1]))["lineage"]["parents"]
assert sorted(p["path"] for p in ps) == ["/ft/c-ft1", "/ft/c-ft2"], ps
assert all(p["share"] >= 0.10 for p in ps) and sum(p["share"] for p in ps) <= 1.0, ps
EOF
for k in 1 2 3; do
    expect_eq "c-ft$k parent" "$(xattr "$M/ft/c-ft$k" parent)" /ft/c
    expect_eq "c-ft$k parents" "$(xattr "$M/ft/c-ft$k" parents)" /ft/c
done
stop_provfs

note "a family written in three shuffled orders: every main parent is the true one"
# name -> true parent ("" for the base); each model also has an int8 and a GGUF copy
declare -A TRUE=([base]="" [ft1]=base [ft2]=base [ft3]=base [ft1b]=ft1)
mkdir -p "$S/fam"
"$MKMODEL" create "$S/fam/base" --arch llama --seed 61 >/dev/null
for k in 1 2 3; do
    "$MKMODEL" derive "$S/fam/base" "$S/fam/ft$k" --kind finetune --seed $((70 + k)) >/dev/null
done
"$MKMODEL" derive "$S/fam/ft1" "$S/fam/ft1b" --kind finetune --seed 74 >/dev/null
UNITS=()
for m in base ft1 ft2 ft3 ft1b; do
    "$MKMODEL" derive "$S/fam/$m" "$S/fam/$m-int8" --kind quant-int8 >/dev/null
    "$MKMODEL" gguf "$S/fam/$m" "$S/fam/$m.gguf" --type q8_0 >/dev/null
    TRUE[$m-int8]=$m
    TRUE[$m.gguf]=$m
    UNITS+=("$m" "$m-int8" "$m.gguf")
done
total_wrong=0
for seed in 1 2 3; do
    rm -rf "$B" && mkdir -p "$B" && chmod 755 "$B"
    start_provfs
    mkdir "$M/fam"
    mapfile -t ORDER < <(python3 -c 'import random, sys
units = sys.argv[2:]
random.Random(int(sys.argv[1])).shuffle(units)
print("\n".join(units))' "$seed" "${UNITS[@]}")
    note "order $seed: ${ORDER[*]}"
    for u in "${ORDER[@]}"; do
        cp -r "$S/fam/$u" "$M/fam/$u"
        wait_status "$M/fam/$u" ready
    done
    right=0
    wrong=()
    for u in "${UNITS[@]}"; do
        want=${TRUE[$u]:+/fam/${TRUE[$u]}}
        got=$(xattr "$M/fam/$u" parent)
        if [ "$got" = "$want" ]; then
            right=$((right + 1))
        else
            wrong+=("$u: '$got', expected '$want'")
        fi
    done
    echo "order $seed: $right/${#UNITS[@]} main parents right"
    for w in "${wrong[@]}"; do echo "  $w"; done
    total_wrong=$((total_wrong + ${#wrong[@]}))
    stop_provfs
done
[ "$total_wrong" -eq 0 ] || fail "$total_wrong main parent(s) wrong over the three orders"

cd /
echo "PASS parents"
