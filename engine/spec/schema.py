"""JSON Schema of spec files, for editors (Taplo / Even Better TOML complete and check specs).

Pydantic's schema is rewritten so that a JSON Schema validator gives precise errors on TOML:

- TOML has no null, so an optional field's ``{"type": "null"}`` branch (and its ``default:
  null``) is dropped: ``model = {kind = "stats", dimm = 16}`` is then checked against the model
  schema alone, not against "model or null".
- A key a table does not have is reported at that key, with the keys it has: ``additionalProperties``
  is a schema no value meets (``const`` the message), not ``false`` (which validators report
  at the whole table).
- A union of kinds (``kind = "stats" | "avici"``, a distribution's ``dist``) becomes ``if`` /
  ``then`` on the tag: the tag itself must be one of the listed values, and the table is then
  checked against that kind's schema only, so a misspelt key is reported at that key, not as
  "not valid under any of the schemas". A union with plain values (``lr = 1e-3`` or a schedule
  table) checks a table by its kind and anything else against the plain branches.

`.taplo.toml` maps ``specs/*.toml`` to ``engine/spec/spec.schema.json``, which is this schema
as ``acbo schema`` prints it (a test keeps the two the same).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from engine.evaluate.catalog import METRICS
from engine.spec.root import Spec

SCHEMA_FILE = Path(__file__).with_name("spec.schema.json")
UNION_KEYS = ("oneOf", "anyOf")


def metric_registry() -> dict:
    """name -> {direction, aggregates, default_aggregate, scope, sides, description}."""
    return {
        m.name: {
            "direction": m.direction,
            "higher_is_better": m.higher_is_better,
            "aggregates": list(m.aggregates),
            "default_aggregate": m.default_aggregate,
            "scope": m.scope,
            "sides": list(m.sides) if m.sides is not None else None,  # None: every side
            "range": [m.lower, m.upper],
            "description": m.description,
        }
        for m in METRICS.values()
    }


def spec_schema() -> dict:
    """The schema of the root spec; each kind's docstring becomes its description. The metric
    registry (what a gate's `metric` may name) is under `x-acbo-metrics`."""
    schema = Spec.model_json_schema(mode="validation")
    schema = precise(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "acbo spec"
    metrics = metric_registry()
    schema["x-acbo-metrics"] = metrics
    gate = schema.get("$defs", {}).get("GateSpec")
    if gate:  # editors show a value's description on hover
        gate["properties"]["metric"]["description"] = "; ".join(
            f"{k}: {v['description']} ({v['direction']})" for k, v in metrics.items())
    return schema


# --------------------------------------------------------------------------- rewriting


def precise(schema: dict) -> dict:
    """`schema` without null branches and with tag-dispatched unions (see the module doc)."""
    schema = copy.deepcopy(schema)
    defs = schema.get("$defs", {})
    return _walk(schema, defs)


def _walk(node: Any, defs: dict) -> Any:
    if isinstance(node, list):
        return [_walk(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: _walk(v, defs) for k, v in node.items()}
    node.pop("discriminator", None)  # OpenAPI's, not JSON Schema's: validators ignore it
    for key in UNION_KEYS:
        if key in node:
            node = _union(node, key, defs)
            break
    if "default" in node and node["default"] is None:
        del node["default"]
    if node.get("additionalProperties") is False and "properties" in node:
        # `false` is reported at the table; a schema no value meets is reported at the key
        node["additionalProperties"] = {"const": unknown_key(list(node["properties"]))}
    return node


def unknown_key(allowed: list[str]) -> str:
    """What an editor says at a key a table does not have (as `acbo validate` words it)."""
    return f"unknown key; allowed: {', '.join(allowed)}"


def _is_null(branch: dict) -> bool:
    return branch == {"type": "null"}


def _resolve(branch: dict, defs: dict) -> dict:
    ref = branch.get("$ref", "")
    return defs.get(ref.rsplit("/", 1)[-1], branch) if ref.startswith("#/$defs/") else branch


def _is_object(branch: dict, defs: dict) -> bool:
    return _resolve(branch, defs).get("type") == "object"


def _tag(objects: list[dict], defs: dict) -> str | None:
    """The property every object branch fixes with a `const` (`kind`, `dist`), if any."""
    schemas = [_resolve(b, defs) for b in objects]
    names = set.intersection(*(set(s.get("properties", {})) for s in schemas))
    for name in sorted(names, key=lambda n: (n != "kind", n)):
        if all("const" in s["properties"][name] for s in schemas):
            consts = [s["properties"][name]["const"] for s in schemas]
            if len(set(consts)) == len(consts):
                return name
    return None


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0]


def _by_tag(objects: list[dict], tag: str, defs: dict) -> dict:
    """A table checked against the branch its `tag` names; the tag checked against the list."""
    schemas = [_resolve(b, defs) for b in objects]
    consts = [s["properties"][tag]["const"] for s in schemas]
    optional = [c for s, c in zip(schemas, consts) if tag not in s.get("required", [])]
    rules = []
    for branch, s, c in zip(objects, schemas, consts):
        cond: dict = {"properties": {tag: {"const": c}}}
        if c not in optional:  # an absent tag selects only the branch it defaults to
            cond["required"] = [tag]
        rules.append({"if": cond, "then": branch})
    described = "; ".join(f"{c}: {_first_line(s.get('description'))}" for s, c in zip(schemas, consts))
    out: dict = {"type": "object",
                 "properties": {tag: {"enum": consts, "description": described}},
                 "allOf": rules}
    if not optional:
        out["required"] = [tag]
    return out


def _by_keys(objects: list[dict], defs: dict) -> dict | None:
    """Untagged tables told apart by keys only one of them has (`low` / `high` against
    `values`): a table with any of a branch's own keys is checked against that branch; one with
    none against all (None: some branch has no key of its own)."""
    keys = [set(_resolve(b, defs).get("properties", {})) for b in objects]
    own = []
    for i, k in enumerate(keys):
        mine = sorted(k - set().union(*(o for j, o in enumerate(keys) if j != i)))
        if not mine:
            return None
        own.append(mine)
    chain: dict = {"anyOf": objects}
    for branch, mine in reversed(list(zip(objects, own))):
        cond = {"required": mine[:1]} if len(mine) == 1 else {"anyOf": [{"required": [k]} for k in mine]}
        chain = {"if": cond, "then": branch, "else": chain}
    return chain


def _union(node: dict, key: str, defs: dict) -> dict:
    branches = [b for b in node[key] if not _is_null(b)]
    outer = {k: v for k, v in node.items() if k != key}
    objects = [b for b in branches if _is_object(b, defs)]
    plain = [b for b in branches if not _is_object(b, defs)]
    if len(objects) > 1:
        tag = _tag(objects, defs)
        table = _by_tag(objects, tag, defs) if tag else _by_keys(objects, defs)
        if table is None:
            table = {key: objects}
    elif objects:
        table = objects[0]
    else:
        table = None
    if table is not None and plain:
        rest = plain[0] if len(plain) == 1 else {key: plain}
        body = {"if": {"type": "object"}, "then": table, "else": rest}
    elif table is not None:
        body = table
    elif len(plain) == 1:
        body = plain[0]
    else:
        body = {key: plain}
    merged = dict(outer)
    for k, v in body.items():
        if k in merged and k not in ("title", "description", "default"):
            return {**outer, "allOf": [body]}  # keep both: never overwrite a constraint
        merged.setdefault(k, v)
    return merged


def write_schema_file(path: Path = SCHEMA_FILE) -> Path:
    """Write the schema as `acbo schema` prints it (what `.taplo.toml` points editors to)."""
    import json

    path.write_text(json.dumps(spec_schema(), indent=2) + "\n", encoding="utf-8")
    return path
