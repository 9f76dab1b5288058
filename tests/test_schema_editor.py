"""The JSON Schema editors check specs with: no null branches (TOML has none), kind unions a
validator resolves by their tag, an unknown key reported at that key, the shipped file current,
`.taplo.toml` mapping specs/*.toml to it, and taplo (npm @taplo/cli) agreeing on every spec."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.spec.schema import SCHEMA_FILE, spec_schema

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.toml"))
TAPLO = shutil.which("taplo")
needs_taplo = pytest.mark.skipif(TAPLO is None, reason="taplo not found; install it: npm install -g @taplo/cli")


def _walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}/{i}")


def test_the_shipped_schema_file_is_current():
    assert json.loads(SCHEMA_FILE.read_text()) == spec_schema(), (
        "engine/spec/spec.schema.json is stale: regenerate it with "
        "`acbo schema -o engine/spec/spec.schema.json`")
    config = (ROOT / ".taplo.toml").read_text()
    assert 'include = ["specs/*.toml"]' in config and 'path = "./engine/spec/spec.schema.json"' in config


def test_no_null_branches_and_tagged_unions():
    schema = spec_schema()
    for path, node in _walk(schema):
        assert node.get("type") != "null" and node.get("default", 0) is not None, path
        assert "discriminator" not in node, path  # OpenAPI's keyword: validators ignore it
        assert node.get("additionalProperties") is not False, path  # reported at the table
    model = schema["properties"]["model"]  # an optional section: the kinds alone
    assert model["properties"]["kind"]["enum"] == ["stats", "avici"] and model["required"] == ["kind"]
    rules = {r["if"]["properties"]["kind"]["const"]: r["then"]["$ref"] for r in model["allOf"]}
    assert rules == {"stats": "#/$defs/StatsModel", "avici": "#/$defs/AviciModel"}
    lr = schema["$defs"]["Adam"]["properties"]["lr"]  # a number, or a schedule table by kind
    assert lr["if"] == {"type": "object"} and lr["else"]["type"] == "number"
    assert lr["then"]["properties"]["kind"]["enum"] == ["constant", "warmup_cosine", "piecewise"]
    value = schema["$defs"]["Hard"]["properties"]["value"]  # distributions, tagged by `dist`
    assert value["then"]["properties"]["dist"]["enum"][:2] == ["uniform", "signed_uniform"]
    n_nodes = schema["$defs"]["ScmSpec"]["properties"]["n_nodes"]  # untagged: told by their keys
    assert n_nodes["then"]["if"] == {"anyOf": [{"required": ["high"]}, {"required": ["low"]}]}
    stats = schema["$defs"]["StatsModel"]
    assert stats["additionalProperties"] == {"const": "unknown key; allowed: " + ", ".join(stats["properties"])}


def _taplo(*args, cwd=ROOT):
    return subprocess.run([TAPLO, "check", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@needs_taplo
def test_taplo_passes_every_shipped_spec():
    result = _taplo()  # .taplo.toml: specs/*.toml against the schema
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"found files total={len(SPECS)}" in result.stderr


@needs_taplo
@pytest.mark.parametrize("old, new, key, message", [
    ("dim = 16", "dimm = 16", "dimm", "unknown key; allowed: kind, dim, layers, heads"),
    ('kind = "stats"', 'kind = "stat"', "kind", 'is not one of ["stats","avici"]'),
    ("n_nodes = { low = 3, high = 5 }", "n_nodes = { low = 3, hgh = 5 }", "hgh",
     "unknown key; allowed: low, high"),
    ('value = { dist = "uniform", low = -5.0', 'value = { dist = "uniform", lo = -5.0', "lo",
     "unknown key; allowed: dist, low, high"),
    ("checkpoint_every = 20", "checkpoint_evry = 20", "checkpoint_evry",
     "unknown key; allowed: steps, batch_size"),
])
def test_taplo_reports_a_typo_at_its_key(tmp_path, old, new, key, message):
    # the repository's layout in a temporary folder, so that .taplo.toml maps the spec
    (tmp_path / "specs").mkdir()
    (tmp_path / "engine" / "spec").mkdir(parents=True)
    shutil.copy(ROOT / ".taplo.toml", tmp_path / ".taplo.toml")
    shutil.copy(SCHEMA_FILE, tmp_path / "engine" / "spec" / SCHEMA_FILE.name)
    text = (ROOT / "specs" / "smoke.toml").read_text()
    assert old in text
    bad = text.replace(old, new, 1)
    line = next(i for i, source in enumerate(bad.splitlines(), 1) if new in source)
    (tmp_path / "specs" / "bad.toml").write_text(bad)
    result = _taplo(cwd=tmp_path)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    errors = re.findall(r"error: (.*)\n\s*┌─ .*bad\.toml:(\d+):(\d+)", out)
    assert errors, out
    first, at_line, at_col = errors[0]
    assert message in first and int(at_line) == line, out
    source = bad.splitlines()[line - 1]
    assert re.search(rf"(^|[{{,]\s*){key} = $", source[:int(at_col) - 1]), (source, at_col)  # that key's value
