"""One causal-BO episode, knowing only the `Surrogate` and `Acquisition` interfaces.

    buffer = D_O + D_I (+ room for the trials);  s = surrogate.init;  a = acquisition.init
    per trial t:  belief = surrogate.posterior(s)
                  (v, x, a) = acquisition.select(a, key_t, buffer, belief)
                  y, row = outcome of do(X_v = x) in the SCM   (mean of Y + one fresh full row)
                  buffer = buffer.add(row);  a = acquisition.observe(...);  s = surrogate.update(s, buffer)

The loop is Python around the strategies' (jitted) pieces: a strategy may keep host-side caches
(the GP tables of expected improvement) and the per-trial wall time is measured on the host.
Keys: the surrogate's init gets split(key)[0], the acquisition's fold_in(split(key)[0], 1); trial
t's outcome draws with kt = fold_in(split(key)[1], t) and its selection gets fold_in(kt, 1), so a
trial's randomness depends only on (key, t). A batch of episodes (`run_episodes`) gives episode g
the key fold_in(key, g): results do not depend on which episodes ran before or where.
"""

from __future__ import annotations

import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from engine.cbo.buffer import Buffer
from engine.cbo.posterior import ParentSetPosterior
from engine.cbo.strategy import Acquisition, Problem, Surrogate
from engine.scm.types import Dataset


class Episode(eqx.Module):
    """What one episode did (T trials, d variables).

    trial_var:       [T]       intervened variable per trial
    trial_value:     [T]       its value (the simulator's standardised units)
    trial_y:         [T]       outcome: mean of the target over `outcome_samples` draws
    best_y:          [T]       lowest trial_y so far
    marginals:       [T+1, d]  the belief's parent marginals before each trial and after the last
    entropy:         [T+1]     the belief's entropy (nats), same rows
    trial_seconds:   [T]       host wall time of each trial (select, outcome, observe, update)
    init_seconds:    []        host wall time before the first trial (buffer, both inits)
    posteriors:      the beliefs of `marginals`' rows, stacked (leaves with a leading T+1 axis)
    buffer:          the final buffer (D_I's rows, then one fresh row per trial)
    surrogate_state: the surrogate's final state (e.g. the expert's posterior path over D_I)
    """

    trial_var: Int[Array, " T"]
    trial_value: Float[Array, " T"]
    trial_y: Float[Array, " T"]
    best_y: Float[Array, " T"]
    marginals: Float[Array, "T1 d"]
    entropy: Float[Array, " T1"]
    trial_seconds: Float[Array, " T"]
    init_seconds: Float[Array, ""]
    posteriors: ParentSetPosterior
    buffer: Buffer
    surrogate_state: Any


@eqx.filter_jit
def outcome(scm, key, v, x, n: int):
    """Mean of the target over n draws under do(X_v = x), and one fresh full sample [d]."""
    d = scm.var_mask.shape[0]
    mask = jnp.broadcast_to(jnp.arange(d) == v, (n + 1, d))
    rows = scm.sample(key, mask, jnp.where(mask, x, 0.0))
    return jnp.mean(rows[:n, scm.target]), rows[n]


_from_dataset = jax.jit(Buffer.from_dataset, static_argnums=1)


@jax.jit
def _add_trial(buffer: Buffer, row, v) -> Buffer:
    return buffer.add(row, jnp.arange(row.shape[0]) == v)


@jax.jit
def _summaries(posts: ParentSetPosterior):
    return jax.vmap(lambda p: p.marginals())(posts), jax.vmap(lambda p: p.entropy())(posts)


def problem_of(scm, data: Dataset, n_trials: int) -> Problem:
    """The episode's Problem: the SCM's target and real variables, each variable's observational
    [min, max] as its allowed values (0 for padding), and the true parents (for the oracle).
    Pure jnp: GRPO's jitted environment builds its episodes with it too."""
    real = jnp.asarray(scm.var_mask, bool)
    target = jnp.asarray(scm.target, jnp.int32)
    d = real.shape[0]
    parents = (jnp.asarray(scm.adjacency)[:, target] != 0) & real & (jnp.arange(d) != target)
    obs = jnp.asarray(data.obs)
    return Problem(target=target, var_mask=real, low=jnp.where(real, obs.min(0), 0.0),
                   high=jnp.where(real, obs.max(0), 0.0), n_trials=n_trials, parents=parents)


def run_episode(
    key, scm, data: Dataset, surrogate: Surrogate, acquisition: Acquisition, n_trials: int,
    outcome_samples: int,
) -> Episode:
    """One episode of `n_trials` trials on one graph (arrays padded to d; see the module doc for
    the keys). With n_trials = 0 the acquisition is never initialised."""
    t0 = time.perf_counter()
    problem = problem_of(scm, data, n_trials)
    buffer = _from_dataset(data, n_trials)
    k_init, k_loop = jax.random.split(key)
    s_state = surrogate.init(k_init, problem, buffer)
    post = surrogate.posterior(s_state)
    a_state = acquisition.init(jax.random.fold_in(k_init, 1), problem, buffer, post) if n_trials else None
    posts = [post]
    jax.block_until_ready(post)
    init_seconds = time.perf_counter() - t0

    t_var, t_val, t_y, seconds = [], [], [], []
    for t in range(n_trials):
        t0 = time.perf_counter()
        kt = jax.random.fold_in(k_loop, t)
        v, x, a_state = acquisition.select(a_state, jax.random.fold_in(kt, 1), buffer, post)
        v, x = jnp.asarray(v, jnp.int32), jnp.asarray(x, jnp.float32)
        y, row = outcome(scm, kt, v, x, outcome_samples)
        buffer = _add_trial(buffer, row, v)
        a_state = acquisition.observe(a_state, v, x, y, row)
        s_state = surrogate.update(s_state, buffer)
        post = surrogate.posterior(s_state)
        posts.append(post)
        jax.block_until_ready((y, post))
        seconds.append(time.perf_counter() - t0)
        t_var.append(np.asarray(v)), t_val.append(np.asarray(x)), t_y.append(np.asarray(y))

    stacked = jax.tree.map(lambda *a: jnp.stack(a), *posts)
    marginals, entropy = _summaries(stacked)
    trial_y = np.asarray(t_y, np.float32).reshape(n_trials)
    return Episode(
        trial_var=jnp.asarray(np.asarray(t_var, np.int32).reshape(n_trials)),
        trial_value=jnp.asarray(np.asarray(t_val, np.float32).reshape(n_trials)),
        trial_y=jnp.asarray(trial_y),
        best_y=jnp.asarray(np.minimum.accumulate(trial_y)),
        marginals=marginals,
        entropy=entropy,
        trial_seconds=jnp.asarray(seconds, jnp.float32).reshape(n_trials),
        init_seconds=jnp.asarray(init_seconds, jnp.float32),
        posteriors=stacked,
        buffer=buffer,
        surrogate_state=s_state,
    )


def episode_key(key, g: int):
    """Episode g's key: a function of the episode's index alone."""
    return jax.random.fold_in(key, g)


def run_episodes(
    key, scms, datas: Dataset, surrogate: Surrogate, acquisition: Acquisition, n_trials: int,
    outcome_samples: int,
) -> list[Episode]:
    """One episode per graph of a batch (leading graph axis on scms and datas), graph g with
    `episode_key(key, g)`."""
    n = datas.obs.shape[0]
    pick = lambda tree, g: jax.tree.map(lambda a: a[g] if eqx.is_array(a) else a, tree)  # noqa: E731
    return [run_episode(episode_key(key, g), pick(scms, g), pick(datas, g), surrogate, acquisition, n_trials,
                        outcome_samples) for g in range(n)]
