"""How well an episode optimised: regret, gap closure and the reference optimum, each defined once.

The target is minimised. Per-trial functions take arrays with the trials on the last axis
([..., T]) and per-episode numbers (y0, optimum) of the leading shape [...]; `gap_closure` is
elementwise. All are pure jnp (jit and vmap over episodes), except `optimum` and `exact_values`
for the expert's toy SCM, which evaluate its closed form on the host.

    simple regret      r_t = best_t - f*                       (best_t: lowest outcome of trials 1..t)
    cumulative regret  R_t = sum_{s <= t} (y_s - f*)
    gap closure        (y0 - best_T) / (y0 - f*)              (y0: the target's observational mean;
                                                               1 = the optimum found, 0 = no better
                                                               than not intervening)
    trials to 95%      the first t with gap closure >= 0.95   (T + 1 if never)

f* is `optimum(...)`: exact for linear SCMs, else a declared Monte-Carlo estimate.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int


def best_so_far(values: Float[Array, "... T"]) -> Float[Array, "... T"]:
    """Running minimum over the trials."""
    values = jnp.asarray(values)
    return jax.lax.cummin(values, axis=values.ndim - 1)


def simple_regret(best_y: Float[Array, "... T"], optimum) -> Float[Array, "... T"]:
    """best_t - f* per trial (best_y: the best outcome so far, e.g. `Episode.best_y`)."""
    return jnp.asarray(best_y) - jnp.asarray(optimum)[..., None]


def cumulative_regret(trial_y: Float[Array, "... T"], optimum) -> Float[Array, "... T"]:
    """sum over trials 1..t of (y_s - f*), per t."""
    return jnp.cumsum(jnp.asarray(trial_y) - jnp.asarray(optimum)[..., None], axis=-1)


def gap_closure(y0, best, optimum):
    """(y0 - best) / (y0 - f*), elementwise; NaN where y0 = f* (nothing to close)."""
    y0, best, optimum = jnp.asarray(y0), jnp.asarray(best), jnp.asarray(optimum)
    gap = y0 - optimum
    return jnp.where(gap != 0, (y0 - best) / jnp.where(gap != 0, gap, 1.0), jnp.nan)


def trials_to_closure(best_y: Float[Array, "... T"], y0, optimum, fraction: float = 0.95) -> Int[Array, "..."]:
    """The first trial t (1-based) whose best so far closes at least `fraction` of the gap
    between y0 and the optimum; T + 1 if none does."""
    best_y = jnp.asarray(best_y)
    reached = gap_closure(jnp.asarray(y0)[..., None], best_y, jnp.asarray(optimum)[..., None]) >= fraction
    return jnp.where(jnp.any(reached, -1), jnp.argmax(reached, -1) + 1, best_y.shape[-1] + 1)


def within(f, reference, y0, fraction: float = 0.01) -> Bool[Array, "..."]:
    """f <= reference + fraction x |reference - y0|: f is within `fraction` of the reference's
    improvement over y0 (e.g. PARENT_SCALE's best against the oracle's, fraction 1%)."""
    f, reference, y0 = jnp.asarray(f), jnp.asarray(reference), jnp.asarray(y0)
    return f <= reference + fraction * jnp.abs(reference - y0)


# ------------------------------------------------------------------------------ the optimum


class Optimum(NamedTuple):
    """The best single-node hard intervention do(X_var = x) and its expected target `value`.
    exact: closed form (linear SCMs); else a Monte-Carlo estimate with standard error `stderr`."""

    value: Float[Array, ""]
    var: Int[Array, ""]
    x: Float[Array, ""]
    exact: bool
    stderr: Float[Array, ""]

    def __float__(self) -> float:
        return float(self.value)


def _is_toy(scm) -> bool:
    from engine.expert.toy import LinearSCM

    return isinstance(scm, LinearSCM)


def _is_linear(scm) -> bool:
    """Every mechanism linear with finite-mean noise (what `engine.scm.optimum` solves exactly)."""
    from engine.scm.optimum import _linear

    try:
        _linear(scm)
    except TypeError:
        return False
    return True


def _candidates(scm) -> np.ndarray:
    d = scm.var_mask.shape[0]
    return np.asarray(scm.var_mask, bool) & (np.arange(d) != int(scm.target))


def exact_values(scm, var: Int[Array, " T"], value: Float[Array, " T"]) -> Float[Array, " T"]:
    """E[target | do(X_var[t] = value[t])] per trial, exactly (linear SCMs: the simulator's
    linear SCMs or the expert's toy LinearSCM; TypeError otherwise)."""
    var, value = np.asarray(var), np.asarray(value)
    if _is_toy(scm):
        return jnp.asarray([scm.do_mean(int(v), float(x)) for v, x in zip(var, value)], jnp.float32)
    from engine.scm.optimum import linear_means

    d = scm.var_mask.shape[0]
    eye = jnp.eye(d, dtype=bool)
    return jax.vmap(lambda v, x: linear_means(scm, eye[v], jnp.full(d, x))[scm.target])(
        jnp.asarray(var, jnp.int32), jnp.asarray(value, jnp.float32))


def _best_of(ys: np.ndarray, xs: np.ndarray, ok: np.ndarray):
    """(value, var, x index) of the lowest ys [d, m] over ok variables."""
    ys = np.where(ok[:, None], ys, np.inf)
    var, i = np.unravel_index(np.argmin(ys), ys.shape)
    return ys[var, i], var, xs[var, i]


def optimum(scm, low, high, key=None, mc_samples: int = 2000, grid: int = 21) -> Optimum:
    """min over real non-target j and x in [low_j, high_j] of E[target | do(X_j = x)].

    low/high: scalars or per-variable [d] (the simulator's standardised units, as `SCM.sample`).
    Linear SCMs: exact. E[target | do(X_j = x)] is linear in x, so the minimum sits at low or
    high: `engine.scm.optimum.linear_optimum` for scalar bounds, the same closed form
    (`linear_means`) at each variable's own bounds otherwise, or the toy SCM's `do_mean`.
    Otherwise a Monte-Carlo estimate: `grid` evenly spaced values per variable, each scored by
    the mean of `mc_samples` draws (one key per variable, shared over its grid: common random
    numbers), the lowest taken. Its bias has two signs: the minimum of noisy means is optimistic
    (biased low, by at most about the largest standard error times sqrt(2 log(#variables x
    grid)), much less with common random numbers along the grid), and the grid misses an
    optimum between its points (biased high; none for responses monotone in x, whose optimum is
    an endpoint). `stderr` is the standard error of the chosen mean."""
    d = scm.var_mask.shape[0]
    ok = _candidates(scm)
    scalar = np.ndim(low) == 0 and np.ndim(high) == 0
    low_d = np.broadcast_to(np.asarray(low, np.float32), (d,))
    high_d = np.broadcast_to(np.asarray(high, np.float32), (d,))
    ends = np.stack([low_d, high_d], 1)  # [d, 2]
    zero = jnp.asarray(0.0, jnp.float32)
    if _is_toy(scm):
        ys = np.asarray([[scm.do_mean(j, float(x)) if ok[j] else np.inf for x in ends[j]] for j in range(d)])
        value, var, x = _best_of(ys, ends, ok)
        return Optimum(jnp.asarray(value, jnp.float32), jnp.asarray(var, jnp.int32), jnp.asarray(x, jnp.float32),
                       True, zero)
    if _is_linear(scm):
        if scalar:
            from engine.scm.optimum import linear_optimum

            value, var, x = linear_optimum(scm, float(low), float(high))
            return Optimum(value, var, jnp.asarray(x, jnp.float32), True, zero)
        ys = np.asarray(_linear_ends(scm, jnp.asarray(ends)))
        value, var, x = _best_of(ys, ends, ok)
        return Optimum(jnp.asarray(value, jnp.float32), jnp.asarray(var, jnp.int32), jnp.asarray(x, jnp.float32),
                       True, zero)
    if key is None:
        raise ValueError("a non-linear SCM's optimum is a Monte-Carlo estimate: pass a key")
    xs = low_d[:, None] + np.linspace(0.0, 1.0, grid, dtype=np.float32)[None] * (high_d - low_d)[:, None]
    means, ses = (np.asarray(a) for a in _mc_means(scm, key, jnp.asarray(xs), mc_samples))
    value, var, x = _best_of(means, xs, ok)
    i = int(np.argmin(np.abs(xs[var] - x)))
    return Optimum(jnp.asarray(value, jnp.float32), jnp.asarray(var, jnp.int32), jnp.asarray(x, jnp.float32),
                   False, jnp.asarray(ses[var, i], jnp.float32))


@eqx.filter_jit
def _linear_ends(scm, ends):
    """E[target | do(X_j = x)] at each variable's two bounds ends [d, 2] -> [d, 2] (linear SCMs)."""
    from engine.scm.optimum import linear_means

    d = ends.shape[0]
    eye = jnp.eye(d, dtype=bool)
    one = lambda j, x: linear_means(scm, eye[j], jnp.full(d, x))[scm.target]  # noqa: E731
    return jax.vmap(lambda j, xj: jax.vmap(lambda x: one(j, x))(xj))(jnp.arange(d), ends)


@eqx.filter_jit
def _mc_means(scm, key, xs: Float[Array, "d m"], n: int):
    """Mean and standard error of the target over n draws under do(X_j = xs[j, i]): [d, m] each."""
    d = xs.shape[0]

    def per_var(j):
        k = jax.random.fold_in(key, j)
        mask = jnp.broadcast_to(jnp.arange(d) == j, (n, d))

        def at(x):
            y = scm.sample(k, mask, jnp.where(mask, x, 0.0))[:, scm.target]
            return jnp.mean(y), jnp.std(y) / jnp.sqrt(n)

        return jax.lax.map(at, xs[j])

    return jax.lax.map(per_var, jnp.arange(d))
