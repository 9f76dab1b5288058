"""[scm] mechanisms and noises (see engine.spec.scm for the whole section)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (Discriminator, Field, PrivateAttr, Tag, ValidationInfo, field_validator,
                      model_validator)

from engine.spec.base import Choice, Normal, Param, Section, SignedUniform, Uniform, param_bounds

Weight = Annotated[float, Field(default=1.0, gt=0)]
from engine.spec.graphs import Weight, _nonneg, _positive  # noqa: F401


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


class TechnicalNoise(Section):
    """Expression as a single-cell protocol measures it (SERGIO's technical noise, as AVICI
    simulates it; engine.scm.technical), in this order: `outliers`: each gene, with probability
    `outlier_prob`, is multiplied by exp(N(outlier_mean, outlier_scale^2)) in every cell;
    `library`: each cell is rescaled to a total exp(N(library_mean, library_scale^2));
    `dropout`: each value is kept with probability sigmoid(dropout_shape * (log(1 + x) - q)),
    q the `dropout_percentile`-th percentile of log(1 + x) over the graph's observational cells;
    `counts`: UMI counts ~ Poisson(x). Each parameter is drawn per graph; the defaults are
    SERGIO's 10x Chromium settings (AVICI's GRN training data): about 2/3 zeros, each graph
    close to its drawn percentile (45, 74 or 82%). Every gene is measured, intervened ones
    too: a knockout stays 0, a clamped gene is scaled and counted like the others."""

    outliers: bool = True
    outlier_prob: Param = 0.01
    outlier_mean: Param = Choice(dist="choice", values=[3.0, 3.0, 5.0])
    outlier_scale: Param = 1.0
    library: bool = True
    library_mean: Param = Choice(dist="choice", values=[6.0, 6.0, 4.5])
    library_scale: Param = Choice(dist="choice", values=[0.3, 0.4, 0.7])
    dropout: bool = True
    dropout_shape: Param = 8.0
    dropout_percentile: Param = Choice(dist="choice", values=[74.0, 82.0, 45.0])
    counts: bool = True

    @field_validator("outlier_scale", "library_scale")
    @classmethod
    def _nn(cls, v: Any, info: ValidationInfo) -> Any:
        return _nonneg(v, info.field_name)

    @field_validator("dropout_shape")
    @classmethod
    def _pos(cls, v: Any, info: ValidationInfo) -> Any:
        return _positive(v, info.field_name)

    @field_validator("outlier_prob", "dropout_percentile")
    @classmethod
    def _within(cls, v: Any, info: ValidationInfo) -> Any:
        top = 1.0 if info.field_name == "outlier_prob" else 100.0
        lo, hi = param_bounds(v)
        if lo < 0 or hi > top:
            raise ValueError(f"{info.field_name} must lie in [0, {top:g}] (this one spans "
                             f"[{lo:g}, {hi:g}])")
        return v


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
    directly (engine.scm.grn.IncrementPath: exact for this fixed-step solve, same seed same cells,
    and ~40x faster on CPU). Interventions clamp genes (knockout = 0). `technical_noise`
    (a table, `{}` for its defaults) returns the cells as a sequencing protocol measures them:
    UMI counts after outlier-gene, library-size and dropout noise; unset, the clean expression.
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
    technical_noise: Optional[TechnicalNoise] = None

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