"""[train] and [hardware]: the optimisation recipe and the budget it must fit in."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from engine.spec.base import Section


class Adam(Section):
    """Adam with a constant learning rate `lr`."""

    kind: Literal["adam"]
    lr: float = Field(default=1e-3, gt=0)
    b1: float = Field(default=0.9, ge=0, lt=1)
    b2: float = Field(default=0.999, ge=0, lt=1)

    def build(self):
        import optax

        return optax.adam(self.lr, b1=self.b1, b2=self.b2)


class AdamW(Adam):
    """Adam with decoupled weight decay."""

    kind: Literal["adamw"]  # type: ignore[assignment]
    weight_decay: float = Field(default=1e-4, ge=0)

    def build(self):
        import optax

        return optax.adamw(self.lr, b1=self.b1, b2=self.b2, weight_decay=self.weight_decay)


OptimizerSpec = Annotated[Union[Adam, AdamW], Field(discriminator="kind")]


class TrainSpec(Section):
    """Minibatch training: batch t is a pure function of (seed, t), so a resume is exact.

    `augment` flips variable signs and drops a fifth of the observational rows per example
    (label-preserving; it keeps a model from memorising a small set of training graphs).
    """

    steps: int = Field(gt=0)
    batch_size: int = Field(default=32, gt=0)
    optimizer: OptimizerSpec = Adam(kind="adam")
    clip_norm: float | None = Field(default=1.0, gt=0)
    checkpoint_every: int = Field(default=200, gt=0)
    log_every: int = Field(default=50, gt=0)
    augment: bool = True

    def build_optimizer(self):
        import optax

        opt = self.optimizer.build()
        if self.clip_norm is not None:
            opt = optax.chain(optax.clip_by_global_norm(self.clip_norm), opt)
        return opt


class HardwareSpec(Section):
    """What the run may use. `plan` refuses a spec whose estimate exceeds these budgets and
    `apply` stops training with a checkpoint when `max_wall_minutes` is reached."""

    devices: Literal["all"] | Annotated[int, Field(gt=0)] = "all"
    max_wall_minutes: float = Field(default=60.0, gt=0)
    max_memory_gb: float = Field(default=8.0, gt=0)
