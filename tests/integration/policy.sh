#!/usr/bin/env bash
# Policy, approvals and the audit log on a real mount, with a real unprivileged user:
# enforce + unknown-lineage refuses a fresh unrelated model's weights (EACCES) to the user but not
# to root; approve / one-byte change / rename / copy / remount; a fine-tune of an approved base is
# allowed; an ancestor under deny_families blocks whatever the config claims; only admins approve;
# audit refuses nothing but logs; provctl log / check; an invalid policy refuses the mount; SIGHUP
# keeps the old policy when the new one is invalid and applies a valid one without a remount; a
# reference-set parent counts as known lineage and its family is matched by deny_families.
. "$(dirname "$0")/lib.sh"
need_mkmodel
[ -n "$PROVCTL" ] && [ -x "$PROVCTL" ] || { echo "SKIP: no provctl"; exit 77; }
for tool in setpriv useradd userdel setfattr python3 sqlite3; do
    command -v "$tool" >/dev/null || { echo "SKIP: no $tool"; exit 77; }
done

# A real unprivileged user, removed again in the trap.
TU=provfs-it-$$
useradd -M -r -s /usr/sbin/nologin "$TU" >/dev/null || fail "useradd $TU"
trap 'rc_=$?; userdel -f "$TU" >/dev/null 2>&1; kill "$(cat "$T/watchdog.pid" 2>/dev/null)" "$WATCHDOG" 2>/dev/null || true; cleanup "$rc_"' EXIT
TUID=$(id -u "$TU")
TGID=$(id -g "$TU")
as_user() {
    setpriv --reuid="$TUID" --regid="$TGID" --clear-groups -- "$@"
}
EXPECT_LOG_RE='keeping the previous policy|policy reloaded'
# The user's python: a root-only interpreter (e.g. pyenv under /root) would fail for other reasons.
UPY=/usr/bin/python3
[ -x "$UPY" ] || { echo "SKIP: no /usr/bin/python3"; exit 77; }

write_policy() { # write_policy MODE [DENY_GLOB]
    local deny=${2:+\"$2\"}
    printf '{ "mode": "%s", "require_approval": "unknown-lineage",\n  "allow_families": [], "deny_families": [%s], "block_pending": false }\n' \
        "$1" "$deny" >"$B/.provfs/policy.json"
}
readable() { as_user cat "$1" >/dev/null 2>&1 || fail "$1: not readable by $TU"; }
refused() {
    expect_errno "Permission denied" as_user cat "$1"
    expect_errno "PermissionError: \[Errno 13\] Permission denied" as_user "$UPY" -c "open('$1', 'rb').read()"
}
check_rc() { local rc=0; "$PROVCTL" check "$1" >/dev/null 2>&1 || rc=$?; echo "$rc"; }
prov() { # prov DIR PYTHON-EXPR (p = the parsed .provenance)
    as_user "$UPY" -c "import json,sys; p=json.load(open(sys.argv[1]+'/.provenance')); print($2)" "$1"
}
# wait_digest DIR OLD: until the unit is ready with a digest other than OLD
wait_digest() {
    for _ in $(seq 600); do
        if [ "$(xattr "$1" status)" = ready ] && [ -n "$(xattr "$1" sha256)" ] &&
            [ "$(xattr "$1" sha256)" != "$2" ]; then
            return 0
        fi
        sleep 0.1
    done
    fail "$1: no new digest"
}
policy_events() { DB "SELECT coalesce(sum(count), 0) FROM events WHERE kind = 'policy' AND $1"; }

S=$T/src
mkdir -p "$S" "$B/.provfs"
chmod 755 "$S"
"$MKMODEL" create "$S/fresh" --arch llama --seed 11 >/dev/null
"$MKMODEL" create "$S/base" --arch llama --seed 12 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 13 >/dev/null
"$MKMODEL" create "$S/dbase" --arch llama --seed 14 >/dev/null
"$MKMODEL" derive "$S/dbase" "$S/dft" --kind finetune --seed 15 >/dev/null
# The fine-tune of the denied base claims another family in its own config.
sed -i 's/"model_type": "llama"/"model_type": "mistral"/' "$S/dft/config.json"
grep -q '"model_type": "mistral"' "$S/dft/config.json" || fail "could not edit dft's config"

note "an invalid policy refuses the mount, naming the key"
echo '{ "mode": "enforce", "colour": "red" }' >"$B/.provfs/policy.json"
rc=0
out=$("$PROVFS" -f "$B" "$M" 2>&1) || rc=$?
expect_eq "exit code of a mount with an invalid policy" "$rc" 2
echo "$out" | has_match 'policy.json: unknown key "colour"' || fail "message: $out"
[ "$(echo "$out" | wc -l)" -eq 1 ] || fail "not one line: $out"
mountpoint -q "$M" && fail "mounted anyway"

note "enforce + unknown-lineage: a fresh unrelated model"
write_policy enforce "/vendor/denied*"
start_provfs
mkdir -p "$M/m" "$M/bases" "$M/work" "$M/vendor"
cp -r "$S/fresh" "$M/m/fresh"
wait_status "$M/m/fresh" ready
W=$M/m/fresh/model.safetensors
refused "$W"
cat "$W" >/dev/null || fail "root cannot read $W"
readable "$M/m/fresh/config.json"
as_user ls "$M/m/fresh" >/dev/null || fail "directory not listable"
expect_eq "decision" "$(prov "$M/m/fresh" "p['policy']['decision']")" block
expect_eq "rule" "$(prov "$M/m/fresh" "p['policy']['rule']")" require_approval
[ -n "$(prov "$M/m/fresh" "p['policy']['reason']")" ] || fail "no reason"
expect_eq "approval label" "$(xattr "$M/m/fresh" approval)" blocked
expect_eq "approval state in .provenance" "$(prov "$M/m/fresh" "p['approval']['state']")" blocked
expect_eq "check of a blocked model" "$(check_rc "$M/m/fresh")" 3
[ "$(policy_events "decision = 'refused' AND uid = $TUID AND path = '/m/fresh/model.safetensors'
    AND rule = 'require_approval' AND pid > 0 AND model_id IS NOT NULL")" -ge 2 ] ||
    fail "no refusal rows"
expect_eq "root's reads are not logged" "$(policy_events "uid = 0")" 0
blocked=$(as_user "$UPY" -c "import json; print(json.load(open('$M/.provenance'))['blocked'])")
[ "$blocked" -ge 1 ] || fail "/.provenance blocked: $blocked"
expect_eq "active policy" "$(as_user "$UPY" -c "import json; print(json.load(open('$M/.provenance'))['policy']['mode'])")" enforce

note "only admins approve; every other provenance name stays read-only"
# The user owns the unit (as an uploader would): the kernel's own check of user.* xattrs (write
# permission) passes, and provfs answers.
chown -R "$TU" "$M/m/fresh"
expect_errno "Operation not permitted" as_user setfattr -n user.provenance.approve -v hi "$M/m/fresh"
expect_errno "Operation not permitted" as_user setfattr -n user.provenance.revoke -v hi "$M/m/fresh"
expect_errno "permission denied: only admins approve" as_user "$PROVCTL" approve "$M/m/fresh"
expect_errno "Operation not permitted" as_user setfattr -n user.provenance.status -v x "$M/m/fresh"
expect_errno "Operation not permitted" setfattr -n user.provenance.status -v ready "$M/m/fresh"
expect_errno "Operation not permitted" setfattr -x user.provenance.approval "$M/m/fresh"
refused "$W"
# ... nor move or hard-link the weights out of the blocked unit to read them as a loose file
mkdir -m 1777 "$M/drop"
expect_errno "Permission denied" as_user mv "$W" "$M/drop/w"
expect_errno "Permission denied" as_user ln "$W" "$M/drop/w"
[ -f "$W" ] && [ ! -e "$M/drop/w" ] || fail "the weights moved"

note "approve: readable; the record shows who, when and why"
"$PROVCTL" approve "$M/m/fresh" --note "reviewed by it" >/dev/null || fail "provctl approve"
readable "$W"
as_user "$UPY" -c "open('$W', 'rb').read()" || fail "python open after approve"
expect_eq "approval label" "$(xattr "$M/m/fresh" approval)" approved
expect_eq "approval by" "$(prov "$M/m/fresh" "p['approval']['by']")" 0
expect_eq "approval note" "$(prov "$M/m/fresh" "p['approval']['note']")" "reviewed by it"
[ -n "$(prov "$M/m/fresh" "p['approval']['at']")" ] || fail "no approval time"
expect_eq "decision" "$(prov "$M/m/fresh" "p['policy']['decision']")" allow
expect_eq "check of an approved model" "$(check_rc "$M/m/fresh")" 0
expect_eq "approve event" "$(DB "SELECT count(*) FROM events WHERE kind = 'approve'")" 1

note "a one-byte change loses the approval"
old=$(xattr "$M/m/fresh" sha256)
python3 - "$W" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(-1, 2)
    b = f.read(1)
    f.seek(-1, 2)
    f.write(bytes([b[0] ^ 1]))
EOF
wait_digest "$M/m/fresh" "$old"
refused "$W"
expect_eq "approval label after a change" "$(xattr "$M/m/fresh" approval)" blocked
expect_eq "check after a change" "$(check_rc "$M/m/fresh")" 3

note "approved again; a rename and a copy keep it (bound to content)"
setfattr -n user.provenance.approve -v "again" "$M/m/fresh" || fail "setfattr approve"
readable "$W"
mv "$M/m/fresh" "$M/m/renamed"
readable "$M/m/renamed/model.safetensors"
expect_eq "approval after rename" "$(xattr "$M/m/renamed" approval)" approved
cp -r "$M/m/renamed" "$M/m/copy"
wait_status "$M/m/copy" ready
readable "$M/m/copy/model.safetensors"
expect_eq "approval of a copy" "$(xattr "$M/m/copy" approval)" approved

note "a fine-tune of an approved base needs no approval of its own"
cp -r "$S/base" "$M/bases/base"
wait_status "$M/bases/base" ready
"$PROVCTL" approve "$M/bases/base" --note "base" >/dev/null || fail "approve base"
cp -r "$S/ft" "$M/work/ft"
wait_status "$M/work/ft" ready
expect_eq "ft parent" "$(xattr "$M/work/ft" parent)" /bases/base
readable "$M/work/ft/model.safetensors"
expect_eq "ft approval" "$(xattr "$M/work/ft" approval)" not-required
expect_eq "check of the fine-tune" "$(check_rc "$M/work/ft")" 0
"$PROVCTL" revoke "$M/bases/base" --note "withdrawn" >/dev/null || fail "revoke base"
refused "$M/work/ft/model.safetensors"
expect_eq "revoked record" "$(prov "$M/bases/base" "p['approval']['record']['state']")" revoked
"$PROVCTL" approve "$M/bases/base" >/dev/null || fail "approve base again"
readable "$M/work/ft/model.safetensors"

note "an ancestor under deny_families blocks, whatever the config claims"
cp -r "$S/dbase" "$M/vendor/denied-base"
wait_status "$M/vendor/denied-base" ready
cp -r "$S/dft" "$M/work/dft"
wait_status "$M/work/dft" ready
expect_eq "dft parent" "$(xattr "$M/work/dft" parent)" /vendor/denied-base
refused "$M/work/dft/model.safetensors"
expect_eq "dft rule" "$(prov "$M/work/dft" "p['policy']['rule']")" deny_families
prov "$M/work/dft" "p['policy']['reason']" | has_match mistral || fail "reason does not quote the claim"
"$PROVCTL" approve "$M/vendor/denied-base" >/dev/null || fail "approve denied base"
readable "$M/vendor/denied-base/model.safetensors" # an approval is the narrow exception
refused "$M/work/dft/model.safetensors"            # an approved ancestor does not override deny

note "SIGHUP: an invalid file keeps the old policy"
echo '{ "mode": "sometimes" }' >"$B/.provfs/policy.json"
kill -HUP "$PROVFS_PID"
for _ in $(seq 100); do grep -q 'keeping the previous policy' "$LOG" && break; sleep 0.05; done
grep -q '"mode" must be off, audit or enforce; keeping the previous policy' "$LOG" ||
    fail "no reload message"
mountpoint -q "$M" || fail "SIGHUP ended the session"
refused "$M/work/dft/model.safetensors"
expect_eq "policy after a bad reload" "$(python3 -c "import json; print(json.load(open('$M/.provenance'))['policy']['mode'])")" enforce
[ "$(DB "SELECT count(*) FROM events WHERE kind = 'policy-reload' AND detail LIKE 'kept%'")" -eq 1 ] ||
    fail "no policy-reload event"

note "SIGHUP: a valid file takes effect without a remount (audit: nothing refused, all logged)"
write_policy audit "/vendor/denied*"
kill -HUP "$PROVFS_PID"
for _ in $(seq 100); do
    [ "$(python3 -c "import json; print(json.load(open('$M/.provenance'))['policy']['mode'])")" = audit ] && break
    sleep 0.05
done
expect_eq "policy after a good reload" "$(python3 -c "import json; print(json.load(open('$M/.provenance'))['policy']['mode'])")" audit
before=$(policy_events "decision = 'would-refuse'")
readable "$M/work/dft/model.safetensors"
as_user "$UPY" -c "open('$M/work/dft/model.safetensors', 'rb').read()" || fail "audit refused"
expect_eq "would-refuse rows" "$(policy_events "decision = 'would-refuse' AND path = '/work/dft/model.safetensors' AND uid = $TUID")" \
    "$((before + 2))"
expect_eq "approval label under audit" "$(xattr "$M/work/dft" approval)" unapproved
expect_eq "check under audit" "$(check_rc "$M/work/dft")" 3
expect_eq "check of the approved" "$(check_rc "$M/m/renamed")" 0
"$PROVCTL" log --db "$LINEAGE_DB" >"$T/log.txt" || fail "provctl log"
grep -q "would-refuse deny_families  uid=$TUID" "$T/log.txt" || fail "log: no would-refuse row"
grep -q "refused require_approval  uid=$TUID" "$T/log.txt" || fail "log: no refused row"
head -n 1 "$T/log.txt" | has_match would-refuse || fail "log is not newest first"
"$PROVCTL" log --db "$LINEAGE_DB" --json --kind policy |
    python3 -c "import json,sys; e=json.load(sys.stdin)['events']; assert e and all(x['kind']=='policy' and x['rule'] and x['decision'] for x in e)" ||
    fail "log --json"

note "remount: approvals and decisions are as before"
write_policy enforce "/vendor/denied*"
stop_provfs
start_provfs
for u in m/renamed m/copy work/ft work/dft; do wait_status "$M/$u" ready; done
readable "$M/m/renamed/model.safetensors"
readable "$M/m/copy/model.safetensors"
readable "$M/work/ft/model.safetensors"
refused "$M/work/dft/model.safetensors"
expect_eq "approval after remount" "$(xattr "$M/m/renamed" approval)" approved
expect_eq "approval note after remount" "$(prov "$M/m/renamed" "p['approval']['note']")" again
expect_eq "integrity" "$(DB 'PRAGMA integrity_check')" ok
expect_eq "approvals table" "$(DB "SELECT count(*) FROM approvals WHERE state = 'approved'")" 4

note "a reference-set parent is trusted lineage; deny_families matches its family"
stop_provfs
"$MKMODEL" create "$S/rbase" --arch llama --seed 16 >/dev/null
"$MKMODEL" derive "$S/rbase" "$S/rft" --kind finetune --seed 17 >/dev/null
"$PROVCTL" refdb add "$S/rbase" --name rbase-ref --family acme --out "$T/refdb" >/dev/null
start_provfs --refdb "$T/refdb"
cp -r "$S/rft" "$M/work/rft"
wait_status "$M/work/rft" ready
expect_eq "rft parent" "$(xattr "$M/work/rft" parent)" ref:rbase-ref
readable "$M/work/rft/model.safetensors"
expect_eq "rft approval" "$(xattr "$M/work/rft" approval)" not-required
write_policy enforce "acme*"
kill -HUP "$PROVFS_PID"
for _ in $(seq 100); do
    python3 -c "import json,sys; sys.exit(0 if json.load(open('$M/.provenance'))['policy']['deny_families'] == ['acme*'] else 1)" && break
    sleep 0.05
done
refused "$M/work/rft/model.safetensors"
expect_eq "rft rule" "$(prov "$M/work/rft" "p['policy']['rule']")" deny_families

cd /
stop_provfs
echo "PASS policy"
