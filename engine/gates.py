"""Gates judged on the evaluation record: GO / NO-GO / INCONCLUSIVE from bootstrap intervals.

Every number comes from `engine.evaluate.estimate.estimate` (with the record's n_boot and seed,
so all gates see the same resamples); nothing here computes a metric.

A `min` gate is GO when the interval's low end is >= min, NO-GO when its high end is below
`nogo_below` (default: min) or the point value is below `nogo_below`, INCONCLUSIVE otherwise;
`max` is the mirror image, and a gate with both takes the worse. An undefined value is NO-GO.
Groups combine their gates by policy (`all` or `majority`); the verdict combines groups by `all`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.evaluate.catalog import METRICS, has
from engine.evaluate.estimate import estimate
from engine.evaluate.record import Estimate, Evaluation

GO, NO_GO, INCONCLUSIVE = "GO", "NO-GO", "INCONCLUSIVE"
_WORSE = {GO: 0, INCONCLUSIVE: 1, NO_GO: 2}
NAN = Estimate(math.nan, math.nan, math.nan, 0)


@dataclass(frozen=True)
class GateResult:
    name: str
    group: str
    metric: str
    stage: str
    side: str
    aggregate: str
    vs: str | None
    relative: str | None
    estimate: Estimate
    op: str  # ">=", "<=" or "in"
    threshold: float | list[float]  # [min, max] for "in"
    nogo: float | list[float | None] | None  # nogo_below / nogo_above ([both] for "in")
    verdict: str
    evidence: str

    @property
    def bounds(self) -> tuple:
        """(min, max, nogo_below, nogo_above), None where the gate has none."""
        if self.op == "in":
            return (*self.threshold, *(self.nogo or [None, None]))
        if self.op == ">=":
            return self.threshold, None, self.nogo, None
        return None, self.threshold, None, self.nogo

    def to_json(self) -> dict:
        head = {k: getattr(self, k) for k in ("name", "group", "metric", "stage", "side",
                                              "aggregate", "vs", "relative")}
        tail = {k: getattr(self, k) for k in ("op", "threshold", "nogo", "verdict", "evidence")}
        return {**head, **self.estimate.to_json(), **tail}

    @classmethod
    def from_json(cls, d: dict) -> "GateResult":
        est = Estimate.from_json({k: d.get(k) for k in ("value", "low", "high", "n")})
        return cls(d["name"], d["group"], d["metric"], d["stage"], d["side"], d["aggregate"],
                   d.get("vs"), d.get("relative"), est, d["op"], d["threshold"], d.get("nogo"),
                   d["verdict"], d["evidence"])


@dataclass(frozen=True)
class GroupVerdict:
    policy: str
    verdict: str


@dataclass(frozen=True)
class Verdict:
    verdict: str
    groups: dict[str, GroupVerdict]
    gates: list[GateResult]

    def to_json(self) -> dict:
        return {"verdict": self.verdict,
                "groups": {k: {"policy": g.policy, "verdict": g.verdict}
                           for k, g in self.groups.items()},
                "gates": [g.to_json() for g in self.gates]}

    @classmethod
    def from_json(cls, d: dict) -> "Verdict":
        return cls(d["verdict"], {k: GroupVerdict(g["policy"], g["verdict"])
                                  for k, g in d.get("groups", {}).items()},
                   [GateResult.from_json(g) for g in d.get("gates", [])])


# --------------------------------------------------------------------------- judging


def judge(gate, e: Estimate) -> str:
    """One gate's verdict from its estimate (see the module docstring)."""
    if not math.isfinite(e.value):
        return NO_GO
    found = []
    if gate.min is not None:
        floor = gate.nogo_below if gate.nogo_below is not None else gate.min
        if e.low >= gate.min:  # NaN compares False: no interval, no GO
            found.append(GO)
        elif e.high < floor or (gate.nogo_below is not None and e.value < gate.nogo_below):
            found.append(NO_GO)
        else:
            found.append(INCONCLUSIVE)
    if gate.max is not None:
        ceiling = gate.nogo_above if gate.nogo_above is not None else gate.max
        if e.high <= gate.max:
            found.append(GO)
        elif e.low > ceiling or (gate.nogo_above is not None and e.value > gate.nogo_above):
            found.append(NO_GO)
        else:
            found.append(INCONCLUSIVE)
    return max(found, key=_WORSE.__getitem__)


def combine(verdicts: list[str], policy: str) -> str:
    """`all`: GO if all are, NO-GO if any is. `majority`: GO if more than half are GO, NO-GO if
    the GO and INCONCLUSIVE together cannot make more than half."""
    if not verdicts:
        return NO_GO
    go, open_ = verdicts.count(GO), verdicts.count(INCONCLUSIVE)
    if policy == "majority":
        half = len(verdicts) / 2
        return GO if go > half else NO_GO if go + open_ <= half else INCONCLUSIVE
    return GO if go == len(verdicts) else NO_GO if NO_GO in verdicts else INCONCLUSIVE


# --------------------------------------------------------------------------- evidence


def _num(x: float, unit: str = "") -> str:
    return "undefined" if x is None or not math.isfinite(x) else f"{x:.3g}{unit}"


def _what(gate) -> str:
    """'median speedup', 'share of graphs with speedup > 1', 'pooled f1', ..."""
    if gate.aggregate == "share":
        return f"share of graphs with {gate.metric} > {gate.above:g}"
    if gate.aggregate == "quantile":
        return f"{gate.q:g}-quantile of {gate.metric}"
    return f"{gate.aggregate} {gate.metric}"


def _unit(gate) -> str:
    if gate.vs is not None or gate.vs_stage is not None or gate.aggregate == "share":
        return ""
    return {"speedup": "x", "full_speedup": "x", "seconds": " s"}.get(gate.metric, "")


def _needs(gate) -> str:
    bounds = []
    if gate.min is not None:
        zone = (f" (NO-GO below {gate.nogo_below:g}, INCONCLUSIVE at best from "
                f"{gate.nogo_below:g} to {gate.min:g})" if gate.nogo_below is not None else "")
        bounds.append(f">= {gate.min:g}{zone}")
    if gate.max is not None:
        zone = (f" (NO-GO above {gate.nogo_above:g}, INCONCLUSIVE at best from "
                f"{gate.max:g} to {gate.nogo_above:g})" if gate.nogo_above is not None else "")
        bounds.append(f"<= {gate.max:g}{zone}")
    return "needs " + " and ".join(bounds)


def _subject(gate, stage: str, n: int) -> str:
    ref = " on ".join(filter(None, (gate.vs, gate.vs_stage)))
    versus = f" {gate.relative} vs {ref}" if ref else ""
    return f"{_what(gate)}{versus} of {gate.side} over {n} graphs of {stage}"


def _missing(evaluation: Evaluation, stage: str, gate) -> str | None:
    """Why the record cannot give this gate a value (None: it can)."""
    if stage not in evaluation.stages:
        return f"the evaluation has no stage '{stage}' (it has {', '.join(evaluation.stages)})"
    st, m = evaluation.stages[stage], METRICS[gate.metric]
    if gate.vs_stage is not None and gate.vs_stage not in evaluation.stages:
        return f"the evaluation has no stage '{gate.vs_stage}'"
    checks = [(stage, gate.side)]
    if gate.vs is not None or gate.vs_stage is not None:
        checks.append((gate.vs_stage or stage, gate.vs or gate.side))
    for where, name in checks:
        side = evaluation.stages[where].sides.get(name)
        if side is None:
            return f"{name} was not evaluated on {where}"
        if not has(m, name, side):
            note = f" ({side.note})" if side.note else ""
            return f"{name} has no {gate.metric} on {where}{note}"
    return None


def evaluate_gate(gate, stage: str, evaluation: Evaluation) -> tuple[Estimate, str, str]:
    """(estimate, verdict, evidence) of one gate spec on the record."""
    why = _missing(evaluation, stage, gate)
    if why:
        return NAN, NO_GO, f"{_what(gate)} of {gate.side}: {why}; {_needs(gate)}"
    st = evaluation.stages[stage]
    kw = dict(aggregate=gate.aggregate, q=gate.q if gate.q is not None else 0.5, above=gate.above,
              n_boot=evaluation.n_boot, seed=evaluation.seed)
    ref_stage = evaluation.stages[gate.vs_stage] if gate.vs_stage is not None else None
    e = estimate(st, gate.metric, gate.side, vs=gate.vs, relative=gate.relative or "drop",
                 vs_stage=ref_stage, **kw)
    verdict = judge(gate, e)
    unit = _unit(gate)
    if math.isfinite(e.value):
        told = f"{_num(e.value, unit)} [{_num(e.low, unit)}, {_num(e.high, unit)}] (95% CI)"
    elif e.n == 0:
        told = f"undefined: no graph has it (of {st.n_graphs})"
    else:
        told = "undefined on these graphs (e.g. nothing to count: a ratio of zeros)"
    text = f"{_subject(gate, stage, e.n)}: {told}, {_needs(gate)}"
    if gate.vs is not None or ref_stage is not None:
        ref_name = gate.vs or gate.side
        a = estimate(st, gate.metric, gate.side, **kw)
        b = estimate(ref_stage or st, gate.metric, ref_name, **kw)
        where = f" on {ref_stage.name}" if ref_stage is not None else ""
        text += f"; {gate.side} {_num(a.value)}, {ref_name}{where} {_num(b.value)}"
    return e, verdict, text


def evaluate_gates(spec, evaluation: Evaluation) -> Verdict:
    """Every gate of `spec` on `evaluation`, its groups, and the overall verdict (no gates:
    NO-GO, as nothing was shown)."""
    first = spec.evaluation_stages()[0].name
    results = []
    for gate in spec.gates:
        stage = gate.stage or first
        e, verdict, evidence = evaluate_gate(gate, stage, evaluation)
        nogo = ([gate.nogo_below, gate.nogo_above] if gate.op == "in"
                else gate.nogo_below if gate.op == ">=" else gate.nogo_above)
        results.append(GateResult(
            gate.name, gate.group, gate.metric, stage, gate.side, gate.aggregate, gate.vs,
            gate.relative, e, gate.op, gate.threshold, nogo, verdict, evidence))
    groups: dict[str, GroupVerdict] = {}
    for name in dict.fromkeys(r.group for r in results):
        policy = spec.gate_groups.get(name, "all")
        verdicts = [r.verdict for r in results if r.group == name]
        groups[name] = GroupVerdict(policy, combine(verdicts, policy))
    overall = combine([g.verdict for g in groups.values()], "all")
    return Verdict(overall, groups, results)
