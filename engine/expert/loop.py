"""The causal BO loop (reference Steps C-D) for PARENT_SCALE, the oracle and random baselines.

One graph at a time: the number of surviving parent sets decides the surrogate's shape, so the
trial loop is Python around jitted pieces (posterior update, surrogate tables, acquisition,
SCM sampling). Shapes are fixed per (d, spec) wherever possible, so episodes reuse the compiled
code: surviving sets are padded to `set_bucket` (at least SET_FLOOR), the per-variable slots to
that bucket (loops stop at a variable's last real slot), data rows to n_int + n_trials, and the
intervened variable is a traced index. The rows' per-set do-effects are computed once (D_I's at
the start, each trial's when it is made): the set GPs are fixed for the episode.
Graphs run in parallel as processes (`engine.expert.runner.run_graphs`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from engine.expert import sets as S
from engine.expert.posterior import Standardizer, init_state, make_features, posterior_path, update
from engine.expert.surrogate import acquire, do_effects, fit_do_tables, set_slots
from engine.expert.types import Trajectory
from engine.scm.types import Dataset


@eqx.filter_jit
def _outcome(scm, key, v, x, n: int):
    """Mean of Y over n draws under do(X_v = x), and one fresh full sample [d]."""
    d = scm.var_mask.shape[0]
    mask = jnp.broadcast_to(jnp.arange(d) == v, (n + 1, d))
    rows = scm.sample(key, mask, jnp.where(mask, x, 0.0))
    return jnp.mean(rows[:n, scm.target]), rows[n]


@partial(jax.jit, static_argnums=0)
def _init_posterior(spec, key, var_mask, target, data: Dataset):
    from engine.expert.parent_scale import compute_prior, config_of, rows_to_use

    k_prior, k_feat = jax.random.split(key)
    sets, log_prior = compute_prior(spec, k_prior, data.obs, var_mask, target)
    fmap = make_features(sets, spec.features, k_feat, spec.n_rff)
    use = rows_to_use(data.int_mask, data.int_row_mask, target)
    probs, state, std = posterior_path(fmap, data.obs, target, log_prior, data.int_values, use, config_of(spec))
    return sets, fmap, state, std, probs


@partial(jax.jit, static_argnums=0)
def _update_row(spec, fmap, std: Standardizer, state, row, use):
    from engine.expert.parent_scale import config_of

    x, y = std(row)
    return update(state, fmap(x), y, use, config_of(spec))


_fit_tables = fit_do_tables
_acquire = jax.jit(acquire, static_argnums=(12, 13, 14, 15))
_effects = jax.jit(do_effects)


@jax.jit
def _row_effects(tables, slots, row_var, xs):
    """Per-set do-effects at every data row: (mean [N, B], var [N, B]); unused rows read v = 0."""
    return jax.lax.map(lambda vx: do_effects(tables, slots, vx[0], vx[1]), (jnp.maximum(row_var, 0), xs))


def _bucket(n: int) -> int:
    return 1 << max(0, int(np.ceil(np.log2(max(n, 1)))))


SET_FLOOR = 64  # surviving sets are padded to at least this many (or to all candidate sets)


def set_bucket(n_alive: int, n_sets: int) -> int:
    """Padded set count: one compiled shape for every episode with at most SET_FLOOR survivors.

    The per-trial cost grows with the slots per variable, not with this padding."""
    return max(_bucket(n_alive), min(_bucket(n_sets), SET_FLOOR))


def run_episode(spec: Any, key, scm, data: Dataset, kind: str | None = None) -> Trajectory:
    """One graph: posterior over D_I (parent_scale), then `spec.n_trials` trials of `kind`."""
    kind = kind or spec.kind
    obs = jnp.asarray(data.obs)
    n_int, d = data.int_values.shape
    T = spec.n_trials
    target = int(scm.target)
    var_mask = np.asarray(scm.var_mask, bool)
    ok = var_mask & (np.arange(d) != target)
    obs_np = np.asarray(obs)
    lo = jnp.asarray(np.where(var_mask, obs_np.min(0), 0.0))
    hi = jnp.asarray(np.where(var_mask, obs_np.max(0), 0.0))
    k_post, k_loop = jax.random.split(key)

    # the posterior over D_I (parent_scale) or the baseline's fixed belief
    if kind == "parent_scale":
        sets, fmap, state, std, probs0 = _init_posterior(spec, k_post, scm.var_mask, scm.target, data)
        probs = [np.asarray(p) for p in probs0]
        sets_np = np.asarray(sets)
    else:
        pa = np.flatnonzero((np.asarray(scm.adjacency)[:, target] != 0) & ok)
        sets_np = np.full((1, max(1, len(pa))), -1, np.int32)
        if kind == "oracle":
            sets_np[0, : len(pa)] = pa
        probs = [np.ones(1, np.float32) for _ in range(n_int + 1)]

    # each variable's (x, y) pairs: D_I rows intervening on exactly that one variable, then trials
    iv, im, ivalid = (np.asarray(a) for a in (data.int_values, data.int_mask, data.int_row_mask))
    single = ivalid & (im.sum(1) == 1)
    row_var = np.full(n_int + T, -1, np.int32)
    row_var[:n_int] = np.where(single & ~im[:, target], np.argmax(im, 1), -1)
    xs = np.zeros(n_int + T, np.float32)
    ys = np.zeros(n_int + T, np.float32)
    xs[:n_int] = iv[np.arange(n_int), np.maximum(row_var[:n_int], 0)]
    ys[:n_int] = iv[:, target]

    if kind != "random" and T > 0:
        alive = np.flatnonzero(probs[-1] > 0)
        B = set_bucket(len(alive), len(sets_np))
        tables = _fit_tables(obs, scm.target, jnp.asarray(sets_np[alive]), spec.gp_fit_steps, n_pad=B)
        held = np.concatenate([sets_np[alive], np.full((B - len(alive), sets_np.shape[1]), -1, np.int32)])
        slots = tuple(jnp.asarray(a) for a in set_slots(held, d, B))  # room for v in every set: one shape per B
        memb_alive = np.asarray(S.membership(jnp.asarray(held), d)) > 0
        # the rows' per-set do-effects are fixed for the episode: D_I's now, each trial's when made
        row_mu, row_vr = (np.array(a) for a in _row_effects(tables, slots, jnp.asarray(row_var), jnp.asarray(xs)))
        n_rows = int(np.bincount(row_var[row_var >= 0], minlength=d).max(initial=0)) + T  # most rows of one variable

    y_obs = float(obs_np[:, target].mean())
    new_rows, new_masks = [], []
    t_var, t_val, t_y = [], [], []
    for t in range(T):
        kt = jax.random.fold_in(k_loop, t)
        if kind == "random":
            k_v, k_x = jax.random.split(jax.random.fold_in(kt, 1))
            v = int(jax.random.choice(k_v, jnp.asarray(np.flatnonzero(ok))))
            x = float(jax.random.uniform(k_x, minval=lo[v], maxval=hi[v]))
        else:
            w = np.zeros(B, np.float32)
            w[: len(alive)] = probs[-1][alive]
            explore = memb_alive[w > 0].any(0) & ok
            y_best = min([y_obs] + t_y)
            v, x, _ = _acquire(tables, slots, jnp.asarray(w), jnp.asarray(explore), jnp.asarray(xs), jnp.asarray(ys),
                               jnp.asarray(row_var), jnp.asarray(row_mu), jnp.asarray(row_vr), lo, hi,
                               jnp.asarray(y_best, jnp.float32), spec.n_anchors, spec.opt_steps, spec.gp_fit_steps, n_rows)
            v, x = int(v), float(x)
            mu_t, vr_t = _effects(tables, slots, jnp.asarray(v, jnp.int32), jnp.asarray(x, jnp.float32))
            row_mu[n_int + t], row_vr[n_int + t] = np.asarray(mu_t), np.asarray(vr_t)
        y_t, row = _outcome(scm, kt, jnp.asarray(v, jnp.int32), jnp.asarray(x, jnp.float32), spec.outcome_samples)
        y_t = float(y_t)
        mask = np.arange(d) == v
        if kind == "parent_scale":
            state = _update_row(spec, fmap, std, state, row, jnp.asarray(v != target))
            probs.append(np.asarray(state.probs))
        else:
            probs.append(probs[-1])
        new_rows.append(np.asarray(row))
        new_masks.append(mask)
        xs[n_int + t], ys[n_int + t], row_var[n_int + t] = x, y_t, v
        t_var.append(v), t_val.append(x), t_y.append(y_t)

    set_probs = np.stack(probs).astype(np.float32)
    if kind == "random":
        set_probs[:] = 0.0  # no belief about the parents
    memb = np.asarray(S.membership(jnp.asarray(sets_np), d))
    rows_values = np.concatenate([iv] + [r[None] for r in new_rows]) if T else iv
    rows_mask = np.concatenate([im] + [m[None] for m in new_masks]) if T else im
    rows_valid = np.concatenate([ivalid, np.ones(T, bool)])
    t_y_np = np.asarray(t_y, np.float32)
    return Trajectory(
        rows_values=jnp.asarray(rows_values, jnp.float32),
        rows_mask=jnp.asarray(rows_mask, bool),
        rows_valid=jnp.asarray(rows_valid),
        marginals=jnp.asarray(set_probs @ memb, jnp.float32),
        set_probs=jnp.asarray(set_probs),
        sets=jnp.asarray(sets_np),
        n_init=jnp.asarray(n_int, jnp.int32),
        trial_var=jnp.asarray(np.asarray(t_var, np.int32).reshape(T)),
        trial_value=jnp.asarray(np.asarray(t_val, np.float32).reshape(T)),
        trial_y=jnp.asarray(t_y_np.reshape(T)),
        best_y=jnp.asarray(np.minimum.accumulate(t_y_np) if T else t_y_np),
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
