"""Per-node mechanisms f_j(x_pa) and noise models, as small Equinox modules.

Every module holds parameters for all d nodes of one graph (node axis first where it matters) and
is called as ``mech(xt, j) -> [n]``: node j's mechanism on the samples ``xt`` [d, n] (variables
major, so the ancestral sampler writes one contiguous row per step). Weights on non-parents are
zero, so padded or non-parent variables never contribute.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from engine.scm import fastrand
from engine.scm.params import draw
from engine.spec import scm as S


class LinearMech(eqx.Module):
    """f_j = x . coef[:, j] + bias[j]."""

    coef: Float[Array, "d d"]
    bias: Float[Array, " d"]

    def __call__(self, xt: Float[Array, "d n"], j) -> Float[Array, " n"]:
        return self.coef[:, j] @ xt + self.bias[j]


class SingleIndexMech(eqx.Module):
    """f_j = amplitude[j] * g(x . coef[:, j] + bias[j]) for g in sine/tanh/quadratic/threshold."""

    coef: Float[Array, "d d"]
    bias: Float[Array, " d"]
    amplitude: Float[Array, " d"]
    kind: str = eqx.field(static=True)
    saturation: float = eqx.field(static=True, default=5.0)

    def __call__(self, xt, j):
        z = self.coef[:, j] @ xt + self.bias[j]
        if self.kind == "sine":
            g = jnp.sin(z)
        elif self.kind == "tanh":
            g = jnp.tanh(z)
        elif self.kind == "quadratic":
            g = jnp.square(z / jnp.sqrt(1.0 + jnp.square(z / self.saturation)))
        else:  # threshold
            g = (z > 0).astype(z.dtype)
        return self.amplitude[j] * g


class MlpMech(eqx.Module):
    """f_j = w2[j] . tanh(x @ w1[j] + b1[j]) (root nodes: 0)."""

    w1: Float[Array, "d d h"]
    b1: Float[Array, "d h"]
    w2: Float[Array, "d h"]
    active: Float[Array, " d"]

    def __call__(self, xt, j):
        return self.active[j] * (jnp.tanh(xt.T @ self.w1[j] + self.b1[j]) @ self.w2[j])


class RffMech(eqx.Module):
    """f_j = amp[j] . cos(x @ omega[j] + phase[j]) + bias[j]: a GP draw by random Fourier features
    (root nodes: bias only)."""

    omega: Float[Array, "d d m"]
    phase: Float[Array, "d m"]
    amp: Float[Array, "d m"]
    bias: Float[Array, " d"]
    active: Float[Array, " d"]

    def __call__(self, xt, j):
        return self.active[j] * (fastrand.cos(xt.T @ self.omega[j] + self.phase[j]) @ self.amp[j]) + \
            self.bias[j]


def build_mechanism(spec, key, G: Float[Array, "d d"]):
    """Draw one mechanism component's parameters for every node of graph G ([d, d] float)."""
    d = G.shape[0]
    ks = jax.random.split(key, 6)
    active = (G.sum(0) > 0).astype(jnp.float32)
    if isinstance(spec, S.Linear):
        return LinearMech(draw(spec.coef, ks[0], (d, d)) * G, draw(spec.bias, ks[1], (d,)))
    if isinstance(spec, (S.Sine, S.Tanh, S.Quadratic, S.Threshold)):
        return SingleIndexMech(
            draw(spec.coef, ks[0], (d, d)) * G,
            draw(spec.bias, ks[1], (d,)),
            draw(spec.amplitude, ks[2], (d,)),
            spec.kind,
            getattr(spec, "saturation", 5.0),
        )
    if isinstance(spec, S.Mlp):
        h = spec.hidden
        fan_in = jnp.maximum(G.sum(0), 1.0)  # per node j
        w1 = draw(spec.weights, ks[0], (d, d, h)) * G.T[:, :, None]
        w1 = w1 / jnp.sqrt(fan_in)[:, None, None]
        b1 = draw(spec.weights, ks[1], (d, h))
        w2 = draw(spec.weights, ks[2], (d, h)) / math.sqrt(h)
        w2 = w2 * draw(spec.output_scale, ks[3], (d, 1))
        return MlpMech(w1, b1, w2, active)
    if isinstance(spec, S.Rff):
        m = spec.features
        ls = draw(spec.lengthscale, ks[0], (d, 1, 1))
        omega = fastrand.normal(ks[1], (d, d, m)) / ls * G.T[:, :, None]
        phase = fastrand.uniform(ks[2], (d, m), 0.0, 2 * math.pi)
        out = draw(spec.output_scale, ks[3], (d, 1))
        amp = out * math.sqrt(2.0 / m) * fastrand.normal(ks[4], (d, m))
        return RffMech(omega, phase, amp, draw(spec.bias, ks[5], (d,)), active)
    raise TypeError(f"no per-node mechanism for kind {spec.kind!r}")


class NoiseMech(eqx.Module):
    """Noise of one kind: eps_j = scale_j(x_pa) * z_j with z_j standard noise of that kind, and
    scale_j(x) = scale[j] (homoscedastic) or scale[j] * softplus(x . hetero[:, j] + 1) /
    softplus(1) (heteroscedastic: a random function of the parents)."""

    scale: Float[Array, " d"]
    hetero: Float[Array, "d d"] | None
    kind: str = eqx.field(static=True)
    df: float = eqx.field(static=True, default=3.0)

    def standard(self, key, shape) -> Array:
        if self.kind == "gaussian":
            return fastrand.normal(key, shape)
        if self.kind == "laplace":
            return fastrand.laplace(key, shape)
        if self.kind == "cauchy":
            return fastrand.cauchy(key, shape)
        if self.kind == "uniform":
            return fastrand.uniform(key, shape, -1.0, 1.0)
        return jax.random.t(key, self.df, shape)

    def scale_of(self, xt: Float[Array, "d n"], j) -> Float[Array, " n"] | Array:
        if self.hetero is None:
            return self.scale[j]
        sp1 = math.log1p(math.e)
        return self.scale[j] * jax.nn.softplus(self.hetero[:, j] @ xt + 1.0) / sp1


def build_noise(spec, key, G: Float[Array, "d d"]) -> NoiseMech:
    d = G.shape[0]
    k1, k2 = jax.random.split(key)
    hetero = None
    if spec.heteroscedastic:
        hetero = jax.random.normal(k2, (d, d)) * G / jnp.sqrt(jnp.maximum(G.sum(0), 1.0))
    return NoiseMech(draw(spec.scale, k1, (d,)), hetero, spec.kind, getattr(spec, "df", 3.0))
