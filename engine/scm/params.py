"""Draw spec hyper-parameters (`Param`: a number or a `dist` table) as JAX arrays."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from engine.scm import fastrand


def draw(p: Any, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Sample `shape` iid values of the spec parameter `p` (float32).

    `p` is a plain number (returned broadcast) or one of engine.spec.base's dist tables.
    Continuous draws use engine.scm.fastrand (several times faster than jax.random on CPU).
    """
    if isinstance(p, (int, float)):
        return jnp.full(shape, p, jnp.float32)
    dist = p.dist
    if dist == "uniform":
        return fastrand.uniform(key, shape, p.low, p.high)
    if dist == "signed_uniform":  # |value| uniform on [low, high], sign a fair coin
        u = fastrand.uniform(key, shape, -1.0, 1.0)
        return jnp.sign(u) * (p.low + (p.high - p.low) * jnp.abs(u))
    if dist == "normal":
        return p.mean + p.std * fastrand.normal(key, shape)
    if dist == "lognormal":
        return jnp.exp(p.mean + p.std * fastrand.normal(key, shape))
    if dist == "choice":
        values = jnp.asarray(p.values, jnp.float32)
        w = jnp.ones(len(p.values)) if p.weights is None else jnp.asarray(p.weights, jnp.float32)
        idx = fastrand.categorical(key, jnp.log(w), shape=shape)
        return values[idx]
    raise ValueError(f"unknown dist {dist!r}")


def pick(key: jax.Array, weights: list[float], shape: tuple[int, ...] = ()) -> jax.Array:
    """Index of a mixture component drawn with probabilities proportional to `weights`."""
    if len(weights) == 1:
        return jnp.zeros(shape, jnp.int32)
    logits = jnp.log(jnp.asarray(weights, jnp.float32))
    return fastrand.categorical(key, logits, shape=shape)
