#!/usr/bin/env bash
# Refusal spam: the user opens a blocked unit's weights 5,000 times (and its other gated files).
# Every open is refused, and the audit log records them as a few aggregated rows whose counts
# add up to the refusals, instead of 5,000 rows; provctl log shows the count.
. "$(dirname "$0")/lib.sh"

write_policy enforce
start_provfs
mkdir "$M/pub"
chmod 1777 "$M/pub"
blocked_unit "$M/pub/spam" 81
W=$M/pub/spam/model.safetensors
refused "$W"
base=$(DB "SELECT count(*) FROM events")
before=$(DB "SELECT coalesce(sum(count), 0) FROM events WHERE kind = 'policy'")

note "5,000 refused opens"
start=$(date +%s)
n=$(as_user "$UPY" -c "
import sys
n = 0
for _ in range(5000):
    try:
        open(sys.argv[1], 'rb').close()
    except PermissionError:
        n += 1
print(n)" "$W")
secs=$(($(date +%s) - start))
expect_eq "refused opens" "$n" 5000
# The rows are written after each reply: wait for the last ones.
want=$((before + 5000))
for _ in $(seq 100); do
    [ "$(DB "SELECT coalesce(sum(count), 0) FROM events WHERE kind = 'policy'")" -ge "$want" ] && break
    sleep 0.1
done
expect_eq "refusals counted" "$(DB "SELECT coalesce(sum(count), 0) FROM events WHERE kind = 'policy'")" "$want"
rows=$(DB "SELECT count(*) FROM events WHERE kind = 'policy'")
# One row per minute: at most one more per minute boundary crossed.
[ "$rows" -le $((secs / 60 + 2)) ] || fail "$rows policy rows for 5,000 refusals in ${secs}s"
expect_eq "rows of other users or kinds" \
    "$(DB "SELECT count(*) FROM events WHERE kind = 'policy' AND (uid != $TUID OR decision != 'refused')")" 0
added=$(($(DB "SELECT count(*) FROM events") - base))
[ "$added" -le 3 ] || fail "$added events rows added"

note "other gated files of the same unit count for the unit"
for f in tokenizer.json model.safetensors; do
    for _ in 1 2 3; do refused "$M/pub/spam/$f"; done
done
want=$((want + 6))
for _ in $(seq 50); do
    [ "$(DB "SELECT coalesce(sum(count), 0) FROM events WHERE kind = 'policy'")" -ge "$want" ] && break
    sleep 0.1
done
expect_eq "refusals counted" "$(DB "SELECT coalesce(sum(count), 0) FROM events WHERE kind = 'policy'")" "$want"
rows2=$(DB "SELECT count(*) FROM events WHERE kind = 'policy'")
[ "$rows2" -le $((rows + 1)) ] || fail "$rows2 policy rows"

note "provctl log shows the count"
"$PROVCTL" log --db "$LINEAGE_DB" --kind policy >"$T/log.txt" || fail "provctl log"
grep -E "refused require_approval  uid=$TUID .* \(([0-9]+) times, last [0-9T:.-]+Z\)" "$T/log.txt" >/dev/null ||
    { cat "$T/log.txt" >&2; fail "provctl log: no aggregated row"; }
total=$("$PROVCTL" log --db "$LINEAGE_DB" --json --kind policy |
    python3 -c "import json,sys; print(sum(e['count'] for e in json.load(sys.stdin)['events']))")
expect_eq "provctl log --json counts" "$total" "$want"

note "the store still works and the user is still refused"
refused "$W"
DB "PRAGMA integrity_check" | has_match -x ok || fail "integrity_check"
echo "PASS [$TEST_NAME]"
