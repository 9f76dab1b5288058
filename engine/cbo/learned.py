"""The learned policy as an Acquisition (engine.cbo.strategy): init / select / observe, pure JAX
(jit and vmap through it), so the episode runner uses it like any other strategy."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from engine.cbo.buffer import Buffer
from engine.cbo.policy import Policy, Tracker, features, target_stats, value_of
from engine.cbo.posterior import ParentSetPosterior
from engine.cbo.strategy import Problem


class LearnedState(eqx.Module):
    """The episode's problem, what the policy remembers (Tracker, in the target's z units) and
    the target's observational (mean, std) that define those units."""

    problem: Problem
    tracker: Tracker
    y_mean: Float[Array, ""]
    y_std: Float[Array, ""]


class LearnedPolicy(eqx.Module):
    """A trained engine.cbo.policy.Policy (e.g. from engine.cbo.grpo.train): `greedy` takes the
    most probable variable and its most probable grid value, else draws both."""

    policy: Policy
    greedy: bool = eqx.field(static=True, default=True)

    def init(self, key: PRNGKeyArray, problem: Problem, buffer: Buffer, posterior: ParentSetPosterior) -> LearnedState:
        mean, std = target_stats(buffer, problem.target)
        return LearnedState(problem, Tracker.start(problem.var_mask.shape[0]), mean, std)

    def select(self, state: LearnedState, key: PRNGKeyArray, buffer: Buffer, posterior: ParentSetPosterior,
               ) -> tuple[Int[Array, ""], Float[Array, ""], LearnedState]:
        problem = state.problem
        dist = self.policy(features(buffer, posterior.marginals(), problem, state.tracker), problem.candidates)
        var, bin = dist.mode() if self.greedy else dist.sample(key)
        return var, value_of(problem, var, bin, self.policy.n_bins), state

    def observe(self, state: LearnedState, var: Int[Array, ""], value: Float[Array, ""], y: Float[Array, ""],
                row: Float[Array, " d"]) -> LearnedState:
        y_z = (jnp.asarray(y, jnp.float32) - state.y_mean) / state.y_std
        return eqx.tree_at(lambda s: s.tracker, state, state.tracker.observe(jnp.asarray(var, jnp.int32), y_z))
