"""A seeded mutation fuzzer over real specs: whatever a person does to a spec, `acbo validate`
either accepts it (exit 0) or refuses it with `file:line: dotted.path: message` lines (exit 2),
never a traceback or an internal error. A few accepted mutants also go through `acbo plan`.

Deterministic (fixed seed): a failure names its mutation in the test id, so it reproduces.
"""

from __future__ import annotations

import copy
import random
import re
import tomllib
from pathlib import Path

import pytest
import tomli_w
from typer.testing import CliRunner

from engine.cli import app

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("smoke", "phase2a", "phase2a_online")
N_MUTANTS = 300
N_PLANNED = 10
SEED = 20240611

# Replacement values: other types, edge numbers, odd strings.
VALUES = [
    "text", "", "x" * 5000, True, False, [], [1, "a"], [1.0, 2.0], {}, {"kind": "nope"},
    {"dist": "uniform", "low": 1.0, "high": 0.0}, 2**70, -(2**70), -1, 0, 1, -0.5, 0.0,
    float("nan"), float("inf"), -float("inf"), 1e39, -1e39, 1e-45, 3.5, 2**31, 2**32,
    2**63 - 1,
]
OPERATIONS = ("delete", "replace", "replace", "rename", "duplicate", "unknown")


def _paths(node, prefix=()):
    """Every key path (and array index) in a parsed TOML document."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        path = prefix + (key,)
        yield path
        if isinstance(value, (dict, list)):
            yield from _paths(value, path)


def _typo(key: str, rng: random.Random) -> str:
    if len(key) > 1 and rng.random() < 0.5:
        i = rng.randrange(len(key))
        return key[:i] + key[i + 1:]  # a dropped letter
    return key + rng.choice(["s", "_", "x", "e"])


def mutate(doc: dict, rng: random.Random) -> tuple[dict, str]:
    """One random edit of `doc` (a copy) and a description of it."""
    doc = copy.deepcopy(doc)
    path = rng.choice(list(_paths(doc)))
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    key, where = path[-1], ".".join(map(str, path))
    op = rng.choice(OPERATIONS)
    if op == "rename" and not isinstance(key, str):
        op = "replace"
    if op == "delete":
        del parent[key]
    elif op == "replace":
        value = rng.choice(VALUES)
        parent[key] = copy.deepcopy(value)
        return doc, f"{where}={str(value)[:20]}"
    elif op == "rename":
        parent[_typo(key, rng)] = parent.pop(key)
    elif op == "duplicate":
        target = parent[key]
        if isinstance(target, list) and target:
            target.append(copy.deepcopy(rng.choice(target)))
        elif isinstance(target, dict) and target:
            k = rng.choice(list(target))
            target[_typo(k, rng)] = copy.deepcopy(target[k])
        else:
            parent[key] = [copy.deepcopy(target), copy.deepcopy(target)]
    else:  # unknown key beside this one (or in it, when it is a table)
        table = parent[key] if isinstance(parent[key], dict) else parent
        if isinstance(table, dict):
            table[rng.choice(["extra", "Kind", "n-obs", "weight", "seed"])] = rng.choice(VALUES)
        else:
            parent.append(copy.deepcopy(rng.choice(VALUES)))
    return doc, f"{op}:{where}"


def _mutants() -> list:
    rng = random.Random(SEED)
    docs = {s: tomllib.loads((ROOT / "specs" / f"{s}.toml").read_text()) for s in SOURCES}
    out, seen = [], set()
    while len(out) < N_MUTANTS:
        source = rng.choice(SOURCES)
        doc, what = mutate(docs[source], rng)
        if rng.random() < 0.2:  # sometimes two edits at once
            doc, more = mutate(doc, rng)
            what += "+" + more
        ident = f"{len(out)}-{source}-{re.sub(r'[^A-Za-z0-9_.:=+-]', '_', what)}"
        if ident in seen:
            continue
        seen.add(ident)
        out.append((ident, source, doc))
    return out


MUTANTS = _mutants()


def _write(tmp_path: Path, source: str, doc: dict) -> Path:
    # [stage] names resolve beside the spec; the real specs are its siblings.
    for name in SOURCES:
        (tmp_path / f"{name}.toml").write_text((ROOT / "specs" / f"{name}.toml").read_text())
    path = tmp_path / "mutant.toml"
    path.write_bytes(tomli_w.dumps(doc).encode())
    return path


def _check_refusal(result, path_name: str) -> None:
    out = result.output
    assert "internal error" not in out and "Traceback" not in out, out
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    assert result.exit_code in (0, 2), out
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert lines, "exit 2 without a message"
        pattern = re.compile(rf"^{re.escape(path_name)}(:\d+)?: |^--set ")
        for line in lines:
            assert pattern.match(line), line


def _run_validate(monkeypatch, tmp_path, source, doc):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, source, doc)
    return CliRunner().invoke(app, ["validate", path.name])


def test_validate_never_crashes_on_mutants(tmp_path, monkeypatch):
    """All mutants in one test (a test per mutant costs more in fixtures than validate itself)."""
    failures = []
    accepted = 0
    for ident, source, doc in MUTANTS:
        d = tmp_path / ident
        d.mkdir()
        result = _run_validate(monkeypatch, d, source, doc)
        try:
            _check_refusal(result, "mutant.toml")
        except AssertionError as exc:
            failures.append(f"{ident}: exit {result.exit_code}: {str(exc)[:400]}")
        accepted += result.exit_code == 0
    assert not failures, "\n".join(failures)
    # The fuzzer is only useful if it exercises both paths.
    assert 0 < accepted < len(MUTANTS)


@pytest.fixture(scope="module")
def accepted_mutants(tmp_path_factory):
    """The first N_PLANNED mutants of each source that validate."""
    out = []
    runner = CliRunner()
    base = tmp_path_factory.mktemp("accepted")
    for ident, source, doc in MUTANTS:
        d = base / ident
        d.mkdir()
        path = _write(d, source, doc)
        result = runner.invoke(app, ["validate", str(path)])
        if result.exit_code == 0:
            out.append((ident, path))
    return out


def test_plan_accepts_or_refuses_cleanly_what_validate_accepts(accepted_mutants, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv("ACBO_REGISTRY", str(tmp_path / "registry"))
    chosen = random.Random(SEED).sample(accepted_mutants, min(N_PLANNED, len(accepted_mutants)))
    assert chosen
    for ident, path in chosen:
        result = CliRunner().invoke(app, ["plan", str(path)])
        out = result.output
        assert "internal error" not in out and "Traceback" not in out, f"{ident}: {out}"
        assert result.exit_code in (0, 2), f"{ident}: {out}"


def _record():
    """A hand-built evaluation of 6 graphs (candidates [a, b], a the true parent): every side
    with parent probabilities and timings; all but the expert with whole graphs (a model with
    a graph head)."""
    import numpy as np

    from engine.evaluate.record import Evaluation, Side, StageResult

    n = 6
    probs = np.tile([0.8, 0.3], (n, 1))
    graph = np.tile([[0.0, 0.0], [1.0, 0.0]], (n, 1, 1))

    def side(graphs: bool, **kw):
        return Side(probs=probs, pred=(probs > 0.5) * 1.0, seconds=np.full(n, 0.5),
                    graph_scores=graph if graphs else None, graph_pred=graph if graphs else None,
                    **kw)

    sides = {"model": side(True), "expert": side(False, map_pred=(probs > 0.5) * 1.0),
             **{b: side(True) for b in ("pc", "ges", "random")}}
    stage = StageResult("held_out", "", np.tile([True, False], (n, 1)), np.ones((n, 2), bool),
                        graph.astype(bool), np.ones((n, 2), bool), np.zeros(n, int),
                        np.full(n, 2.0), sides)
    return Evaluation({"held_out": stage}, 0.5, 50, 0)


def test_every_gate_metric_validate_accepts_names_a_value_the_evaluation_has():
    """A gate that validates reads a real value from a record that has every input, for every
    metric, side and aggregate the catalog allows; the rest are refused at validate (a gate on a
    metric only the expert has crashed apply before)."""
    from pydantic import ValidationError

    from engine.evaluate.catalog import METRICS, SIDES
    from engine.gates import GO, evaluate_gates
    from engine.spec.loader import load

    base = load(ROOT / "specs" / "smoke.toml").spec
    evaluation = _record()
    judged = 0
    for metric, m in METRICS.items():
        for side in SIDES:
            for aggregate in m.aggregates:
                extra = {"q": 0.5} if aggregate == "quantile" else (
                    {"above": 0.0} if aggregate == "share" else {})
                gate = {"metric": metric, "side": side, "aggregate": aggregate, "max": 1e6, **extra}
                if metric == "graph_shd" or m.lower is None:
                    gate["min"] = -1.0
                try:
                    spec = base.model_validate({**base.model_dump(), "gates": [gate]},
                                               context={"spec_dir": ROOT / "specs"})
                except ValidationError as exc:
                    # a baseline the smoke spec's evaluation does not run is refused too
                    assert "has no" in str(exc) or "does not run the" in str(exc), (metric, side, str(exc))
                    continue
                (result,) = evaluate_gates(spec, evaluation).gates
                assert result.verdict == GO, (metric, side, aggregate, result.evidence)
                judged += 1
    assert judged > 100


def test_a_relative_gate_of_a_lower_is_better_metric_when_both_are_perfect():
    from engine.gates import evaluate_gates
    from engine.spec.loader import load

    base = load(ROOT / "specs" / "smoke.toml").spec
    for metric in ("shd", "ece"):
        gates = [{"metric": metric, "vs": "expert", "relative": "difference", "max": 0.1}]
        spec = base.model_validate({**base.model_dump(), "gates": gates})
        assert evaluate_gates(spec, _record()).verdict == "GO"


def test_a_gate_with_both_bounds_reads_as_an_interval():
    from engine.gates import evaluate_gates
    from engine.spec.loader import load

    base = load(ROOT / "specs" / "smoke.toml").spec
    gates = [{"metric": "auroc", "min": 0.6, "max": 1.0}, {"metric": "auroc", "min": 0.6, "max": 0.9}]
    spec = base.model_validate({**base.model_dump(), "gates": gates})
    first, second = evaluate_gates(spec, _record()).gates
    assert (first.op, first.threshold, first.verdict) == ("in", [0.6, 1.0], "GO")
    assert second.verdict == "NO-GO"  # AUROC 1 (every true parent ranked first) > 0.9
