"""[expert]: the algorithm whose demonstrations acbo learns from (PARENT_SCALE) and its baselines.

Reference: /work/shared/reference/parent_scale.md. The spec only declares; `build()` imports the
runtime lazily (this module must not import jax).
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from engine.spec.base import Section


class UniformPrior(Section):
    """Uniform prior over every parent set of at most `max_parents` variables (the paper's "all").

    The empty set is included. Sets holding the target or padded variables get zero mass.
    """

    kind: Literal["uniform"]
    max_parents: int = Field(default=2, ge=1, le=8)


class UniformSingletonsPrior(Section):
    """Uniform prior over the single-variable parent sets {X_i}, i != target."""

    kind: Literal["uniform_singletons"]


class DoublyRobustPrior(Section):
    """Bootstrap doubly-robust causal feature selection (the paper's default prior).

    On each of `n_bootstrap` resamples of the observational data an MLP (`layers` hidden layers
    of `hidden` units, Adam `lr`, `batch_size`, early stopping with `patience` epochs on an 80/20
    split, at most `max_epochs`) is cross-fitted over `n_folds` folds, `n_repeats` times. Per
    feature a doubly-robust score vector with and without the feature is compared by a paired
    t-test; Benjamini-Yekutieli at `alpha` decides. `mode = "joint"` zeroes the feature in the one
    fitted network; `"individual"` retrains without it (about d times the cost). The prior is the
    frequency of each selected set; all-empty selections fall back to uniform singletons.
    Selected sets larger than `max_parents` keep their `max_parents` most significant features.
    """

    kind: Literal["doubly_robust"]
    mode: Literal["joint", "individual"] = "joint"
    n_bootstrap: int = Field(default=10, gt=0)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    n_folds: int = Field(default=5, ge=2)
    n_repeats: int = Field(default=2, ge=1)
    hidden: int = Field(default=200, gt=0)
    layers: int = Field(default=3, ge=1)
    lr: float = Field(default=0.01, gt=0)
    batch_size: int = Field(default=32, gt=0)
    max_epochs: int = Field(default=100, gt=0)
    patience: int = Field(default=20, gt=0)
    max_parents: int = Field(default=5, ge=1)


PriorSpec = Annotated[
    Union[UniformPrior, UniformSingletonsPrior, DoublyRobustPrior], Field(discriminator="kind")
]


class OptimizationSettings(Section):
    """Shared settings of the optimisation loop (surrogate GPs and expected improvement).

    `n_trials` interventions of cost 1 each; the outcome of a trial is the mean of
    `outcome_samples` draws of Y under it. EI is maximised per exploration variable over its
    observational [min, max] from `n_anchors` anchors followed by `opt_steps` gradient steps;
    GP hyper-parameters maximise the marginal likelihood over a grid (one Cholesky per point),
    optionally refined by `gp_fit_steps` Adam steps.
    """

    n_trials: int = Field(default=0, ge=0)
    outcome_samples: int = Field(default=1000, gt=0)
    n_anchors: int = Field(default=100, gt=1)
    opt_steps: int = Field(default=30, ge=0)
    gp_fit_steps: int = Field(default=0, ge=0)


class ParentScaleExpert(OptimizationSettings):
    """PARENT_SCALE (CBO-U): a posterior over the target's parent sets, then causal BO under it.

    `prior` over parent sets; `posterior = "exact"` scores interventional rows by the exact
    Bayesian linear-regression predictive (`"bug_compatible"`: the original code's formula, only
    to reproduce its trajectories); `features` linear in the standardised parents, or `n_rff`
    random Fourier features per set; noise `sigma_y`, weight prior `sigma_theta`; sets whose
    weight falls below `prune_threshold` are dropped for good. With `n_trials = 0` only the
    posterior over the given interventional rows is computed (jittable, vmapped over graphs).
    """

    kind: Literal["parent_scale"]
    prior: PriorSpec = UniformPrior(kind="uniform")
    posterior: Literal["exact", "bug_compatible"] = "exact"
    features: Literal["linear", "rff"] = "linear"
    n_rff: int = Field(default=100, gt=0)
    sigma_y: float = Field(default=1.0, gt=0)
    sigma_theta: float = Field(default=1.0, gt=0)
    prune_threshold: float = Field(default=1e-4, ge=0, lt=1)

    def build(self):
        from engine.expert.parent_scale import ParentScale

        return ParentScale(self)


class OracleExpert(OptimizationSettings):
    """CBO given the true parents of the target: the causal GP surrogate of the one true set."""

    kind: Literal["oracle"]

    def build(self):
        from engine.expert.baselines import Oracle

        return Oracle(self)


class RandomExpert(OptimizationSettings):
    """Random interventions: a uniform non-target variable, a uniform value in its domain."""

    kind: Literal["random"]

    def build(self):
        from engine.expert.baselines import RandomExpertRuntime

        return RandomExpertRuntime(self)


ExpertSpec = Annotated[
    Union[ParentScaleExpert, OracleExpert, RandomExpert], Field(discriminator="kind")
]
