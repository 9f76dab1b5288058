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

from engine.spec.base import Normal, Param, Section, SignedUniform, Uniform, param_bounds

Weight = Annotated[float, Field(default=1.0, gt=0)]


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
    parameterisation) or `p` (edge probability per ordered pair).
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
            self.read()  # errors (missing file, cycles) surface at validate time
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

    low: int = Field(ge=2)
    high: int = Field(ge=2)

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

    values: list[Annotated[int, Field(ge=2)]] = Field(min_length=1)
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
    Union[Annotated[int, Field(ge=2), Tag("fixed")], Annotated[SizeRange, Tag("range")],
          Annotated[SizeChoice, Tag("choice")]],
    Discriminator(_size_tag),
]


# ------------------------------------------------------------------------------------- mechanisms
class Linear(Section):
    """x_j = sum_i coef_ij x_i + bias_j + noise_j; `coef` drawn per edge, `bias` per node."""

    kind: Literal["linear"]
    weight: Weight
    coef: Param = SignedUniform(dist="signed_uniform", low=0.5, high=2.0)
    bias: Param = 0.0


class _SingleIndex(Section):
    weight: Weight
    coef: Param = SignedUniform(dist="signed_uniform", low=0.5, high=2.0)
    bias: Param = 0.0
    amplitude: Param = 1.0


class Sine(_SingleIndex):
    """x_j = amplitude_j * sin(z_j) + noise_j with z_j = sum_i coef_ij x_i + bias_j (periodic)."""

    kind: Literal["sine"]


class Tanh(_SingleIndex):
    """x_j = amplitude_j * tanh(z_j) + noise_j with z_j = sum_i coef_ij x_i + bias_j (saturating)."""

    kind: Literal["tanh"]


class Quadratic(_SingleIndex):
    """x_j = amplitude_j * s(z_j)^2 + noise_j, z_j = sum_i coef_ij x_i + bias_j, with
    s(z) = z / sqrt(1 + (z / saturation)^2): quadratic for |z| << saturation, bounded beyond it so
    values stay finite down deep graphs."""

    kind: Literal["quadratic"]
    saturation: float = Field(default=5.0, gt=0)


class Threshold(_SingleIndex):
    """x_j = amplitude_j * 1[z_j > 0] + noise_j with z_j = sum_i coef_ij x_i + bias_j (a switch)."""

    kind: Literal["threshold"]


class Mlp(Section):
    """x_j = w2_j . tanh(W1_j x_pa + b1_j) + noise_j: a random one-hidden-layer network of the
    parents with `hidden` units, weights drawn from `weights` (scaled by 1/sqrt(fan-in))."""

    kind: Literal["mlp"]
    weight: Weight
    hidden: int = Field(default=16, gt=0)
    weights: Param = Normal(dist="normal", mean=0.0, std=1.0)
    output_scale: Param = 2.0


class Rff(Section):
    """x_j = f_j(x_pa) + noise_j with f_j an approximate draw from a GP with an RBF kernel of
    `lengthscale` and amplitude `output_scale`, by `features` random Fourier features (AVICI's
    default ranges)."""

    kind: Literal["rff"]
    weight: Weight
    features: int = Field(default=100, gt=0)
    lengthscale: Param = Uniform(dist="uniform", low=7.0, high=10.0)
    output_scale: Param = Uniform(dist="uniform", low=10.0, high=20.0)
    bias: Param = Uniform(dist="uniform", low=-3.0, high=3.0)


class Grn(Section):
    """Gene-regulatory dynamics (SERGIO-like chemical Langevin SDE), for the whole graph.

    Expression x_j follows dx_j = (P_j(x) - decay_j x_j) dt + noise * (sqrt(P_j) dW - sqrt(decay_j
    x_j) dW'), with production P_j = basal_j for master regulators (no parents) and, for regulated
    genes, the sum over parents i of |k_ij| * Hill(x_i), an activating Hill function
    x^n / (h^n + x^n) where k_ij > 0 and a repressing one h^n / (h^n + x^n) where k_ij < 0
    (`hill` = n; h = the parent's mean-field steady-state expression). Each cell is one path
    started at the mean-field steady state and read at `t_end` (Euler-Maruyama, step `dt`).
    `brownian = "virtual_tree"` samples the Brownian motion with diffrax's VirtualBrownianTree (a
    seed reproduces the same path at any resolution); `"path"` draws each step's increment
    directly (UnsafeBrownianPath: exact for this fixed-step solve, same seed same cells, and
    several times faster). Interventions clamp genes (knockout = 0).
    """

    kind: Literal["grn"]
    weight: Weight
    k: Param = SignedUniform(dist="signed_uniform", low=1.0, high=5.0)
    hill: Param = 2.0
    basal: Param = Uniform(dist="uniform", low=1.0, high=3.0)
    decay: Param = 0.8
    noise: Param = 1.0
    t_end: float = Field(default=10.0, gt=0)
    dt: float = Field(default=0.05, gt=0)
    brownian: Literal["virtual_tree", "path"] = "virtual_tree"

    @field_validator("hill", "basal", "decay")
    @classmethod
    def _pos(cls, v: Any, info: ValidationInfo) -> Any:
        return _positive(v, info.field_name)

    @field_validator("noise")
    @classmethod
    def _nn(cls, v: Any) -> Any:
        return _nonneg(v, "noise")

    @model_validator(mode="after")
    def _steps(self) -> "Grn":
        if self.dt > self.t_end:
            raise ValueError(f"dt ({self.dt:g}) must be <= t_end ({self.t_end:g})")
        return self


MechanismSpec = Annotated[
    Union[Linear, Sine, Tanh, Quadratic, Threshold, Mlp, Rff, Grn], Field(discriminator="kind")
]


# ------------------------------------------------------------------------------------------ noise
class _Noise(Section):
    weight: Weight
    scale: Param = 1.0
    heteroscedastic: bool = False

    @field_validator("scale")
    @classmethod
    def _scale_pos(cls, v: Any) -> Any:
        return _nonneg(v, "scale")


class Gaussian(_Noise):
    """Gaussian noise with standard deviation `scale` (drawn per node). With `heteroscedastic`,
    the scale is multiplied by softplus(h_j . x_pa + 1) / softplus(1), a random function of the
    parents."""

    kind: Literal["gaussian"]


class Laplace(_Noise):
    """Laplace noise with scale `scale` (drawn per node); heavier tails than Gaussian."""

    kind: Literal["laplace"]


class Cauchy(_Noise):
    """Cauchy noise with scale `scale` (drawn per node); no finite mean or variance."""

    kind: Literal["cauchy"]


class UniformNoise(_Noise):
    """Uniform noise on [-scale, scale] (scale drawn per node)."""

    kind: Literal["uniform"]


class StudentT(_Noise):
    """Student-t noise with `df` degrees of freedom, multiplied by `scale` (drawn per node)."""

    kind: Literal["student_t"]
    df: float = Field(default=3.0, gt=0)


NoiseSpec = Annotated[
    Union[Gaussian, Laplace, Cauchy, UniformNoise, StudentT], Field(discriminator="kind")
]


# ---------------------------------------------------------------------------------- interventions
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
    standardize: bool = False

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
            if g.edges_per_node > (lo - 1) / 2:
                raise ValueError(
                    f"erdos_renyi edges_per_node = {g.edges_per_node:g} asks for more edges than a "
                    f"DAG of {lo} nodes has (at most {(lo - 1) / 2:g} per node)"
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
