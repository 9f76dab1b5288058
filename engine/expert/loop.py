"""PARENT_SCALE, the oracle and random as causal-BO strategies on the one episode runner.

Each expert kind is a surrogate + acquisition pair run by `engine.cbo.episode.run_episode`:

    parent_scale = ExpertSurrogate(spec) + ExpectedImprovement(spec)
    oracle       = OracleSurrogate()     + ExpectedImprovement(spec)
    random       = NullSurrogate()       + RandomAcquisition()

and the episode is converted to the expert's `Trajectory` (D_I's rows, then one fresh row per
trial, with the posterior after each), which the demonstrations stage and the runner read.
One graph at a time: the surviving sets decide the surrogate's shape (see
`engine.cbo.acquisitions`); graphs run in parallel as processes (`engine.expert.runner`).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from engine.cbo.acquisitions import SET_FLOOR, ExpectedImprovement, RandomAcquisition, set_bucket  # noqa: F401
from engine.cbo.episode import Episode
from engine.cbo.episode import run_episode as run_cbo_episode
from engine.cbo.surrogates import ExpertSurrogate, NullSurrogate, OracleSurrogate
from engine.expert import sets as S
from engine.expert.types import Trajectory
from engine.scm.types import Dataset


def strategy(spec: Any, kind: str):
    """(surrogate, acquisition) of an expert kind."""
    if kind == "parent_scale":
        return ExpertSurrogate(spec), ExpectedImprovement(spec)
    if kind == "oracle":
        return OracleSurrogate(), ExpectedImprovement(spec)
    if kind == "random":
        return NullSurrogate(), RandomAcquisition()
    raise ValueError(f"unknown expert kind {kind!r}")


def run_episode(spec: Any, key, scm, data: Dataset, kind: str | None = None) -> Trajectory:
    """One graph: the posterior over D_I (parent_scale), then `spec.n_trials` trials of `kind`."""
    kind = kind or spec.kind
    surrogate, acquisition = strategy(spec, kind)
    ep = run_cbo_episode(key, scm, data, surrogate, acquisition, spec.n_trials, spec.outcome_samples)
    return to_trajectory(ep, data, no_belief=kind == "random")


def to_trajectory(ep: Episode, data: Dataset, no_belief: bool = False) -> Trajectory:
    """The expert's record of an episode whose belief keeps one set list (expert, oracle).

    Posterior rows over D_I are the expert's path when the surrogate kept one (ExpertState.path),
    else the initial belief repeated; `no_belief` zeroes the set probabilities (random)."""
    n_int, d = data.int_values.shape
    T = ep.trial_var.shape[0]
    sets = np.asarray(ep.posteriors.sets[0])
    trial_probs = np.asarray(ep.posteriors.probs, np.float32)  # [T+1, S]
    path = getattr(ep.surrogate_state, "path", None)
    head = np.asarray(path, np.float32)[:-1] if path is not None else np.repeat(trial_probs[:1], n_int, 0)
    set_probs = np.concatenate([head, trial_probs]).astype(np.float32)
    if no_belief:
        set_probs[:] = 0.0
    memb = np.asarray(S.membership(jnp.asarray(sets), d))
    buf = ep.buffer
    return Trajectory(
        rows_values=jnp.asarray(buf.values, jnp.float32),
        rows_mask=jnp.asarray(buf.mask, bool),
        rows_valid=jnp.asarray(buf.valid),
        marginals=jnp.asarray(set_probs @ memb, jnp.float32),
        set_probs=jnp.asarray(set_probs),
        sets=jnp.asarray(sets),
        n_init=jnp.asarray(n_int, jnp.int32),
        trial_var=jnp.asarray(ep.trial_var, jnp.int32).reshape(T),
        trial_value=jnp.asarray(ep.trial_value, jnp.float32).reshape(T),
        trial_y=jnp.asarray(ep.trial_y, jnp.float32).reshape(T),
        best_y=jnp.asarray(ep.best_y, jnp.float32).reshape(T),
        cost=jnp.arange(1, T + 1, dtype=jnp.float32),
    )


def index_graph(tree, g: int):
    """Graph g of a batched pytree (arrays only; static fields kept)."""
    return jax.tree.map(lambda a: a[g] if eqx.is_array(a) else a, tree)


def stack_trajectories(trajs: list[Trajectory]) -> Trajectory:
    """Stack per-graph trajectories with a leading graph axis (set counts padded with -1 / 0)."""
    S_max = max(t.sets.shape[0] for t in trajs)
    k_max = max(t.sets.shape[1] for t in trajs)

    def pad(t: Trajectory) -> Trajectory:
        s_pad, k_pad = S_max - t.sets.shape[0], k_max - t.sets.shape[1]
        sets = jnp.pad(t.sets, ((0, s_pad), (0, k_pad)), constant_values=-1)
        return eqx.tree_at(lambda x: (x.sets, x.set_probs), t, (sets, jnp.pad(t.set_probs, ((0, 0), (0, s_pad)))))

    return jax.tree.map(lambda *a: jnp.stack(a), *[pad(t) for t in trajs])


def run_many_sequential(expert, key, scms, datas: Dataset) -> Trajectory:
    """Run graph after graph in this process (keys split as in run_many)."""
    n = datas.obs.shape[0]
    keys = jax.random.split(key, n)
    return stack_trajectories([expert.run(keys[g], index_graph(scms, g), index_graph(datas, g)) for g in range(n)])
