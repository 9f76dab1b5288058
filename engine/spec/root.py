"""The root of a spec file: identity, seed, and every section."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field, TypeAdapter, ValidationError, ValidationInfo, field_validator, model_validator,
)

from engine.spec.base import Section, error_at
from engine.spec.data import DataSpec
from engine.spec.evaluation import SPEC_NAME, EvaluationSpec, ResolvedStage, StageSpec
from engine.spec.gates import POLICIES, GateSpec, check_gates
from engine.spec.expert import ExpertSpec
from engine.spec.model import LossSpec, ModelSpec
from engine.spec.optimize import OptimizeSpec, PolicySpec
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
    gate_groups: dict[str, Literal[POLICIES]] = {}  # type: ignore[valid-type]
    stage: StageSpec = StageSpec()
    optimize: OptimizeSpec | None = None
    policy: PolicySpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _merge_stage_overrides(cls, data: Any, info: ValidationInfo) -> Any:
        """An evaluation stage's `scm` / `expert` hold overrides of [scm] / [expert]: merged
        here into whole tables, so pydantic validates them in place (errors at
        evaluation.stages.<i>.scm.<key>, `from_file` relative to the spec file)."""
        if not isinstance(data, dict):
            return data
        for section, entries in (("evaluation", "stages"), ("optimize", "problems")):
            table = data.get(section)
            stages = table.get(entries) if isinstance(table, dict) else None
            if not isinstance(stages, list):
                continue
            merged = []
            for st in stages:
                if isinstance(st, dict):
                    st = dict(st)
                    for key in ("scm", "expert"):
                        if isinstance(st.get(key), dict):
                            st[key] = _merged(key, data.get(key), st[key], info.context)
                merged.append(st)
            data = {**data, section: {**table, entries: merged}}
        policy = data.get("policy")
        if isinstance(policy, dict) and isinstance(policy.get("scm"), dict):
            data = {**data, "policy": {**policy, "scm": _merged("scm", data.get("scm"), policy["scm"],
                                                                 info.context)}}
        return data

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

    @model_validator(mode="after")
    def _optimize_fits(self) -> "Spec":
        opt = self.optimize
        if opt is None:
            if self.policy is not None:
                raise error_at(("policy",), "[policy] trains an acquisition policy for [optimize], "
                                            "which this spec does not have")
            return self
        stage_names = [s.name for s in self.evaluation_stages()]
        for i, p in enumerate(opt.problems):
            if p.name in stage_names:
                raise error_at(("optimize", "problems", i, "name"), f"'{p.name}' names an "
                               "evaluation stage too: problems and stages share the record")
        for i, s in enumerate(opt.strategies):
            at = ("optimize", "strategies", i)
            if s.surrogate.kind == "expert" and self.expert.kind != "parent_scale":
                raise error_at(at + ("surrogate", "kind"), "the expert surrogate is PARENT_SCALE's "
                               f"posterior, but [expert] kind is '{self.expert.kind}'")
            if s.acquisition.kind == "policy" and self.policy is None:
                raise error_at(at + ("acquisition", "kind"), "the policy acquisition needs a "
                               "[policy] section (how the policy is trained)")
            if s.surrogate.kind == "model" and s.surrogate.model in (self.name, self.stage.uses):
                raise error_at(at + ("surrogate", "model"), f"'{s.surrogate.model}' is this spec's "
                               "own model: leave model out")
        if self.policy is not None and not opt.uses_policy():
            raise error_at(("policy",), "no strategy in [optimize] uses the policy "
                           "(acquisition = { kind = \"policy\" })")
        return self

    def optimize_problems(self) -> list:
        """[optimize] problems with defaults applied (scm: the spec's own where not given; seed
        past the evaluation stages' neighbourhood)."""
        if self.optimize is None:
            return []
        return [p.model_copy(update={
            "scm": p.scm or self.scm,
            "seed": p.seed if p.seed is not None else (self.seed + 2000 + i) % (MAX_SEED + 1)})
            for i, p in enumerate(self.optimize.problems)]

    @model_validator(mode="after")
    def _gates_fit(self) -> "Spec":
        for i, name in enumerate(self.evaluation.models):
            if name == self.name or name == self.stage.uses:
                why = "this spec" if name == self.name else "the model [stage] uses"
                raise error_at(("evaluation", "models", i), f"'{name}' is {why}: its model is "
                                                            "the 'model' side already")
        strategies = [s.name for s in self.optimize.strategies] if self.optimize else []
        problems = {p.name: strategies for p in self.optimize.problems} if self.optimize else {}
        check_gates(self.gates, self.gate_groups, self.evaluation_stages(), self.evaluation.models,
                    problems)
        return self

    @property
    def trains(self) -> bool:
        return self.stage.uses is None

    def evaluation_stages(self) -> list[ResolvedStage]:
        """[[evaluation.stages]] with defaults applied; none declared: this spec's held-out
        split, named "held_out"."""
        declared = self.evaluation.stages or [None]
        out = []
        for i, st in enumerate(declared):
            # Past the training seed's neighbourhood, so a stage's graphs are never the
            # training graphs (which are drawn from `seed`); one seed per stage.
            seed = (self.seed + 1000 + i) % (MAX_SEED + 1)
            if st is None:
                out.append(ResolvedStage("held_out", "this spec's held-out split", None,
                                         self.expert, None, seed,
                                         tuple(self.evaluation.baselines), False,
                                         self.evaluation.timed_graphs))
                continue
            out.append(ResolvedStage(
                st.name, st.description, st.scm, st.expert or self.expert, st.n_graphs,
                st.seed if st.seed is not None else seed,
                tuple(st.baselines if st.baselines is not None else self.evaluation.baselines),
                st.observational,
                self.evaluation.timed_graphs if st.timed_graphs is None else st.timed_graphs,
            ))
        return out


_TABLES = {"scm": TypeAdapter(ScmSpec), "expert": TypeAdapter(ExpertSpec)}


def _merged(key: str, base: Any, overrides: dict, context: Any) -> Any:
    """[key] with `overrides` replacing its top-level keys; None when [key] itself is invalid
    (its own errors are reported there, not repeated at every stage). An expert of another
    kind replaces the table: the keys of one kind mean nothing to another."""
    if key == "expert" and "kind" in overrides and (
            not isinstance(base, dict) or overrides["kind"] != base.get("kind")):
        return overrides
    if not isinstance(base, dict):
        return None
    try:
        _TABLES[key].validate_python(base, context=context)
    except ValidationError:
        return None
    return {**base, **overrides}
