"""PARENT_SCALE's surrogate (reference Step C) and acquisition (Step D), one jitted trial.

Set GPs: one GP per candidate set S, Y given X_S on D_O (RBF, fitted hyper-parameters; a
constant mean = mean of Y, so the GP reverts to the data's level rather than to 0).

Do-effects exactly and cheaply: with z_r(x) = row r of D_O with X_v set to x, the RBF factorises,
k(z_r(x), X_j) = s2 a_j(x) c_rj with a_j(x) = exp(-(x - X_jv)^2 / 2l^2) (1 when v is not in S)
and c_rj the kernel over the other inputs. Averaging over rows then needs only
cbar_j = mean_r c_rj and C = mean_r c_r c_r^T, computed once per (set, variable):
  mu_S(x)   = ybar + s2 sum_j a_j(x) cbar_j alpha_j
  var_S(x)  = s2 - s2^2 a(x)^T (K^-1 o C) a(x)
which is the row average of the GP's predictive mean and variance, in O(n^2) per x.
Mixture: m = sum w_S mu_S, V = sum w_S var_S + sum w_S mu_S^2 - m^2. Causal GP per variable:
prior mean m, kernel RBF + sqrt(V) sqrt(V'), on that variable's interventional (x, y) pairs.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from engine.expert.gp import GPHyper, GPPosterior, expected_improvement, fit_hyper


class DoTables(eqx.Module):
    """Per (set b, variable v) quantities for the row-averaged do-effect. B sets, d variables, n rows."""

    ybar: Float[Array, ""]
    s2: Float[Array, " B"]
    inv_len2: Float[Array, " B"]
    xv: Float[Array, "n d"]  # D_O values of each variable (the GP inputs along v)
    in_set: Bool[Array, "B d"]
    wmean: Float[Array, "B d n"]  # s2 * cbar * alpha
    quad: Float[Array, "B d n n"]  # s2^2 * (K^-1 o C)


def set_inputs(obs, sets):
    """X_S for each set: [B, n, k] (padding index -1 reads a zero column)."""
    ext = jnp.concatenate([obs, jnp.zeros((obs.shape[0], 1))], 1)
    return jnp.transpose(ext[:, sets], (1, 0, 2))


def fit_do_tables(obs, target, sets: Int[Array, "B k"], fit_steps: int) -> DoTables:
    """Fit the set GPs on D_O and tabulate the do-effect factors for every (set, variable)."""
    n, d = obs.shape
    y = obs[:, target]
    ybar = jnp.mean(y)
    xs = set_inputs(obs, sets)  # [B, n, k]
    ones = jnp.ones((n,), bool)
    zeros = jnp.zeros((n,))

    def per_set(x_s, s):
        hyp = fit_hyper(x_s, y - ybar, ones, zeros, fit_steps)
        post = GPPosterior.fit(hyp, x_s, y - ybar, ones, zeros)
        kinv = jax.scipy.linalg.cho_solve((post.chol, True), jnp.eye(n))
        s2 = jnp.exp(hyp.log_var)
        il2 = jnp.exp(-2 * hyp.log_len)

        def tables(v):
            col = (s == v)[None, :]  # drop v's column from "the other inputs"
            xo = jnp.where(col, 0.0, x_s)
            d2 = jnp.sum((xo[:, None, :] - xo[None, :, :]) ** 2, -1)  # [rows r, train j]
            c = jnp.exp(-0.5 * d2 * il2)
            cbar = jnp.mean(c, 0)
            cc = c.T @ c / n
            return s2 * cbar * post.alpha, s2**2 * kinv * cc

        flat = tables(-1)  # variables outside S all share this (flat do-effect)
        wmean, quad = jax.lax.map(
            lambda v: jax.lax.cond(jnp.any(s == v), tables, lambda _: flat, v), jnp.arange(d)
        )
        return s2, il2, wmean, quad

    s2, il2, wmean, quad = jax.lax.map(lambda a: per_set(*a), (xs, sets))
    in_set = jnp.any(sets[:, :, None] == jnp.arange(d)[None, None, :], axis=1)
    return DoTables(ybar, s2, il2, obs, in_set, wmean, quad)


def do_effects(t: DoTables, v: Int[Array, ""], x: Float[Array, ""]):
    """Row-averaged do-effect of X_v = x under every set: (mean [B], var [B])."""
    a = jnp.exp(-0.5 * (x - t.xv[:, v])[None, :] ** 2 * t.inv_len2[:, None])  # [B, n]
    a = jnp.where(t.in_set[:, v][:, None], a, 1.0)
    mean = t.ybar + jnp.sum(a * t.wmean[:, v], -1)
    var = t.s2 - jnp.einsum("bi,bij,bj->b", a, t.quad[:, v], a)
    return mean, jnp.maximum(var, 1e-10)


def mixture(t: DoTables, w: Float[Array, " B"], v, x):
    """Posterior-weighted do-effect mean m(x) and variance V(x)."""
    mu, var = do_effects(t, v, x)
    m = jnp.sum(w * mu)
    return m, jnp.maximum(jnp.sum(w * var) + jnp.sum(w * mu**2) - m**2, 1e-10)


def acquire(
    t: DoTables,
    w: Float[Array, " B"],
    explore: Bool[Array, " d"],
    xs: Float[Array, " N"],
    ys: Float[Array, " N"],
    row_var: Int[Array, " N"],
    lo: Float[Array, " d"],
    hi: Float[Array, " d"],
    y_best: Float[Array, ""],
    n_anchors: int,
    opt_steps: int,
    fit_steps: int,
):
    """Expected improvement maximised per variable; returns (best v, its x, EI per variable [d]).

    Data row i belongs to variable row_var[i] (-1 = unused). Per variable: causal GP fitted on its
    rows, EI on `n_anchors` evenly spaced anchors over [lo, hi], then `opt_steps` projected
    gradient-ascent steps from the best anchor.
    """
    d = lo.shape[0]

    def per_var(v):
        mask = row_var == v
        m_rows, v_rows = jax.vmap(lambda x: mixture(t, w, v, x))(xs)
        s_rows = jnp.sqrt(v_rows)
        x_in = xs[:, None]
        hyp = fit_hyper(x_in, ys - m_rows, mask, s_rows, fit_steps, init=GPHyper.default())
        post = GPPosterior.fit(hyp, x_in, ys - m_rows, mask, s_rows)

        def ei(x):
            m, var = mixture(t, w, v, x)
            mu, sig2 = post.predict(x[None, None], jnp.sqrt(var)[None])
            return expected_improvement(m + mu[0], sig2[0], y_best)

        anchors = jnp.linspace(lo[v], hi[v], n_anchors)
        vals = jax.vmap(ei)(anchors)
        x0 = anchors[jnp.argmax(vals)]
        step = (hi[v] - lo[v]) / n_anchors

        def ascend(carry, _):
            x, best_x, best_val = carry
            g = jax.grad(ei)(x)
            x = jnp.clip(x + step * jnp.sign(g), lo[v], hi[v])
            val = ei(x)
            better = val > best_val
            return (x, jnp.where(better, x, best_x), jnp.where(better, val, best_val)), None

        (_, bx, bv), _ = jax.lax.scan(ascend, (x0, x0, jnp.max(vals)), None, length=opt_steps)
        return bx, bv

    skip = lambda v: (lo[v], jnp.asarray(-jnp.inf))  # noqa: E731
    bx, bv = jax.lax.map(lambda v: jax.lax.cond(explore[v], per_var, skip, v), jnp.arange(d))
    bv = jnp.where(explore, bv, -jnp.inf)
    v = jnp.argmax(bv)
    return v, bx[v], bv
