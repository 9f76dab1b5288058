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


HYPER_CHUNK = 8  # sets per compiled hyper-parameter fit (the grid is vmapped inside)


@jax.jit
def _fit_set_hypers(obs, target, sets):
    """Grid ML-II of the set GPs on D_O: sets [C, k] -> GPHyper with [C] leaves."""
    y = obs[:, target]
    ones = jnp.ones((obs.shape[0],), bool)
    return jax.vmap(lambda x: fit_hyper_grid(x, y - jnp.mean(y), ones))(set_inputs(obs, sets))


def fit_set_hypers(obs, target, sets, fit_steps: int = 0):
    """Hyper-parameters of every set's GP: sets [B, k] -> GPHyper with [B] leaves.

    Vmapped over chunks of HYPER_CHUNK sets and a power-of-two remainder, so the compiled
    shapes are few (log2 HYPER_CHUNK + 1) and no padded set is fitted.
    """
    import numpy as np

    sets = np.asarray(sets, np.int32)
    B = sets.shape[0]
    # chunks of HYPER_CHUNK, then the remainder in powers of two: no padded work, few shapes
    sizes = [HYPER_CHUNK] * (B // HYPER_CHUNK) + [1 << i for i in reversed(range(8)) if (B % HYPER_CHUNK) >> i & 1]
    starts = np.cumsum([0] + sizes)
    parts = [_fit_set_hypers(obs, target, jnp.asarray(sets[a:b])) for a, b in zip(starts[:-1], starts[1:])]
    hyps = jax.tree.map(lambda *a: jnp.concatenate(a), *parts)
    if fit_steps:
        n = obs.shape[0]
        y = obs[:, target]
        hyps = jax.jit(jax.vmap(lambda x, h: fit_hyper(x, y - jnp.mean(y), jnp.ones(n, bool), jnp.zeros(n), fit_steps, init=h)))(
            set_inputs(obs, jnp.asarray(sets)), hyps)
    return hyps


def psd_factor(q):
    """F [..., n, n] with q = F^T F for symmetric PSD q [..., n, n] (float64).

    Cholesky with a jitter relative to the largest diagonal entry (1e-12, raised until it
    succeeds); a^T q a is then ||F a||^2, a sum of squares that float32 evaluates stably.
    """
    import numpy as np

    q = 0.5 * (q + np.swapaxes(q, -1, -2))
    eye = np.eye(q.shape[-1])
    scale = np.maximum(np.max(np.diagonal(q, axis1=-2, axis2=-1), -1), 1e-300)[..., None, None]
    for jitter in (1e-12, 1e-10, 1e-8, 1e-6, 1e-4):
        try:
            return np.swapaxes(np.linalg.cholesky(q + jitter * scale * eye), -1, -2)
        except np.linalg.LinAlgError:
            continue
    mu, u = np.linalg.eigh(q)
    return np.sqrt(np.maximum(mu, 0.0))[..., :, None] * np.swapaxes(u, -1, -2)


def _set_tables(x_s, y, ybar, s2: float, il2: float, noise: float, real):
    """Float64 do-effect factors of one set GP: x_s [n, k] (padding columns zero), y [n],
    real [k] bool (slot holds a variable).

    Returns (flat_mean, flat_var, wmean [k, n], qfac [k, n, n]); padding slots stay zero. The
    flat effect (no input replaced) is closed form: with c0 the unit-variance RBF over all
    inputs, K = s2 c0 + noise I gives K^-1 c0 = (I - noise K^-1) / s2, so its row-averaged
    variance is noise (1 - noise tr(K^-1) / n) and needs no n^3 product. A single-variable set
    has no other input (C = 1 1^T), so Q = s2^2 K^-1 and its factor is s2 L^-1.
    """
    import numpy as np

    n, k = x_s.shape
    d2_col = (x_s[:, None, :] - x_s[None, :, :]) ** 2  # [n, n, k]
    d2 = d2_col.sum(-1)
    c0 = np.exp(-0.5 * il2 * d2)
    linv = np.linalg.inv(np.linalg.cholesky(s2 * c0 + noise * np.eye(n)))  # K^-1 = linv^T linv
    kinv = linv.T @ linv
    alpha = kinv @ (y - ybar)
    flat_mean = ybar + s2 * c0.mean(0) @ alpha
    flat_var = noise * (1.0 - noise * np.trace(kinv) / n)
    wmean, qfac = np.zeros((k, n)), np.zeros((k, n, n))
    for j in np.flatnonzero(real):
        if real.sum() == 1:
            wmean[j], qfac[j] = s2 * alpha, s2 * linv
            continue
        c = np.exp(-0.5 * il2 * (d2 - d2_col[..., j]))  # kernel over the other inputs, symmetric
        wmean[j] = s2 * c.mean(0) * alpha
        qfac[j] = psd_factor((s2 * s2 / n) * kinv * (c @ c))
    return flat_mean, flat_var, wmean, qfac


def fit_do_tables(obs, target, sets: Int[Array, "B k"], fit_steps: int = 0, n_pad: int | None = None) -> DoTables:
    """Fit the set GPs on D_O (ML-II) and tabulate their do-effect factors.

    The tables are built once per episode in float64 numpy, set by set (`_set_tables`; run numpy
    with a single-threaded BLAS: a threaded one busy-waits between these small products). `n_pad`
    >= B pads the set axis with inert sets (flat, never referenced by `set_slots` of real sets)
    so that episodes share one compiled shape.
    """
    import numpy as np

    n, d = obs.shape
    sets_np = np.asarray(sets, np.int32)
    B, k = sets_np.shape
    hyps = fit_set_hypers(obs, target, sets_np, fit_steps)
    obs64 = np.asarray(obs, np.float64)
    y = obs64[:, int(target)]
    ybar = y.mean()
    ext = np.concatenate([obs64, np.zeros((n, 1))], 1)
    s2 = np.exp(np.asarray(hyps.log_var, np.float64))
    il2 = np.exp(-2 * np.asarray(hyps.log_len, np.float64))
    noise = 1e-4 + np.exp(np.asarray(hyps.log_noise, np.float64))
    parts = [_set_tables(ext[:, sets_np[b]], y, ybar, s2[b], il2[b], noise[b], sets_np[b] >= 0) for b in range(B)]
    fm, fv, wm, qf = (np.stack(a) for a in zip(*parts))
    if n_pad is not None and n_pad > B:
        extra = n_pad - B
        padb = lambda a, v=0.0: np.concatenate([a, np.full((extra,) + a.shape[1:], v, a.dtype)])  # noqa: E731
        s2, il2, fm, fv, wm, qf = padb(s2, 1.0), padb(il2, 1.0), padb(fm, ybar), padb(fv, 1.0), padb(wm), padb(qf)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return DoTables(f32(s2), f32(il2), f32(obs64), f32(fm), f32(np.maximum(fv, 1e-10)), f32(wm), f32(qf), f32(ybar))


SLOT_CHUNK = 4  # (set, slot) pairs evaluated together; a variable's chunks past its count are never run


def set_slots(sets, d: int, m: int, chunk: int = SLOT_CHUNK):
    """For every variable v the (set, slot) pairs with sets[b, slot] == v, padded to m.

    Returns numpy (b [d, C, c], slot [d, C, c], ok [d, C, c]) with c = min(chunk, m) and
    C = ceil(m / c) chunks (padding: b = B, dropped). A variable held by few sets costs one
    chunk even when another variable is held by many.
    """
    import numpy as np

    sets = np.asarray(sets)
    c = min(chunk, m)
    n_chunks = -(-m // c)
    b_idx = np.full((d, n_chunks * c), sets.shape[0], np.int32)
    s_idx = np.zeros((d, n_chunks * c), np.int32)
    for v in range(d):
        bb, ss = np.nonzero(sets == v)
        b_idx[v, : len(bb)], s_idx[v, : len(bb)] = bb[:m], ss[:m]
    shape = (d, n_chunks, c)
    return b_idx.reshape(shape), s_idx.reshape(shape), (b_idx < sets.shape[0]).reshape(shape)


def _pair_effects(t: DoTables, v, b, sl, ok, x, slope: bool = False):
    """Do-effect of X_v = x under the c sets b [c] holding v at slots sl [c]: (mean [c], var [c]),
    with `slope` also their x-derivatives, from one pass over the factors (the value's and the
    tangent's products share the read of qfac, which dominates)."""
    bs = jnp.where(ok, b, 0)
    il2 = t.inv_len2[bs][:, None]
    dx = x - t.xv[:, v][None, :]
    a = jnp.exp(-0.5 * dx**2 * il2)  # [c, n]
    wm, qf = t.wmean[bs, sl], t.qfac[bs, sl]
    mean = t.ybar + jnp.sum(a * wm, -1)
    if not slope:
        var = t.s2[bs] - jnp.sum(jnp.einsum("mrn,mn->mr", qf, a) ** 2, -1)
        return mean, jnp.maximum(var, 1e-10)
    da = -dx * il2 * a
    u = jnp.einsum("mrn,mnj->mrj", qf, jnp.stack([a, da], -1))  # [c, r, 2]
    var = t.s2[bs] - jnp.sum(u[..., 0] ** 2, -1)
    dvar = jnp.where(var > 1e-10, -2.0 * jnp.sum(u[..., 0] * u[..., 1], -1), 0.0)
    return mean, jnp.maximum(var, 1e-10), jnp.sum(da * wm, -1), dvar


def _n_chunks(slots, v):
    """Chunks of v holding at least one real pair (set_slots puts them first)."""
    return jnp.sum(jnp.any(slots[2][v], -1))


def do_effects(t: DoTables, slots, v: Int[Array, ""], x: Float[Array, ""]):
    """Row-averaged do-effect of X_v = x under every set: (mean [B], var [B]).

    Sets without v are flat; only the sets holding v (slots[.][v]) are evaluated, chunk by
    chunk, up to v's last real chunk (a loop bound on v only, so vmap over x keeps it), so the
    slot padding costs nothing and one compiled shape serves every episode of a set bucket.
    """
    b_all, s_all, ok_all = slots

    def chunk(i, mv):
        b, sl, ok = b_all[v, i], s_all[v, i], ok_all[v, i]
        mean_v, var_v = _pair_effects(t, v, b, sl, ok, x)
        return mv[0].at[b].set(mean_v, mode="drop"), mv[1].at[b].set(var_v, mode="drop")

    init = (t.flat_mean + 0.0 * x, t.flat_var + 0.0 * x)
    mean, var = jax.lax.fori_loop(0, _n_chunks(slots, v), chunk, init)
    return mean, jnp.maximum(var, 1e-10)


def mixture_of(w: Float[Array, " B"], mu: Float[Array, "... B"], var: Float[Array, "... B"]):
    """Posterior-weighted mean m and variance V = sum w var + sum w mu^2 - m^2 of per-set effects."""
    m = mu @ w
    return m, jnp.maximum(var @ w + (mu**2) @ w - m**2, 1e-10)


def mixture(t: DoTables, slots, w: Float[Array, " B"], v, x, slope: bool = False):
    """Posterior-weighted do-effect mean m(x) and variance V(x); with `slope` also dm/dx, dV/dx
    (by hand: no autodiff through the chunk loop, whose bound depends on v).

    The flat sets' sums plus the change made by the sets holding v (each holds v at most once),
    accumulated chunk by chunk: no [B] vector is formed per evaluation.
    """
    b_all, s_all, ok_all = slots
    n_out = 4 if slope else 2

    def chunk(i, acc):
        b, sl, ok = b_all[v, i], s_all[v, i], ok_all[v, i]
        bs = jnp.where(ok, b, 0)
        wp = jnp.where(ok, w[bs], 0.0)
        fm, fv = t.flat_mean[bs], t.flat_var[bs]
        eff = _pair_effects(t, v, b, sl, ok, x, slope)
        mu, var = eff[:2]
        part = (wp @ (mu - fm), wp @ (var - fv + mu**2 - fm**2))
        if slope:
            part += (wp @ eff[2], wp @ (eff[3] + 2.0 * mu * eff[2]))
        return tuple(a + p for a, p in zip(acc, part))

    base = (w @ t.flat_mean, w @ (t.flat_var + t.flat_mean**2)) + (jnp.zeros(()),) * (n_out - 2)
    init = tuple(a + 0.0 * x for a in base)
    sums = jax.lax.fori_loop(0, _n_chunks(slots, v), chunk, init)
    m = sums[0]
    big_v = sums[1] - m**2
    if not slope:
        return m, jnp.maximum(big_v, 1e-10)
    return m, jnp.maximum(big_v, 1e-10), sums[2], jnp.where(big_v > 1e-10, sums[3] - 2.0 * m * sums[2], 0.0)


def acquire(
    t: DoTables,
    slots,
    w: Float[Array, " B"],
    explore: Bool[Array, " d"],
    xs: Float[Array, " N"],
    ys: Float[Array, " N"],
    row_var: Int[Array, " N"],
    row_mu: Float[Array, "N B"],
    row_vr: Float[Array, "N B"],
    lo: Float[Array, " d"],
    hi: Float[Array, " d"],
    y_best: Float[Array, ""],
    n_anchors: int,
    opt_steps: int,
    fit_steps: int,
    n_rows: int,
):
    """Expected improvement maximised per variable; returns (best v, its x, EI per variable [d]).

    Data row i belongs to variable row_var[i] (-1 = unused); row_mu / row_vr are its per-set
    do-effects (`do_effects` at (row_var[i], xs[i]), fixed for the episode), so the mixture at
    the rows is a weighted sum. Per variable: causal GP fitted on its rows (at most `n_rows`,
    static), EI on `n_anchors` evenly spaced anchors over [lo, hi], then `opt_steps` projected
    gradient-ascent steps from the best anchor.
    """
    d = lo.shape[0]
    m_all, v_all = mixture_of(w, row_mu, row_vr)  # [N]

    def per_var(v):
        idx = jnp.argsort(row_var != v, stable=True)[:n_rows]  # v's rows first
        mask = row_var[idx] == v
        x_in, s_rows = xs[idx][:, None], jnp.sqrt(v_all[idx])
        resid = jnp.where(mask, ys[idx] - m_all[idx], 0.0)
        var0 = jnp.sum(resid**2) / jnp.maximum(jnp.sum(mask), 1) + 1e-2
        hyp = fit_hyper_grid3(x_in, resid, mask, s_rows, var0)
        hyp = fit_hyper(x_in, resid, mask, s_rows, fit_steps, init=hyp)
        post = GPPosterior.fit(hyp, x_in, resid, mask, s_rows)

        def ei_at(x, m, var):
            mu, sig2 = post.predict(x[None, None], jnp.sqrt(var)[None])
            return expected_improvement(m + mu[0], sig2[0], y_best)

        def ei(x):
            return ei_at(x, *mixture(t, slots, w, v, x))

        def slope(x):
            # the do-effect mixture's derivative by hand (one pass over the factors), then
            # forward mode through the cheap causal-GP and EI part
            m, var, dm, dv = mixture(t, slots, w, v, x, slope=True)
            return jax.jvp(ei_at, (x, m, var), (jnp.ones_like(x), dm, dv))

        anchors = jnp.linspace(lo[v], hi[v], n_anchors)
        vals = jax.vmap(ei)(anchors)
        x0 = anchors[jnp.argmax(vals)]
        step = (hi[v] - lo[v]) / n_anchors

        def ascend(carry, _):
            x, g, best_x, best_val = carry
            x = jnp.clip(x + step * jnp.sign(g), lo[v], hi[v])
            val, g = slope(x)  # the value here, the derivative for the next step
            better = val > best_val
            return (x, g, jnp.where(better, x, best_x), jnp.where(better, val, best_val)), None

        (_, _, bx, bv), _ = jax.lax.scan(ascend, (x0, slope(x0)[1], x0, jnp.max(vals)), None, length=opt_steps)
        return bx, bv

    skip = lambda v: (lo[v], jnp.asarray(-jnp.inf))  # noqa: E731
    bx, bv = jax.lax.map(lambda v: jax.lax.cond(explore[v], per_var, skip, v), jnp.arange(d))
    bv = jnp.where(explore, bv, -jnp.inf)
    v = jnp.argmax(bv)
    return v, bx[v], bv
