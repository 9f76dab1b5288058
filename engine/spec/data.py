"""[data]: where training examples come from (expert demonstrations or fresh simulations), and
how the spec's fixed graphs split into training, validation and held-out sets."""

from __future__ import annotations

from typing import Any, Literal, Mapping

from pydantic import Field, ValidationInfo, field_validator, model_validator

from engine.spec.base import Section, error_at

SPLITS = ("train", "validation", "heldout")


def split_counts(n_graphs: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Graphs per split, the one definition (engine.data.demos.split_graphs uses it):
    validation and heldout get round(fraction * n_graphs) (Python's round, half to even), train
    the rest, which is negative when those two round up past n_graphs (DataSpec refuses that)."""
    counts = {s: int(round(fractions[s] * n_graphs)) for s in ("validation", "heldout")}
    return {"train": n_graphs - counts["validation"] - counts["heldout"], **counts}


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


ONLINE_SPLIT = {"train": 0.0, "validation": 0.2, "heldout": 0.8}


class DataSpec(Section):
    """Training data. `mode = "fixed"` (default): expert demonstrations, `n_graphs` expert runs,
    `demos_per_graph` snapshots of each. A demonstration is a prefix of one expert trajectory: the
    observational rows, the first k interventional rows the expert consumed (with their
    indicators), and the expert's parent marginals after those k updates. Snapshots are spread
    evenly over the trajectory and always include the final posterior.

    `mode = "online"`: every training step simulates a fresh batch of graphs from [scm] (or the
    current `[[train.curriculum]]` stage) inside the jitted step, labelled with the true parents
    (the expert is too slow to run per step). The `n_graphs` fixed graphs then serve validation
    (true-parent labels) and held-out evaluation against the expert only, so `split.train` must
    be 0 (default split in this mode: validation 0.2, heldout 0.8).
    """

    mode: Literal["fixed", "online"] = "fixed"
    n_graphs: int = Field(gt=0)
    demos_per_graph: int = Field(default=1, gt=0)
    split: Split = Split()

    @model_validator(mode="before")
    @classmethod
    def _online_split(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("mode") == "online" and "split" not in data:
            data = {**data, "split": dict(ONLINE_SPLIT)}
        return data

    @field_validator("split")
    @classmethod
    def _no_fixed_training_graphs_online(cls, split: Split, info: ValidationInfo) -> Split:
        if info.data.get("mode") == "online" and split.train > 0:
            raise ValueError(
                f"data.mode = \"online\" simulates its training data, so train must be 0 (got "
                f"{split.train:g}); the fixed graphs are for validation and held-out evaluation, "
                f"e.g. split = {{ train = 0.0, validation = 0.2, heldout = 0.8 }}"
            )
        return split

    @property
    def graph_counts(self) -> dict[str, int]:
        """Graphs per split (see split_counts)."""
        return split_counts(self.n_graphs, self.split.model_dump())

    def empty_split(self, name: str, why: str) -> tuple[tuple, str]:
        """(keys, message) for split `name` holding no graph: at its fraction when that is 0,
        else at n_graphs (too few graphs for the fraction to round to one)."""
        c = self.graph_counts
        at = ("split", name) if getattr(self.split, name) == 0 else ("n_graphs",)
        return at, (f"n_graphs = {self.n_graphs} splits into train {c['train']}, validation "
                    f"{c['validation']}, heldout {c['heldout']} graphs: {why}")

    @model_validator(mode="after")
    def _splits_hold_graphs(self) -> "DataSpec":
        c = self.graph_counts
        if c["train"] < 0:
            raise error_at(
                ("n_graphs",),
                f"n_graphs = {self.n_graphs} cannot be split: validation and heldout round to "
                f"{c['validation']} + {c['heldout']} graphs, more than there are (change "
                "data.n_graphs or data.split)",
            )
        if c["heldout"] < 1:
            raise error_at(*self.empty_split(
                "heldout", "every spec is evaluated on its held-out graphs, so at least one is "
                "needed (raise data.split.heldout or data.n_graphs)"
            ))
        return self
