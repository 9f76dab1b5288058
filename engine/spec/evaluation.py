"""[evaluation] (its stages: the test distributions) and [stage] (how specs build on each other).

Gates are in engine.spec.gates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from engine.evaluate.baselines import BASELINES
from engine.evaluate.catalog import SIDES
from engine.spec.base import Section, error_at
from engine.spec.expert import ExpertSpec
from engine.spec.scm import ScmSpec

SPEC_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
STAGE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"  # it names stage folders (simulate.<name>)
Baseline = Literal[tuple(BASELINES)]
# Editors see overrides (any subset of the table's keys), not a whole table.
AS_OVERRIDES = WithJsonSchema({"type": "object", "description": "keys of the spec's own table "
                               "replaced by these (validated as a whole table)"})


def _spec_name(name: str) -> str:
    # Only a plain name: it becomes <spec dir>/<name>.toml, so a path could leave that folder.
    if len(name) > 64 or not re.fullmatch(SPEC_NAME, name):
        raise ValueError(
            f"'{name}' is not a spec name: give the name of a spec file beside this one, without "
            "a folder or '.toml' (e.g. \"phase2a\" for phase2a.toml)"
        )
    return name


SpecName = Annotated[str, AfterValidator(_spec_name)]


def _unique(items: list, key: str) -> None:
    for i, item in enumerate(items):
        if item in items[:i]:
            raise error_at((key, i), f"'{item}' is listed twice")


def _stage_name(name: str) -> str:
    if len(name) > 64 or not re.fullmatch(STAGE_NAME, name):
        raise ValueError(f"'{name}' is not a stage name: letters, digits and _, not starting "
                         "with a digit (it names the stage's folders and report rows)")
    return name


class EvaluationStage(Section):
    """One test distribution. Without `scm` and `n_graphs` it is the spec's own held-out split;
    `scm` / `expert` override keys of [scm] / [expert] (an `expert` with another `kind` replaces
    the table); a stage with `scm` needs `n_graphs`. `observational`: every method sees only
    the observational rows. `baselines` and `timed_graphs` default to [evaluation]'s (0: no
    timing on this stage)."""

    name: Annotated[str, AfterValidator(_stage_name)]
    description: str = ""
    n_graphs: int | None = Field(default=None, gt=0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    # The root merges the overrides into full tables before this validates them.
    scm: Annotated[ScmSpec | None, AS_OVERRIDES] = None
    expert: Annotated[ExpertSpec | None, AS_OVERRIDES] = None
    baselines: list[Baseline] | None = None
    observational: bool = False
    timed_graphs: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _sized(self) -> "EvaluationStage":
        if self.scm is not None and self.n_graphs is None:
            raise error_at(("n_graphs",), "a stage with its own scm needs n_graphs (only the "
                                          "spec's own held-out split has a size already)")
        _unique(self.baselines or [], "baselines")
        return self


class EvaluationSpec(Section):
    """Every method on the same graphs of each stage, scored against the truth. The expert and
    the model are timed on `timed_graphs` graphs per stage, interleaved (`timing_repeats` runs
    each, the median kept; compile apart). Aggregates carry a bootstrap 95% interval over
    graphs (`n_boot` resamples). `models`: other specs whose trained models are evaluated as
    extra sides, named by their spec name. `baseline_seconds`: the longest PC or GES may run on
    one graph; past it the run is stopped and the graph counts as not run for that baseline
    (said in the record), since GES's search grows steeply with size and density.
    `graph_decision`: how a model's edge probabilities become the one graph its graph F1, skeleton
    F1 and SHD score: "expected_f1" (default), the graph of highest expected F1 under them
    (engine.evaluate.decision), or "threshold", the edges above `threshold`. Parent-set
    predictions are always the parents above `threshold`."""

    threshold: float = Field(default=0.5, gt=0, lt=1)
    graph_decision: Literal["expected_f1", "threshold"] = "expected_f1"
    timing_repeats: int = Field(default=3, gt=0)
    timed_graphs: int = Field(default=20, gt=0)
    n_boot: int = Field(default=1000, gt=0)
    n_examples: int = Field(default=6, ge=0)
    baselines: list[Baseline] = ["pc", "ges", "random"]
    baseline_seconds: float = Field(default=600.0, gt=0)
    models: list[SpecName] = []
    stages: list[EvaluationStage] = []

    def build_decision(self):
        """The runtime rule that turns a model's edge probabilities into one graph."""
        from engine.evaluate.decision import ExpectedF1, Threshold

        return ExpectedF1() if self.graph_decision == "expected_f1" else Threshold(self.threshold)

    @model_validator(mode="after")
    def _names(self) -> "EvaluationSpec":
        _unique(self.baselines, "baselines")
        _unique(self.models, "models")
        for i, name in enumerate(self.models):
            if name in SIDES:
                raise error_at(("models", i), f"'{name}' is a built-in side ({', '.join(SIDES)}); "
                                              "a model is named by its spec's name")
        names = [s.name for s in self.stages]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise error_at(("stages", i, "name"), f"a stage named '{name}' is declared above")
        return self


@dataclass(frozen=True)
class ResolvedStage:
    """An evaluation stage with every default applied (`scm` None: the spec's own held-out
    distribution)."""

    name: str
    description: str
    scm: ScmSpec | None
    expert: Any  # ExpertSpec
    n_graphs: int | None
    seed: int
    baselines: tuple[str, ...]
    observational: bool
    timed_graphs: int


class StageSpec(Section):
    """How this spec builds on others, by their `name` (the file `specs/<name>.toml` beside it).

    `uses`: evaluate the model that spec trained instead of training one here.
    `requires`: refuse to apply until each named spec's gate verdict is GO.
    """

    uses: SpecName | None = None
    requires: list[SpecName] = []
