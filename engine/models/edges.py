"""Edge-level reasoning: layers over the whole [d, d] grid of edge representations.

A per-target head decides each target's parents alone, from statistics about that target. In a
dense graph that is not enough: a spouse (another parent of a common child) looks like a parent
in every local statistic, and only the rest of the graph says "i and j are both parents of k,
so their dependence given k is explained away". A triangle update lets edge (i, j) read every
third variable's pair of edges with i and j (AlphaFold's triangle multiplicative update, here
over directed edges):

- common child:  sum_k a[i, k] * b[j, k]   (i -> k <- j)
- common parent: sum_k a[k, i] * b[k, j]   (i <- k -> j)
- path:          sum_k a[i, k] * b[k, j]   (i -> k -> j)

each a mean over the real variables (so a model trained at d <= 30 reads d = 100 on the same
scale), gated, then a per-edge MLP. O(d^3 * width) per layer. The output projection starts at
zero, so each block starts as the identity.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

_CONTRACTIONS = 3  # common child, common parent, path


def _zero_linear(lin: eqx.nn.Linear) -> eqx.nn.Linear:
    return eqx.tree_at(lambda l: (l.weight, l.bias), lin, (jnp.zeros_like(lin.weight), jnp.zeros_like(lin.bias)))


class TriangleUpdate(eqx.Module):
    """What every third variable's edges with i and j say about edge (i, j)."""

    norm: eqx.nn.LayerNorm
    values: eqx.nn.Linear
    gates: eqx.nn.Linear
    out_norm: eqx.nn.LayerNorm
    out: eqx.nn.Linear
    out_gate: eqx.nn.Linear
    width: int = eqx.field(static=True)

    def __init__(self, dim: int, width: int, key: PRNGKeyArray):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        n = 2 * _CONTRACTIONS * width
        self.norm = eqx.nn.LayerNorm(dim)
        self.values = eqx.nn.Linear(dim, n, key=k1)
        self.gates = eqx.nn.Linear(dim, n, key=k2)
        self.out_norm = eqx.nn.LayerNorm(_CONTRACTIONS * width)
        self.out = _zero_linear(eqx.nn.Linear(_CONTRACTIONS * width, dim, key=k3))
        self.out_gate = eqx.nn.Linear(dim, dim, key=k4)
        self.width = width

    def __call__(self, e: Float[Array, "d d dim"], pair: Bool[Array, "d d"]) -> Float[Array, "d d dim"]:
        per_edge = lambda f, t: jax.vmap(jax.vmap(f))(t)  # noqa: E731
        x = per_edge(self.norm, e)
        ab = jax.nn.sigmoid(per_edge(self.gates, x)) * per_edge(self.values, x)
        ab = jnp.where(pair[..., None], ab, 0.0)  # no padded variable or self-loop contributes
        a1, b1, a2, b2, a3, b3 = jnp.split(ab, 2 * _CONTRACTIONS, axis=-1)
        real = jnp.maximum(pair.any(1).sum(), 1)
        mixed = jnp.concatenate([
            jnp.einsum("ikc,jkc->ijc", a1, b1),  # common child
            jnp.einsum("kic,kjc->ijc", a2, b2),  # common parent
            jnp.einsum("ikc,kjc->ijc", a3, b3),  # path
        ], -1) / real
        return jax.nn.sigmoid(per_edge(self.out_gate, x)) * per_edge(self.out, per_edge(self.out_norm, mixed))


class EdgeBlock(eqx.Module):
    """A triangle update, then a per-edge MLP; both residual."""

    triangle: TriangleUpdate
    norm: eqx.nn.LayerNorm
    mlp: eqx.nn.MLP

    def __init__(self, dim: int, width: int, key: PRNGKeyArray):
        k1, k2 = jax.random.split(key)
        self.triangle = TriangleUpdate(dim, width, k1)
        self.norm = eqx.nn.LayerNorm(dim)
        mlp = eqx.nn.MLP(dim, dim, 2 * dim, 1, activation=jax.nn.gelu, key=k2)
        self.mlp = eqx.tree_at(lambda m: m.layers[-1], mlp, _zero_linear(mlp.layers[-1]))

    def __call__(self, e: Float[Array, "d d dim"], pair: Bool[Array, "d d"]) -> Float[Array, "d d dim"]:
        e = e + self.triangle(e, pair)
        return e + jax.vmap(jax.vmap(lambda v: self.mlp(self.norm(v))))(e)
