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

from engine.expert.gp import GPPosterior, expected_improvement, fit_hyper, fit_hyper_grid, fit_hyper_grid3


class DoTables(eqx.Module):
    """Do-effect factors of B sets with k slots each, over n D_O rows.

    Per set variable (slot), the quadratic form a^T Q a with Q = s2^2 (K^-1 o C) is stored as
    its top-`rank` eigen-factors (Q is positive semi-definite, a Schur product), so the variance
    is s2 minus a sum of squares: computing a^T Q a directly in float32 cancels catastrophically
    when the GP's noise is small (K^-1 has huge entries of both signs).
    """

    s2: Float[Array, " B"]
    inv_len2: Float[Array, " B"]
    xv: Float[Array, "n d"]  # D_O values of each variable (the GP inputs along v)
    flat_mean: Float[Array, " B"]
    flat_var: Float[Array, " B"]
    wmean: Float[Array, "B k n"]  # s2 * cbar * alpha, per set variable
    qfac: Float[Array, "B k r n"]  # Q = qfac^T qfac, per set variable
    ybar: Float[Array, ""]


def set_inputs(obs, sets):
    """X_S for each set: [B, n, k] (padding index -1 reads a zero column)."""
    ext = jnp.concatenate([obs, jnp.zeros((obs.shape[0], 1))], 1)
    return jnp.transpose(ext[:, sets], (1, 0, 2))


@jax.jit
def _fit_set_hypers(obs, target, sets):
    y = obs[:, target]
    ones = jnp.ones((obs.shape[0],), bool)
    return jax.vmap(lambda x: fit_hyper_grid(x, y - jnp.mean(y), ones))(set_inputs(obs, sets))


def fit_do_tables(obs, target, sets: Int[Array, "B k"], fit_steps: int = 0, rank: int | None = None) -> DoTables:
    """Fit the set GPs on D_O (ML-II, vmapped over sets) and tabulate their do-effect factors.

    The tables are built once per episode in float64 (numpy): K^-1 and the eigen-factors.
    """
    import numpy as np

    n, d = obs.shape
    hyps = _fit_set_hypers(obs, target, sets)
    if fit_steps:
        y = obs[:, target]
        xs = set_inputs(obs, sets)
        hyps = jax.jit(jax.vmap(lambda x, h: fit_hyper(x, y - jnp.mean(y), jnp.ones(n, bool), jnp.zeros(n), fit_steps, init=h)))(xs, hyps)
    obs64 = np.asarray(obs, np.float64)
    y = obs64[:, int(target)]
    ybar = y.mean()
    ext = np.concatenate([obs64, np.zeros((n, 1))], 1)
    sets_np = np.asarray(sets)
    B, k = sets_np.shape
    r = n if rank is None else min(rank, n)
    s2s, il2s = np.exp(np.asarray(hyps.log_var, np.float64)), np.exp(-2 * np.asarray(hyps.log_len, np.float64))
    noises = 1e-4 + np.exp(np.asarray(hyps.log_noise, np.float64))
    fm, fv = np.zeros(B), np.zeros(B)
    wm, qf = np.zeros((B, k, n)), np.zeros((B, k, r, n))
    for b in range(B):
        x_s = ext[:, sets_np[b]]
        s2, il2 = s2s[b], il2s[b]
        kern = s2 * np.exp(-0.5 * il2 * ((x_s[:, None] - x_s[None]) ** 2).sum(-1))
        kinv = np.linalg.inv(kern + noises[b] * np.eye(n))
        alpha = kinv @ (y - ybar)
        for slot in range(k + 1):
            xo = x_s.copy()
            if slot:
                xo[:, slot - 1] = 0.0
            c = np.exp(-0.5 * il2 * ((xo[:, None] - xo[None]) ** 2).sum(-1))
            q = s2**2 * kinv * (c.T @ c / n)
            wmean = s2 * c.mean(0) * alpha
            if slot == 0:
                fm[b], fv[b] = ybar + wmean.sum(), s2 - q.sum()
                continue
            mu, u = np.linalg.eigh(0.5 * (q + q.T))
            top = np.argsort(mu)[::-1][:r]
            wm[b, slot - 1] = wmean
            qf[b, slot - 1] = np.sqrt(np.maximum(mu[top], 0.0))[:, None] * u[:, top].T
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return DoTables(f32(s2s), f32(il2s), f32(obs64), f32(fm), f32(np.maximum(fv, 1e-10)), f32(wm), f32(qf), f32(ybar))


def set_slots(sets, d: int, m: int):
    """For every variable v the (set, slot) pairs with sets[b, slot] == v, padded to m.

    Returns (b [d, m], slot [d, m], ok [d, m]) as numpy arrays (padding: b = B, dropped).
    """
    import numpy as np

    sets = np.asarray(sets)
    b_idx = np.full((d, m), sets.shape[0], np.int32)
    s_idx = np.zeros((d, m), np.int32)
    for v in range(d):
        bb, ss = np.nonzero(sets == v)
        b_idx[v, : len(bb)], s_idx[v, : len(bb)] = bb[:m], ss[:m]
    return b_idx, s_idx, b_idx < sets.shape[0]


def do_effects(t: DoTables, slots, v: Int[Array, ""], x: Float[Array, ""]):
    """Row-averaged do-effect of X_v = x under every set: (mean [B], var [B]).

    Sets without v are flat; only the sets holding v (slots[.][v]) are evaluated.
    """
    b_all, s_all, ok_all = slots
    b, sl, ok = b_all[v], s_all[v], ok_all[v]
    bs = jnp.where(ok, b, 0)
    a = jnp.exp(-0.5 * (x - t.xv[:, v])[None, :] ** 2 * t.inv_len2[bs][:, None])  # [m, n]
    mean_v = t.ybar + jnp.sum(a * t.wmean[bs, sl], -1)
    var_v = t.s2[bs] - jnp.sum(jnp.einsum("mrn,mn->mr", t.qfac[bs, sl], a) ** 2, -1)
    mean = t.flat_mean.at[b].set(mean_v, mode="drop")
    var = t.flat_var.at[b].set(var_v, mode="drop")
    return mean, jnp.maximum(var, 1e-10)


def mixture(t: DoTables, slots, w: Float[Array, " B"], v, x):
    """Posterior-weighted do-effect mean m(x) and variance V(x)."""
    mu, var = do_effects(t, slots, v, x)
    m = jnp.sum(w * mu)
    return m, jnp.maximum(jnp.sum(w * var) + jnp.sum(w * mu**2) - m**2, 1e-10)


def acquire(
    t: DoTables,
    slots,
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
        m_rows, v_rows = jax.vmap(lambda x: mixture(t, slots, w, v, x))(xs)
        s_rows = jnp.sqrt(v_rows)
        x_in = xs[:, None]
        resid = ys - m_rows
        var0 = jnp.sum(jnp.where(mask, resid**2, 0.0)) / jnp.maximum(jnp.sum(mask), 1) + 1e-2
        hyp = fit_hyper_grid3(x_in, resid, mask, s_rows, var0)
        hyp = fit_hyper(x_in, resid, mask, s_rows, fit_steps, init=hyp)
        post = GPPosterior.fit(hyp, x_in, ys - m_rows, mask, s_rows)

        def ei(x):
            m, var = mixture(t, slots, w, v, x)
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
