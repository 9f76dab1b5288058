"""[data]: how many demonstrations, from how many graphs, split by graph."""

from __future__ import annotations

from pydantic import Field, model_validator

from engine.spec.base import Section


class Split(Section):
    """Fractions of *graphs* (never of rows or demonstrations) in each split; they sum to 1."""

    train: float = Field(default=0.8, ge=0, le=1)
    validation: float = Field(default=0.1, ge=0, le=1)
    heldout: float = Field(default=0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> "Split":
        total = self.train + self.validation + self.heldout
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + heldout must be 1 (got {total:g})")
        return self


class DataSpec(Section):
    """Expert demonstrations: `n_graphs` expert runs, `demos_per_graph` snapshots of each.

    A demonstration is a prefix of one expert trajectory: the observational rows, the first k
    interventional rows the expert consumed (with their indicators), and the expert's parent
    marginals after those k updates. Snapshots are spread evenly over the trajectory and always
    include the final posterior.
    """

    n_graphs: int = Field(gt=0)
    demos_per_graph: int = Field(default=1, gt=0)
    split: Split = Split()

