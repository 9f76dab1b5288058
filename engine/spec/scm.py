"""[scm]: the distribution of structural causal models that training data are drawn from.

Mixtures (`graphs`, `mechanism`, `noise`) are arrays of tables with explicit `weight`s; a single
table is accepted where a one-component mixture is meant. Paths in `from_file` are relative to the
spec file's directory (the loader passes it as validation context `spec_dir`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (Discriminator, Field, PrivateAttr, Tag, ValidationInfo, field_validator,
                      model_validator)

from engine.spec.base import (Normal, Param, Section, SignedUniform, Uniform, error_at,
                              param_bounds)

from engine.spec.graphs import (  # noqa: F401  (re-exported: the section's whole vocabulary)
    ErdosRenyi,
    ScaleFree,
    ScaleFreeTranspose,
    WattsStrogatz,
    StochasticBlock,
    Chain,
    Fork,
    Collider,
    FromFile,
    GraphSpec,
    SizeRange,
    SizeChoice,
    Size,
    Weight,
    _nonneg,
    _positive,
    _size_tag,
)
from engine.spec.mechanisms import (  # noqa: F401
    Linear,
    _SingleIndex,
    Sine,
    Tanh,
    Quadratic,
    Threshold,
    Mlp,
    Rff,
    Grn,
    MechanismSpec,
    _Noise,
    Gaussian,
    Laplace,
    Cauchy,
    UniformNoise,
    StudentT,
    NoiseSpec,
)


class _Interventions(Section):
    rows_per_node: int = Field(default=1, ge=0)
    nodes: Literal["all"] | None = None
    fraction: float | None = Field(default=None, gt=0, le=1)
    count: int | None = Field(default=None, gt=0)
    names: list[str] | None = Field(default=None, min_length=1)
    value_per: Literal["row", "node"] = "row"

    @model_validator(mode="after")
    def _one_selection(self) -> "_Interventions":
        given = [k for k in ("nodes", "fraction", "count", "names") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of nodes, fraction, count, names (got {given})")
        return self


class Hard(_Interventions):
    """do(x_j = value) on each intervened node: `rows_per_node` rows per node, on all non-target
    nodes (default), a `fraction` or `count` of them drawn per graph, or the listed `names`.
    `value` is drawn per row (or per node with value_per = "node"), in the data's units
    (standardised units when `standardize` is on)."""

    kind: Literal["hard"]
    value: Param = Uniform(dist="uniform", low=-5.0, high=5.0)


class Soft(_Interventions):
    """A soft intervention keeps the node's mechanism: `mode = "shift"` adds `value` to it,
    `mode = "scale"` multiplies the node's value (mechanism + noise) by `value`."""

    kind: Literal["soft"]
    mode: Literal["shift", "scale"] = "shift"
    value: Param = Uniform(dist="uniform", low=1.0, high=3.0)


InterventionSpec = Annotated[Union[Hard, Soft], Field(discriminator="kind")]


# ----------------------------------------------------------------------------------------- target
class RandomWithParents(Section):
    """The target is a uniformly random variable with at least one parent."""

    kind: Literal["random_with_parents"]


class Sink(Section):
    """The target is a uniformly random sink (no children) with at least one parent."""

    kind: Literal["sink"]


class Named(Section):
    """The target is the variable called `name` (graphs from files only)."""

    kind: Literal["named"]
    name: str


TargetSpec = Annotated[Union[RandomWithParents, Sink, Named], Field(discriminator="kind")]


class ScmSpec(Section):
    """The SCM distribution: graph families and sizes, mechanisms, noise, interventions, target.

    `mechanism_mix = "graph"` draws one mechanism component per graph, `"node"` one per node.
    With `standardize`, every variable is z-scored with the observational rows' mean and standard
    deviation (the SCM keeps that transform, so later interventions speak the same units).
    `standardize = "log_cpm"` (grn only, meant for its `technical_noise` counts) is AVICI's
    standardisation of count data instead: log2 counts per million of each cell's non-zero
    values, shifted by their smallest and scaled by their spread over the observational cells,
    zeros at 0 (engine.scm.technical.log_cpm); intervention values stay raw expression.
    """

    graphs: list[GraphSpec] = Field(min_length=1)
    n_nodes: Size = SizeRange(low=3, high=8)
    mechanism: list[MechanismSpec] = Field(default_factory=lambda: [Linear(kind="linear")],
                                           min_length=1)
    mechanism_mix: Literal["graph", "node"] = "graph"
    noise: list[NoiseSpec] = Field(default_factory=lambda: [Gaussian(kind="gaussian")],
                                   min_length=1)
    interventions: InterventionSpec = Hard(kind="hard")
    target: TargetSpec = RandomWithParents(kind="random_with_parents")
    n_obs: int = Field(default=100, gt=0)
    standardize: Union[bool, Literal["log_cpm"]] = False

    @field_validator("graphs", "mechanism", "noise", mode="before")
    @classmethod
    def _wrap(cls, v: Any) -> Any:
        return [v] if isinstance(v, dict) else v

    # ---------------------------------------------------------------- derived, no jax
    @property
    def sizes(self) -> list[int]:
        """The graph sizes of the random families (from n_nodes)."""
        return [self.n_nodes] if isinstance(self.n_nodes, int) else self.n_nodes.sizes

    @property
    def size_weights(self) -> list[float]:
        if isinstance(self.n_nodes, int):
            return [1.0]
        if isinstance(self.n_nodes, SizeChoice):
            return self.n_nodes.weights_
        return self.n_nodes.weights

    def file_graphs(self, base_dir: str | Path | None = None) -> list[dict]:
        return [g.read(base_dir) for g in self.graphs if isinstance(g, FromFile)]

    @property
    def max_nodes(self) -> int:
        """d: every array of the simulator is padded to this many variables."""
        d = 0
        if any(not isinstance(g, FromFile) for g in self.graphs):
            d = max(self.sizes)
        for f in self.file_graphs():
            d = max(d, len(f["names"]))
        return d

    @property
    def uses_grn(self) -> bool:
        return any(isinstance(m, Grn) for m in self.mechanism)

    def n_intervened(self, d: int | None = None) -> int:
        """Maximum number of intervened nodes per graph (interventional rows / rows_per_node)."""
        d = self.max_nodes if d is None else d
        iv = self.interventions
        if iv.names is not None:
            return len(iv.names)
        if iv.count is not None:
            return min(iv.count, d - 1)
        if iv.fraction is not None:
            return math.ceil(iv.fraction * (d - 1))
        return d - 1

    @property
    def n_int(self) -> int:
        """Interventional rows per graph (padded; Dataset.int_row_mask marks the real ones)."""
        return self.interventions.rows_per_node * self.n_intervened()

    # ---------------------------------------------------------------- validation
    @model_validator(mode="after")
    def _consistent(self) -> "ScmSpec":
        _check(self)
        # (Not in _check: a curriculum stage of 2-node graphs is a fine warm-up.)
        if max(self.sizes) == 2 and not any(isinstance(g, FromFile) for g in self.graphs):
            raise error_at(("n_nodes",), (
                "graphs of 2 nodes leave the target one candidate, which is always its parent "
                "(the target has at least one): nothing to discover and AUROC is undefined; use "
                "n_nodes >= 3"))
        return self

    def build(self, base_dir: str | Path | None = None):
        """The runtime sampler: `Simulator(key, n_graphs) -> (SCM, Dataset)` batched over graphs."""
        from engine.scm.simulator import Simulator

        return Simulator(self, base_dir)


def _check(s: ScmSpec) -> None:
    """Cross-field checks: impossible or meaningless combinations, with a clear message."""
    random = [g for g in s.graphs if not isinstance(g, FromFile)]
    files = [g for g in s.graphs if isinstance(g, FromFile)]
    lo = min(s.sizes)
    for g in random:
        if isinstance(g, ErdosRenyi) and g.edges_per_node is not None:
            # a range's smaller graphs are capped at the complete DAG (edge probability 1); a
            # density no graph of the range can hold is a mistake
            hi = max(s.sizes)
            if g.edges_per_node > (hi - 1) / 2:
                raise ValueError(
                    f"erdos_renyi edges_per_node = {g.edges_per_node:g} asks for more edges than a "
                    f"DAG of {hi} nodes has (at most {(hi - 1) / 2:g} per node)"
                )
        if isinstance(g, ScaleFree) and g.m >= max(s.sizes):
            raise ValueError(f"{g.kind} m = {g.m} needs graphs of more than {g.m} nodes")
        if isinstance(g, WattsStrogatz) and 2 * g.k + 1 > lo:
            raise ValueError(
                f"watts_strogatz k = {g.k} links each node to {2 * g.k} others, more than a "
                f"graph of {lo} nodes has (k <= {(lo - 1) // 2})"
            )
        if isinstance(g, StochasticBlock) and g.blocks > lo:
            raise ValueError(f"stochastic_block has {g.blocks} blocks but graphs of {lo} nodes")
    grn = [m for m in s.mechanism if isinstance(m, Grn)]
    if grn and len(s.mechanism) > 1:
        raise ValueError("grn models the whole graph's dynamics; it cannot be mixed with other "
                         "mechanisms in one [scm] (use a separate spec)")
    if s.standardize == "log_cpm" and not grn:
        raise ValueError('standardize = "log_cpm" standardises count data: it needs mechanism '
                         'grn (with technical_noise for counts)')
    if grn:
        if isinstance(s.interventions, Soft):
            raise ValueError("grn supports hard interventions (clamps, knockouts) only")
        if param_bounds(s.interventions.value)[0] < 0:
            raise ValueError("grn interventions clamp expression, which is non-negative: use "
                             "value >= 0 (value = 0 is a knockout)")
    needs_names = isinstance(s.target, Named) or s.interventions.names is not None
    if needs_names and random:
        raise ValueError("named targets or intervention names need every graph to come from a "
                         "file (random graphs have no names)")
    if s.interventions.names is not None and isinstance(s.target, Named):
        if s.target.name in s.interventions.names:
            raise ValueError(f"the target '{s.target.name}' cannot be an intervened node")
    for g in files:
        if g._base_dir is None and not Path(g.path).is_absolute():
            continue  # no spec directory known yet: checked when built
        info = g.read()
        names = [str(n) for n in info["names"]]
        wanted = ([s.target.name] if isinstance(s.target, Named) else [])
        wanted += list(s.interventions.names or [])
        for name in wanted:
            if name not in names:
                from engine.spec.base import suggest

                raise ValueError(f"no variable named '{name}' in {g.path}{suggest(name, names)}")
        if isinstance(s.target, Named):
            j = names.index(s.target.name)
            if info["G"][:, j].sum() == 0:
                raise ValueError(f"target '{s.target.name}' has no parents in {g.path}")
        if grn and g.use_parameters and "W" in info:
            raise ValueError(f"{g.path} holds linear-Gaussian parameters; set use_parameters = "
                             "false to drive its graph with grn")
