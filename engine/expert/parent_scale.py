"""The PARENT_SCALE runtime expert: prior over parent sets, posterior, optimisation loop.

`run(key, scm, data)` handles one graph (padded to d), `run_many(key, scms, datas)` a batch with
a leading graph axis. With `n_trials = 0` the whole run is the posterior over D_I: one jitted,
vmapped function of (var_mask, target, data). With trials it is a causal-BO episode of
`engine.cbo` per graph (ExpertSurrogate + ExpectedImprovement, composed in `engine.expert.loop`;
shapes depend on the surviving sets), and graphs are spread over processes by
`engine.expert.runner.run_graphs`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from engine.expert import sets as S
from engine.expert.posterior import PosteriorConfig, make_features, posterior_path
from engine.expert.types import Trajectory
from engine.scm.types import Dataset


def prior_sets(prior: Any, d: int) -> np.ndarray | None:
    """Static candidate sets of the simple priors (None for data-dependent priors)."""
    if prior.kind == "uniform":
        return S.all_sets(d, prior.max_parents)
    if prior.kind == "uniform_singletons":
        return S.singleton_sets(d)
    return None


def compute_prior(spec: Any, key, obs, var_mask, target):
    """(sets [S, k], log_prior [S]) for one graph; jittable for every prior kind."""
    d = obs.shape[1]
    static = prior_sets(spec.prior, d)
    if static is not None:
        sets = jnp.asarray(static)
        return sets, S.uniform_log_prior(sets, var_mask, target)
    from engine.expert.prior_dr import doubly_robust_prior

    return doubly_robust_prior(spec.prior, key, obs, var_mask, target)


def rows_to_use(rows_mask, rows_valid, target):
    """Rows that inform the target's parents: real rows that do not intervene on the target."""
    return rows_valid & ~rows_mask[:, target]


def posterior_trajectory(spec: Any, key, var_mask, target, data: Dataset, extra_rows=None) -> Trajectory:
    """The posterior after each row of D_I (pure jnp; jit and vmap over graphs)."""
    k_prior, k_feat = jax.random.split(key)
    target = jnp.asarray(target, jnp.int32)
    sets, log_prior = compute_prior(spec, k_prior, data.obs, var_mask, target)
    fmap = make_features(sets, spec.features, k_feat, spec.n_rff)
    cfg = config_of(spec)
    use = rows_to_use(data.int_mask, data.int_row_mask, target)
    probs, _, _ = posterior_path(fmap, data.obs, target, log_prior, data.int_values, use, cfg)
    marg = probs @ S.membership(sets, data.obs.shape[1])
    f0 = jnp.zeros((0,), jnp.float32)
    return Trajectory(
        rows_values=data.int_values,
        rows_mask=data.int_mask,
        rows_valid=data.int_row_mask,
        marginals=marg,
        set_probs=probs,
        sets=sets,
        n_init=jnp.asarray(data.int_values.shape[0], jnp.int32),
        trial_var=jnp.zeros((0,), jnp.int32),
        trial_value=f0,
        trial_y=f0,
        best_y=f0,
        cost=f0,
    )


def config_of(spec: Any) -> PosteriorConfig:
    return PosteriorConfig(
        sigma_y=float(spec.sigma_y),
        sigma_theta=float(spec.sigma_theta),
        prune_threshold=float(spec.prune_threshold),
        bug_compatible=spec.posterior == "bug_compatible",
    )


class ParentScale:
    """Runtime PARENT_SCALE built from a `ParentScaleExpert` spec."""

    def __init__(self, spec: Any):
        self.spec = spec
        fn = partial(posterior_trajectory, spec)
        self._posterior = jax.jit(fn)
        self._posterior_many = jax.jit(jax.vmap(fn))

    def posterior(self, key, var_mask, target, data: Dataset) -> Trajectory:
        """Posterior-only trajectory for one graph (jitted)."""
        return self._posterior(key, var_mask, target, data)

    def posterior_many(self, key, var_masks, targets, datas: Dataset) -> Trajectory:
        """Posterior-only trajectories for a batch of graphs (jit of vmap)."""
        keys = jax.random.split(key, var_masks.shape[0])
        return self._posterior_many(keys, var_masks, targets, datas)

    def run(self, key, scm, data: Dataset) -> Trajectory:
        """One graph: the posterior over D_I, then `n_trials` trials of causal BO."""
        if self.spec.n_trials == 0:
            return self.posterior(key, scm.var_mask, scm.target, data)
        from engine.expert.loop import run_episode

        return run_episode(self.spec, key, scm, data)

    def run_many(self, key, scms, datas: Dataset) -> Trajectory:
        """A batch of graphs (leading axis on every leaf of scms and datas)."""
        if self.spec.n_trials == 0:
            return self.posterior_many(key, scms.var_mask, scms.target, datas)
        from engine.expert.loop import run_many_sequential

        return run_many_sequential(self, key, scms, datas)
