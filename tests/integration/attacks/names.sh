#!/usr/bin/env bash
# Hostile names: a unit whose name is not UTF-8 made .provenance invalid JSON; provctl printed
# control characters from names raw (forged log lines, terminal escapes); analyses were audited
# as uid=0 pid=0 (a release carries no caller). Now .provenance is valid JSON for any name (bytes
# that are not UTF-8 shown as Latin-1 characters, "path_bytes_hex" exact), provctl escapes
# controls as \xNN, and the analysis row names the writer.
. "$(dirname "$0")/lib.sh"
write_policy enforce
start_provfs
mkdir -m 1777 "$M/up"
S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/m" --arch llama --seed 110 >/dev/null
chmod -R a+rX "$S"; chmod 755 "$T"
bad=$(printf 'm-\xff\xfe-\033[31m')
as_user cp -r "$S/m" "$M/up/$bad"
wait_status "$M/up/$bad" ready
note ".provenance is valid JSON; path_bytes_hex gives the exact bytes"
as_user "$UPY" - "$M/up/$bad" <<'PYEOF' || fail ".provenance of a non-UTF-8 name"
import json, os, sys
d = os.fsencode(sys.argv[1])
raw = open(d + b"/.provenance", "rb").read()
p = json.loads(raw.decode("utf-8"))
assert bytes.fromhex(p["path_bytes_hex"]) == d[d.index(b"/up/"):], p["path_bytes_hex"]
store = json.loads(open(os.path.dirname(os.path.dirname(d)) + b"/.provenance", "rb").read().decode("utf-8"))
PYEOF
note "provctl prints no control characters"
out=$(as_user "$PROVCTL" lineage "$M/up/$bad" 2>&1 || true)
echo "$out" | LC_ALL=C grep -q $'\033' && fail "escape character in provctl lineage output"
echo "$out" | has_match '\\x1b' || fail "provctl lineage: $out"
out=$("$PROVCTL" log --db "$LINEAGE_DB" 2>&1)
echo "$out" | LC_ALL=C grep -q $'\033' && fail "escape character in provctl log output"
note "the analysis is audited as the writer"
[ "$(DB "SELECT count(*) FROM events WHERE kind = 'analyzed' AND uid = $TUID AND pid > 0")" -ge 1 ] ||
    fail "no analysis row naming uid $TUID: $(DB "SELECT uid, pid, path FROM events WHERE kind = 'analyzed'")"
stop_provfs
