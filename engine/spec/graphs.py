"""[scm] graph families and graph sizes (see engine.spec.scm for the whole section)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (Discriminator, Field, PrivateAttr, Tag, ValidationInfo, field_validator,
                      model_validator)

from engine.spec.base import (Normal, Param, Section, SignedUniform, Uniform, error_at,
                              param_bounds)

Weight = Annotated[float, Field(default=1.0, gt=0)]

# Every array of the simulator and the models is padded to d x d, and SizeRange lists its sizes:
# a bound keeps a typo (n_nodes = 1e9) a spec error rather than an out-of-memory crash.
MAX_NODES = 1000
NodeCount = Annotated[int, Field(ge=2, le=MAX_NODES)]


def _nonneg(p: Any, what: str) -> Any:
    lo, _ = param_bounds(p)
    if lo < 0:
        raise ValueError(f"{what} must be non-negative (this one can be {lo:g})")
    return p


def _positive(p: Any, what: str) -> Any:
    lo, _ = param_bounds(p)
    if lo <= 0:
        raise ValueError(f"{what} must be positive (this one can be {lo:g})")
    return p


# ----------------------------------------------------------------------------------------- graphs
class ErdosRenyi(Section):
    """Erdos-Renyi DAG: each pair of variables, in a random order, is an edge independently.

    Give either `edges_per_node` (expected edges = edges_per_node * n_nodes, AVICI's
    parameterisation) or `p` (edge probability per ordered pair). With a range of sizes, graphs
    too small for the density are complete DAGs ((n - 1) / 2 edges per node), so one family can
    span 5-50 variables; a density that not even the largest graph can hold is refused.
    """

    kind: Literal["erdos_renyi"]
    weight: Weight
    edges_per_node: float | None = Field(default=None, gt=0)
    p: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _one_of(self) -> "ErdosRenyi":
        if (self.edges_per_node is None) == (self.p is None):
            raise ValueError("give exactly one of edges_per_node or p")
        return self


class ScaleFree(Section):
    """Scale-free DAG by preferential attachment: each new node links to `m` earlier nodes chosen
    with probability proportional to (degree + 1) ** `power`. Edges point from the new node to the
    chosen ones, so hubs have a heavy-tailed in-degree (many causes)."""

    kind: Literal["scale_free"]
    weight: Weight
    m: int = Field(default=2, gt=0)
    power: float = Field(default=1.0, ge=0)


class ScaleFreeTranspose(ScaleFree):
    """Scale-free DAG with edges reversed: hubs are causes (heavy-tailed out-degree)."""

    kind: Literal["scale_free_transpose"]  # type: ignore[assignment]


class WattsStrogatz(Section):
    """Small world: a ring lattice linking each node to its `k` nearest neighbours on each side,
    each link rewired to a uniform node with probability `rewire`; oriented by a random order."""

    kind: Literal["watts_strogatz"]
    weight: Weight
    k: int = Field(default=1, gt=0)
    rewire: float = Field(default=0.3, ge=0, le=1)


class StochasticBlock(Section):
    """Stochastic block model: nodes in `blocks` random communities; pairs in one block are linked
    with probability `p_in`, across blocks with `p_out`; oriented by a random order."""

    kind: Literal["stochastic_block"]
    weight: Weight
    blocks: int = Field(default=2, gt=0)
    p_in: float = Field(default=0.5, ge=0, le=1)
    p_out: float = Field(default=0.05, ge=0, le=1)


class Chain(Section):
    """A directed path through all nodes in a random order."""

    kind: Literal["chain"]
    weight: Weight


class Fork(Section):
    """One random root causes every other node (a common cause)."""

    kind: Literal["fork"]
    weight: Weight


class Collider(Section):
    """Every other node causes one random sink (a common effect)."""

    kind: Literal["collider"]
    weight: Weight


class FromFile(Section):
    """A fixed graph with named nodes, from a CSV adjacency (first column = row names) or an npz
    with `G` and `names`. An npz that also holds `W`, `b`, `sigma` (bnlearn's linear-Gaussian
    networks) is a real SCM: with `use_parameters` its own coefficients and noise replace the
    sampled mechanism and noise. `path` is relative to the spec file, or absolute."""

    kind: Literal["from_file"]
    weight: Weight
    path: str
    use_parameters: bool = True
    _base_dir: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _readable(self, info: ValidationInfo) -> "FromFile":
        base = (info.context or {}).get("spec_dir")
        self._base_dir = Path(base) if base is not None else None
        if base is not None or Path(self.path).is_absolute():
            try:
                self.read()  # errors (missing file, cycles) surface at validate time
            except ValueError as exc:  # engine.scm.files.GraphFileError: named as written here
                problem = getattr(exc, "problem", str(exc))
                raise error_at(("path",), f"graph file {self.path}: {problem}") from None
        return self

    def resolved(self, base_dir: str | Path | None = None) -> Path:
        p = Path(self.path)
        if p.is_absolute():
            return p
        base = Path(base_dir) if base_dir is not None else self._base_dir
        return (base / p) if base is not None else p

    def read(self, base_dir: str | Path | None = None) -> dict:
        """{'names', 'G', 'order', and 'W', 'b', 'sigma' when present}, as numpy arrays."""
        from engine.scm.files import read_graph_file  # numpy only, no jax

        return read_graph_file(self.resolved(base_dir))


GraphSpec = Annotated[
    Union[
        ErdosRenyi, ScaleFree, ScaleFreeTranspose, WattsStrogatz, StochasticBlock, Chain, Fork,
        Collider, FromFile,
    ],
    Field(discriminator="kind"),
]


class SizeRange(Section):
    """Graph size drawn uniformly from low..high inclusive."""

    low: NodeCount
    high: NodeCount

    @model_validator(mode="after")
    def _ordered(self) -> "SizeRange":
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self

    @property
    def sizes(self) -> list[int]:
        return list(range(self.low, self.high + 1))

    @property
    def weights(self) -> list[float]:
        return [1.0] * len(self.sizes)


class SizeChoice(Section):
    """Graph size drawn from `values` with optional `weights` (uniform when absent)."""

    values: list[NodeCount] = Field(min_length=1)
    weights: list[Annotated[float, Field(ge=0)]] | None = None

    @model_validator(mode="after")
    def _match(self) -> "SizeChoice":
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(
                    f"weights has {len(self.weights)} entries but values has {len(self.values)}"
                )
            if sum(self.weights) <= 0:
                raise ValueError("weights must have a positive sum")
        return self

    @property
    def sizes(self) -> list[int]:
        return list(self.values)

    @property
    def weights_(self) -> list[float]:
        return list(self.weights) if self.weights is not None else [1.0] * len(self.values)


def _size_tag(v: Any) -> str:
    if isinstance(v, dict):
        return "choice" if "values" in v else "range"
    if isinstance(v, (SizeRange, SizeChoice)):
        return "choice" if isinstance(v, SizeChoice) else "range"
    return "fixed"


Size = Annotated[
    Union[Annotated[NodeCount, Tag("fixed")], Annotated[SizeRange, Tag("range")],
          Annotated[SizeChoice, Tag("choice")]],
    Discriminator(_size_tag),
]


# ------------------------------------------------------------------------------------- mechanisms