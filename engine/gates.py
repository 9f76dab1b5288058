"""Gates: the spec's success criteria evaluated on an evaluation result, each with its evidence."""

from __future__ import annotations

import math

LOWER_IS_BETTER = {"brier", "ece", "shd"}
# A gate's metric name -> its key in the evaluation's scores (SHD is scored per graph).
SCORE_KEYS = {"shd": "shd_mean"}


def _score(scores: dict, metric: str) -> float:
    """The score `metric` names (nan when absent: a gate on it then fails, never crashes)."""
    value = scores.get(SCORE_KEYS.get(metric, metric))
    return math.nan if value is None else value


def _fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def evaluate_gate(gate, evaluation: dict) -> dict:
    """{name, kind, value, op, threshold, passed, evidence} for one gate spec."""
    timing, model, expert = evaluation["timing"], evaluation["model"], evaluation["expert"]
    n = evaluation.get("n_graphs")
    if gate.kind == "speedup":
        key = {"median": "speedup_median", "mean": "speedup_mean", "geometric_mean": "speedup_geomean"}[gate.stat]
        value = timing[key]
        ok = value >= gate.min
        evidence = (
            f"{gate.stat} expert/model time over {len(timing['expert_s'])} held-out graphs: "
            f"{_fmt(value)}x (expert median {_fmt(1e3 * _median(timing['expert_s']))} ms, model "
            f"median {_fmt(1e3 * _median(timing['model_s']))} ms; compile {_fmt(timing['expert_compile_s'])} s "
            f"vs {_fmt(timing['model_compile_s'])} s, reported apart)"
        )
        return _result(gate, value, ">=", gate.min, ok, evidence)
    if gate.kind == "faster_share":
        value = timing["share_model_faster"]
        evidence = f"model faster than the expert on {_fmt(100 * value)}% of {len(timing['expert_s'])} graphs"
        return _result(gate, value, ">=", gate.min, value >= gate.min, evidence)
    if gate.kind == "accuracy_drop":
        m, e = _score(model, gate.metric), _score(expert, gate.metric)
        if gate.metric in LOWER_IS_BETTER:
            drop = (m - e) / e if e else (0.0 if m <= e else math.inf)
        else:
            drop = 1 - m / e if e else (0.0 if m >= e else math.inf)
        evidence = f"{gate.metric}: model {_fmt(m)} vs expert {_fmt(e)} on {n} held-out graphs"
        return _result(gate, drop, "<", gate.max, drop < gate.max, evidence)
    if gate.kind == "metric":
        value = _score(model, gate.metric)
        ok = (gate.min is None or value >= gate.min) and (gate.max is None or value <= gate.max)
        evidence = f"model {gate.metric} {_fmt(value)} on {n} held-out graphs (expert {_fmt(_score(expert, gate.metric))})"
        if gate.min is not None and gate.max is not None:
            return _result(gate, value, "in", [gate.min, gate.max], ok, evidence)
        if gate.min is not None:
            return _result(gate, value, ">=", gate.min, ok, evidence)
        return _result(gate, value, "<=", gate.max, ok, evidence)
    raise ValueError(f"unknown gate kind {gate.kind!r}")


def _median(xs) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else math.nan


def _result(gate, value, op, threshold, passed, evidence) -> dict:
    value = float(value)
    passed = bool(passed) and not math.isnan(value)
    return {"name": gate.name, "kind": gate.kind, "value": value, "op": op,
            "threshold": threshold, "passed": passed, "evidence": evidence}


def evaluate_gates(gates, evaluation: dict) -> dict:
    """{'verdict': 'GO' | 'NO-GO', 'gates': [...]}; GO needs every gate to pass (and one gate)."""
    results = [evaluate_gate(g, evaluation) for g in gates]
    verdict = "GO" if results and all(r["passed"] for r in results) else "NO-GO"
    return {"verdict": verdict, "gates": results}
