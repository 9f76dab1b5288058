"""The inverse of symmetric positive-definite matrices in plain XLA operations.

`jnp.linalg.inv` on CPU calls LAPACK's batched LU through jaxlib's FFI, which splits the batch
over XLA's intra-op thread pool and blocks a pool thread until its parts finish. When every
pool thread is such a waiter (two LU calls running side by side on a 2-core machine), nothing is
left to run the parts: the process deadlocks with every thread in a futex wait. It happened in
training at d = 30, in a scan of 32 steps (tests/test_spd.py keeps that call as a regression
test). The models only invert ridged correlation matrices, which are positive definite, so
Gauss-Jordan elimination without pivoting is stable for them and needs no LAPACK call; its
derivative is the closed form d(A^-1) = -A^-1 dA A^-1 rather than a trace through the loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


@jax.custom_jvp
def spd_inverse(a: Float[Array, "*batch d d"]) -> Float[Array, "*batch d d"]:
    """A^-1 for positive-definite `a` (any leading batch axes), by Gauss-Jordan elimination."""
    d = a.shape[-1]
    aug = jnp.concatenate([a, jnp.broadcast_to(jnp.eye(d, dtype=a.dtype), a.shape)], axis=-1)

    def eliminate(k, m):
        row = m[..., k, :] / m[..., k, k][..., None]  # [..., 2d]
        m = m - m[..., :, k][..., None] * row[..., None, :]
        return m.at[..., k, :].set(row)

    return jax.lax.fori_loop(0, d, eliminate, aug)[..., d:]


@spd_inverse.defjvp
def _spd_inverse_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    inv = spd_inverse(a)
    return inv, -inv @ da @ inv
