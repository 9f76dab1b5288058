"""A learned acquisition policy: from the buffer and the posterior marginals to a distribution
over single-node hard interventions do(X_v = x).

Every variable becomes a token of fixed, scale-free features (`features`: observational and
interventional statistics in observational standard units, the posterior marginal, what the
episode has seen when intervening on it); a few blocks of masked self-attention over the tokens
let the variables compare notes; two heads give a logit per variable (masked to
`Problem.candidates`: real and not the target) and, per variable, logits over a value grid. The
network never sees d, so it is independent of the number of variables and equivariant under
permuting them (as the amortized models).

The value distribution is a categorical over `n_bins` evenly spaced points of the variable's box
[low, high], endpoints included, rather than a Gaussian squashed into the box:

- log-probabilities and the entropy are exact closed forms (no squashing Jacobian, no Monte
  Carlo entropy), which is what GRPO's ratio and entropy bonus need and what the tests check;
- the best hard intervention of a linear SCM sits at an end of the box (the interventional mean
  is linear in the value), which a grid with its endpoints holds exactly, while a squashed
  Gaussian reaches an end only as its scale collapses;
- it may put mass at both ends at once (a variable whose effect's sign is still unknown).

Actions are (var, bin); `value_of` maps a bin to the value in the problem's (standardised) units.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from engine.cbo.buffer import Buffer
from engine.cbo.strategy import Problem
from engine.models.spd import spd_inverse

_NEG = -1e9  # masked logits: exp underflows to exactly 0 in float32, and 0 * _NEG stays finite
_EPS = 1e-6

FEATURE_NAMES = (
    "candidate",  # 1 for a variable that may be intervened on
    "marginal",  # the surrogate's P(parent of the target)
    "obs_corr",  # observational correlation with the target
    "obs_partial_corr",  # ... given every other variable (ridge-regularised precision)
    "log_count",  # log(1 + interventional rows on it in the buffer)
    "intervened",  # 1 if it has any
    "effect",  # slope of the target on it through the obs means, over those rows (z units)
    "t_stat",  # that slope's t-statistic, sign * log1p(|t|)
    "best_gap",  # best outcome seen under do(it) minus the best overall (0 when none)
    "has_best",  # 1 when a trial intervened on it
    "low",  # the box [low, high] in z units
    "high",
    "effect_low",  # effect * low, effect * high: the target's predicted move at either end
    "effect_high",
    "corr_low",  # the same from the observational correlation
    "corr_high",
    "progress",  # trials made / trials allowed
    "y_best",  # the best outcome so far (z units of the target; 0 = observational mean)
)
N_FEATURES = len(FEATURE_NAMES)


class Tracker(eqx.Module):
    """What the policy remembers of an episode beyond the buffer, in the target's observational
    z units: best_var [d] the lowest outcome under do(X_j) (+inf where none), y_best [] the
    lowest so far (starting at 0, the observational mean), t [] trials made."""

    best_var: Float[Array, " d"]
    y_best: Float[Array, ""]
    t: Int[Array, ""]

    @classmethod
    def start(cls, d: int) -> "Tracker":
        return cls(jnp.full(d, jnp.inf, jnp.float32), jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))

    def observe(self, var: Int[Array, ""], y_z: Float[Array, ""]) -> "Tracker":
        return Tracker(
            self.best_var.at[var].min(y_z.astype(jnp.float32)),
            jnp.minimum(self.y_best, y_z).astype(jnp.float32),
            self.t + 1,
        )


def target_stats(buffer: Buffer, target: Int[Array, ""]) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """(mean, std) of the target over the observational rows: outcomes are judged in these z
    units (a simulator that standardises gives about (0, 1))."""
    y = buffer.obs[:, target]
    return y.mean(), jnp.maximum(y.std(), _EPS)


def _squash(x):
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def features(
    buffer: Buffer, marginals: Float[Array, " d"], problem: Problem, tracker: Tracker
) -> Float[Array, "d F"]:
    """The per-variable tokens [d, N_FEATURES] (FEATURE_NAMES), zero for non-candidates."""
    cand = problem.candidates
    real = problem.var_mask
    t = problem.target
    d = real.shape[0]
    obs = buffer.obs
    mean = jnp.where(real, obs.mean(0), 0.0)
    std = jnp.where(real, obs.std(0), 1.0)
    std = jnp.where(std > _EPS, std, 1.0)
    z_obs = jnp.where(real, (obs - mean) / std, 0.0)
    n_obs = obs.shape[0]
    corr = z_obs.T @ z_obs / n_obs  # [d, d]
    ridge = corr + jnp.diag(1.0 - real) + 1e-2 * jnp.eye(d)
    prec = spd_inverse(ridge)
    diag = jnp.sqrt(jnp.clip(jnp.diag(prec), _EPS))
    pcorr = -prec[:, t] / (diag * diag[t])
    ocorr = corr[:, t]

    used = buffer.used()
    z_rows = jnp.where(real, (buffer.values - mean) / std, 0.0)
    on = (buffer.mask & used[:, None] & real[None, :]).astype(jnp.float32)  # [K, d] rows doing j
    count = on.sum(0)
    cross = (on * z_rows).T @ z_rows[:, t]  # sum over do(j) rows of z_j z_t
    energy = (on * z_rows**2).sum(0)
    effect = cross / (energy + 1.0)
    t_stat = _squash(cross / jnp.sqrt(energy + 1e-3))

    low = jnp.where(real, (problem.low - mean) / std, 0.0)
    high = jnp.where(real, (problem.high - mean) / std, 0.0)
    has_best = jnp.isfinite(tracker.best_var)
    gap = jnp.where(has_best, tracker.best_var - tracker.y_best, 0.0)
    progress = tracker.t.astype(jnp.float32) / max(problem.n_trials, 1)
    ones = jnp.ones(d, jnp.float32)
    cols = [
        cand.astype(jnp.float32), marginals.astype(jnp.float32), ocorr, pcorr, jnp.log1p(count),
        (count > 0).astype(jnp.float32), effect, t_stat, gap, has_best.astype(jnp.float32),
        low, high, effect * low, effect * high, ocorr * low, ocorr * high,
        progress * ones, tracker.y_best * ones,
    ]
    f = jnp.clip(jnp.stack(cols, -1), -10.0, 10.0)
    return jnp.where(cand[:, None], f, 0.0)


class ActionDist(eqx.Module):
    """The policy's distribution over (var, bin): p(var) p(bin | var).

    var_logits [d] (non-candidates at a large negative value); val_logits [d, n_bins]."""

    var_logits: Float[Array, " d"]
    val_logits: Float[Array, "d K"]

    @property
    def n_bins(self) -> int:
        return self.val_logits.shape[-1]

    def log_probs(self) -> tuple[Float[Array, " d"], Float[Array, "d K"]]:
        return jax.nn.log_softmax(self.var_logits), jax.nn.log_softmax(self.val_logits, -1)

    def log_prob(self, var: Int[Array, "..."], bin: Int[Array, "..."]) -> Float[Array, "..."]:
        lv, lb = self.log_probs()
        return lv[var] + lb[var, bin]

    def entropy(self) -> Float[Array, ""]:
        """H(var) + sum_v p(v) H(bin | v), in nats."""
        lv, lb = self.log_probs()
        pv, pb = jnp.exp(lv), jnp.exp(lb)
        h_bin = -jnp.sum(pb * lb, -1)
        return -jnp.sum(pv * lv) + jnp.sum(pv * h_bin)

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...] = ()) -> tuple[Int[Array, "..."], Int[Array, "..."]]:
        kv, kb = jax.random.split(key)
        var = jax.random.categorical(kv, self.var_logits, shape=shape)
        bin = jax.random.categorical(kb, self.val_logits[var])
        return var.astype(jnp.int32), bin.astype(jnp.int32)

    def mode(self) -> tuple[Int[Array, ""], Int[Array, ""]]:
        var = jnp.argmax(self.var_logits)
        return var.astype(jnp.int32), jnp.argmax(self.val_logits[var]).astype(jnp.int32)


def value_of(problem: Problem, var: Int[Array, "..."], bin: Int[Array, "..."], n_bins: int) -> Float[Array, "..."]:
    """The intervention value of grid point `bin` in var's box [low, high]."""
    u = bin.astype(jnp.float32) / max(n_bins - 1, 1)
    return problem.low[var] + u * (problem.high[var] - problem.low[var])


class _Block(eqx.Module):
    norm1: eqx.nn.LayerNorm
    attn: eqx.nn.MultiheadAttention
    norm2: eqx.nn.LayerNorm
    mlp: eqx.nn.MLP

    def __init__(self, dim: int, heads: int, key: PRNGKeyArray):
        k1, k2 = jax.random.split(key)
        self.norm1 = eqx.nn.LayerNorm(dim)
        self.attn = eqx.nn.MultiheadAttention(heads, dim, key=k1)
        self.norm2 = eqx.nn.LayerNorm(dim)
        self.mlp = eqx.nn.MLP(dim, dim, 2 * dim, 1, activation=jax.nn.gelu, key=k2)

    def __call__(self, h, mask):
        x = jax.vmap(self.norm1)(h)
        h = h + self.attn(x, x, x, mask=jnp.broadcast_to(mask[None, :], (h.shape[0], h.shape[0])))
        return h + jax.vmap(self.mlp)(jax.vmap(self.norm2)(h))


class Policy(eqx.Module):
    """tokens [d, N_FEATURES] -> ActionDist. Both heads start at zero, so an untrained policy is
    uniform over the candidates and the grid (it starts as a random-intervention baseline on a
    grid)."""

    embed: eqx.nn.MLP
    blocks: tuple[_Block, ...]
    norm: eqx.nn.LayerNorm
    var_head: eqx.nn.Linear
    val_head: eqx.nn.Linear
    n_bins: int = eqx.field(static=True)

    def __init__(self, key: PRNGKeyArray, dim: int = 32, layers: int = 1, heads: int = 2, n_bins: int = 7):
        keys = jax.random.split(key, layers + 3)
        self.embed = eqx.nn.MLP(N_FEATURES, dim, dim, 1, activation=jax.nn.gelu, key=keys[0])
        self.blocks = tuple(_Block(dim, heads, k) for k in keys[1:-2])
        self.norm = eqx.nn.LayerNorm(dim)
        zero = lambda lin: eqx.tree_at(lambda l: (l.weight, l.bias), lin,  # noqa: E731
                                       (jnp.zeros_like(lin.weight), jnp.zeros_like(lin.bias)))
        self.var_head = zero(eqx.nn.Linear(dim, 1, key=keys[-2]))
        self.val_head = zero(eqx.nn.Linear(dim, n_bins, key=keys[-1]))
        self.n_bins = n_bins

    def __call__(self, feats: Float[Array, "d F"], cand: Bool[Array, " d"]) -> ActionDist:
        h = jax.vmap(self.embed)(feats)
        # a graph with no candidate cannot occur (the target has a parent); keep softmax finite
        keys = cand | ~jnp.any(cand)
        for block in self.blocks:
            h = block(h, keys)
        h = jax.vmap(self.norm)(h)
        var = jax.vmap(self.var_head)(h)[:, 0]
        val = jax.vmap(self.val_head)(h)
        return ActionDist(jnp.where(cand, var, _NEG), val)
