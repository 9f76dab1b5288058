"""The root of a spec file: identity, seed, and every section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from engine.spec.base import Section, error_at
from engine.spec.data import DataSpec
from engine.spec.evaluation import SPEC_NAME, EvaluationSpec, GateSpec, StageSpec
from engine.spec.expert import ExpertSpec
from engine.spec.model import LossSpec, ModelSpec
from engine.spec.scm import ScmSpec
from engine.spec.train import CONTEXT_MODE, CONTEXT_SCM, HardwareSpec, TrainSpec


MAX_SEED = 2**32 - 1


class Spec(Section):
    """An acbo experiment: SCM distribution -> expert -> demonstrations -> model -> gates."""

    version: Literal[1]
    name: str = Field(pattern=SPEC_NAME, max_length=64)
    description: str = ""
    seed: int = Field(default=0, ge=0)
    scm: ScmSpec
    expert: ExpertSpec
    data: DataSpec
    model: ModelSpec | None = None
    loss: LossSpec | None = None
    train: TrainSpec | None = None
    hardware: HardwareSpec = HardwareSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    gates: list[GateSpec] = []
    stage: StageSpec = StageSpec()

    @field_validator("seed")
    @classmethod
    def _seed_fits(cls, seed: int) -> int:
        # jax's PRNGKey keeps 32 bits (x64 off): 2**32 would give seed 0's data, 2**64 overflow.
        if seed > MAX_SEED:
            raise ValueError(f"must be at most 2**32 - 1 = {MAX_SEED}: larger seeds wrap "
                             f"onto smaller ones (got {seed})")
        return seed

    @field_validator("scm", "data")
    @classmethod
    def _remember(cls, value, info: ValidationInfo):
        """[train.curriculum] entries check themselves against [scm] and data.mode (validated
        earlier) through the validation context, so their errors point at the entry."""
        if isinstance(info.context, dict):
            if isinstance(value, ScmSpec):
                info.context[CONTEXT_SCM] = value
            else:
                info.context[CONTEXT_MODE] = value.mode
        return value

    @model_validator(mode="after")
    def _curriculum_fits(self) -> "Spec":
        # Without a validation context (Spec.model_validate(data)) the entries could not check.
        for i, stage in enumerate(self.train.curriculum if self.train else []):
            problem = stage.problem(self.data.mode, self.scm)
            if problem:
                raise ValueError(f"train.curriculum[{i}]: {problem}")
        return self

    @model_validator(mode="after")
    def _model_or_uses(self) -> "Spec":
        trains = [s for s in ("model", "loss", "train") if getattr(self, s) is not None]
        if self.stage.uses is None and len(trains) < 3:
            missing = sorted({"model", "loss", "train"} - set(trains))
            raise ValueError(
                f"missing section(s) {', '.join('[' + m + ']' for m in missing)}: a spec either "
                "trains a model ([model], [loss], [train]) or evaluates another's ([stage] uses)"
            )
        if self.stage.uses is not None and trains:
            raise ValueError(
                f"[stage] uses = '{self.stage.uses}' takes its model from that spec; remove "
                f"{', '.join('[' + t + ']' for t in trains)}"
            )
        if self.stage.uses == self.name or self.name in self.stage.requires:
            raise ValueError("a spec cannot use or require itself")
        return self

    @model_validator(mode="after")
    def _splits_fit_training(self) -> "Spec":
        """[data] checks its held-out split itself; training's needs depend on other sections."""
        counts, problem = self.data.graph_counts, None
        if self.trains and self.data.mode == "fixed" and counts["train"] < 1:
            problem = self.data.empty_split(
                "train", "data.mode = \"fixed\" trains on the training graphs' demonstrations, "
                "so at least one is needed (raise data.split.train or data.n_graphs)")
        elif self.train and self.train.early_stopping and counts["validation"] < 1:
            problem = self.data.empty_split(
                "validation", "train.early_stopping needs at least one validation graph (raise "
                "data.split.validation or data.n_graphs)")
        if problem:
            raise error_at(("data",) + problem[0], problem[1])
        return self

    @property
    def trains(self) -> bool:
        return self.stage.uses is None
