"""[train] and [hardware]: the optimisation recipe and the budget it must fit in."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from engine.spec.base import Section, error_at
from engine.spec.graphs import GraphSpec, Size
from engine.spec.mechanisms import MechanismSpec, NoiseSpec

# Validation-context keys: the root spec records [data] mode and [scm] there (they validate
# before [train]), so a curriculum entry's errors are located at the entry itself.
CONTEXT_MODE, CONTEXT_SCM = "_acbo_data_mode", "_acbo_scm"


# --------------------------------------------------------------------------- schedules
class Constant(Section):
    """A constant learning rate `value`."""

    kind: Literal["constant"]
    value: float = Field(gt=0)

    def build(self, total_steps: int):
        from engine.train.schedules import constant

        return constant(self.value)


class WarmupCosine(Section):
    """Linear warm-up from 0 to `peak` over `warmup` steps, then a cosine decay to `end` at
    `decay_steps` (default: the run's `train.steps`), constant after."""

    kind: Literal["warmup_cosine"]
    peak: float = Field(gt=0)
    warmup: int = Field(default=0, ge=0)
    decay_steps: int | None = Field(default=None, gt=0)
    end: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "WarmupCosine":
        if self.end > self.peak:
            raise error_at(("end",), f"end ({self.end:g}) must be <= peak ({self.peak:g}): the "
                                     "cosine decays from peak to end")
        if self.decay_steps is not None and self.decay_steps < self.warmup:
            raise error_at(("decay_steps",), f"decay_steps ({self.decay_steps}) must be >= warmup "
                                             f"({self.warmup}): the decay follows the warm-up")
        return self

    def build(self, total_steps: int):
        from engine.train.schedules import warmup_cosine

        return warmup_cosine(self.peak, self.warmup, self.decay_steps or total_steps, self.end)


class Piecewise(Section):
    """Piecewise constant: `values[0]` until step `boundaries[0]`, then `values[1]`, ...
    (`values` has one more entry than `boundaries`, which increase)."""

    kind: Literal["piecewise"]
    values: list[Annotated[float, Field(gt=0)]] = Field(min_length=1)
    boundaries: list[Annotated[int, Field(gt=0)]] = []

    @model_validator(mode="after")
    def _shapes(self) -> "Piecewise":
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError(
                f"values needs one more entry than boundaries (got {len(self.values)} values, "
                f"{len(self.boundaries)} boundaries)"
            )
        if any(b <= a for a, b in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"boundaries must increase (got {self.boundaries})")
        return self

    def build(self, total_steps: int):
        from engine.train.schedules import piecewise

        return piecewise(self.values, self.boundaries)


def _lr_tag(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "fixed"
    if isinstance(value, dict):
        return value.get("kind")
    return getattr(value, "kind", None)


LearningRate = Annotated[
    Union[
        Annotated[float, Tag("fixed"), Field(gt=0)],
        Annotated[Constant, Tag("constant")],
        Annotated[WarmupCosine, Tag("warmup_cosine")],
        Annotated[Piecewise, Tag("piecewise")],
    ],
    Discriminator(_lr_tag),
]
"""A learning rate: a number, or a schedule table `{ kind = "warmup_cosine", peak = 1e-3, ... }`."""


def _schedule(lr, total_steps: int):
    return float(lr) if isinstance(lr, (int, float)) else lr.build(total_steps)


# --------------------------------------------------------------------------- optimizers
class Adam(Section):
    """Adam; `lr` is a number or a schedule (constant, warmup_cosine, piecewise)."""

    kind: Literal["adam"]
    lr: LearningRate = 1e-3
    b1: float = Field(default=0.9, ge=0, lt=1)
    b2: float = Field(default=0.999, ge=0, lt=1)

    def build(self, total_steps: int = 1):
        import optax

        return optax.adam(_schedule(self.lr, total_steps), b1=self.b1, b2=self.b2)


class AdamW(Adam):
    """Adam with decoupled weight decay `weight_decay`."""

    kind: Literal["adamw"]  # type: ignore[assignment]
    weight_decay: float = Field(default=1e-4, ge=0)

    def build(self, total_steps: int = 1):
        import optax

        return optax.adamw(
            _schedule(self.lr, total_steps), b1=self.b1, b2=self.b2, weight_decay=self.weight_decay
        )


class Lamb(Adam):
    """LAMB: Adam with a per-layer trust ratio (large batches), decoupled `weight_decay`."""

    kind: Literal["lamb"]  # type: ignore[assignment]
    weight_decay: float = Field(default=0.0, ge=0)

    def build(self, total_steps: int = 1):
        import optax

        return optax.lamb(
            _schedule(self.lr, total_steps), b1=self.b1, b2=self.b2, weight_decay=self.weight_decay
        )


OptimizerSpec = Annotated[Union[Adam, AdamW, Lamb], Field(discriminator="kind")]


class EarlyStopping(Section):
    """Stop when the validation loss (measured at each log point) has not improved by more than
    `min_delta` for `patience` log points in a row; the best model is kept."""

    patience: int = Field(gt=0)
    min_delta: float = Field(default=0.0, ge=0)


# --------------------------------------------------------------------------- curriculum
class CurriculumStage(Section):
    """One curriculum stage: `steps` training steps whose graphs come from [scm] with the keys
    given here replaced (`n_nodes`, `graphs`, `mechanism`, `mechanism_mix`, `noise`, same
    meaning as in [scm]). Stages run in the order written and their `steps` sum to
    `train.steps`. With `data.mode = "online"` any key may change; with fixed demonstrations
    only `n_nodes` can, and it selects the training demonstrations whose graphs have those sizes.
    """

    steps: int = Field(gt=0)
    n_nodes: Size | None = None
    graphs: list[GraphSpec] | None = Field(default=None, min_length=1)
    mechanism: list[MechanismSpec] | None = Field(default=None, min_length=1)
    mechanism_mix: Literal["graph", "node"] | None = None
    noise: list[NoiseSpec] | None = Field(default=None, min_length=1)

    @field_validator("graphs", "mechanism", "noise", mode="before")
    @classmethod
    def _wrap(cls, v: Any) -> Any:
        return [v] if isinstance(v, dict) else v

    def overrides(self) -> dict:
        """The [scm] keys this stage replaces, with their values."""
        keys = ("n_nodes", "graphs", "mechanism", "mechanism_mix", "noise")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def scm(self, base):
        """This stage's SCM distribution: `base` (an ScmSpec) with the overrides applied."""
        return base.model_copy(update=self.overrides())

    def problem(self, mode: str | None, base) -> str | None:
        """Why this stage cannot run with `data.mode = mode` on `base` ([scm]), or None."""
        changed = sorted(set(self.overrides()) - {"n_nodes"})
        if mode == "fixed" and changed:
            return (
                f"{', '.join(changed)} can only change with data.mode = \"online\": a fixed "
                "demonstration set has the mechanisms it was simulated with (a fixed-mode "
                "curriculum selects graph sizes with n_nodes)"
            )
        if base is None:
            return None
        if mode == "fixed" and self.n_nodes is not None:
            wanted = self.scm(base).sizes
            if not set(wanted) & set(base.sizes):
                return (
                    f"n_nodes selects graphs of {_sizes(wanted)} nodes but the demonstrations' "
                    f"graphs have {_sizes(base.sizes)} ([scm] n_nodes)"
                )
        if mode == "online":
            from engine.spec.scm import _check

            try:
                _check(self.scm(base))
            except ValueError as exc:
                return f"[scm] with this stage's overrides is invalid: {exc}"
        return None

    @model_validator(mode="after")
    def _fits_the_data(self, info: ValidationInfo) -> "CurriculumStage":
        context = info.context or {}
        problem = self.problem(context.get(CONTEXT_MODE), context.get(CONTEXT_SCM))
        if problem:
            raise ValueError(problem)
        return self


def _sizes(sizes: list[int]) -> str:
    sizes = sorted(set(sizes))
    if len(sizes) > 2 and sizes == list(range(sizes[0], sizes[-1] + 1)):
        return f"{sizes[0]}-{sizes[-1]}"
    return ", ".join(map(str, sizes))


class TrainSpec(Section):
    """Minibatch training: batch t is a pure function of (seed, t), so a resume is exact.

    `augment` flips variable signs and drops a fifth of the observational rows per example
    (label-preserving; it keeps a model from memorising a small set of training graphs).
    `accumulate = k` splits each batch of `batch_size` into k micro-batches whose gradients are
    averaged before one update (same update, 1/k of the activation memory).
    `precision = "bf16"` runs the forward pass in bfloat16 (parameters, optimizer state and the
    loss reduction stay float32). `ema` keeps Polyak/EMA parameters, used for validation and as
    the trained model. `on_nonfinite`: "stop" at a NaN/Inf loss, or "skip" that step's update.
    `keep` newest checkpoints are kept (plus the best, with early stopping).
    The acyclicity penalty's dual variable rises by `dual_rate * acyclicity` every `dual_every`
    steps (AVICI: 500 and 1e-4); it only matters with a loss whose acyclicity weight is > 0.
    `[[train.curriculum]]` entries are stages over graph sizes and mechanisms (see
    CurriculumStage); their `steps` sum to `steps`.
    """

    steps: int = Field(gt=0)
    batch_size: int = Field(default=32, gt=0)
    optimizer: OptimizerSpec = Adam(kind="adam")
    clip_norm: float | None = Field(default=1.0, gt=0)
    checkpoint_every: int = Field(default=200, gt=0)
    log_every: int = Field(default=50, gt=0)
    augment: bool = True
    accumulate: int = Field(default=1, gt=0)
    precision: Literal["fp32", "bf16"] = "fp32"
    ema: float | None = Field(default=None, gt=0, lt=1)
    early_stopping: EarlyStopping | None = None
    keep: int = Field(default=2, gt=0)
    on_nonfinite: Literal["stop", "skip"] = "stop"
    tensorboard: bool = True
    dual_every: int = Field(default=500, gt=0)
    dual_rate: float = Field(default=1e-4, ge=0)
    curriculum: list[CurriculumStage] = []

    @field_validator("curriculum")
    @classmethod
    def _covers_the_steps(cls, stages: list[CurriculumStage], info: ValidationInfo):
        total, steps = sum(s.steps for s in stages), info.data.get("steps")
        if stages and steps is not None and total != steps:
            raise ValueError(
                f"the stages' steps ({' + '.join(str(s.steps) for s in stages)} = {total}) must "
                f"sum to train.steps = {steps}"
            )
        return stages

    def phase_bounds(self) -> list[tuple[int, int]]:
        """[start, stop) steps of each curriculum stage (one stage over every step without)."""
        if not self.curriculum:
            return [(0, self.steps)]
        out, start = [], 0
        for stage in self.curriculum:
            out.append((start, start + stage.steps))
            start += stage.steps
        return out

    @model_validator(mode="after")
    def _divisible(self) -> "TrainSpec":
        if self.batch_size % self.accumulate:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of accumulate ({self.accumulate})"
            )
        return self

    def build_optimizer(self):
        import optax

        opt = self.optimizer.build(self.steps)
        if self.clip_norm is not None:
            opt = optax.chain(optax.clip_by_global_norm(self.clip_norm), opt)
        return opt


class HardwareSpec(Section):
    """What the run may use. `plan` refuses a spec whose estimate exceeds these budgets and
    `apply` stops training with a checkpoint when `max_wall_minutes` is reached. `backend` runs
    the expert's graphs (and [optimize]'s episodes) in local worker processes, or as Ray tasks
    on the cluster `RAY_ADDRESS` names (else a local Ray instance started for the stage; needs
    `pip install -e ".[ray]"`); both give the same results."""

    devices: Literal["all"] | Annotated[int, Field(gt=0)] = "all"
    max_wall_minutes: float = Field(default=60.0, gt=0)
    max_memory_gb: float = Field(default=8.0, gt=0)
    backend: Literal["local", "ray"] = "local"

    def build_backend(self):
        """The runtime backend (`engine.expert.backends`); a missing Ray fails here, by name."""
        from engine.expert.backends import LocalBackend, RayBackend

        return RayBackend() if self.backend == "ray" else LocalBackend()
