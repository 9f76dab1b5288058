"""Acquisitions: how the next intervention is chosen (`engine.cbo.strategy.Acquisition`).

- `ExpectedImprovement(spec)`: PARENT_SCALE's acquisition (reference Step D). At init the set
  GPs of the belief's sets with positive weight are fitted on D_O and tabulated
  (`engine.expert.surrogate.fit_do_tables`), padded to `set_bucket` sets so episodes share one
  compiled shape, with every variable's (set, slot) pairs padded to that bucket too
  (`set_slots`). Each interventional row's per-set do-effects are computed once (D_I's at init,
  each trial's when observed): the set GPs are fixed for the episode. Per trial, expected
  improvement under the belief's mixture of causal GPs is maximised per variable (`acquire`).
- `RandomAcquisition()`: a uniform candidate variable at a uniform value of [low, high] (pure
  JAX, stateless).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from engine.cbo.buffer import Buffer
from engine.cbo.posterior import ParentSetPosterior
from engine.cbo.strategy import Problem
from engine.expert import sets as S
from engine.expert.surrogate import DoTables, acquire, do_effects, fit_do_tables, set_slots

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


@jax.jit
def _held_weights(sets, log_w, held_memb, held_real, w0, candidates):
    """The belief's weights on the tabulated sets (w [B]) and the variables to explore (those
    in a set of positive weight; every candidate when that is none). A set of the belief that
    was not tabulated at init loses its mass; the rest is renormalised (the init weights when
    nothing is left). A belief over the init's sets (the expert's: pruning is for good) keeps
    its weights exactly."""
    memb = S.membership(sets, held_memb.shape[1]) > 0  # [S, d]
    same = jnp.all(memb[:, None, :] == held_memb[None], -1) & held_real[None]  # [S, B]
    w = jnp.exp(log_w) @ same.astype(jnp.float32)
    total = jnp.sum(w)
    w = jnp.where(total > 0, jnp.where(jnp.abs(total - 1.0) > 1e-5, w / jnp.maximum(total, 1e-30), w), w0)
    explore = jnp.any(held_memb & (w > 0)[:, None], 0) & candidates
    # a belief in the empty set alone names no variable: explore every candidate (the do-effects
    # are flat, the causal GPs still learn) rather than none (acquire's argmax would return 0)
    return w, jnp.where(jnp.any(explore), explore, candidates)


class EIState(eqx.Module):
    """Expected improvement's episode state: the set GPs' tables (fixed for the episode) and the
    interventional rows so far as host arrays: per row its variable (-1: not a single-variable
    intervention on a candidate), value, outcome and per-set do-effects."""

    tables: DoTables
    slots: tuple
    held_memb: Bool[Array, "B d"]
    held_real: Bool[Array, " B"]
    w0: Float[Array, " B"]
    candidates: Bool[Array, " d"]
    low: Float[Array, " d"]
    high: Float[Array, " d"]
    row_var: Any  # np [N] int32
    xs: Any  # np [N] float32
    ys: Any  # np [N] float32
    row_mu: Any  # np [N, B]
    row_vr: Any  # np [N, B]
    n: int = eqx.field(static=True)  # rows written
    y_best: float = eqx.field(static=True)  # lowest outcome so far (observational mean first)
    n_rows: int = eqx.field(static=True)  # most rows one variable can have (static for acquire)


class ExpectedImprovement:
    """PARENT_SCALE's expected improvement under the belief's mixture of set GPs (a spec with
    n_anchors, opt_steps, gp_fit_steps: `engine.spec.expert.OptimizationSettings`)."""

    def __init__(self, spec: Any):
        self.spec = spec

    def init(self, key, problem: Problem, buffer: Buffer, posterior: ParentSetPosterior) -> EIState:
        d = problem.var_mask.shape[0]
        target = int(problem.target)
        candidates = np.asarray(problem.candidates)
        c, N = int(buffer.count), buffer.capacity
        room = N - c
        probs, sets_np = np.asarray(posterior.probs), np.asarray(posterior.sets)
        alive = np.flatnonzero(probs > 0)
        B = set_bucket(len(alive), len(sets_np))
        tables = fit_do_tables(buffer.obs, problem.target, jnp.asarray(sets_np[alive]), self.spec.gp_fit_steps, n_pad=B)
        held = np.concatenate([sets_np[alive], np.full((B - len(alive), sets_np.shape[1]), -1, np.int32)])
        slots = tuple(jnp.asarray(a) for a in set_slots(held, d, B))  # room for v in every set: one shape per B
        held_memb = np.asarray(S.membership(jnp.asarray(held), d)) > 0
        w0 = np.zeros(B, np.float32)
        w0[: len(alive)] = probs[alive]

        # each variable's (x, y) pairs: D_I rows intervening on exactly that one variable, then trials
        iv, im, ivalid = (np.asarray(a)[:c] for a in (buffer.values, buffer.mask, buffer.valid))
        single = ivalid & (im.sum(1) == 1)
        row_var = np.full(N, -1, np.int32)
        row_var[:c] = np.where(single & ~im[:, target], np.argmax(im, 1), -1)
        xs = np.zeros(N, np.float32)
        ys = np.zeros(N, np.float32)
        xs[:c] = iv[np.arange(c), np.maximum(row_var[:c], 0)]
        ys[:c] = iv[:, target]
        row_mu, row_vr = (np.array(a) for a in _row_effects(tables, slots, jnp.asarray(row_var), jnp.asarray(xs)))
        n_rows = int(np.bincount(row_var[row_var >= 0], minlength=d).max(initial=0)) + room
        y_obs = float(np.asarray(buffer.obs)[:, target].mean())
        return EIState(tables, slots, jnp.asarray(held_memb), jnp.asarray(np.arange(B) < len(alive)), jnp.asarray(w0),
                       jnp.asarray(candidates), problem.low, problem.high, row_var, xs, ys, row_mu, row_vr,
                       c, y_obs, n_rows)

    def select(self, state: EIState, key, buffer: Buffer, posterior: ParentSetPosterior):
        w, explore = _held_weights(posterior.sets, posterior.log_w, state.held_memb, state.held_real, state.w0,
                                   state.candidates)
        sp = self.spec
        v, x, _ = _acquire(state.tables, state.slots, w, explore, jnp.asarray(state.xs), jnp.asarray(state.ys),
                           jnp.asarray(state.row_var), jnp.asarray(state.row_mu), jnp.asarray(state.row_vr),
                           state.low, state.high, jnp.asarray(state.y_best, jnp.float32), sp.n_anchors, sp.opt_steps,
                           sp.gp_fit_steps, state.n_rows)
        return v, x, state

    def observe(self, state: EIState, var, value, y, row) -> EIState:
        v, x, i = int(var), float(value), state.n
        if i >= len(state.xs):  # no room left: nothing more to remember
            return state
        mu, vr = _effects(state.tables, state.slots, jnp.asarray(v, jnp.int32), jnp.asarray(x, jnp.float32))
        row_mu, row_vr = state.row_mu.copy(), state.row_vr.copy()
        row_mu[i], row_vr[i] = np.asarray(mu), np.asarray(vr)
        xs, ys, row_var = state.xs.copy(), state.ys.copy(), state.row_var.copy()
        xs[i], ys[i] = x, float(y)
        row_var[i] = v if bool(state.candidates[v]) else -1
        return EIState(**{**_fields(state), "row_mu": row_mu, "row_vr": row_vr, "xs": xs, "ys": ys,
                          "row_var": row_var, "n": i + 1, "y_best": min(state.y_best, float(y))})


def _fields(m: eqx.Module) -> dict:
    return {f: getattr(m, f) for f in m.__dataclass_fields__}


@jax.jit
def _random_select(key, candidates, low, high):
    k_v, k_x = jax.random.split(key)
    listed = jnp.nonzero(candidates, size=candidates.shape[0])[0]  # the candidates first, ascending
    v = listed[jax.random.randint(k_v, (), 0, jnp.sum(candidates))].astype(jnp.int32)
    return v, jax.random.uniform(k_x, minval=low[v], maxval=high[v])


class RandomState(eqx.Module):
    candidates: Bool[Array, " d"]
    low: Float[Array, " d"]
    high: Float[Array, " d"]


class RandomAcquisition:
    """A uniform candidate variable (real, not the target), a uniform value in its [low, high]."""

    def init(self, key, problem: Problem, buffer: Buffer, posterior: ParentSetPosterior) -> RandomState:
        return RandomState(problem.candidates, problem.low, problem.high)

    def select(self, state: RandomState, key, buffer: Buffer, posterior: ParentSetPosterior):
        v, x = _random_select(key, state.candidates, state.low, state.high)
        return v, x, state

    def observe(self, state: RandomState, var, value, y, row) -> RandomState:
        return state
