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


def neg_log_marginal(hyp: GPHyper, x, y, mask, s) -> Float[Array, ""]:
    """-log N(y | 0, K + noise I) over the masked rows (y already has the prior mean removed)."""
    chol = jnp.linalg.cholesky(_gram(hyp, x, s, mask))
    r = jnp.where(mask, y, 0.0)
    a = solve_triangular(chol, r, lower=True)
    logdet = jnp.sum(jnp.where(mask, jnp.log(jnp.diag(chol)), 0.0))
    return 0.5 * a @ a + logdet + 0.5 * jnp.sum(mask) * jnp.log(2 * jnp.pi)


def fit_hyper(x, y, mask, s, steps: int, lr: float = 0.05, init: GPHyper | None = None) -> GPHyper:
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
