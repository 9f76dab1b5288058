"""The evaluation record: what every method predicted on every evaluation stage, and the truth.

This is the only thing gates and reports read. It keeps every probability, prediction and
timing per graph (so any metric or plot can be recomputed later) and, for display, a summary:
each method's metrics at their default aggregate with bootstrap 95% intervals over graphs. It
is stored as `evaluation.npz` (arrays) beside `evaluation.json` (everything else).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A statistic over graphs with its percentile-bootstrap 95% interval (n graphs had it)."""

    value: float
    low: float
    high: float
    n: int

    def to_json(self) -> dict:
        clean = lambda x: None if x is None or not math.isfinite(x) else float(x)  # noqa: E731
        return {"value": clean(self.value), "low": clean(self.low), "high": clean(self.high), "n": self.n}

    @classmethod
    def from_json(cls, d: dict) -> "Estimate":
        nan = lambda x: math.nan if x is None else float(x)  # noqa: E731
        return cls(nan(d["value"]), nan(d["low"]), nan(d["high"]), int(d["n"]))


@dataclass(frozen=True)
class Side:
    """One method on one stage's N graphs, padded to d variables. Rows of a graph the method
    did not run on are NaN in `probs`.

    probs [N, d]: P(i is a parent of the target); pred [N, d]: the prediction as weights in
    [0, 1] (thresholded probabilities; 1/2 for a CPDAG's undirected edge); seconds [N]: wall
    time from the data to the prediction (NaN: not timed); graph_scores / graph_pred [N, d, d]:
    the same for every edge i -> j (methods that predict a whole graph); map_pred [N, d]: the
    most probable parent set (the expert). On an [optimize] problem a side is a strategy:
    probs is its belief after the last trial, seconds its whole episode, trial_y [N, T] the
    outcome of each trial and best_y [N, T] the best so far."""

    probs: np.ndarray
    pred: np.ndarray
    seconds: np.ndarray
    graph_scores: np.ndarray | None = None
    graph_pred: np.ndarray | None = None
    map_pred: np.ndarray | None = None
    trial_y: np.ndarray | None = None
    best_y: np.ndarray | None = None
    note: str = ""

    @property
    def ran(self) -> np.ndarray:
        """[N] graphs this method predicted."""
        return np.isfinite(self.probs).all(1)


_SIDE_ARRAYS = ("probs", "pred", "seconds", "graph_scores", "graph_pred", "map_pred", "trial_y", "best_y")
_STAGE_ARRAYS = ("truth", "mask", "adjacency", "var_mask", "target", "expert_run_seconds")
_STAGE_OPTIONAL = ("optimum", "y0")


@dataclass(frozen=True)
class StageResult:
    """One evaluation stage: N graphs of one test distribution, the truth, and every method.

    truth [N, d] the target's true parents; mask [N, d] its candidates (real variables other
    than the target); adjacency [N, d, d] the true graphs; var_mask [N, d]; target [N];
    expert_run_seconds [N] the expert's whole run per graph (prior and causal BO trials). An
    [optimize] problem also has optimum [N] (the best expected target of a single-node hard
    intervention: exact for linear SCMs, else a Monte-Carlo estimate) and y0 [N] (the target's
    observational mean, where every episode starts)."""

    name: str
    description: str
    truth: np.ndarray
    mask: np.ndarray
    adjacency: np.ndarray
    var_mask: np.ndarray
    target: np.ndarray
    expert_run_seconds: np.ndarray
    sides: dict[str, Side]
    summary: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # what was run: distribution, sizes, settings
    optimum: np.ndarray | None = None
    y0: np.ndarray | None = None

    @property
    def is_optimization(self) -> bool:
        return self.optimum is not None

    @property
    def n_graphs(self) -> int:
        return int(self.truth.shape[0])

    @property
    def n_vars(self) -> np.ndarray:
        return self.var_mask.sum(1)


@dataclass(frozen=True)
class Evaluation:
    """Every stage of one evaluation, in the order the spec declares them."""

    stages: dict[str, StageResult]
    threshold: float
    n_boot: int
    seed: int
    compile_seconds: dict[str, float] = field(default_factory=dict)
    graph_decision: str = "threshold"  # how a model's edge probabilities became its graph_pred

    def stage(self, name: str | None = None) -> StageResult:
        """The stage `name` (default: the first declared)."""
        return self.stages[name] if name is not None else next(iter(self.stages.values()))

    # ----------------------------------------------------------------------- persistence

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for s in self.stages.values():
            for f in _STAGE_ARRAYS + _STAGE_OPTIONAL:
                if getattr(s, f) is not None:
                    out[f"{s.name}/{f}"] = np.asarray(getattr(s, f))
            for side_name, side in s.sides.items():
                for f in _SIDE_ARRAYS:
                    value = getattr(side, f)
                    if value is not None:
                        out[f"{s.name}/{side_name}/{f}"] = np.asarray(value)
        return out

    def to_json(self) -> dict:
        return {
            "threshold": self.threshold,
            "graph_decision": self.graph_decision,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "compile_seconds": self.compile_seconds,
            "stages": [
                {
                    "name": s.name,
                    "description": s.description,
                    "n_graphs": s.n_graphs,
                    "info": s.info,
                    "sides": {k: {"note": v.note} for k, v in s.sides.items()},
                    "summary": {side: {m: e.to_json() for m, e in ms.items()}
                                for side, ms in s.summary.items()},
                }
                for s in self.stages.values()
            ],
        }

    @classmethod
    def from_parts(cls, arrays: dict[str, np.ndarray], meta: dict) -> "Evaluation":
        stages = {}
        for s in meta["stages"]:
            name = s["name"]
            sides = {
                side_name: Side(**{f: arrays.get(f"{name}/{side_name}/{f}") for f in _SIDE_ARRAYS},
                                note=side_meta.get("note", ""))
                for side_name, side_meta in s["sides"].items()
            }
            summary = {side: {m: Estimate.from_json(e) for m, e in ms.items()}
                       for side, ms in s["summary"].items()}
            stages[name] = StageResult(
                name=name, description=s["description"], sides=sides, summary=summary,
                info=s.get("info", {}), **{f: arrays[f"{name}/{f}"] for f in _STAGE_ARRAYS},
                **{f: arrays.get(f"{name}/{f}") for f in _STAGE_OPTIONAL},
            )
        return cls(stages, float(meta["threshold"]), int(meta["n_boot"]), int(meta["seed"]),
                   dict(meta.get("compile_seconds", {})), meta.get("graph_decision", "threshold"))
