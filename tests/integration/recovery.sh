#!/usr/bin/env bash
# Restart and recovery: changes made while unmounted are reconciled; kill -9 during a copy and
# during analysis loses no written byte and leaves a consistent database.
. "$(dirname "$0")/lib.sh"
need_mkmodel
EXPECT_LOG_RE='/partial: (failed|incomplete)'

S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 31 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 32 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft2" --kind finetune --seed 33 >/dev/null
"$MKMODEL" create "$S/big" --arch llama --seed 34 --hidden 512 --layers 8 --vocab 32000 >/dev/null

start_provfs
cp -r "$S/base" "$M/base"
cp -r "$S/ft" "$M/ft"
cp -r "$S/ft2" "$M/gone"
wait_status "$M/ft" ready
wait_status "$M/gone" ready
ft_digest=$(xattr "$M/ft" sha256)
stop_provfs

note "changes while unmounted"
rm -rf "$B/gone"
"$MKMODEL" derive "$S/base" "$B/offline" --kind finetune --seed 35 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft-changed" --kind finetune --seed 36 >/dev/null
cp "$S/ft-changed/model.safetensors" "$B/ft/model.safetensors"
start_provfs
wait_status "$M/offline" ready
expect_eq "offline parent" "$(xattr "$M/offline" parent)" /base
for _ in $(seq 100); do
    [ "$(xattr "$M/ft" sha256)" != "$ft_digest" ] && [ "$(xattr "$M/ft" status)" = ready ] && break
    sleep 0.1
done
[ "$(xattr "$M/ft" sha256)" != "$ft_digest" ] || fail "changed model not re-analysed"
expect_eq "changed ft parent" "$(xattr "$M/ft" parent)" /base
expect_eq "deleted while unmounted" "$(DB "SELECT count(*) FROM model_paths WHERE path = '/gone'")" 0

note "kill -9 during a copy"
mkdir "$M/partial"
cp "$S/big/config.json" "$M/partial/"
python3 - "$S/big/model.safetensors" "$M/partial/model.safetensors" "$T/written" <<'EOF2' &
import os, sys
src, dst, log = sys.argv[1:4]
data = open(src, "rb").read()
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
done = 0
try:
    while done < len(data):
        n = os.write(fd, data[done:done + (1 << 20)])
        done += n
        with open(log, "w") as f:
            f.write(str(done))
except OSError:
    pass
EOF2
writer=$!
for _ in $(seq 200); do
    [ -f "$T/written" ] && [ "$(cat "$T/written")" -gt 20000000 ] && break
    sleep 0.02
done
kill -9 "$PROVFS_PID"
wait "$writer" || true
wait "$PROVFS_PID" 2>/dev/null || true
PROVFS_PID=
fusermount3 -u -z "$M" 2>/dev/null || true
written=$(cat "$T/written")
[ "$written" -gt 0 ] || fail "nothing written before the kill"
cmp -n "$written" "$S/big/model.safetensors" "$B/partial/model.safetensors" \
    || fail "bytes reported written are not in BACKING"
expect_eq "integrity after kill" "$(DB 'PRAGMA integrity_check')" ok

note "remount, finish the copy, kill -9 during analysis"
start_provfs
cp "$S/big/model.safetensors" "$M/partial/model.safetensors"
for _ in $(seq 200); do
    s=$(xattr "$M/partial" status)
    [ "$s" = analyzing ] && break
    [ "$s" = ready ] && break
    sleep 0.01
done
note "status at kill: $s"
kill -9 "$PROVFS_PID"
wait "$PROVFS_PID" 2>/dev/null || true
PROVFS_PID=
fusermount3 -u -z "$M" 2>/dev/null || true
expect_eq "integrity after kill in analysis" "$(DB 'PRAGMA integrity_check')" ok
cmp "$S/big/model.safetensors" "$B/partial/model.safetensors" || fail "copy lost bytes"
start_provfs
wait_status "$M/partial" ready
for k in base ft offline; do
    expect_eq "$k after restarts" "$(xattr "$M/$k" status)" ready
done
expect_eq "integrity at the end" "$(DB 'PRAGMA integrity_check')" ok
expect_eq "foreign keys" "$(DB 'PRAGMA foreign_key_check' | wc -l)" 0

cd /
stop_provfs
echo "PASS recovery"
