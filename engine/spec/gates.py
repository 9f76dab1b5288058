"""[[gates]] and [gate_groups]: success criteria over the evaluation record, with intervals.

A gate names a metric of `engine.evaluate.catalog`, an evaluation stage, a side (the model, the
expert, a baseline, or another spec's model), an aggregate, and bounds; optionally it is
relative to another side (`vs`). Checks that need the rest of the spec (stages, baselines run,
evaluation.models) are in `check_gates`, called by the root.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from engine.evaluate.baselines import BASELINES
from engine.evaluate.catalog import AGGREGATES, METRICS, SIDES, Metric
from engine.spec.base import Section, error_at, suggest

RELATIVE = ("drop", "ratio", "difference")
POLICIES = ("all", "majority")


def metric_list() -> str:
    return ", ".join(METRICS)


def unknown_metric(name: str) -> str:
    return (f"unknown metric '{name}'{suggest(name, list(METRICS))}; metrics: {metric_list()} "
            "(`acbo schema` describes each)")


def role(side: str) -> str:
    """The catalog's side a name stands for: another spec's trained model is a 'model'."""
    return side if side in SIDES else "model"


def side_lacks(metric: Metric, side: str) -> str | None:
    """Why `side` never has `metric` (None: it may). Graph-scope metrics need a whole-graph
    prediction: the baselines have one, models may (a graph head), the expert never."""
    r = role(side)
    if metric.sides is not None and r not in metric.sides:
        return f"the {side} side has no {metric.name}: it is measured for " \
               f"{', '.join(metric.sides)} only ({metric.description})"
    if metric.scope == "graph" and r == "expert":
        return f"the expert has no {metric.name}: it predicts the target's parents, not a whole " \
               "graph (use the parent-set metric)"
    return None


def _fmt(x: float) -> str:
    return f"{x:g}"


class GateSpec(Section):
    """A success criterion: the `aggregate` of `metric` for `side` on evaluation `stage` (or its
    `relative` change vs another side) must be >= `min` and/or <= `max`, judged on its
    bootstrap 95% interval: GO when the whole interval meets the bound, NO-GO when none of it
    does (or the value falls beyond the optional `nogo_below` / `nogo_above`), otherwise
    INCONCLUSIVE. `q` is the quantile (aggregate = "quantile"); `above` makes `share` the share
    of graphs whose value is > above. Gates of a `group` are combined by its [gate_groups]
    policy."""

    name: str = ""  # default: built from metric, side and vs
    metric: str = Field(json_schema_extra={"enum": list(METRICS)})
    stage: str | None = None  # default: the first evaluation stage
    side: str = "model"
    # default: the metric's own
    aggregate: Literal[AGGREGATES] | None = None  # type: ignore[valid-type]
    q: float | None = Field(default=None, gt=0, lt=1)
    above: float | None = None
    vs: str | None = None
    vs_stage: str | None = None  # relative to a side on another stage (transfer)
    relative: Literal[RELATIVE] | None = None  # default with vs: "drop"  # type: ignore[valid-type]
    min: float | None = None
    max: float | None = None
    nogo_below: float | None = None
    nogo_above: float | None = None
    group: str = Field(default="default", min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        # Filled before validation so the model holds concrete values (and plans hash them).
        if not isinstance(data, dict):
            return data
        if "kind" in data:  # the four gate kinds became one form
            raise error_at(("kind",), "gates have no kind any more: name a metric (speedup -> "
                           'metric = "speedup"; accuracy_drop -> metric = "f1", vs = "expert", '
                           'relative = "drop"; faster_share -> metric = "speedup", aggregate = '
                           '"share", above = 1.0; metric -> just metric)')
        data = dict(data)
        metric = METRICS.get(data.get("metric")) if isinstance(data.get("metric"), str) else None
        if metric is not None and "aggregate" not in data:
            data["aggregate"] = metric.default_aggregate
        if (data.get("vs") is not None or data.get("vs_stage") is not None) and "relative" not in data:
            data["relative"] = "drop"
        if not data.get("name") and isinstance(data.get("metric"), str):
            side = data.get("side", "model")
            ref = " on ".join(filter(None, (data.get("vs"), data.get("vs_stage"))))
            vs = f" {data.get('relative', 'drop')} vs {ref}" if ref else ""
            data["name"] = f"{data['metric']} of {side}{vs}"
        return data

    @model_validator(mode="after")
    def _coherent(self) -> "GateSpec":
        m = METRICS.get(self.metric)
        if m is None:
            raise error_at(("metric",), unknown_metric(self.metric))
        if self.aggregate not in m.aggregates:
            raise error_at(("aggregate",), f"{self.metric} has no aggregate '{self.aggregate}' "
                                           f"(it has {', '.join(m.aggregates)})")
        if self.aggregate == "quantile" and self.q is None:
            raise error_at(("q",), 'aggregate = "quantile" needs q, the quantile (0 < q < 1)')
        if self.q is not None and self.aggregate != "quantile":
            raise error_at(("q",), f'q is the quantile of aggregate = "quantile" (this gate\'s '
                                   f'aggregate is "{self.aggregate}")')
        if self.aggregate == "share" and self.above is None:
            raise error_at(("above",), 'aggregate = "share" needs above: the share of graphs '
                                       f"whose {self.metric} is > above")
        if self.above is not None and self.aggregate != "share":
            raise error_at(("above",), f'above belongs to aggregate = "share" (this gate\'s '
                                       f'aggregate is "{self.aggregate}")')
        for key, name in (("side", self.side), ("vs", self.vs)):
            why = side_lacks(m, name) if name is not None else None
            if why:  # at the metric when the side is the default one
                raise error_at((key if key in self.model_fields_set else "metric",), why)
        if self.vs is None and self.vs_stage is None and self.relative is not None:
            raise error_at(("relative",), "relative needs vs (the side this gate compares with) "
                                          "or vs_stage (the stage)")
        if self.vs is not None and self.vs == self.side and self.vs_stage is None:
            raise error_at(("vs",), f"vs = '{self.vs}' is the gate's own side")
        self._check_bounds(m)
        return self

    def _check_bounds(self, m: Metric) -> None:
        lo, hi = self.min, self.max
        if lo is None and hi is None:
            raise error_at((), "a gate needs min and/or max (without a bound it always passes)")
        if lo is not None and hi is not None and lo > hi:
            raise error_at(("min",), f"min ({_fmt(lo)}) must be <= max ({_fmt(hi)}): no value "
                                     "can pass")
        if self.nogo_below is not None:
            if lo is None:
                raise error_at(("nogo_below",), "nogo_below marks a zone below min: give min")
            if self.nogo_below > lo:
                raise error_at(("nogo_below",), f"nogo_below ({_fmt(self.nogo_below)}) must be "
                                                f"<= min ({_fmt(lo)})")
        if self.nogo_above is not None:
            if hi is None:
                raise error_at(("nogo_above",), "nogo_above marks a zone above max: give max")
            if self.nogo_above < hi:
                raise error_at(("nogo_above",), f"nogo_above ({_fmt(self.nogo_above)}) must be "
                                                f">= max ({_fmt(hi)})")
        if self.vs is not None or self.vs_stage is not None:
            return  # a relative value's range depends on both sides
        what = f"{self.metric}"
        lower, upper = m.lower, m.upper
        if self.aggregate == "share":
            what, lower, upper = "a share of graphs", 0.0, 1.0
        if lo is not None and upper is not None and lo > upper:
            raise error_at(("min",), f"{what} is at most {_fmt(upper)}, so min = {_fmt(lo)} can "
                                     "never pass")
        if hi is not None and lower is not None and hi < lower:
            never = "negative" if lower == 0 else f"below {_fmt(lower)}"
            raise error_at(("max",), f"{what} is never {never}, so max = {_fmt(hi)} can never "
                                     "pass")

    # ------------------------------------------------------------------ derived
    @property
    def op(self) -> str:
        return "in" if self.min is not None and self.max is not None else (
            ">=" if self.min is not None else "<=")

    @property
    def threshold(self) -> float | list[float]:
        return [self.min, self.max] if self.op == "in" else (
            self.min if self.op == ">=" else self.max)


def check_gates(gates: list[GateSpec], groups: dict[str, str], stages: list, models: list[str],
                problems: dict[str, list[str]] | None = None):
    """Checks against the rest of the spec: stages, what each stage runs, evaluation.models,
    [optimize] problems (name -> its strategies, the sides there) and [gate_groups]. `stages`
    are the resolved evaluation stages. Raises error_at (root paths)."""
    problems = problems or {}
    by_name = {s.name: s for s in stages}
    names = list(by_name) + list(problems)
    sides = list(SIDES) + list(models)
    for i, g in enumerate(gates):
        for key in ("stage", "vs_stage"):
            name = getattr(g, key)
            if name is not None and name not in by_name and name not in problems:
                what = "evaluation stage or optimize problem" if problems else "evaluation stage"
                raise error_at(("gates", i, key), f"no {what} '{name}'{suggest(name, names)}; "
                               f"stages: {', '.join(names)}")
        if _check_problem_gate(i, g, problems, by_name):
            continue
        if METRICS[g.metric].scope == "episode":
            raise error_at(("gates", i, "metric"), f"{g.metric} is measured on [optimize] "
                           "episodes: give stage = the name of an optimize problem"
                           f" ({', '.join(problems) or 'this spec has none'})")
        st = by_name[g.stage] if g.stage is not None else stages[0]
        if g.vs_stage is not None and g.vs_stage == st.name:
            raise error_at(("gates", i, "vs_stage"), f"vs_stage = '{g.vs_stage}' is the gate's "
                           "own stage (use vs to compare sides on one stage)")
        ref_stage = by_name[g.vs_stage] if g.vs_stage is not None else st
        checks = [("side", g.side, st)]
        if g.vs is not None or g.vs_stage is not None:
            checks.append(("vs" if g.vs is not None else "vs_stage", g.vs or g.side, ref_stage))
        for key, side, st in checks:
            if side not in sides:
                raise error_at(("gates", i, key), f"unknown side '{side}'{suggest(side, sides)}; "
                               f"sides: {', '.join(sides)} (other specs' models are sides once "
                               "listed in evaluation.models)")
            if side in BASELINES and side not in st.baselines:
                raise error_at(("gates", i, key), f"stage '{st.name}' does not run the {side} "
                               f"baseline (it runs: {', '.join(st.baselines) or 'none'}); add it "
                               "to that stage's baselines or evaluation.baselines")
    used = {g.group for g in gates}
    for group in groups:
        if group not in used:
            raise error_at(("gate_groups", group), f"no gate is in group '{group}'"
                           f"{suggest(group, sorted(used))}; groups: "
                           f"{', '.join(sorted(used)) or 'none (no [[gates]])'}")


def _check_problem_gate(i: int, g: GateSpec, problems: dict[str, list[str]], by_name: dict) -> bool:
    """Checks of a gate on an [optimize] problem (True), or False when it is not on one. Its
    sides are the problem's strategies; its metrics the episode ones, the belief's parent-set
    metrics and seconds."""
    if g.stage not in problems:
        if g.vs_stage in problems:
            raise error_at(("gates", i, "vs_stage"), f"'{g.vs_stage}' is an optimize problem but "
                           "the gate's stage is not: compare problems with problems")
        return False
    if g.vs_stage is not None and g.vs_stage not in problems:
        raise error_at(("gates", i, "vs_stage"), f"'{g.vs_stage}' is an evaluation stage but the "
                       f"gate's stage '{g.stage}' is an optimize problem")
    m = METRICS[g.metric]
    if m.scope == "graph" or (m.scope == "time" and g.metric != "seconds") or m.sides is not None:
        raise error_at(("gates", i, "metric"), f"{g.metric} is not measured on optimize episodes "
                       "(they have the episode metrics, the belief's parent-set metrics and "
                       "seconds per episode)")
    strategies = problems[g.stage]
    for key, side in (("side", g.side), ("vs", g.vs)):
        if side is not None and side not in strategies:
            raise error_at(("gates", i, key if key in g.model_fields_set else "stage"),
                           f"'{side}' is not a strategy of [optimize]{suggest(side, strategies)}; "
                           f"strategies: {', '.join(strategies)}")
    return True
