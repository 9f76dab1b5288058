"""Random DAG families, padded to d variables.

Each family draws an upper-triangular adjacency ``U`` over *positions* 0..k-1 (position order is a
topological order); `place` then gives the positions random variable labels, so node indices carry
no information about the order. Positions and labels >= k are padding (no edges). Families whose
edges are independent coins (Erdos-Renyi, stochastic block) draw them among the labels directly,
allowed where pos[i] < pos[j]: the same distribution, without relabelling a [d, d] matrix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from engine.scm import fastrand
from engine.spec import scm as S


def _real(k, d: int) -> Float[Array, "d d"]:
    r = jnp.arange(d) < k
    return (r[:, None] & r[None, :]).astype(jnp.float32)


def _triu(d: int) -> Float[Array, "d d"]:
    return jnp.triu(jnp.ones((d, d), jnp.float32), 1)


def _allowed(pos: Int[Array, " d"], k) -> Bool[Array, "d d"]:
    """Edges i -> j that respect the order (pos[i] < pos[j]) between real nodes (pos < k)."""
    real = pos < k
    return (pos[:, None] < pos[None, :]) & real[:, None] & real[None, :]


def erdos_renyi(spec: S.ErdosRenyi, key, k, pos: Int[Array, " d"]) -> Float[Array, "d d"]:
    if spec.p is not None:
        p = jnp.float32(spec.p)
    else:  # expected edges = edges_per_node * k over k (k - 1) / 2 pairs
        p = jnp.minimum(1.0, 2.0 * spec.edges_per_node / jnp.maximum(k - 1, 1))
    d = pos.shape[0]
    return ((fastrand.uniform(key, (d, d)) < p) & _allowed(pos, k)).astype(jnp.float32)


def _preferential(spec: S.ScaleFree, key, k, d: int) -> Float[Array, "d d"]:
    """Insertion-order DAG: U[i, t] = 1 when new node t attached to older node i (old -> new)."""
    m = min(spec.m, d - 1)
    idx = jnp.arange(d)

    def add(t, carry):
        U, deg = carry
        score = spec.power * jnp.log(deg + 1.0) + fastrand.gumbel(fastrand.fold_in(key, t), (d,))
        score = jnp.where(idx < t, score, -jnp.inf)
        _, chosen = jax.lax.top_k(score, m)  # Gumbel-top-m: m draws without replacement
        ok = (jnp.arange(m) < t) & (t < k)
        hit = jnp.zeros(d).at[chosen].add(ok.astype(jnp.float32))
        U = U.at[:, t].set(hit)
        deg = deg + hit + jnp.zeros(d).at[t].set(hit.sum())
        return U, deg

    U, _ = jax.lax.fori_loop(1, d, add, (jnp.zeros((d, d)), jnp.zeros(d)))
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
    k1, k2, k3 = fastrand.split(key, 3)
    i = jnp.arange(d)[:, None]
    s = jnp.arange(1, spec.k + 1)[None, :]
    j = (i + s) % jnp.maximum(k, 1)
    r = fastrand.randint(k1, j.shape, 0, jnp.maximum(k - 1, 1))
    other = r + (r >= i)  # uniform over nodes other than i
    j = jnp.where(fastrand.uniform(k2, j.shape) < spec.rewire, other, j)
    valid = (i < k) & (j != i) & (j < k)
    A = jnp.zeros((d, d)).at[jnp.broadcast_to(i, j.shape), j].max(valid.astype(jnp.float32))
    A = jnp.maximum(A, A.T)
    q = _perm(k3, k, d)  # orient by a random order, not by ring position
    return A[q][:, q] * _triu(d)


def stochastic_block(spec: S.StochasticBlock, key, k, pos: Int[Array, " d"]):
    k1, k2 = fastrand.split(key)
    d = pos.shape[0]
    b = fastrand.randint(k1, (d,), 0, spec.blocks)
    p = jnp.where(b[:, None] == b[None, :], spec.p_in, spec.p_out)
    return ((fastrand.uniform(k2, (d, d)) < p) & _allowed(pos, k)).astype(jnp.float32)


def chain(spec, key, k, d: int):
    i = jnp.arange(d)
    return ((i[None, :] == i[:, None] + 1) * _real(k, d)).astype(jnp.float32)


def fork(spec, key, k, d: int):
    i = jnp.arange(d)
    return ((i[:, None] == 0) & (i[None, :] > 0)) * _real(k, d)


def collider(spec, key, k, d: int):
    i = jnp.arange(d)
    return ((i[None, :] == k - 1) & (i[:, None] < k - 1)) * _real(k, d)


# Families over positions (relabelled by `place`), and families of independent edge coins that
# draw among the labels given each label's position (`_allowed`).
FAMILIES = {
    "scale_free": scale_free,
    "scale_free_transpose": scale_free_transpose,
    "watts_strogatz": watts_strogatz,
    "chain": chain,
    "fork": fork,
    "collider": collider,
}
LABELLED = {"erdos_renyi": erdos_renyi, "stochastic_block": stochastic_block}


def rank(u: Float[Array, " d"]) -> Int[Array, " d"]:
    """Rank of each entry (ties broken by index). O(d^2) comparisons instead of a sort: d is small
    and XLA's CPU sort is slow to compile."""
    i = jnp.arange(u.shape[0])
    less = (u[None, :] < u[:, None]) | ((u[None, :] == u[:, None]) & (i[None, :] < i[:, None]))
    return less.sum(1).astype(jnp.int32)


def inverse_permutation(p: Int[Array, " d"]) -> Int[Array, " d"]:
    """q with q[p[i]] = i: e.g. the label at each position, given each label's position."""
    d = p.shape[0]
    return jnp.zeros(d, jnp.int32).at[p].set(jnp.arange(d, dtype=jnp.int32))


def argsort_small(u: Float[Array, " d"]) -> Int[Array, " d"]:
    """jnp.argsort for short vectors, by `rank` and a scatter."""
    return inverse_permutation(rank(u))


def _positions(key, k, d: int) -> Int[Array, " d"]:
    """Each label's position in a uniformly random order of 0..k-1 (labels k..d-1 keep theirs)."""
    i = jnp.arange(d)
    return rank(jnp.where(i < k, fastrand.uniform(key, (d,)), 2.0 + i))


def _perm(key, k, d: int) -> Int[Array, " d"]:
    """A uniformly random permutation of 0..k-1 followed by k..d-1 in place."""
    return inverse_permutation(_positions(key, k, d))


def place(U: Float[Array, "d d"], key, k, d: int) -> tuple[Int[Array, "d d"], Int[Array, " d"]]:
    """Give positions random labels: G[order[a], order[b]] = U[a, b]; returns (G, order)."""
    pos = _positions(key, k, d)
    return U[pos][:, pos].astype(jnp.int32), inverse_permutation(pos)


def random_graph(spec, key, k, d: int) -> tuple[Int[Array, "d d"], Int[Array, " d"]]:
    """One DAG of family `spec` with k real nodes (k may be traced), padded to d: (G, order)."""
    k1, k2 = fastrand.split(key)
    if spec.kind in LABELLED:
        pos = _positions(k2, k, d)
        return LABELLED[spec.kind](spec, k1, k, pos).astype(jnp.int32), inverse_permutation(pos)
    return place(FAMILIES[spec.kind](spec, k1, k, d), k2, k, d)
