"""Exact GP regression with an RBF kernel (plus CBO's causal kernel term), masked rows, ML-II fit.

The causal kernel of reference Step C is k(x, x') = RBF(x, x') + s(x) s(x') with s = sqrt(V) of
the do-effect mixture; a plain GP passes s = 0. Rows with mask False are exact no-ops (they get a
unit diagonal, zero cross-covariance and zero residual), so variable-sized data keeps one shape.
Hyper-parameters (signal variance, length scale, noise variance) start at 1 like GPy's defaults
and are fitted by Adam on the negative log marginal likelihood.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.scipy.linalg import cho_solve, solve_triangular
from jax.scipy.stats import norm
from jaxtyping import Array, Bool, Float

NOISE_FLOOR = 1e-4


class GPHyper(eqx.Module):
    """log signal variance, log length scale, log (noise variance - floor)."""

    log_var: Float[Array, ""]
    log_len: Float[Array, ""]
    log_noise: Float[Array, ""]

    @classmethod
    def default(cls, noise: float = 1.0) -> "GPHyper":
        return cls(jnp.asarray(0.0), jnp.asarray(0.0), jnp.log(jnp.asarray(noise - NOISE_FLOOR)))

    @property
    def noise(self):
        return NOISE_FLOOR + jnp.exp(self.log_noise)


def rbf(hyp: GPHyper, x1: Float[Array, "n p"], x2: Float[Array, "m p"]) -> Float[Array, "n m"]:
    d2 = jnp.sum((x1[:, None, :] - x2[None, :, :]) ** 2, -1)
    return jnp.exp(hyp.log_var) * jnp.exp(-0.5 * d2 / jnp.exp(2 * hyp.log_len))


def _gram(hyp, x, s, mask):
    k = rbf(hyp, x, x) + jnp.outer(s, s)
    mm = mask[:, None] & mask[None, :]
    return jnp.where(mm, k, 0.0) + jnp.diag(jnp.where(mask, hyp.noise, 1.0))


@jax.custom_vjp
def _gauss_nll(k, r):
    """0.5 r^T K^-1 r + 0.5 log|K|; the gradient 0.5 (K^-1 - a a^T) is written out, because
    differentiating through the Cholesky factorisation is several times slower on CPU."""
    return _gauss_nll_fwd(k, r)[0]


def _gauss_nll_fwd(k, r):
    chol = jnp.linalg.cholesky(k)
    a = cho_solve((chol, True), r)
    val = 0.5 * r @ a + jnp.sum(jnp.log(jnp.diag(chol)))
    return val, (chol, a)


def _gauss_nll_bwd(res, g):
    chol, a = res
    kinv = cho_solve((chol, True), jnp.eye(chol.shape[0]))
    return g * 0.5 * (kinv - jnp.outer(a, a)), g * a


_gauss_nll.defvjp(_gauss_nll_fwd, _gauss_nll_bwd)


def neg_log_marginal(hyp: GPHyper, x, y, mask, s) -> Float[Array, ""]:
    """-log N(y | 0, K + noise I) over the masked rows (y already has the prior mean removed).

    Masked rows have a unit diagonal and zero residual, so they add nothing but a constant.
    """
    val = _gauss_nll(_gram(hyp, x, s, mask), jnp.where(mask, y, 0.0))
    return val + 0.5 * jnp.sum(mask) * jnp.log(2 * jnp.pi)


def fit_hyper(x, y, mask, s, steps: int, lr: float = 0.1, init: GPHyper | None = None) -> GPHyper:
    """Adam on the negative log marginal likelihood (`steps` static)."""
    hyp = GPHyper.default() if init is None else init
    if steps == 0:
        return hyp
    opt = optax.adam(lr)
    loss = lambda h: neg_log_marginal(h, x, y, mask, s)  # noqa: E731

    def step(carry, _):
        h, st = carry
        g = jax.grad(loss)(h)
        g = jax.tree.map(lambda v: jnp.where(jnp.isfinite(v), v, 0.0), g)
        upd, st = opt.update(g, st, h)
        h = eqx.apply_updates(h, upd)
        # keep the hyper-parameters in a numerically sane box
        h = GPHyper(jnp.clip(h.log_var, -9.0, 9.0), jnp.clip(h.log_len, -5.0, 5.0), jnp.clip(h.log_noise, -12.0, 5.0))
        return (h, st), None

    (hyp, _), _ = jax.lax.scan(step, (hyp, opt.init(hyp)), None, length=steps)
    return hyp


class GPPosterior(eqx.Module):
    """Conditioned GP: the data, the Cholesky factor of its Gram matrix and K^-1 (y - mean)."""

    hyp: GPHyper
    x: Float[Array, "n p"]
    s: Float[Array, " n"]
    mask: Bool[Array, " n"]
    chol: Float[Array, "n n"]
    alpha: Float[Array, " n"]

    @classmethod
    def fit(cls, hyp: GPHyper, x, y, mask, s) -> "GPPosterior":
        chol = jnp.linalg.cholesky(_gram(hyp, x, s, mask))
        alpha = cho_solve((chol, True), jnp.where(mask, y, 0.0))
        return cls(hyp, x, s, mask, chol, alpha)

    def cross(self, xq: Float[Array, "m p"], sq: Float[Array, " m"]) -> Float[Array, "m n"]:
        k = rbf(self.hyp, xq, self.x) + jnp.outer(sq, self.s)
        return jnp.where(self.mask[None, :], k, 0.0)

    def predict(self, xq: Float[Array, "m p"], sq: Float[Array, " m"] | None = None):
        """Latent mean (without the prior mean) and variance at xq: ([m], [m])."""
        sq = jnp.zeros(xq.shape[0]) if sq is None else sq
        kq = self.cross(xq, sq)
        v = solve_triangular(self.chol, kq.T, lower=True)
        var = jnp.exp(self.hyp.log_var) + sq**2 - jnp.sum(v**2, 0)
        return kq @ self.alpha, jnp.maximum(var, 1e-12)


def expected_improvement(mean, var, best) -> Float[Array, "..."]:
    """EI for minimisation: E[max(best - f, 0)], f ~ N(mean, var)."""
    sd = jnp.sqrt(jnp.maximum(var, 1e-12))
    z = (best - mean) / sd
    return (best - mean) * norm.cdf(z) + sd * norm.pdf(z)


def _masked_nll_unit(x, r, mask, s, log_len, log_var, log_noise):
    """Negative log marginal (without the 2 pi term) for one hyper-parameter triple."""
    hyp = GPHyper(log_var, log_len, log_noise)
    chol = jnp.linalg.cholesky(_gram(hyp, x, s, mask))
    a = solve_triangular(chol, r, lower=True)
    return 0.5 * a @ a + jnp.sum(jnp.log(jnp.diag(chol)))


LEN_GRID = jnp.linspace(jnp.log(0.1), jnp.log(100.0), 14)
RATIO_GRID = jnp.linspace(jnp.log(1e-4), jnp.log(3.0), 8)


def fit_hyper_grid(x, y, mask) -> GPHyper:
    """ML-II for a plain RBF GP over a grid of (length scale, noise/signal ratio), with the
    signal variance in closed form (s2 = r^T R^-1 r / n at each grid point). Each point costs
    one Cholesky and no gradient, which on CPU is far cheaper than gradient steps. (A coarse-to-
    fine search is 3x cheaper but misses the best point on about a quarter of the sets of a
    10-node graph: the likelihood of sets without signal has one mode at the shortest and one at
    the longest length scale.)"""
    r = jnp.where(mask, y, 0.0)
    n_eff = jnp.sum(mask)
    d2 = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, -1)
    mm = mask[:, None] & mask[None, :]

    def score(log_len, log_ratio):
        k = jnp.where(mm, jnp.exp(-0.5 * d2 / jnp.exp(2 * log_len)), 0.0)
        chol = jnp.linalg.cholesky(k + jnp.diag(jnp.where(mask, jnp.exp(log_ratio), 1.0)))
        a = solve_triangular(chol, r, lower=True)
        s2 = jnp.maximum(a @ a / n_eff, 1e-8)
        nll = 0.5 * n_eff * jnp.log(s2) + jnp.sum(jnp.log(jnp.diag(chol)))
        return jnp.where(jnp.isfinite(nll), nll, jnp.inf), s2

    ll, lr = jnp.meshgrid(LEN_GRID, RATIO_GRID, indexing="ij")
    nll, s2 = jax.vmap(score)(ll.ravel(), lr.ravel())
    i = jnp.argmin(nll)
    noise = jnp.maximum(jnp.exp(lr.ravel()[i]) * s2[i] - NOISE_FLOOR, 1e-8)
    return GPHyper(jnp.log(s2[i]), ll.ravel()[i], jnp.log(noise))


def fit_hyper_grid3(x, y, mask, s, center_var) -> GPHyper:
    """ML-II over a (length scale, signal variance, noise variance) grid, for kernels with the
    causal term s s^T (no closed-form variance). `center_var` sets the variance grid's scale."""
    r = jnp.where(mask, y, 0.0)
    lv0 = jnp.log(jnp.maximum(center_var, 1e-4))
    lens = jnp.linspace(jnp.log(0.1), jnp.log(30.0), 8)
    lvars = lv0 + jnp.linspace(-4.0, 4.0, 6)
    lnoise = lv0 + jnp.linspace(-9.0, 1.0, 6)
    g = jnp.stack(jnp.meshgrid(lens, lvars, lnoise, indexing="ij"), -1).reshape(-1, 3)
    nll = jax.vmap(lambda p: _masked_nll_unit(x, r, mask, s, p[0], p[1], p[2]))(g)
    best = g[jnp.argmin(jnp.where(jnp.isfinite(nll), nll, jnp.inf))]
    return GPHyper(best[1], best[0], best[2])
