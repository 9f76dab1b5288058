"""Ground truth for linear SCMs: exact interventional means and the best single-node hard
intervention, for judging optimisers (vmap over a batch of SCMs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from engine.scm.mechanisms import LinearMech
from engine.scm.model import SCM


def _linear(scm: SCM) -> tuple[Float[Array, "d d"], Float[Array, " d"]]:
    if scm.grn is not None or not scm.mechanisms or not all(
        isinstance(m, LinearMech) for m in scm.mechanisms
    ):
        raise TypeError("linear_means needs an SCM whose mechanisms are all linear")
    if any(nz.kind == "cauchy" for nz in scm.noises):
        raise TypeError("Cauchy noise has no mean")
    W = jnp.stack([m.coef for m in scm.mechanisms])  # [m, d(i), d(j)]
    b = jnp.stack([m.bias for m in scm.mechanisms])
    j = jnp.arange(W.shape[-1])
    return W[scm.mech_index, :, j].T, b[scm.mech_index, j]  # node j's own mechanism


def linear_means(scm: SCM, do_mask: Bool[Array, " d"], do_values: Float[Array, " d"]
                 ) -> Float[Array, " d"]:
    """E[x | do(x_S = v)] for one linear SCM with zero-mean noise, exactly, in output units
    (do_values too, as in SCM.sample). Padded variables are 0."""
    W, b = _linear(scm)
    do_mask = do_mask & scm.var_mask
    raw = do_values * scm.scale + scm.loc
    W = jnp.where(do_mask[None, :], 0.0, W)  # intervened nodes lose their parents
    c = jnp.where(do_mask, raw, b)
    d = W.shape[0]
    mu = jnp.linalg.solve((jnp.eye(d) - W).T, c)  # mu = c + W^T mu
    return jnp.where(scm.var_mask, (mu - scm.loc) / scm.scale, 0.0)


def linear_optimum(scm: SCM, low: float, high: float, minimize: bool = True
                   ) -> tuple[Float[Array, ""], Int[Array, ""], Float[Array, ""]]:
    """The best single-node hard intervention on one linear SCM: over every real non-target node
    j and value v in [low, high] (output units), the extreme of E[target | do(x_j = v)], which is
    linear in v so the optimum sits at low or high. Returns (best expected target, node, value)."""
    d = scm.var_mask.shape[0]
    eye = jnp.eye(d, dtype=bool)

    def at(v):
        means = jax.vmap(lambda m: linear_means(scm, m, jnp.full(d, v)))(eye)
        return means[:, scm.target]

    ys = jnp.stack([at(low), at(high)])  # [2, d]
    ok = scm.var_mask & (jnp.arange(d) != scm.target)
    ys = jnp.where(ok[None, :], ys if minimize else -ys, jnp.inf)
    flat = jnp.argmin(ys)
    which, node = flat // d, flat % d
    best = ys[which, node]
    return (best if minimize else -best), node.astype(jnp.int32), jnp.where(which == 0, low, high)
