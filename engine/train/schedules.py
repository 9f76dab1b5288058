"""Learning-rate schedules: pure functions step -> rate that jit (optax's `Schedule` protocol).

They take the optimizer's update count (an int32 array inside the jitted step) and return a
float32 scalar, so the rate at step t is a pure function of t and a resume is exact.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax.numpy as jnp

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


def constant(value: float) -> Schedule:
    """`value` at every step."""
    return lambda step: jnp.full((), value, jnp.float32)


def warmup_cosine(peak: float, warmup: int, decay_steps: int, end: float = 0.0) -> Schedule:
    """0 -> `peak` linearly over `warmup` steps, then half a cosine from `peak` to `end` at
    `decay_steps` (counted from step 0), `end` after."""

    def schedule(step):
        t = jnp.asarray(step, jnp.float32)
        ramp = peak * t / max(warmup, 1)
        span = max(decay_steps - warmup, 1)
        progress = jnp.clip((t - warmup) / span, 0.0, 1.0)
        cosine = end + 0.5 * (peak - end) * (1.0 + jnp.cos(jnp.pi * progress))
        return jnp.where(t < warmup, ramp, cosine).astype(jnp.float32)

    return schedule


def piecewise(values: Sequence[float], boundaries: Sequence[int]) -> Schedule:
    """`values[i]` for boundaries[i-1] <= step < boundaries[i] (len(values) = len(boundaries)+1)."""
    if len(values) != len(boundaries) + 1:
        raise ValueError("piecewise: values needs exactly one more entry than boundaries")
    vals = jnp.asarray(values, jnp.float32)
    bounds = jnp.asarray(boundaries, jnp.int32)

    def schedule(step):
        return vals[jnp.sum(jnp.asarray(step, jnp.int32) >= bounds)]

    return schedule
