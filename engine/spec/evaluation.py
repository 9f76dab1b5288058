"""[evaluation], [[gates]] and [stage]: how runs are judged and how specs build on each other."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, Field, model_validator

from engine.spec.base import Section, error_at

Metric = Literal["f1", "auroc", "auprc", "map_f1", "brier", "ece", "shd"]
UNBOUNDED_METRICS = {"shd"}  # the others lie in [0, 1]
EXPERT_ONLY_METRICS = {"map_f1"}  # the model predicts parent marginals, not parent sets


def _model_scores(metric: str) -> None:
    """Gates compare the model's score: refuse a metric only the expert has."""
    if metric in EXPERT_ONLY_METRICS:
        raise error_at(("metric",), f"{metric} scores the expert's most probable parent set; "
                                    "the model predicts parent marginals, not sets, so it has "
                                    f"no {metric} (use f1)")


SPEC_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class EvaluationSpec(Section):
    """Model and expert on the same held-out graphs, scored against the true parents and timed
    in the same process (`timing_repeats` runs per graph, the median kept; compile apart)."""

    threshold: float = Field(default=0.5, gt=0, lt=1)
    timing_repeats: int = Field(default=3, gt=0)
    max_graphs: int | None = Field(default=None, gt=0)
    n_examples: int = Field(default=6, ge=0)


class SpeedupGate(Section):
    """Passes when expert time / model time (per graph, summarised by `stat`) is >= `min`."""

    kind: Literal["speedup"]
    name: str = "speedup"
    min: float = Field(gt=0)
    stat: Literal["median", "mean", "geometric_mean"] = "median"


class AccuracyDropGate(Section):
    """Passes when 1 - model / expert for `metric` (higher is better) is < `max`."""

    kind: Literal["accuracy_drop"]
    name: str = "accuracy_drop"
    metric: Metric = "f1"
    max: float = Field(gt=0)

    @model_validator(mode="after")
    def _model_has_it(self) -> "AccuracyDropGate":
        _model_scores(self.metric)
        return self


class FasterShareGate(Section):
    """Passes when the model is faster than the expert on at least `min` of the graphs."""

    kind: Literal["faster_share"]
    name: str = "faster_share"
    min: float = Field(gt=0, le=1)


class MetricGate(Section):
    """Passes when the model's `metric` is >= `min` (and/or <= `max`)."""

    kind: Literal["metric"]
    name: str = "metric"
    metric: Metric
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _can_pass_and_fail(self) -> "MetricGate":
        _model_scores(self.metric)
        lo, hi = self.min, self.max
        if lo is None and hi is None:
            raise ValueError("a metric gate needs min and/or max (without a bound it always passes)")
        if lo is not None and hi is not None and lo > hi:
            raise error_at(("min",), f"min ({lo:g}) must be <= max ({hi:g}): no value can pass")
        if lo is not None and lo > 1 and self.metric not in UNBOUNDED_METRICS:
            raise error_at(("min",), f"{self.metric} is at most 1, so min = {lo:g} can never pass")
        if hi is not None and hi < 0:
            raise error_at(("max",), f"{self.metric} is never negative, so max = {hi:g} can never "
                                     "pass")
        return self


GateSpec = Annotated[
    Union[SpeedupGate, AccuracyDropGate, FasterShareGate, MetricGate], Field(discriminator="kind")
]


def _spec_name(name: str) -> str:
    # Only a plain name: it becomes <spec dir>/<name>.toml, so a path could leave that folder.
    if len(name) > 64 or not re.fullmatch(SPEC_NAME, name):
        raise ValueError(
            f"'{name}' is not a spec name: give the name of a spec file beside this one, without "
            "a folder or '.toml' (e.g. \"phase2a\" for phase2a.toml)"
        )
    return name


SpecName = Annotated[str, AfterValidator(_spec_name)]


class StageSpec(Section):
    """How this spec builds on others, by their `name` (the file `specs/<name>.toml` beside it).

    `uses`: evaluate the model that spec trained instead of training one here.
    `requires`: refuse to apply until each named spec's gate verdict is GO.
    """

    uses: SpecName | None = None
    requires: list[SpecName] = []
