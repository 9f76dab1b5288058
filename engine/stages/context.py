"""What every stage runner receives: the plan, the registry root, and how to report progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jax

from engine.plan import Plan, PlannedStage
from engine.registry import StageDir


class Progress:
    """The progress interface stages use (the CLI backs it with rich; tests with nothing)."""

    def start(self, description: str, total: float | None) -> None: ...

    def advance(self, completed: float, note: str = "") -> None: ...

    def log(self, message: str) -> None: ...


@dataclass
class StageContext:
    plan: Plan
    root: Path
    progress: Progress = field(default_factory=Progress)
    deadline: float | None = None  # wall-clock time (time.time()) at which training must stop

    @property
    def spec(self):
        return self.plan.spec

    def stage(self, name: str) -> PlannedStage:
        return self.plan.stages[name]

    def dir(self, name: str) -> StageDir:
        return self.plan.stages[name].dir(self.root)

    def key(self, name: str, seed: int | None = None) -> jax.Array:
        """A stage's PRNG key: a pure function of the seed (the spec's unless given) and the
        stage name."""
        salt = int.from_bytes(name.encode()[:4].ljust(4, b"\0"), "little")
        return jax.random.fold_in(jax.random.PRNGKey(self.spec.seed if seed is None else seed), salt)


Runner = Callable[[StageContext], dict]
