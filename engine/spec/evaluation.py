"""[evaluation], [[gates]] and [stage]: how runs are judged and how specs build on each other."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from engine.spec.base import Section

Metric = Literal["f1", "auroc", "auprc", "map_f1", "brier", "ece", "shd"]


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


GateSpec = Annotated[
    Union[SpeedupGate, AccuracyDropGate, FasterShareGate, MetricGate], Field(discriminator="kind")
]


class StageSpec(Section):
    """How this spec builds on others, by their `name` (the file `specs/<name>.toml` beside it).

    `uses`: evaluate the model that spec trained instead of training one here.
    `requires`: refuse to apply until each named spec's gate verdict is GO.
    """

    uses: str | None = None
    requires: list[str] = []
