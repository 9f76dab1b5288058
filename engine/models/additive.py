"""Additive nonlinear dependence statistics: what a variable's regression on the others' smooth
functions loses without one of them.

Correlations and partial correlations see linear dependence only. On RFF and MLP mechanisms a
gradient-boosted classifier of the pair and triple statistics ranks rff-10's skeleton at AUROC
0.78; adding the two statistics below lifts it to 0.96 (benchmarks/local_statistics.py), the
gap exact inference with additive scores (bayes_dp.additive_scores) also shows.

Each variable becomes a small basis: itself and sin, cos(w z) for w in FREQUENCIES (z its
observational z-score), orthonormalised over the observational rows. For the ordered pair
(j, t):

- 0 drop: log RSS(t | every other variable's basis but j's) / RSS(t | every other's basis),
  the additive analogue of the partial correlation (one (d b)^2 precision, then Schur
  complements: O((d b)^3 + d^2 b^3) per graph, no per-pair regression);
- 1 marginal: log RSS(t) / RSS(t | j's basis), the additive analogue of the correlation.

A ridge of RIDGE on the orthonormal Gram keeps float32 solves stable on near-collinear bases;
the regressions need more observational rows than the 7 d basis columns (below that the ridge,
not the data, sets the numbers).

No LAPACK call (engine/models/spd.py says why): the Gram's inverse is block Gauss-Jordan over
the variables' b x b blocks and the orthonormalisation is Gram-Schmidt.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from engine.models.spd import block_spd_inverse, spd_inverse

FREQUENCIES = (0.5, 1.0, 2.0)  # as engine.evaluate.bayes_dp's additive scores
N_ADDITIVE_FEATURES = 2
RIDGE = 1e-3
_EPS = 1e-6


def _orthonormal(u: Float[Array, "n d b"], weight: Float[Array, " n"], n_obs) -> Float[Array, "n d b"]:
    """Each variable's basis columns made orthonormal over the weighted rows, in column order
    (Gram-Schmidt twice, which is what whitening by the Gram's Cholesky factor does)."""
    cols = []
    for k in range(u.shape[-1]):
        v = u[..., k]
        for _ in range(2):
            for q in cols:
                v = v - ((weight[:, None] * q * v).sum(0) / n_obs)[None] * q
        cols.append(v / jnp.sqrt((weight[:, None] * v**2).sum(0) / n_obs + _EPS)[None])
    return jnp.stack(cols, -1)


def basis(z: Float[Array, "n d"]) -> Float[Array, "n d b"]:
    w = jnp.asarray(FREQUENCIES, z.dtype)
    return jnp.concatenate([z[..., None], jnp.sin(z[..., None] * w), jnp.cos(z[..., None] * w)], -1)


def additive_features(
    x: Float[Array, "n d 2"], row_mask: Bool[Array, " n"], var_mask: Bool[Array, " d"]
) -> Float[Array, "d d 2"]:
    """f[j, t] = (drop, marginal) of j as a regressor of t (module docstring), over the
    observational rows; 0 on the diagonal and for padded variables."""
    value, indicator = x[..., 0], x[..., 1]
    vm = var_mask.astype(value.dtype)
    obs = row_mask.astype(value.dtype) * (1.0 - jnp.max(indicator * vm[None, :], axis=1))  # [n]
    n_obs = jnp.maximum(obs.sum(), 1.0)
    mean = (obs[:, None] * value).sum(0) / n_obs
    std = jnp.sqrt((obs[:, None] * (value - mean) ** 2).sum(0) / n_obs) + _EPS
    z = (value - mean) / std * vm
    n, d = z.shape
    u = basis(z)
    u = u - (obs[:, None, None] * u).sum(0) / n_obs
    u = u * (obs[:, None, None] * vm[None, :, None])  # only observational rows, real variables
    b = u.shape[-1]
    eye = jnp.eye(b, dtype=z.dtype)
    u = _orthonormal(u, obs, n_obs) * vm[None, :, None]  # per variable (padded: 0)
    gram = jnp.einsum("nja,nkc->jakc", u, u) / n_obs  # [d, b, d, b]
    pad = (1.0 - vm)[:, None, None, None] * eye[None, :, None, :] * jnp.eye(d, dtype=z.dtype)[:, None, :, None]
    D = d * b
    G = gram + pad + RIDGE * jnp.eye(D, dtype=z.dtype).reshape(d, b, d, b)
    P = block_spd_inverse(G)
    g = jnp.einsum("nja,nt->jat", u, z * obs[:, None]) / n_obs  # [d, b, t]: each basis with z_t
    yy = (obs[:, None] * z**2).sum(0) / n_obs + _EPS  # [t]

    # Regress z_t on every block but t's: the inverse of G without t's block is the Schur
    # complement M_t = P - P[:, t] P_tt^-1 P[t, :] (zero on t's own block).
    idx = jnp.arange(d)
    P_jt = P.transpose(0, 2, 1, 3)  # [j, t, b, b]
    P_tt_inv = spd_inverse(P_jt[idx, idx])  # [t, b, b]
    Pg = jnp.einsum("jakc,kct->jat", P, g)  # [j, b, t]: P g_t
    corr = jnp.einsum("tac,tc->ta", P_tt_inv, Pg[idx, :, idx])  # [t, b]: P_tt^-1 P[t, :] g_t
    beta = Pg - jnp.einsum("jtac,tc->jat", P_jt, corr)  # [j, b, t]: M_t g_t
    rss_full = yy - jnp.einsum("jat,jat->t", g, beta)  # [t]
    # M_t's (j, j) block: P_jj - P_jt P_tt^-1 P_tj, [j, t, b, b] (P is symmetric: P_tj = P_jt^T)
    half = jnp.einsum("jtac,tce->jtae", P_jt, P_tt_inv)
    M_jj = P_jt[idx, idx][:, None] - jnp.einsum("jtae,jtfe->jtaf", half, P_jt)
    M_jj = jnp.where(jnp.eye(d, dtype=bool)[..., None, None], eye, M_jj)  # j = t: no block to drop
    bt = beta.transpose(0, 2, 1)  # [j, t, b]
    delta = jnp.einsum("jta,jtac,jtc->jt", bt, spd_inverse(M_jj), bt)
    drop = jnp.log1p(jnp.maximum(delta, 0.0) / jnp.maximum(rss_full, _EPS)[None, :])
    g_jt = g.transpose(0, 2, 1)  # [j, t, b]
    fit = (g_jt**2).sum(-1) / (1.0 + RIDGE)  # ridge fit on j's block, orthonormal by construction
    marginal = -jnp.log(jnp.clip(1.0 - fit / yy[None, :], _EPS, 1.0))
    keep = (vm[:, None] * vm[None, :]) * (1.0 - jnp.eye(d, dtype=z.dtype))
    return jnp.stack([drop, marginal], -1) * keep[..., None]
