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
        # [h, n] layout: the hidden units' axis leading is ~2x faster on CPU than [n, h]
        return self.active[j] * (self.w2[j] @ jnp.tanh(self.w1[j].T @ xt + self.b1[j][:, None]))


class RffMech(eqx.Module):
    """f_j = amp[j] . cos(x_pa @ omega[j] + phase[j]) + bias[j]: a GP draw by random Fourier
    features (root nodes: bias only).

    Dense form: ``inputs`` is None and omega is [d, d, m] (zero rows for non-parents). Sparse form,
    for batches whose in-degree is at most K: ``inputs`` [d, K] lists each node's parents (padded
    with non-parents under zero omega rows) and omega is [d, K, m], so each step costs K, not d, rows of the
    projection. Both forms hold the same function (omega entries are drawn by index).
    """

    omega: Float[Array, "d k m"]
    phase: Float[Array, "d m"]
    amp: Float[Array, "d m"]
    bias: Float[Array, " d"]
    active: Float[Array, " d"]
    inputs: Array | None = None

    def __call__(self, xt, j):
        x = xt if self.inputs is None else xt[self.inputs[j]]
        # [m, n] layout: the features' axis leading is ~2x faster on CPU than [n, m]
        feats = fastrand.cos(self.omega[j].T @ x + self.phase[j][:, None])
        return self.active[j] * (self.amp[j] @ feats) + self.bias[j]


def _rff(spec, ks, G: Float[Array, "d d"], active, max_parents: int | None) -> RffMech:
    d, m = G.shape[0], spec.features
    ls = draw(spec.lengthscale, ks[0], (d, 1, 1))
    phase = fastrand.uniform(ks[2], (d, m), 0.0, 2 * math.pi)
    out = draw(spec.output_scale, ks[3], (d, 1))
    amp = out * math.sqrt(2.0 / m) * fastrand.normal(ks[4], (d, m))
    bias = draw(spec.bias, ks[5], (d,))
    node, feat = jnp.arange(d)[:, None, None], jnp.arange(m)[None, None, :]
    if max_parents is None:
        inputs, edge = None, G.T[:, :, None]
        src = jnp.arange(d)[None, :, None]
    else:  # each node's parents first (stable), then padding pointing at variable 0
        order = jnp.argsort(-G.T, axis=1, stable=True)[:, :max_parents]  # [d, K]
        inputs = order
        edge = jnp.take_along_axis(G.T, order, axis=1)[:, :, None]
        src = order[:, :, None]
    # omega[j, i, f] is element (j, i, f) of a dense [d, d, m] standard-normal draw
    omega = fastrand.normal_at(ks[1], (node * d + src) * m + feat) / ls * edge
    return RffMech(omega, phase, amp, bias, active, inputs)


def build_mechanism(spec, key, G: Float[Array, "d d"], max_parents: int | None = None):
    """Draw one mechanism component's parameters for every node of graph G ([d, d] float).
    `max_parents` (static): a bound on G's in-degree that lets rff use its sparse form."""
    d = G.shape[0]
    ks = fastrand.split(key, 6)
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
        return _rff(spec, ks, G, active, max_parents)
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

    @property
    def reach(self) -> float:
        """The largest |z| `standard` can return (fastrand's uniforms lie in [2**-25, 1 - 2**-25]):
        sqrt(-2 log 2**-25) for Box-Muller, log 2**24 for Laplace; inf for the heavy tails."""
        return {"gaussian": 5.9, "laplace": 16.7, "uniform": 1.0}.get(self.kind, math.inf)

    def scale_of(self, xt: Float[Array, "d n"], j) -> Float[Array, " n"] | Array:
        if self.hetero is None:
            return self.scale[j]
        sp1 = math.log1p(math.e)
        return self.scale[j] * jax.nn.softplus(self.hetero[:, j] @ xt + 1.0) / sp1


def build_noise(spec, key, G: Float[Array, "d d"]) -> NoiseMech:
    d = G.shape[0]
    k1, k2 = fastrand.split(key)
    hetero = None
    if spec.heteroscedastic:
        hetero = fastrand.normal(k2, (d, d)) * G / jnp.sqrt(jnp.maximum(G.sum(0), 1.0))
    return NoiseMech(draw(spec.scale, k1, (d,)), hetero, spec.kind, getattr(spec, "df", 3.0))
