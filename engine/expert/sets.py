"""Candidate parent sets as fixed-shape index arrays, and the simple priors over them.

A set is a row of `max_parents` variable indices padded with -1. Enumeration is static (it
depends only on d and the size bound), so graphs of one padded size share one array and the
posterior vmaps over graphs; a graph's own variables and target enter through the prior mask.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int


def all_sets(d: int, max_parents: int) -> np.ndarray:
    """Every subset of {0..d-1} with at most `max_parents` elements (the empty set first).

    Returns int32 [S, max(1, max_parents)], S = sum_{k<=max_parents} C(d, k), padded with -1.
    """
    k = max(1, min(max_parents, d))
    rows = [
        list(c) + [-1] * (k - len(c))
        for size in range(0, k + 1)
        for c in itertools.combinations(range(d), size)
    ]
    return np.asarray(rows, dtype=np.int32).reshape(-1, k)


def singleton_sets(d: int) -> np.ndarray:
    """The d singletons {i}: int32 [d, 1]."""
    return np.arange(d, dtype=np.int32)[:, None]


def membership(sets: Int[Array, "S k"], d: int) -> Float[Array, "S d"]:
    """1 where variable j is in set s (the -1 padding maps to nothing)."""
    return jnp.sum(jnp.where((sets >= 0)[..., None], jnp.eye(d)[jnp.maximum(sets, 0)], 0.0), axis=1)


def allowed_sets(
    sets: Int[Array, "S k"], var_mask: Bool[Array, " d"], target: Int[Array, ""]
) -> Bool[Array, " S"]:
    """Sets made only of real, non-target variables."""
    ok_var = var_mask & (jnp.arange(var_mask.shape[0]) != target)
    member_ok = jnp.where(sets >= 0, ok_var[jnp.maximum(sets, 0)], True)
    return jnp.all(member_ok, axis=1)


def uniform_log_prior(
    sets: Int[Array, "S k"], var_mask: Bool[Array, " d"], target: Int[Array, ""]
) -> Float[Array, " S"]:
    """log of the uniform distribution over the allowed sets (-inf elsewhere)."""
    ok = allowed_sets(sets, var_mask, target)
    return jnp.where(ok, -jnp.log(jnp.maximum(jnp.sum(ok), 1)), -jnp.inf)
