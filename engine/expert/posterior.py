"""PARENT_SCALE's posterior over the target's parent sets (reference Step B), in pure jnp.

Per candidate set S: Bayesian linear regression without intercept, y = theta^T phi_S(x) + eps,
eps ~ N(0, sigma_y^2), theta ~ N(0, sigma_theta^2 I), started from its posterior given D_O
(D_O itself is not scored). Each interventional row is then scored by the predictive, the set
weights are reweighted and normalised, sets below the pruning threshold are dropped for good,
and each regression is updated with the row. phi_S is the standardised x_S (padded with zeros
to `max_parents`, which changes nothing: a zero feature never moves its weight's posterior nor
the predictive) or random Fourier features of it.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray


class PosteriorConfig(NamedTuple):
    """Static settings (hashable, so jit specialises on them)."""

    sigma_y: float = 1.0
    sigma_theta: float = 1.0
    prune_threshold: float = 1e-4
    bug_compatible: bool = False


class FeatureMap(eqx.Module):
    """phi_S(x) for every set S at once. omega/b are None for linear features."""

    sets: Int[Array, "S k"]
    omega: Float[Array, "S k D"] | None
    b: Float[Array, "S D"] | None

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, "S F"]:
        # index -1 (padding) reads the appended 0
        xs = jnp.concatenate([x, jnp.zeros((1,), x.dtype)])[self.sets]
        if self.omega is None:
            return xs
        n_rff = self.omega.shape[-1]
        proj = jnp.einsum("sk,skD->sD", xs, self.omega) + self.b
        return jnp.sqrt(2.0 / n_rff) * jnp.cos(proj)


def make_features(
    sets: Int[Array, "S k"], kind: str = "linear", key: PRNGKeyArray | None = None, n_rff: int = 100
) -> FeatureMap:
    """Linear features, or `n_rff` random Fourier features per set: Omega ~ N(0,1), b ~ U(0, 2 pi)."""
    sets = jnp.asarray(sets, jnp.int32)
    if kind == "linear":
        return FeatureMap(sets, None, None)
    if key is None:
        raise ValueError("random Fourier features need a key")
    k_om, k_b = jax.random.split(key)
    n_sets, k = sets.shape
    omega = jax.random.normal(k_om, (n_sets, k, n_rff))
    b = jax.random.uniform(k_b, (n_sets, n_rff), maxval=2 * jnp.pi)
    return FeatureMap(sets, omega, b)


class Standardizer(eqx.Module):
    """Non-target variables standardised with D_O's mean and std; the target stays raw."""

    mean: Float[Array, " d"]
    std: Float[Array, " d"]
    target: Int[Array, ""]

    @classmethod
    def fit(cls, obs: Float[Array, "n d"], target: Int[Array, ""]) -> "Standardizer":
        std = jnp.std(obs, axis=0)
        return cls(jnp.mean(obs, axis=0), jnp.where(std > 0, std, 1.0), jnp.asarray(target))

    def __call__(self, x: Float[Array, "... d"]) -> tuple[Float[Array, "... d"], Float[Array, "..."]]:
        """(standardised x with the target column zeroed, raw y)."""
        is_t = jnp.arange(x.shape[-1]) == self.target
        return jnp.where(is_t, 0.0, (x - self.mean) / self.std), x[..., self.target]


class PosteriorState(eqx.Module):
    """Per-set regression posteriors N(mu, cov) and normalised log-weights (-inf = dropped)."""

    mu: Float[Array, "S F"]
    cov: Float[Array, "S F F"]
    logw: Float[Array, " S"]

    @property
    def probs(self) -> Float[Array, " S"]:
        return jnp.exp(self.logw)


def init_state(
    phi_obs: Float[Array, "n S F"],
    y_obs: Float[Array, " n"],
    log_prior: Float[Array, " S"],
    cfg: PosteriorConfig,
) -> PosteriorState:
    """Regression posterior given D_O for every set; weights = the prior."""
    n_feat = phi_obs.shape[-1]
    prec = jnp.eye(n_feat) / cfg.sigma_theta**2 + jnp.einsum("nsf,nsg->sfg", phi_obs, phi_obs) / cfg.sigma_y**2
    rhs = jnp.einsum("nsf,n->sf", phi_obs, y_obs) / cfg.sigma_y**2
    chol = jnp.linalg.cholesky(prec)
    eye = jnp.broadcast_to(jnp.eye(n_feat), prec.shape)
    cov = jax.vmap(lambda c, e: jax.scipy.linalg.cho_solve((c, True), e))(chol, eye)
    mu = jnp.einsum("sfg,sg->sf", cov, rhs)
    log_prior = log_prior - jax.nn.logsumexp(log_prior)
    return PosteriorState(mu, 0.5 * (cov + jnp.swapaxes(cov, -1, -2)), log_prior)


def log_predictive(
    state: PosteriorState, phi: Float[Array, "S F"], y: Float[Array, ""], cfg: PosteriorConfig
) -> Float[Array, " S"]:
    """Score of one row (x, y) under each set: exact predictive, or the original code's formula."""
    s2y = cfg.sigma_y**2
    if not cfg.bug_compatible:
        sphi = jnp.einsum("sfg,sg->sf", state.cov, phi)
        var = s2y + jnp.sum(phi * sphi, -1)
        resid = y - jnp.sum(phi * state.mu, -1)
        return -0.5 * jnp.log(2 * jnp.pi * var) - resid**2 / (2 * var)

    # The original code: A = Sigma + x x^T / s2, m = A^-1 (y x / s2 + Sigma mu), and
    # log l = -1/2 log(2 pi s2) + 1/2 log|Sigma| + 1/2 m^T A m - y^2/(2 s2) - 1/2 mu^T Sigma mu
    #         - 1/2 log|A|   (a precision-form evidence evaluated on the covariance).
    def one(mu, cov, x):
        a = cov + jnp.outer(x, x) / s2y
        c = y * x / s2y + cov @ mu
        m = jnp.linalg.solve(a, c)
        return (
            -0.5 * jnp.log(2 * jnp.pi * s2y)
            + 0.5 * jnp.linalg.slogdet(cov)[1]
            + 0.5 * m @ a @ m
            - y**2 / (2 * s2y)
            - 0.5 * mu @ cov @ mu
            - 0.5 * jnp.linalg.slogdet(a)[1]
        )

    return jax.vmap(one)(state.mu, state.cov, phi)


def _normalise(logw: Float[Array, " S"]) -> Float[Array, " S"]:
    return logw - jax.nn.logsumexp(logw)


def update(
    state: PosteriorState,
    phi: Float[Array, "S F"],
    y: Float[Array, ""],
    valid: Bool[Array, ""],
    cfg: PosteriorConfig,
) -> PosteriorState:
    """Score, reweight, normalise, prune, then the rank-one regression update (a no-op if not valid)."""
    ll = log_predictive(state, phi, y, cfg)
    logw = _normalise(state.logw + ll)
    # prune for good; the heaviest set is never dropped so the weights stay a distribution
    drop = (logw < jnp.log(cfg.prune_threshold)) & (jnp.arange(logw.shape[0]) != jnp.argmax(logw))
    logw = _normalise(jnp.where(drop, -jnp.inf, logw))

    # (Sigma^-1 + x x^T / s2)^-1 and Sigma_new (Sigma^-1 mu + y x / s2) via Sherman-Morrison
    sphi = jnp.einsum("sfg,sg->sf", state.cov, phi)
    var = cfg.sigma_y**2 + jnp.sum(phi * sphi, -1)
    resid = y - jnp.sum(phi * state.mu, -1)
    mu = state.mu + sphi * (resid / var)[:, None]
    cov = state.cov - jnp.einsum("sf,sg->sfg", sphi, sphi) / var[:, None, None]
    cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    new = PosteriorState(mu, cov, logw)
    return jax.tree.map(lambda a, b: jnp.where(valid, a, b), new, state)


def posterior_path(
    fmap: FeatureMap,
    obs: Float[Array, "n d"],
    target: Int[Array, ""],
    log_prior: Float[Array, " S"],
    rows: Float[Array, "K d"],
    rows_use: Bool[Array, " K"],
    cfg: PosteriorConfig,
) -> tuple[Float[Array, "K1 S"], PosteriorState, Standardizer]:
    """Set probabilities after 0..K updates (row 0 = prior), the final state and the standardiser.

    `rows_use` marks rows that update the posterior (real rows not intervening on the target).
    """
    std = Standardizer.fit(obs, target)
    x_obs, y_obs = std(obs)
    state = init_state(jax.vmap(fmap)(x_obs), y_obs, log_prior, cfg)
    x_rows, y_rows = std(rows)

    def step(st, inp):
        x, y, use = inp
        st = update(st, fmap(x), y, use, cfg)
        return st, st.probs

    final, probs = jax.lax.scan(step, state, (x_rows, y_rows, rows_use))
    return jnp.concatenate([state.probs[None], probs], 0), final, std
