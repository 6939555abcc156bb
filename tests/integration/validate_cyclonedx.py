"""Validates a CycloneDX 1.6 JSON document against the official schema in tests/data/cyclonedx.

usage: validate_cyclonedx.py SCHEMA_DIR BOM.json -- exit 0 when valid, 1 with the errors."""
import json
import sys

import jsonschema

schema_dir, bom_path = sys.argv[1], sys.argv[2]
store = {}
for name in ("bom-1.6.schema.json", "spdx.schema.json", "jsf-0.82.schema.json"):
    with open(f"{schema_dir}/{name}") as f:
        doc = json.load(f)
    store[doc["$id"]] = doc
root = store["http://cyclonedx.org/schema/bom-1.6.schema.json"]
resolver = jsonschema.RefResolver(base_uri=root["$id"], referrer=root, store=store)
validator = jsonschema.Draft7Validator(root, resolver=resolver,
                                       format_checker=jsonschema.FormatChecker())
with open(bom_path) as f:
    bom = json.load(f)
errors = sorted(validator.iter_errors(bom), key=lambda e: list(e.path))
for e in errors:
    print(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message[:300]}", file=sys.stderr)
sys.exit(1 if errors else 0)
