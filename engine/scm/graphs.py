"""Random DAG families, padded to d variables.

Each family draws an upper-triangular adjacency ``U`` over *positions* 0..k-1 (position order is a
topological order); `place` then gives the positions random variable labels, so node indices carry
no information about the order. Positions and labels >= k are padding (no edges).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from engine.scm import fastrand
from engine.spec import scm as S


def _real(k, d: int) -> Float[Array, "d d"]:
    r = jnp.arange(d) < k
    return (r[:, None] & r[None, :]).astype(jnp.float32)


def _triu(d: int) -> Float[Array, "d d"]:
    return jnp.triu(jnp.ones((d, d), jnp.float32), 1)


def erdos_renyi(spec: S.ErdosRenyi, key, k, d: int) -> Float[Array, "d d"]:
    if spec.p is not None:
        p = jnp.float32(spec.p)
    else:  # expected edges = edges_per_node * k over k (k - 1) / 2 pairs
        p = jnp.minimum(1.0, 2.0 * spec.edges_per_node / jnp.maximum(k - 1, 1))
    return (fastrand.uniform(key, (d, d)) < p) * _triu(d) * _real(k, d)


def _preferential(spec: S.ScaleFree, key, k, d: int) -> Float[Array, "d d"]:
    """Insertion-order DAG: U[i, t] = 1 when new node t attached to older node i (old -> new)."""
    m = min(spec.m, d - 1)
    idx = jnp.arange(d)

    def add(t, carry):
        U, deg, key = carry
        key, sub = jax.random.split(key)
        score = spec.power * jnp.log(deg + 1.0) + jax.random.gumbel(sub, (d,))
        score = jnp.where(idx < t, score, -jnp.inf)
        _, chosen = jax.lax.top_k(score, m)  # Gumbel-top-m: m draws without replacement
        ok = (jnp.arange(m) < t) & (t < k)
        hit = jnp.zeros(d).at[chosen].add(ok.astype(jnp.float32))
        U = U.at[:, t].set(hit)
        deg = deg + hit + jnp.zeros(d).at[t].set(hit.sum())
        return U, deg, key

    U, _, _ = jax.lax.fori_loop(1, d, add, (jnp.zeros((d, d)), jnp.zeros(d), key))
    return U


def scale_free_transpose(spec, key, k, d: int):
    return _preferential(spec, key, k, d)


def scale_free(spec, key, k, d: int):
    # Reverse the positions of the real nodes: new -> old, so hubs collect parents.
    U = _preferential(spec, key, k, d)
    i = jnp.arange(d)
    rev = jnp.where(i < k, k - 1 - i, i)
    return U[rev][:, rev].T


def watts_strogatz(spec: S.WattsStrogatz, key, k, d: int):
    k1, k2, k3 = jax.random.split(key, 3)
    i = jnp.arange(d)[:, None]
    s = jnp.arange(1, spec.k + 1)[None, :]
    j = (i + s) % jnp.maximum(k, 1)
    r = jax.random.randint(k1, j.shape, 0, jnp.maximum(k - 1, 1))
    other = r + (r >= i)  # uniform over nodes other than i
    j = jnp.where(fastrand.uniform(k2, j.shape) < spec.rewire, other, j)
    valid = (i < k) & (j != i) & (j < k)
    A = jnp.zeros((d, d)).at[jnp.broadcast_to(i, j.shape), j].max(valid.astype(jnp.float32))
    A = jnp.maximum(A, A.T)
    q = _perm(k3, k, d)  # orient by a random order, not by ring position
    return A[q][:, q] * _triu(d)


def stochastic_block(spec: S.StochasticBlock, key, k, d: int):
    k1, k2 = jax.random.split(key)
    b = jax.random.randint(k1, (d,), 0, spec.blocks)
    p = jnp.where(b[:, None] == b[None, :], spec.p_in, spec.p_out)
    return (fastrand.uniform(k2, (d, d)) < p) * _triu(d) * _real(k, d)


def chain(spec, key, k, d: int):
    i = jnp.arange(d)
    return ((i[None, :] == i[:, None] + 1) * _real(k, d)).astype(jnp.float32)


def fork(spec, key, k, d: int):
    i = jnp.arange(d)
    return ((i[:, None] == 0) & (i[None, :] > 0)) * _real(k, d)


def collider(spec, key, k, d: int):
    i = jnp.arange(d)
    return ((i[None, :] == k - 1) & (i[:, None] < k - 1)) * _real(k, d)


FAMILIES = {
    "erdos_renyi": erdos_renyi,
    "scale_free": scale_free,
    "scale_free_transpose": scale_free_transpose,
    "watts_strogatz": watts_strogatz,
    "stochastic_block": stochastic_block,
    "chain": chain,
    "fork": fork,
    "collider": collider,
}


def rank(u: Float[Array, " d"]) -> Int[Array, " d"]:
    """Rank of each entry (ties broken by index). O(d^2) comparisons instead of a sort: d is small
    and XLA's CPU sort is slow to compile."""
    i = jnp.arange(u.shape[0])
    less = (u[None, :] < u[:, None]) | ((u[None, :] == u[:, None]) & (i[None, :] < i[:, None]))
    return less.sum(1).astype(jnp.int32)


def argsort_small(u: Float[Array, " d"]) -> Int[Array, " d"]:
    """jnp.argsort for short vectors, by `rank` and a scatter."""
    n = u.shape[0]
    return jnp.zeros(n, jnp.int32).at[rank(u)].set(jnp.arange(n, dtype=jnp.int32))


def _perm(key, k, d: int) -> Int[Array, " d"]:
    """A uniformly random permutation of 0..k-1 followed by k..d-1 in place."""
    i = jnp.arange(d)
    return argsort_small(jnp.where(i < k, fastrand.uniform(key, (d,)), 2.0 + i))


def place(U: Float[Array, "d d"], key, k, d: int) -> tuple[Int[Array, "d d"], Int[Array, " d"]]:
    """Give positions random labels: G[perm[a], perm[b]] = U[a, b]; returns (G, order=perm)."""
    perm = _perm(key, k, d)
    inv = jnp.zeros(d, jnp.int32).at[perm].set(jnp.arange(d, dtype=jnp.int32))
    return U[inv][:, inv].astype(jnp.int32), perm


def random_graph(spec, key, k, d: int) -> tuple[Int[Array, "d d"], Int[Array, " d"]]:
    """One DAG of family `spec` with k real nodes (k may be traced), padded to d."""
    k1, k2 = jax.random.split(key)
    return place(FAMILIES[spec.kind](spec, k1, k, d), k2, k, d)
