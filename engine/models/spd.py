"""The inverse of symmetric positive-definite matrices in plain XLA operations.

`jnp.linalg.inv` on CPU calls LAPACK's batched LU through jaxlib's FFI, which splits the batch
over XLA's intra-op thread pool and blocks a pool thread until its parts finish. When every
pool thread is such a waiter (two LU calls running side by side on a 2-core machine), nothing is
left to run the parts: the process deadlocks with every thread in a futex wait. It happened in
training at d = 30, in a scan of 32 steps (tests/test_spd.py keeps that call as a regression
test). The models only invert ridged correlation matrices, which are positive definite, so
Gauss-Jordan elimination without pivoting is stable for them and needs no LAPACK call; its
derivative is the closed form d(A^-1) = -A^-1 dA A^-1 rather than a trace through the loop.
(A training step whose additive statistics inverted their (7 d)^2 Gram by LU hung so again:
gdb showed both tf_XLAEigen threads in jax::ParallelBatchMap's BlockingCounter::Wait under
lapack_sgetrf_ffi.)
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


def block_spd_inverse(a: Float[Array, "m b m b"]) -> Float[Array, "m b m b"]:
    """A^-1 for positive-definite `a` seen as m x m blocks of size b, by in-place block
    Gauss-Jordan: m rank-b updates (matrix products) instead of m b rank-1 ones, 6x faster
    than `spd_inverse` at m = 50, b = 7. Every pivot block is a Schur complement of a
    positive-definite matrix, so positive definite itself: no pivoting. No custom derivative:
    its callers invert data statistics only."""
    m, b = a.shape[0], a.shape[1]

    def eliminate(k, a):
        rows = jax.lax.dynamic_slice_in_dim(a, k * b, b, axis=0)  # [b, D]: block row k
        col = jax.lax.dynamic_slice_in_dim(a, k * b, b, axis=1)  # [D, b]: block column k
        pivot = spd_inverse(jax.lax.dynamic_slice_in_dim(rows, k * b, b, axis=1))
        right = pivot @ rows
        a = a - col @ right
        a = jax.lax.dynamic_update_slice_in_dim(a, -col @ pivot, k * b, axis=1)
        a = jax.lax.dynamic_update_slice_in_dim(a, right, k * b, axis=0)
        return jax.lax.dynamic_update_slice(a, pivot, (k * b, k * b))

    return jax.lax.fori_loop(0, m, eliminate, a.reshape(m * b, m * b)).reshape(m, b, m, b)
