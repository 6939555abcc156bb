#!/usr/bin/env bash
# A torch checkpoint whose pickle imports a global outside the allow-list (posix.system) would run
# code in whoever loads it. Such a file is unsafe: its analysis fails naming the global, it carries
# user.provenance.unsafe, and under enforce it stays unreadable to everybody but root even after
# an admin approves it (an approval follows the content digest, so no copy of the same bytes
# lifts it either). Only "allow_unsafe_pickle": true in policy.json lifts the rule; audit mode
# logs a would-refuse.
. "$(dirname "$0")/lib.sh"
EXPECT_LOG_RE=': failed'
policy_mode() { python3 -c "import json; p=json.load(open('$M/.provenance'))['policy']; print(p['mode'], p['allow_unsafe_pickle'])"; }
# reload MODE ALLOW_UNSAFE: writes the policy, SIGHUP, waits until /.provenance shows it.
reload() {
    printf '{ "mode": "%s", "require_approval": "unknown-lineage", "allow_unsafe_pickle": %s }\n' \
        "$1" "$2" >"$B/.provfs/policy.json"
    kill -HUP "$PROVFS_PID"
    local want
    want="$1 $([ "$2" = true ] && echo True || echo False)"
    for _ in $(seq 100); do
        [ "$(policy_mode)" = "$want" ] && return 0
        sleep 0.05
    done
    fail "policy not reloaded: $(policy_mode)"
}

write_policy enforce
start_provfs
expect_eq "default allow_unsafe_pickle" "$(policy_mode)" "enforce False"
mkdir -m 1777 "$M/up"
S=$T/src
mkdir -p "$S"
chmod 755 "$T" "$S"
"$MKMODEL" create "$S/x" --arch llama --seed 61 >/dev/null
# A pickle holding one object that reduces to os.system (posix.system on Linux).
python3 - "$S/evil.pt" "$T/pwned" <<'EOF'
import pickle, sys, zipfile
out, marker = sys.argv[1], sys.argv[2]
class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch " + marker,))
with zipfile.ZipFile(out, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
    z.writestr("archive/version", "3\n")
EOF
chmod -R a+rX "$S"

note "a lone unsafe checkpoint: failed, naming the global, flagged unsafe"
as_user cp "$S/evil.pt" "$M/up/evil.pt"
wait_status "$M/up/evil.pt" failed
xattr "$M/up/evil.pt" error | has_match 'imports posix.system' || fail "error: $(xattr "$M/up/evil.pt" error)"
expect_eq "unsafe xattr" "$(xattr "$M/up/evil.pt" unsafe)" posix.system
getfattr -d -m - "$M/up/evil.pt" 2>/dev/null | has_match '^user.provenance.unsafe=' ||
    fail "user.provenance.unsafe not listed"
refused "$M/up/evil.pt"

note "a directory unit holding the unsafe pickle as its weights"
as_user mkdir "$M/up/d"
as_user cp "$S/x/config.json" "$M/up/d/config.json"
as_user cp "$S/evil.pt" "$M/up/d/pytorch_model.bin"
wait_status "$M/up/d" failed
expect_eq "unit unsafe xattr" "$(xattr "$M/up/d" unsafe)" posix.system
expect_eq ".provenance unsafe of the unit" \
    "$(python3 -c "import json; print(json.load(open('$M/up/d/.provenance'))['unsafe'])")" posix.system
refused "$M/up/d/pytorch_model.bin"
readable "$M/up/d/config.json"

note "a safe unit has no unsafe xattr"
blocked_unit "$M/up/safe" 62
expect_eq "no unsafe xattr" "$(xattr "$M/up/safe" unsafe)" ""
getfattr -d -m - "$M/up/safe" 2>/dev/null | has_match 'user.provenance.unsafe' &&
    fail "user.provenance.unsafe listed on a safe unit"

note "root approves: still refused to the user, readable by root"
setfattr -n user.provenance.approve -v "looked fine" "$M/up/evil.pt" || fail "approve the file"
setfattr -n user.provenance.approve -v "looked fine" "$M/up/d" || fail "approve the unit"
expect_eq "approval label" "$(xattr "$M/up/evil.pt" approval)" approved
refused "$M/up/evil.pt"
refused "$M/up/d/pytorch_model.bin"
cmp -s "$M/up/evil.pt" "$S/evil.pt" || fail "root cannot read the unsafe file"
# The same bytes elsewhere share the approval, not a way around the rule.
as_user cp "$S/evil.pt" "$M/up/copy.pt"
wait_status "$M/up/copy.pt" failed
refused "$M/up/copy.pt"
[ "$(DB "SELECT count(*) FROM events WHERE kind = 'policy' AND rule = 'unsafe_pickle' AND decision = 'refused' AND uid = $TUID")" -ge 1 ] ||
    fail "no refused unsafe_pickle event"

note "audit: readable, logged as would-refuse"
reload audit false
before=$(DB "SELECT coalesce(sum(count), 0) FROM events WHERE kind = 'policy' AND rule = 'unsafe_pickle' AND decision = 'would-refuse' AND path = '/up/copy.pt'")
readable "$M/up/copy.pt"
expect_eq "would-refuse rows" \
    "$(DB "SELECT coalesce(sum(count), 0) FROM events WHERE kind = 'policy' AND rule = 'unsafe_pickle' AND decision = 'would-refuse' AND path = '/up/copy.pt'")" \
    "$((before + 1))"

note "allow_unsafe_pickle: true lifts the rule; the approval decides again"
reload enforce true
readable "$M/up/evil.pt"
readable "$M/up/d/pytorch_model.bin"
# never approved itself: a failed unit, blocked as any other
refused "$M/up/copy.pt"
expect_eq "unsafe xattr stays" "$(xattr "$M/up/evil.pt" unsafe)" posix.system
setfattr -n user.provenance.revoke -v "no" "$M/up/evil.pt" || fail "revoke"
refused "$M/up/evil.pt"
[ ! -e "$T/pwned" ] || fail "the pickle ran"
stop_provfs
