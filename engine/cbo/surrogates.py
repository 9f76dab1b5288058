"""Surrogates: beliefs over the target's parent set (`engine.cbo.strategy.Surrogate`).

- `ExpertSurrogate(spec)`: PARENT_SCALE's prior over parent sets (uniform or doubly-robust,
  `engine.expert.parent_scale.compute_prior`), then its sequential Bayesian update
  (`engine.expert.posterior`) with D_I's rows at init and each trial's row after it.
- `OracleSurrogate()`: the true parent set with probability 1 (reads `Problem.parents`).
- `AmortizedSurrogate(model, max_parents, n_sets)`: a trained amortized model's parent marginals
  on the buffer, as the n_sets most probable sets under independent edges.
- `NullSurrogate()`: no belief (the empty set with probability 1: marginals 0), for acquisitions
  that read none (random).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from engine.cbo.buffer import Buffer
from engine.cbo.posterior import ParentSetPosterior
from engine.cbo.strategy import Problem
from engine.expert.posterior import FeatureMap, PosteriorState, Standardizer, make_features, posterior_path, update
from engine.scm.types import Dataset


# ------------------------------------------------------------------------------------ expert


class ExpertState(eqx.Module):
    """The expert's posterior: candidate sets, their feature map and standardiser (fixed after
    D_O), the regressions and weights, how many buffer rows it has consumed, and the set
    probabilities after each row of D_I (row 0 = the prior) for demonstrations."""

    sets: Int[Array, "S k"]
    fmap: FeatureMap
    std: Standardizer
    post: PosteriorState
    seen: Int[Array, ""]
    path: Float[Array, "n_int1 S"]
    d: int = eqx.field(static=True)


@partial(jax.jit, static_argnums=(0, 5))
def _init_posterior(spec, key, var_mask, target, buffer: Buffer, n_rows: int):
    """PARENT_SCALE's prior and its posterior after the buffer's first n_rows rows (D_I's)."""
    from engine.expert.parent_scale import compute_prior, config_of, rows_to_use

    data = Dataset(buffer.obs, buffer.values[:n_rows], buffer.mask[:n_rows], buffer.valid[:n_rows])
    k_prior, k_feat = jax.random.split(key)
    sets, log_prior = compute_prior(spec, k_prior, data.obs, var_mask, target)
    fmap = make_features(sets, spec.features, k_feat, spec.n_rff)
    use = rows_to_use(data.int_mask, data.int_row_mask, target)
    probs, state, std = posterior_path(fmap, data.obs, target, log_prior, data.int_values, use, config_of(spec))
    return sets, fmap, state, std, probs


@partial(jax.jit, static_argnums=0)
def _update_newest(spec, state: ExpertState, buffer: Buffer) -> ExpertState:
    """The posterior after the buffer's newest row (a no-op when it has no new row, when that
    row intervenes on the target or is not valid)."""
    from engine.expert.parent_scale import config_of

    i = jnp.maximum(buffer.count - 1, 0)
    target = state.std.target
    use = (buffer.count > state.seen) & buffer.used()[i] & ~buffer.mask[i, target]
    x, y = state.std(buffer.values[i])
    post = update(state.post, state.fmap(x), y, use, config_of(spec))
    return eqx.tree_at(lambda s: (s.post, s.seen), state, (post, jnp.maximum(buffer.count, state.seen)))


class ExpertSurrogate:
    """PARENT_SCALE's belief (a `ParentScaleExpert` spec: prior, features, noise, pruning)."""

    def __init__(self, spec: Any):
        self.spec = spec

    def init(self, key, problem: Problem, buffer: Buffer) -> ExpertState:
        c = int(buffer.count)  # D_I's rows (padding rows included: they update nothing)
        sets, fmap, post, std, probs = _init_posterior(self.spec, key, problem.var_mask, problem.target, buffer, c)
        return ExpertState(sets, fmap, std, post, jnp.asarray(c, jnp.int32), probs, problem.var_mask.shape[0])

    def update(self, state: ExpertState, buffer: Buffer) -> ExpertState:
        return _update_newest(self.spec, state, buffer)

    def posterior(self, state: ExpertState) -> ParentSetPosterior:
        return ParentSetPosterior(state.sets, state.post.logw, state.d)


# ------------------------------------------------------------------------------------ oracle


class OracleSurrogate:
    """The true parents with certainty (`Problem.parents`, which only the oracle may read)."""

    def init(self, key, problem: Problem, buffer: Buffer) -> ParentSetPosterior:
        if problem.parents is None:
            raise ValueError("the oracle surrogate needs Problem.parents (the SCM's true parents)")
        parents = np.asarray(problem.parents & problem.candidates)
        return ParentSetPosterior.point(jnp.asarray(parents), max(1, int(parents.sum())))

    def update(self, state: ParentSetPosterior, buffer: Buffer) -> ParentSetPosterior:
        return state

    def posterior(self, state: ParentSetPosterior) -> ParentSetPosterior:
        return state


class NullSurrogate:
    """No belief: the empty set with probability 1 (marginals 0, entropy 0), never updated."""

    def init(self, key, problem: Problem, buffer: Buffer) -> ParentSetPosterior:
        return ParentSetPosterior(jnp.full((1, 1), -1, jnp.int32), jnp.zeros(1, jnp.float32), problem.var_mask.shape[0])

    def update(self, state: ParentSetPosterior, buffer: Buffer) -> ParentSetPosterior:
        return state

    def posterior(self, state: ParentSetPosterior) -> ParentSetPosterior:
        return state


# --------------------------------------------------------------------------------- amortized


class AmortizedState(eqx.Module):
    post: ParentSetPosterior
    var_mask: Bool[Array, " d"]
    target: Int[Array, ""]


@eqx.filter_jit
def _amortized_posterior(model, buffer: Buffer, var_mask, target, max_parents: int, n_sets: int):
    x, row_mask = buffer.model_input()
    logits = model(x, row_mask, var_mask, target)
    return ParentSetPosterior.from_marginals(jax.nn.sigmoid(logits), var_mask, target, max_parents, n_sets)


class AmortizedSurrogate:
    """A trained `engine.models.base.AmortizedPredictor` on `buffer.model_input()`: sigmoid of its
    parent logits as marginals, then the `n_sets` most probable sets of at most `max_parents`
    variables (`ParentSetPosterior.from_marginals`). One jitted forward pass per update; the
    buffer's shape is fixed for the episode, so it compiles once per (n, K, d)."""

    def __init__(self, model, max_parents: int = 3, n_sets: int = 32):
        self.model = model
        self.max_parents = max_parents
        self.n_sets = n_sets

    def _belief(self, buffer: Buffer, var_mask, target) -> ParentSetPosterior:
        return _amortized_posterior(self.model, buffer, var_mask, target, self.max_parents, self.n_sets)

    def init(self, key, problem: Problem, buffer: Buffer) -> AmortizedState:
        return AmortizedState(self._belief(buffer, problem.var_mask, problem.target), problem.var_mask, problem.target)

    def update(self, state: AmortizedState, buffer: Buffer) -> AmortizedState:
        return AmortizedState(self._belief(buffer, state.var_mask, state.target), state.var_mask, state.target)

    def posterior(self, state: AmortizedState) -> ParentSetPosterior:
        return state.post
