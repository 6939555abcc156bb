#!/usr/bin/env bash
# 4 writers and 4 readers on different models plus getfattr in a loop, STRESS_SECONDS (default
# 60): no deadlock, no error, and every model ends ready with the right parent.
. "$(dirname "$0")/lib.sh"
need_mkmodel
secs=${STRESS_SECONDS:-60}

S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 41 >/dev/null
for i in 1 2 3 4; do
    "$MKMODEL" derive "$S/base" "$S/a$i" --kind finetune --seed $((41 + i)) >/dev/null
    "$MKMODEL" derive "$S/base" "$S/b$i" --kind quant-int8 --seed $((51 + i)) >/dev/null
done
start_provfs --workers 2
cp -r "$S/base" "$M/base"
wait_status "$M/base" ready
for i in 1 2 3 4; do cp -r "$S/a$i" "$M/r$i"; done
for i in 1 2 3 4; do wait_status "$M/r$i" ready; done

end=$((SECONDS + secs))
pids=()
for i in 1 2 3 4; do
    ( n=0
      while [ $SECONDS -lt $end ]; do
          v=$([ $((n % 2)) = 0 ] && echo a || echo b)
          mkdir -p "$M/w$i"
          cp "$S/$v$i/"* "$M/w$i/" || exit 1
          n=$((n + 1))
      done
      echo "$n" >"$T/writer$i" ) &
    pids+=($!)
    ( while [ $SECONDS -lt $end ]; do
          cmp -s "$S/a$i/model.safetensors" "$M/r$i/model.safetensors" || exit 2
          python3 -m json.tool "$M/r$i/.provenance" >/dev/null || exit 3
      done ) &
    pids+=($!)
done
( while [ $SECONDS -lt $end ]; do
      for i in 1 2 3 4; do
          getfattr -d -m user.provenance "$M/r$i" "$M/w$i" >/dev/null 2>&1 || true
          [ "$(xattr "$M/r$i" parent)" = /base ] || exit 4
      done
  done ) &
pids+=($!)
for p in "${pids[@]}"; do
    wait "$p" || fail "a stress worker failed (pid $p, status $?)"
done
note "writer rounds: $(cat "$T"/writer* | tr '\n' ' ')"

for i in 1 2 3 4; do
    wait_status "$M/w$i" ready 120
    got=$(xattr "$M/w$i" parent)
    if [ "$got" != /base ]; then
        # what the unit and its model looked like, for the failure's report
        echo "w$i: status now '$(xattr "$M/w$i" status)', id '$(xattr "$M/w$i" id)'" >&2
        DB "SELECT p.path, m.id, m.status, m.digest FROM model_paths p JOIN models m
            ON m.id = p.model_id ORDER BY p.path" >&2 || true
        DB "SELECT e.parent_id, e.child_id, e.verdict, e.is_parent, e.rank,
            (SELECT count(*) FROM model_paths q WHERE q.model_id = e.parent_id)
            FROM edges e ORDER BY e.child_id" >&2 || true
    fi
    expect_eq "w$i parent" "$got" /base
    want=$(python3 -c "
import hashlib, os
d = '$M/w$i'
print(hashlib.sha256(open(d + '/model.safetensors', 'rb').read()).hexdigest())")
    expect_eq "w$i digest is of the final content" "$(xattr "$M/w$i/model.safetensors" sha256)" "$want"
done
expect_eq "integrity" "$(DB 'PRAGMA integrity_check')" ok
expect_eq "no orphans" "$(DB "SELECT count(*) FROM models m WHERE NOT EXISTS
    (SELECT 1 FROM model_paths p WHERE p.model_id = m.id)")" 0

cd /
stop_provfs
echo "PASS stress"
