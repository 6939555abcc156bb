#!/usr/bin/env bash
# Regenerates the seed corpora of the index, unit, policy, compare, torch and fpbin targets from
# tools/mkmodel and provctl output (torch also from tests/integration/torch_save.py) (deterministic: mkmodel writes the same bytes for the same arguments; only
# the mtimes in saved fingerprints differ between runs).
#   tests/fuzz/mkcorpus.sh [BUILD_DIR]     (default build-fuzz; needs tools/mkmodel and provctl)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-fuzz}
mk=$build/tools/mkmodel
ctl=$build/tools/provctl
corpus=tests/fuzz/corpus
export ASAN_OPTIONS=detect_leaks=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tiny=(--hidden 8 --layers 1 --heads 2 --inter 16 --vocab 362 --max-pos 64)

"$mk" create "$tmp/base" "${tiny[@]}" --dtype f16 --shards 2 --seed 1 --tie >/dev/null
"$mk" derive "$tmp/base" "$tmp/ft" --kind finetune --seed 2 --shards 1 >/dev/null
"$mk" derive "$tmp/base" "$tmp/ext" --kind vocab-extend --add 4 --shards 2 >/dev/null
"$mk" create "$tmp/gpt2" --arch gpt2 "${tiny[@]}" --dtype f32 --shards 1 --seed 3 >/dev/null
"$mk" gguf "$tmp/base" "$tmp/base-q8.gguf" --type q8_0 >/dev/null
"$mk" gguf "$tmp/base" "$tmp/base-q4k.gguf" --type q4_k >/dev/null

# ---- unit: pieces joined by the separator fuzz_unit.c splits at
sep=$'\n@@provfs-part@@\n'
unit() { # DIR SHARD1 SHARD2 -> stdout
    local d=$1 f first=1
    for f in config.json model.safetensors.index.json "$2" "$3" tokenizer.json \
        tokenizer_config.json; do
        [ $first = 1 ] || printf '%s' "$sep"
        first=0
        [ -n "$f" ] && [ -f "$d/$f" ] && cat "$d/$f"
    done
    return 0
}
rm -rf "$corpus/unit" "$corpus/index" "$corpus/policy" "$corpus/compare"
mkdir -p "$corpus/unit" "$corpus/index" "$corpus/policy" "$corpus/compare"
two=(model-00001-of-00002.safetensors model-00002-of-00002.safetensors)
unit "$tmp/base" "${two[@]}" >"$corpus/unit/llama-2shards"
unit "$tmp/ext" "${two[@]}" >"$corpus/unit/vocab-extend-2shards"
unit "$tmp/ft" model.safetensors "" >"$corpus/unit/finetune-1shard"
unit "$tmp/gpt2" model.safetensors "" >"$corpus/unit/gpt2-1shard"
unit "$tmp/base" "" "" >"$corpus/unit/config-only"
cp "$tmp/base-q8.gguf" "$corpus/unit/q8_0.gguf"
cp "$tmp/base-q4k.gguf" "$corpus/unit/q4_k.gguf"

# ---- index: mkmodel's own index, and indexes naming fuzz_index.c's fixture shards
cp "$tmp/base/model.safetensors.index.json" "$corpus/index/mkmodel.json"
s1=model-00001-of-00002.safetensors
s2=model-00002-of-00002.safetensors
cat >"$corpus/index/fixture.json" <<JSON
{"metadata": {"total_size": 960}, "weight_map": {"lm_head.weight": "$s2",
 "model.embed_tokens.weight": "$s1", "model.layers.0.self_attn.q_proj.weight": "$s1",
 "model.norm.weight": "$s2"}}
JSON
printf '{"weight_map": {"model.embed_tokens.weight": "%s"}}\n' "$s1" >"$corpus/index/one-shard.json"
printf '{"metadata": {"total_size": 99999}, "weight_map": {"a": "%s", "b": "missing.safetensors"}}\n' \
    "$s1" >"$corpus/index/missing-shard.json"
printf '{"weight_map": {"x": "../%s"}}\n' "$s1" >"$corpus/index/escape.json"

# ---- policy
cat >"$corpus/policy/default.json" <<'JSON'
{
  "mode": "audit",
  "require_approval": "unknown-lineage",
  "allow_families": [],
  "deny_families": [],
  "block_pending": false
}
JSON
cat >"$corpus/policy/enforce.json" <<'JSON'
{"mode": "enforce", "require_approval": "unknown-lineage", "allow_families": ["meta--*", "/base/*"],
 "deny_families": ["/ft/[a-z]*-chat", "qwen--*"], "block_pending": true}
JSON
printf '{"mode": "off", "require_approval": "always"}\n' >"$corpus/policy/off-always.json"
printf '{"require_approval": "never", "deny_families": ["*[!a-c]?\\\\*"]}\n' >"$corpus/policy/never.json"
printf 'approved after review by the platform team (ticket 42)\n' >"$corpus/policy/note.txt"

# ---- compare: two compact fingerprints joined by the separator fuzz_compare.c splits at
# (compact, without the path; "lean" also without the embedding sketch, most of a fingerprint's
# bytes, to keep the corpus small)
fp() { "$ctl" fingerprint "$1" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
d.pop("path", None)
if sys.argv[1] == "lean" and "weights" in d:
    d["weights"].pop("embedding", None)
sys.stdout.write(json.dumps(d, separators=(",", ":")))' "$2"; }
fp "$tmp/base" full >"$tmp/base.json"
fp "$tmp/ft" full >"$tmp/ft.json"
fp "$tmp/base" lean >"$tmp/base-lean.json"
fp "$tmp/ft" lean >"$tmp/ft-lean.json"
fp "$tmp/base-q8.gguf" lean >"$tmp/q8-lean.json"
fp "$tmp/gpt2" lean >"$tmp/gpt2-lean.json"
fsep=$'\n@@provfs-fp@@\n'
pair() { cat "$1"; printf '%s' "$fsep"; cat "$2"; }
pair "$tmp/base.json" "$tmp/ft.json" >"$corpus/compare/base-finetune"
pair "$tmp/base-lean.json" "$tmp/q8-lean.json" >"$corpus/compare/base-gguf"
pair "$tmp/ft-lean.json" "$tmp/gpt2-lean.json" >"$corpus/compare/finetune-gpt2"
python3 - "$tmp/base.json" >"$corpus/compare/metadata-only" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d.pop("weights", None); d.pop("vocab", None)
sys.stdout.write(json.dumps(d, separators=(",", ":")))
PY
# ---- torch: mkmodel's checkpoint (one storage a tensor, 64-byte aligned) and Python pickle's
# own output (protocol 2 with parameters and _metadata; protocol 4 with shared storages)
rm -rf "$corpus/torch"
mkdir -p "$corpus/torch"
"$mk" torch "$tmp/ft" "$corpus/torch/mkmodel-f16.pt" >/dev/null
python3 tests/integration/torch_save.py "$tmp/gpt2" "$corpus/torch/pickle-p2.pt"
python3 tests/integration/torch_save.py "$tmp/ft" "$corpus/torch/pickle-p4-shared.pt" \
    --protocol 4 --one-storage
# ---- fpbin: the stored (binary) form of the fingerprints above
rm -rf "$corpus/fpbin"
mkdir -p "$corpus/fpbin"
"$ctl" fingerprint "$tmp/base" --binary >"$corpus/fpbin/llama-2shards"
"$ctl" fingerprint "$tmp/gpt2" --binary >"$corpus/fpbin/gpt2"
"$ctl" fingerprint "$tmp/base-q4k.gguf" --binary >"$corpus/fpbin/q4k.gguf"
du -sh "$corpus/unit" "$corpus/index" "$corpus/policy" "$corpus/compare" "$corpus/torch" \
    "$corpus/fpbin"
