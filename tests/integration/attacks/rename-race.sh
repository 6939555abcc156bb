#!/usr/bin/env bash
# A directory rename replied before the queue and the store followed it: an open of the weights
# right after rename() returned was decided for a path the store did not know yet (allowed), and
# the unit could vanish from the store. The user renames a blocked unit back and forth and opens
# its weights right after each rename, RACE_TRIES times (default 1000): zero reads succeed, and
# the unit is still in the store, blocked, under its final name.
. "$(dirname "$0")/lib.sh"
write_policy enforce
start_provfs
mkdir -m 1777 "$M/up"
blocked_unit "$M/up/a" 71
out=$(as_user "$UPY" - "$M/up" "${RACE_TRIES:-1000}" <<'PYEOF'
import os, sys
up, n = sys.argv[1], int(sys.argv[2])
wins = 0
names = ["a", "b"]
for i in range(n):
    src, dst = names[i % 2], names[(i + 1) % 2]
    os.rename(f"{up}/{src}", f"{up}/{dst}")
    try:
        with open(f"{up}/{dst}/model.safetensors", "rb") as f:
            f.read(16)
        wins += 1
    except PermissionError:
        pass
print(wins, n)
PYEOF
)
note "wins and tries: $out"
expect_eq "reads that got through" "${out%% *}" 0
final=$([ $(( ${RACE_TRIES:-1000} % 2 )) -eq 0 ] && echo a || echo b)
wait_status "$M/up/$final" ready
expect_eq "approval after the race" "$(xattr "$M/up/$final" approval)" blocked
expect_eq "store rows for the unit" "$(DB "SELECT count(*) FROM model_paths WHERE path = '/up/$final'")" 1
refused "$M/up/$final/model.safetensors"
stop_provfs
