#!/usr/bin/env bash
# provctl sbom: a CycloneDX 1.6 document for a model with a three-level lineage (base -> ft ->
# ft2) and for a GGUF file unit, valid against the official schema (tests/data/cyclonedx, checked
# with Debian's python3-jsonschema), naming every ancestor with its digest, verdict, score and
# generation, and the model's approval and policy decision; a hostile directory name stays data.
. "$(dirname "$0")/lib.sh"
need_mkmodel
PY=/usr/bin/python3
$PY -c 'import jsonschema' 2>/dev/null || { echo "SKIP: no python3-jsonschema"; exit 77; }
DATA=$(cd "$(dirname "$0")/../data/cyclonedx" && pwd)
validate() { $PY -W ignore "$(dirname "$0")/validate_cyclonedx.py" "$DATA" "$1"; }

S=$T/src
mkdir -p "$S"
"$MKMODEL" create "$S/base" --arch llama --seed 1 >/dev/null
"$MKMODEL" derive "$S/base" "$S/ft" --kind finetune --seed 2 >/dev/null
"$MKMODEL" derive "$S/ft" "$S/ft2" --kind finetune --seed 3 >/dev/null
"$MKMODEL" gguf "$S/ft2" "$S/ft2.gguf" --type q8_0 >/dev/null
start_provfs
evil="$M/team \"x\"
y"
mkdir -p "$M/bases" "$evil"
cp -r "$S/base" "$M/bases/base"
wait_status "$M/bases/base" ready
cp -r "$S/ft" "$M/bases/ft"
wait_status "$M/bases/ft" ready
cp -r "$S/ft2" "$evil/ft2"
wait_status "$evil/ft2" ready
cp "$S/ft2.gguf" "$evil/ft2-q8.gguf"
wait_status "$evil/ft2-q8.gguf" ready
setfattr -n user.provenance.approve -v "reviewed" "$M/bases/base" || fail "approve base"

note "validator rejects what is not CycloneDX 1.6 (so a pass means something)"
printf '{"bomFormat":"CycloneDX","specVersion":"1.6","metadata":{"component":{"type":"banana","name":"x"}}}' >"$T/bad.json"
validate "$T/bad.json" 2>/dev/null && fail "validator accepted an invalid document"

note "three-level lineage"
"$PROVCTL" sbom "$evil/ft2" --out "$T/ft2.json" || fail "provctl sbom"
validate "$T/ft2.json" || fail "ft2 sbom is not valid CycloneDX 1.6"
"$PROVCTL" sbom "$evil/ft2" >"$T/ft2-stdout.json" || fail "provctl sbom to stdout"
validate "$T/ft2-stdout.json" || fail "stdout sbom invalid"
sha() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]+'/.provenance'))['sha256'])" "$1"; }
$PY - "$T/ft2.json" "$(sha "$evil/ft2")" "$(sha "$M/bases/ft")" "$(sha "$M/bases/base")" "$evil" "$M" <<'PY' || fail "sbom content"
import json, sys
bom = json.load(open(sys.argv[1]))
want_model, want_ft, want_base, evil, mnt = sys.argv[2:7]
def props(c): return {p["name"]: p["value"] for p in c.get("properties", [])}
def sha(c): return [h["content"] for h in c.get("hashes", []) if h["alg"] == "SHA-256"]
assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6", bom.get("specVersion")
m = bom["metadata"]["component"]
assert m["type"] == "machine-learning-model", m["type"]
assert sha(m) == [want_model], sha(m)
p = props(m)
assert p["provfs:path"] == evil[len(mnt):] + "/ft2", p["provfs:path"]
# the base is approved: ft2 derives from it, so no approval of its own is needed
assert p["provfs:approval"] == "not-required", p
assert p["provfs:policy.decision"] == "allow", p
assert "approved ancestor" in p["provfs:policy.reason"], p
files = {c["name"]: sha(c) for c in m["components"]}
assert "model.safetensors" in files and len(files["model.safetensors"][0]) == 64, files
anc = m["pedigree"]["ancestors"]
assert [a["name"] for a in anc] == ["ft", "base"], [a["name"] for a in anc]
assert sha(anc[0]) == [want_ft] and sha(anc[1]) == [want_base]
for gen, a in enumerate(anc, 1):
    ap = props(a)
    assert ap["provfs:generation"] == str(gen), ap
    assert ap["provfs:verdict"] == "derived", ap
    assert 0.5 <= float(ap["provfs:score"]) <= 1, ap
refs = [c["bom-ref"] for c in [m] + anc]
assert len(set(refs)) == len(refs), refs
PY
# the approval of the base shows in the base's own document
"$PROVCTL" sbom "$M/bases/base" --out "$T/base.json" || fail "sbom base"
validate "$T/base.json" || fail "base sbom invalid"
expect_eq "base approval" "$($PY -c "import json; print({p['name']: p['value'] for p in json.load(open('$T/base.json'))['metadata']['component']['properties']}['provfs:approval'])")" approved

note "a GGUF file unit"
"$PROVCTL" sbom "$evil/ft2-q8.gguf" --out "$T/gguf.json" || fail "sbom of a gguf"
validate "$T/gguf.json" || fail "gguf sbom invalid"
$PY - "$T/gguf.json" <<'PY' || fail "gguf sbom content"
import json, sys
m = json.load(open(sys.argv[1]))["metadata"]["component"]
p = {x["name"]: x["value"] for x in m["properties"]}
assert p["provfs:path"].endswith("/ft2-q8.gguf"), p
assert p["provfs:format"] == "gguf", p
names = [a["name"] for a in m["pedigree"]["ancestors"]]
assert names[:1] == ["ft2"], names
PY

note "errors"
expect_errno "not in a provfs store" "$PROVCTL" sbom "$S/base"
expect_errno "unknown format" "$PROVCTL" sbom "$evil/ft2" --format spdx
stop_provfs
note "ok"
