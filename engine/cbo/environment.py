"""The jittable environment of the learned policy: beliefs, outcomes, one-step rewards, and
evaluation episodes (jit of vmap over graphs), shared by GRPO's rollouts (engine.cbo.grpo) and
its benchmarks. The reward of an intervention from a state is

    r = w_improve * max(0, y_best - y) + w_info * (H(post) - H(post + row)) + w_hit * [var is a parent]

(target minimised, in its observational z units; the entropy drop of the belief when the
outcome's row is added; whether the variable is a true parent of the target).

Surrogates (`surrogate(buffer, problem, scm) -> ParentSetPosterior`, jittable):

- `LinearBayesSurrogate` (the default for training): the expert's own exact Bayesian linear
  set posterior (engine.expert.posterior, PARENT_SCALE's likelihood under a uniform prior over
  sets of at most `max_parents`), recomputed from the buffer. It needs no trained model, costs a
  few small matrix products per row, has real uncertainty (so information gain is a real
  signal and the marginals the policy reads are the kind an episode gives it), and is the same
  at training and evaluation time.
- `OracleSurrogate`: the true parents. Cheapest, but its entropy is always 0 (no information
  gain) and it shows the policy the answer, so a policy trained on it is judged with it only.
- `AmortizedEnvSurrogate`: any trained AmortizedPredictor on `buffer.model_input()`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from engine.cbo.buffer import Buffer
from engine.cbo.episode import outcome, problem_of
from engine.cbo.policy import Policy, Tracker, features, target_stats, value_of
from engine.cbo.posterior import ParentSetPosterior
from engine.cbo.strategy import Problem


def reward(improve, info, hit, cfg):
    return cfg.w_improve * improve + cfg.w_info * info + cfg.w_hit * hit


# --------------------------------------------------------------------------- surrogates
class OracleSurrogate(eqx.Module):
    """All mass on the true parents (entropy 0: no information gain)."""

    def __call__(self, buffer: Buffer, problem: Problem, scm) -> ParentSetPosterior:
        return ParentSetPosterior.point(scm.parents() & problem.candidates)


class LinearBayesSurrogate(eqx.Module):
    """PARENT_SCALE's exact linear set posterior under a uniform prior over the sets of at most
    `max_parents` real non-target variables, from the buffer's rows (D_O fits each set's
    regression, the interventional rows that do not intervene on the target score the sets).
    Every variable, the target too, is z-scored with the observational rows first."""

    max_parents: int = eqx.field(static=True, default=2)
    sigma_y: float = eqx.field(static=True, default=1.0)
    sigma_theta: float = eqx.field(static=True, default=1.0)
    prune_threshold: float = eqx.field(static=True, default=1e-4)

    def __call__(self, buffer: Buffer, problem: Problem, scm=None) -> ParentSetPosterior:
        from engine.expert import sets as S
        from engine.expert.posterior import PosteriorConfig, make_features, posterior_path

        d = buffer.obs.shape[1]
        sets = jnp.asarray(S.all_sets(d, self.max_parents))
        log_prior = S.uniform_log_prior(sets, problem.var_mask, problem.target)
        mean = buffer.obs.mean(0)
        std = jnp.where(buffer.obs.std(0) > 1e-6, buffer.obs.std(0), 1.0)
        z = lambda x: jnp.where(problem.var_mask, (x - mean) / std, 0.0)  # noqa: E731
        use = buffer.used() & ~buffer.mask[:, problem.target]
        cfg = PosteriorConfig(self.sigma_y, self.sigma_theta, self.prune_threshold)
        _, final, _ = posterior_path(make_features(sets), z(buffer.obs), problem.target, log_prior,
                                     z(buffer.values), use, cfg)
        return ParentSetPosterior(sets.astype(jnp.int32), final.logw, d)


class AmortizedEnvSurrogate(eqx.Module):
    """A trained amortized model's marginals, as sets (ParentSetPosterior.from_marginals)."""

    model: eqx.Module
    max_parents: int = eqx.field(static=True, default=2)
    n_sets: int = eqx.field(static=True, default=32)

    def __call__(self, buffer: Buffer, problem: Problem, scm=None) -> ParentSetPosterior:
        x, rows = buffer.model_input()
        logits = self.model(x, rows, problem.var_mask, problem.target)
        return ParentSetPosterior.from_marginals(
            jax.nn.sigmoid(logits), problem.var_mask, problem.target, self.max_parents, self.n_sets)


# --------------------------------------------------------------------------- the environment
def reset(scm, data, n_trials: int) -> tuple[Problem, Buffer]:
    """An episode's problem (the runner's: the box is each variable's observational range) and
    first buffer."""
    return problem_of(scm, data, n_trials), Buffer.from_dataset(data, n_trials)




class Scored(eqx.Module):
    """G candidates' outcomes from one state: y raw, y_z in the target's z units, rows [G, d],
    masks [G, d], the posterior after candidate 0's row, and the reward terms [G]."""

    y: Float[Array, " G"]
    y_z: Float[Array, " G"]
    rows: Float[Array, "G d"]
    masks: Bool[Array, "G d"]
    post0: ParentSetPosterior
    improve: Float[Array, " G"]
    info: Float[Array, " G"]
    hit: Float[Array, " G"]


def score(scm, problem: Problem, buffer: Buffer, tracker: Tracker, before: ParentSetPosterior,
          vars_: Int[Array, " G"], values: Float[Array, " G"], key, cfg, surrogate,
          ) -> Scored:
    """Carry out G candidate interventions from one state (same noise for all) and score them.
    The information gain needs a posterior per candidate; with w_info = 0 only candidate 0's
    (the next state's) is computed and info is 0."""
    mu, sd = target_stats(buffer, problem.target)
    d = problem.var_mask.shape[0]
    ys, rows = jax.vmap(lambda v, x: outcome(scm, key, v, x, cfg.outcome_samples))(vars_, values)
    y_z = (ys - mu) / sd
    masks = jax.nn.one_hot(vars_, d, dtype=jnp.bool_)
    after = lambda r, m: surrogate(buffer.add(r, m), problem, scm)  # noqa: E731
    if cfg.w_info != 0:
        posts = jax.vmap(after)(rows, masks)
        info = before.entropy() - jax.vmap(lambda p: p.entropy())(posts)
        post0 = jax.tree.map(lambda a: a[0], posts)
    else:
        post0 = after(rows[0], masks[0])
        info = jnp.zeros_like(ys)
    improve = jnp.maximum(tracker.y_best - y_z, 0.0)
    hit = (scm.parents() & problem.candidates)[vars_].astype(jnp.float32)
    return Scored(ys, y_z, rows, masks, post0, improve, info, hit)


# --------------------------------------------------------------------------- evaluation
class Choice(eqx.Module):
    """How an evaluation episode picks its interventions: the policy (greedy or sampled) or,
    without one, uniformly at random (a candidate, then a value uniform on its box, as the
    expert loop's random baseline)."""

    policy: Policy | None = None
    greedy: bool = eqx.field(static=True, default=True)

    def __call__(self, key, feats, problem: Problem):
        cand = problem.candidates
        if self.policy is None:
            kv, kx = jax.random.split(key)
            var = jax.random.categorical(kv, jnp.where(cand, 0.0, -jnp.inf)).astype(jnp.int32)
            u = jax.random.uniform(kx)
            return var, problem.low[var] + u * (problem.high[var] - problem.low[var])
        dist = self.policy(feats, cand)
        var, bin = dist.mode() if self.greedy else dist.sample(key)
        return var, value_of(problem, var, bin, self.policy.n_bins)


class TrialLog(eqx.Module):
    """An evaluation episode per graph, [..., T]: the interventions, their outcomes (raw and in
    z units), the reward terms and rewards (cfg's weights), and the target's (mean, std) over
    the observational rows."""

    var: Int[Array, " T"]
    value: Float[Array, " T"]
    y: Float[Array, " T"]
    y_z: Float[Array, " T"]
    improve: Float[Array, " T"]
    info: Float[Array, " T"]
    hit: Float[Array, " T"]
    reward: Float[Array, " T"]
    low: Float[Array, " d"]
    high: Float[Array, " d"]
    y_stats: Float[Array, " 2"]


def episode(choice: Choice, scm, data, key, cfg, surrogate) -> TrialLog:
    """One graph's episode of `episode_length` trials chosen by `choice`, scored as training
    scores its candidates (one candidate per trial)."""
    problem, buffer = reset(scm, data, cfg.episode_length)
    start = (buffer, Tracker.start(problem.var_mask.shape[0]), surrogate(buffer, problem, scm))

    def step(carry, t):
        buffer, tracker, post = carry
        k_act, k_out = jax.random.split(jax.random.fold_in(key, t))
        var, value = choice(k_act, features(buffer, post.marginals(), problem, tracker), problem)
        sc = score(scm, problem, buffer, tracker, post, var[None], value[None], k_out, cfg, surrogate)
        r = reward(sc.improve, sc.info, sc.hit, cfg)
        out = (var, value, sc.y[0], sc.y_z[0], sc.improve[0], sc.info[0], sc.hit[0], r[0])
        return (buffer.add(sc.rows[0], sc.masks[0]), tracker.observe(var, sc.y_z[0]), sc.post0), out

    _, out = jax.lax.scan(step, start, jnp.arange(cfg.episode_length))
    mu, sd = target_stats(buffer, problem.target)
    return TrialLog(*out, problem.low, problem.high, jnp.stack([mu, sd]))


@eqx.filter_jit
def _episodes(choice, scms, datas, key, cfg, surrogate):
    keys = jax.random.split(key, datas.obs.shape[0])
    return jax.vmap(lambda s, dt, k: episode(choice, s, dt, k, cfg, surrogate))(scms, datas, keys)


def evaluate(choice: Choice, scms, datas, key, cfg, surrogate=None) -> TrialLog:
    """Episodes on a batch of graphs (leading axis), e.g. held-out ones (jit of vmap)."""
    surrogate = LinearBayesSurrogate(cfg.max_parents) if surrogate is None else surrogate
    return _episodes(choice, scms, datas, key, cfg, surrogate)


def mean_reward(ep: TrialLog) -> np.ndarray:
    """Per-graph mean reward over the episode."""
    return np.asarray(ep.reward).mean(-1)
