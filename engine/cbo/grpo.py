"""GRPO (group relative policy optimisation) for the learned acquisition policy.

From one state of an episode (buffer, posterior, what the episode has seen) the policy draws a
group of G candidate interventions; each is carried out on the SCM (the same noise for every
candidate of a group: common random numbers, so reward differences within a group come from the
actions, not the draws) and scored

    r = w_improve * max(0, y_best - y)            improvement of the target (minimised) over the
                                                  best so far, in its observational z units
      + w_info * (H(post) - H(post + row))        entropy drop of the surrogate's parent-set
                                                  posterior when the outcome's row is added
      + w_hit * [var is a true parent of the target]

Advantages are the rewards normalised within their group, A = (r - mean_g) / (std_g + eps), and
the policy maximises the clipped surrogate mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A)) plus
an entropy bonus, rho = pi(a | s) / pi_old(a | s). There is no critic and no KL term to a
reference policy (the policy starts uniform and the clip keeps each update near its behaviour
policy). Each rollout batch serves `epochs` updates: the first is on-policy (rho = 1, the clip
inactive), the later ones off-policy, where the clip bounds the step.

The rewards are one-step (bandit) rewards of a state; the states come from short rollouts of the
current policy itself: per graph simulated from the [scm] distribution inside the training
step, an episode of `episode_length` trials in which every trial's G candidates are scored and
the episode continues with the first one (a draw from the policy), so every trial is a state.

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

The trainer is engine.train.trainer.Trainer with a `GRPOObjective` and a `RolloutSource` (a
ModelSource: it reads the current parameters and carries the rollout batch between the updates
that reuse it), so checkpoints, resume, wall budgets and logs are the model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from engine.cbo.buffer import Buffer
from engine.cbo.policy import ActionDist, Policy, Tracker, features, target_stats, value_of
from engine.cbo.posterior import ParentSetPosterior
from engine.cbo.strategy import Problem
from engine.train.sources import ModelSource, Phase


@dataclass(frozen=True)
class GRPOConfig:
    """GRPO's settings, plain values.

    group_size G candidates per state; clip_eps the ratio clip; entropy_weight the bonus;
    w_improve / w_info / w_hit the reward weights; adv_eps the advantage's eps (groups whose
    rewards spread less than about adv_eps are treated as ties rather than blown up to +-1);
    lr, steps (optimizer updates), graphs_per_step (the batch: graphs simulated per rollout),
    epochs (updates per rollout batch), episode_length (trials per episode = states per graph),
    outcome_samples (draws averaged into a trial's outcome); the policy's dim, layers, heads,
    n_bins; the surrogate's max_parents; log/checkpoint cadence, tensorboard and the seed.
    """

    group_size: int = 8
    clip_eps: float = 0.2
    entropy_weight: float = 0.01
    w_improve: float = 1.0
    w_info: float = 0.2
    w_hit: float = 0.2
    adv_eps: float = 1e-2
    lr: float = 1e-3
    steps: int = 300
    graphs_per_step: int = 16
    epochs: int = 2
    episode_length: int = 10
    outcome_samples: int = 16
    dim: int = 32
    layers: int = 1
    heads: int = 2
    n_bins: int = 7
    max_parents: int = 2
    clip_norm: float = 1.0
    log_every: int = 20
    checkpoint_every: int = 100
    tensorboard: bool = False
    seed: int = 0

    def train_spec(self):
        """The [train] section the trainer runs under."""
        from engine.spec.train import TrainSpec

        return TrainSpec.model_validate({
            "steps": self.steps, "batch_size": self.graphs_per_step,
            "optimizer": {"kind": "adam", "lr": float(self.lr)}, "clip_norm": float(self.clip_norm),
            "checkpoint_every": self.checkpoint_every, "log_every": self.log_every,
            "augment": False, "tensorboard": self.tensorboard,
        })


# --------------------------------------------------------------------------- the pure pieces
def group_advantages(rewards: Float[Array, "... G"], eps: float = 1e-2) -> Float[Array, "... G"]:
    """(r - mean_g) / (std_g + eps) over the last axis (the group); std without Bessel's
    correction."""
    mean = rewards.mean(-1, keepdims=True)
    std = rewards.std(-1, keepdims=True)
    return (rewards - mean) / (std + eps)


def clipped_surrogate(ratio: Float[Array, "..."], adv: Float[Array, "..."], eps: float) -> Float[Array, "..."]:
    """PPO's per-sample objective min(rho A, clip(rho, 1 - eps, 1 + eps) A) (to maximise)."""
    return jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - eps, 1.0 + eps) * adv)


def clipped_objective(logp, logp_old, adv, eps: float) -> Float[Array, ""]:
    """The mean clipped surrogate with rho = exp(logp - logp_old)."""
    return clipped_surrogate(jnp.exp(logp - logp_old), adv, eps).mean()


def reward(improve, info, hit, cfg: GRPOConfig):
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
    """An episode's problem (the box: each variable's observational range) and first buffer."""
    real = scm.var_mask
    low = jnp.where(real, data.obs.min(0), 0.0)
    high = jnp.where(real, data.obs.max(0), 0.0)
    problem = Problem(scm.target.astype(jnp.int32), real, low, high, n_trials)
    return problem, Buffer.from_dataset(data, n_trials)


def outcome(scm, key, var, value, n: int) -> tuple[Float[Array, ""], Float[Array, " d"]]:
    """Mean of the target over n draws under do(X_var = value), and one more draw's row [d]
    (as engine.expert.loop's trials)."""
    d = scm.var_mask.shape[0]
    mask = jnp.broadcast_to(jnp.arange(d) == var, (n + 1, d))
    rows = scm.sample(key, mask, jnp.where(mask, value, 0.0))
    return jnp.mean(rows[:n, scm.target]), rows[n]


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
          vars_: Int[Array, " G"], values: Float[Array, " G"], key, cfg: GRPOConfig, surrogate,
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


class Rollout(eqx.Module):
    """GRPO data, leading axes [..., T] (states) and [..., T, G] (candidates): the policy's
    input, the actions, the behaviour policy's log-probabilities, advantages and rewards."""

    feats: Float[Array, "T d F"]
    cand: Bool[Array, "T d"]
    var: Int[Array, "T G"]
    bin: Int[Array, "T G"]
    logp_old: Float[Array, "T G"]
    adv: Float[Array, "T G"]
    reward: Float[Array, "T G"]
    improve: Float[Array, "T G"]
    info: Float[Array, "T G"]
    hit: Float[Array, "T G"]


def rollout(policy: Policy, scm, data, key, cfg: GRPOConfig, surrogate) -> Rollout:
    """One graph's episode of `episode_length` trials under `policy`; at every trial a group of
    G draws is scored and the episode goes on with the first."""
    T, G = cfg.episode_length, cfg.group_size
    problem, buffer = reset(scm, data, T)
    cand = problem.candidates
    start = (buffer, Tracker.start(cand.shape[0]), surrogate(buffer, problem, scm))

    def step(carry, t):
        buffer, tracker, post = carry
        k_act, k_out = jax.random.split(jax.random.fold_in(key, t))
        feats = features(buffer, post.marginals(), problem, tracker)
        dist = policy(feats, cand)
        var, bin = dist.sample(k_act, (G,))
        logp = dist.log_prob(var, bin)
        sc = score(scm, problem, buffer, tracker, post, var, value_of(problem, var, bin, policy.n_bins),
                   k_out, cfg, surrogate)
        r = reward(sc.improve, sc.info, sc.hit, cfg)
        out = Rollout(feats, cand, var, bin, logp, group_advantages(r, cfg.adv_eps), r, sc.improve, sc.info, sc.hit)
        carry = (buffer.add(sc.rows[0], sc.masks[0]), tracker.observe(var[0], sc.y_z[0]), sc.post0)
        return carry, out

    _, out = jax.lax.scan(step, start, jnp.arange(T))
    return out


def grpo_loss(policy: Policy, batch: Rollout, cfg: GRPOConfig) -> tuple[Float[Array, ""], dict]:
    """-(clipped surrogate + entropy_weight * entropy) over every state of the batch, and the
    terms to log."""
    d, F = batch.feats.shape[-2:]
    G = batch.var.shape[-1]
    flat = lambda a, *tail: a.reshape(-1, *tail)  # noqa: E731
    dists = jax.vmap(policy)(flat(batch.feats, d, F), flat(batch.cand, d))
    logp = jax.vmap(ActionDist.log_prob)(dists, flat(batch.var, G), flat(batch.bin, G))
    old, adv = flat(batch.logp_old, G), flat(batch.adv, G)
    ratio = jnp.exp(logp - old)
    objective = clipped_surrogate(ratio, adv, cfg.clip_eps).mean()
    entropy = jax.vmap(ActionDist.entropy)(dists).mean()
    total = -(objective + cfg.entropy_weight * entropy)
    aux = {
        "objective": objective, "entropy": entropy,
        "clip_frac": (jnp.abs(ratio - 1.0) > cfg.clip_eps).mean(),
        "approx_kl": (old - logp).mean(),
        "reward": batch.reward.mean(), "improve": batch.improve.mean(), "info": batch.info.mean(),
        "hit": batch.hit.mean(),
    }
    return total, jax.lax.stop_gradient(aux)


# --------------------------------------------------------------------------- training
class GRPOObjective:
    """The trainer's Objective: builds the policy, scores a rollout batch with grpo_loss."""

    def __init__(self, cfg: GRPOConfig, step_seconds: float = 0.5):
        self.cfg = cfg
        self.step_seconds = step_seconds

    def build(self, key) -> Policy:
        c = self.cfg
        return Policy(key, c.dim, c.layers, c.heads, c.n_bins)

    def loss(self, model, batch: Rollout, dual=0.0):
        return grpo_loss(model, batch, self.cfg)


class RolloutSource(ModelSource):
    """Rollouts of the current policy on `batch_size` graphs simulated inside the step, every
    `epochs` steps; the steps between reuse that batch (carried in TrainState.carry), so the
    later updates see a behaviour policy older than the parameters."""

    simulator: object = eqx.field(static=True)
    cfg: GRPOConfig = eqx.field(static=True)
    surrogate: eqx.Module

    def _fresh(self, key, step, batch_size: int, model) -> Rollout:
        k_graphs, k_roll = jax.random.split(jax.random.fold_in(key, step))
        scm, data, _ = jax.vmap(self.simulator.one)(jax.random.split(k_graphs, batch_size))
        roll = lambda s, dt, k: rollout(model, s, dt, k, self.cfg, self.surrogate)  # noqa: E731
        return jax.vmap(roll)(scm, data, jax.random.split(k_roll, batch_size))

    def __call__(self, key, step, batch_size: int, model, carry):
        if self.cfg.epochs == 1:
            return self._fresh(key, step, batch_size, model), None
        batch = jax.lax.cond(step % self.cfg.epochs == 0,
                             lambda c: self._fresh(key, step, batch_size, model), lambda c: c, carry)
        return batch, batch

    def init_carry(self, model, key, batch_size: int):
        if self.cfg.epochs == 1:
            return None
        shapes = eqx.filter_eval_shape(lambda m: self._fresh(key, jnp.int32(0), batch_size, m), model)
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


@dataclass(frozen=True)
class RunSpec:
    """What the trainer reads of a spec when it trains an objective."""

    train: object  # engine.spec.train.TrainSpec
    seed: int


def make_trainer(cfg: GRPOConfig, devices=None):
    from engine.train.trainer import Trainer

    devices = list(devices) if devices is not None else jax.devices()[:1]
    return Trainer(RunSpec(cfg.train_spec(), cfg.seed), devices, objective=GRPOObjective(cfg))


def make_phases(cfg: GRPOConfig, scm_spec, surrogate=None) -> list[Phase]:
    """One phase over every step: rollouts on graphs from `scm_spec` (an [scm] section)."""
    from engine.scm.simulator import Simulator

    surrogate = LinearBayesSurrogate(cfg.max_parents) if surrogate is None else surrogate
    source = RolloutSource(Simulator(scm_spec, devices=jax.devices()[:1]), cfg, surrogate)
    return [Phase(0, 0, cfg.steps, source, f"GRPO rollouts on {type(surrogate).__name__}")]


def train(cfg: GRPOConfig, scm_spec, workdir: Path, surrogate=None, deadline: float | None = None,
          warn=print):
    """Train (or resume) a policy in `workdir`: (policy, trainer); `trainer.summary` says how it
    ended and `workdir/metrics.jsonl` holds the logged rewards."""
    trainer = make_trainer(cfg)
    state = trainer.fit(make_phases(cfg, scm_spec, surrogate), None, Path(workdir), deadline=deadline, warn=warn)
    return state.model, trainer


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


class Episode(eqx.Module):
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


def episode(choice: Choice, scm, data, key, cfg: GRPOConfig, surrogate) -> Episode:
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
    return Episode(*out, problem.low, problem.high, jnp.stack([mu, sd]))


@eqx.filter_jit
def _episodes(choice, scms, datas, key, cfg, surrogate):
    keys = jax.random.split(key, datas.obs.shape[0])
    return jax.vmap(lambda s, dt, k: episode(choice, s, dt, k, cfg, surrogate))(scms, datas, keys)


def evaluate(choice: Choice, scms, datas, key, cfg: GRPOConfig, surrogate=None) -> Episode:
    """Episodes on a batch of graphs (leading axis), e.g. held-out ones (jit of vmap)."""
    surrogate = LinearBayesSurrogate(cfg.max_parents) if surrogate is None else surrogate
    return _episodes(choice, scms, datas, key, cfg, surrogate)


def mean_reward(ep: Episode) -> np.ndarray:
    """Per-graph mean reward over the episode."""
    return np.asarray(ep.reward).mean(-1)
