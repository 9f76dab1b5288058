"""A tiny linear-Gaussian SCM with the simulator's interface, for the expert's own tests.

Same fields and `sample` as `engine.scm`'s SCM (adjacency, var_mask, target,
sample(key, do_mask, do_values)), plus the weights so tests can compute exact answers.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from engine.scm.types import Dataset


class LinearSCM(eqx.Module):
    """x_j = sum_i W[i, j] x_i + noise_std_j * eps_j, G[i, j] = 1 iff W[i, j] != 0 (i -> j).

    Variables are in topological order (W strictly upper triangular).
    """

    weights: Float[Array, "d d"]
    noise_std: Float[Array, " d"]
    var_mask: Bool[Array, " d"]
    target: Int[Array, ""]

    @property
    def adjacency(self) -> Float[Array, "d d"]:
        return (self.weights != 0).astype(jnp.float32)

    def sample(self, key, do_mask: Bool[Array, "n d"], do_values: Float[Array, "n d"]) -> Float[Array, "n d"]:
        n, d = do_mask.shape
        eps = jax.random.normal(key, (n, d)) * self.noise_std
        x = jnp.zeros((n, d))
        for _ in range(d):  # d sweeps settle a DAG in topological order
            x = jnp.where(do_mask, do_values, x @ self.weights + eps)
        return jnp.where(self.var_mask, x, 0.0)

    def do_mean(self, v: int, value: float) -> float:
        """E[Y | do(X_v = value)], exact (linear, zero-mean noise)."""
        w = np.asarray(self.weights, np.float64)
        d = w.shape[0]
        mean = np.zeros(d)
        for j in range(d):
            mean[j] = value if j == v else mean @ w[:, j]
        return float(mean[int(self.target)])


def random_linear_scm(rng: np.random.Generator, d: int, target: int | None = None, p: float | None = None,
                      d_pad: int | None = None) -> LinearSCM:
    """Erdos-Renyi DAG (edge prob 1/(d-1)), weights ~ N(2, 1), unit noise, target = last node."""
    d_pad = d_pad or d
    p = 1.0 / max(d - 1, 1) if p is None else p
    w = np.zeros((d_pad, d_pad), np.float32)
    tri = np.triu(rng.random((d, d)) < p, 1)
    w[:d, :d] = np.where(tri, rng.normal(2.0, 1.0, (d, d)), 0.0)
    mask = np.arange(d_pad) < d
    return LinearSCM(jnp.asarray(w), jnp.asarray(mask, jnp.float32), jnp.asarray(mask),
                     jnp.asarray(d - 1 if target is None else target, jnp.int32))


def make_dataset(scm: LinearSCM, key, n_obs: int = 200, n_per_var: int = 2, low: float = -5.0,
                 high: float = 5.0) -> Dataset:
    """D_O with n_obs rows; D_I with n_per_var rows per real non-target variable, values U[low, high]."""
    d = scm.var_mask.shape[0]
    k_obs, k_val, k_int = jax.random.split(key, 3)
    obs = scm.sample(k_obs, jnp.zeros((n_obs, d), bool), jnp.zeros((n_obs, d)))
    ok = np.asarray(scm.var_mask) & (np.arange(d) != int(scm.target))
    vars_ = np.repeat(np.arange(d), n_per_var)
    mask = np.eye(d, dtype=bool)[vars_]
    values = jax.random.uniform(k_val, (len(vars_), d), minval=low, maxval=high)
    ints = scm.sample(k_int, jnp.asarray(mask), values)
    return Dataset(obs, ints, jnp.asarray(mask), jnp.asarray(ok[vars_]))
