#!/usr/bin/env bash
# A BACKING that other users can reach directly lets them read blocked weights there and rewrite
# approved ones behind the daemon's back. Under enforce the mount is refused (exit 2, one line
# saying how to fix it) unless -o allow_shared_backing; the user indeed reads BACKING then.
. "$(dirname "$0")/lib.sh"
write_policy enforce
chmod 755 "$T/private"
note "traversable BACKING under enforce: refused"
rc=0
out=$("$PROVFS" -f "$B" "$M" 2>&1) || rc=$?
expect_eq "exit code" "$rc" 2
[ "$(echo "$out" | wc -l)" -eq 1 ] || fail "not one line: $out"
echo "$out" | has_match "chmod 700" || fail "no fix in: $out"
mountpoint -q "$M" && fail "mounted anyway"
note "audit mode mounts"
write_policy audit
start_provfs
stop_provfs
note "-o allow_shared_backing mounts (the user then reads BACKING directly)"
write_policy enforce
start_provfs -o allow_shared_backing,noatime
echo x >"$B/probe"
readable "$B/probe"
stop_provfs
note "BACKING inside a root-only directory mounts; the user reaches the mount, not BACKING"
chmod 700 "$T/private"
start_provfs
blocked_unit "$M/u" 91
unreadable "$B/u/model.safetensors"
refused "$M/u/model.safetensors"
stop_provfs
