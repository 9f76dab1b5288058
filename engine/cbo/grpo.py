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

The environment the rollouts run in (beliefs, outcomes, scoring, evaluation episodes) is
engine.cbo.environment.

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
from jaxtyping import Array, Bool, Float, Int

from engine.cbo.environment import LinearBayesSurrogate, reset, reward, score
from engine.cbo.policy import ActionDist, Policy, Tracker, features, value_of
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
