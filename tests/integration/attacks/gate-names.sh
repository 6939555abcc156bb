#!/usr/bin/env bash
# Routes around the gate through names, each tried as an unprivileged user against enforce:
# renaming the weights to a documentation name in their unit, RENAME_EXCHANGE with a loose file
# (either direction), a blocked GGUF renamed to LICENSE, hard links to a documentation name
# (whichever name the daemon saw first, also after the kernel forgot the inode), a unit under a
# name the daemon cannot resolve (" (deleted)", a path beyond PATH_MAX). The blocked bytes stay
# unreadable; root (an admin) still reads them.
. "$(dirname "$0")/lib.sh"
write_policy enforce
start_provfs
mkdir -m 1777 "$M/up"
SEED=60
fresh() { SEED=$((SEED + 1)); blocked_unit "$1" "$SEED"; }

note "rename the weights to LICENSE inside the unit"
fresh "$M/up/a"
as_user mv "$M/up/a/model.safetensors" "$M/up/a/LICENSE" || fail "the owner cannot rename in the unit"
refused "$M/up/a/LICENSE"
# a refused open with O_TRUNC changes nothing (the owner may write, not read)
size=$(stat -c %s "$B/up/a/LICENSE")
as_user "$UPY" -c "import os, sys; os.open(sys.argv[1], os.O_RDWR | os.O_TRUNC)" "$M/up/a/LICENSE" \
    2>/dev/null && fail "O_RDWR|O_TRUNC of blocked weights was allowed"
expect_eq "size after a refused O_TRUNC open" "$(stat -c %s "$B/up/a/LICENSE")" "$size"
cat "$M/up/a/LICENSE" >/dev/null || fail "root cannot read"
readable "$M/up/a/config.json"

note "exchange a loose file with the weights, both directions"
fresh "$M/up/b"
as_user sh -c "echo loose >$M/up/loose"
xchg() { as_user "$UPY" -c "
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), 2)
sys.exit(0 if r == 0 else ctypes.get_errno())" "$1" "$2"; }
rc=0; xchg "$M/up/loose" "$M/up/b/model.safetensors" || rc=$?
expect_eq "exchange loose <-> weights" "$rc" 13
rc=0; xchg "$M/up/b/model.safetensors" "$M/up/loose" || rc=$?
expect_eq "exchange weights <-> loose" "$rc" 13
same_bytes "$M/up/b/model.safetensors" "$T/src-$SEED/model.safetensors" || fail "weights moved"
refused "$M/up/b/model.safetensors"
readable "$M/up/loose"

note "a blocked GGUF renamed to LICENSE or NOTICE"
"$MKMODEL" create "$T/g" --arch llama --seed 77 >/dev/null
"$MKMODEL" gguf "$T/g" "$T/q.gguf" --type q8_0 >/dev/null
mkdir -m 1777 "$M/up/gg"
as_user cp "$T/q.gguf" "$M/up/gg/q.gguf"
wait_status "$M/up/gg/q.gguf" ready
expect_eq "GGUF approval" "$(xattr "$M/up/gg/q.gguf" approval)" blocked
refused "$M/up/gg/q.gguf"
expect_errno "Permission denied" as_user mv "$M/up/gg/q.gguf" "$M/up/gg/LICENSE"
# root renames it (as an admin may); the user still cannot read it under its new name
mv "$M/up/gg/q.gguf" "$M/up/gg/NOTICE"
wait_status "$M/up/gg/NOTICE" ready
refused "$M/up/gg/NOTICE"

note "hard links to README.md, seen first by either name, after the kernel forgot the inode"
fresh "$M/up/c"
as_user ln "$M/up/c/model.safetensors" "$M/up/c/README.md"
refused "$M/up/c/README.md"
refused "$M/up/c/model.safetensors"
sync; echo 3 >/proc/sys/vm/drop_caches
refused "$M/up/c/README.md"
refused "$M/up/c/model.safetensors"
as_user ln "$M/up/c/model.safetensors" "$M/up/c/LICENSE.md" || true
refused "$M/up/c/LICENSE.md"
readable "$M/up/c/config.json"

note "a unit whose path ends in ' (deleted)'"
fresh "$M/up/m (deleted)"
refused "$M/up/m (deleted)/model.safetensors"

note "a unit moved below a path longer than PATH_MAX"
fresh "$M/up/deep"
# 20 directories of 250 bytes each below BACKING, made step by step (the whole path is over 4 KiB)
python3 - "$B/up" <<'PYEOF' || fail "cannot make the deep path"
import os, sys
fd = os.open(sys.argv[1], os.O_PATH)
os.mkdir("long", dir_fd=fd)
for i in range(21):
    nfd = os.open("long" if i == 0 else "d" * 250, os.O_PATH, dir_fd=fd)
    os.close(fd)
    fd = nfd
    if i < 20:
        os.mkdir("d" * 250, dir_fd=fd)
up = os.open(sys.argv[1], os.O_PATH)
os.rename("deep", "unit", src_dir_fd=up, dst_dir_fd=fd)
PYEOF
# the user reaches it through the mount step by step and tries to read the weights
as_user "$UPY" - "$M/up" <<'PYEOF' && fail "read the weights below PATH_MAX"
import os, sys
fd = os.open(sys.argv[1], os.O_PATH)
for part in ["long"] + ["d" * 250] * 20 + ["unit"]:
    nfd = os.open(part, os.O_PATH, dir_fd=fd)
    os.close(fd)
    fd = nfd
w = os.open("model.safetensors", os.O_RDONLY, dir_fd=fd)
os.read(w, 16)
PYEOF
rm -rf "$B/up/long"

note "refusals are logged with the rule"
[ "$(DB "SELECT count(*) FROM events WHERE kind = 'policy' AND uid = $TUID")" -ge 5 ] ||
    fail "no refusal rows"
stop_provfs
