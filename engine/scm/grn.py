"""Gene-regulatory dynamics: a chemical-Langevin SDE with Hill regulation (SERGIO-like), by diffrax.

Gene j's expression follows
    dx_j = (P_j(x) - decay_j x_j) dt + noise_j sqrt(P_j(x) + decay_j x_j) dW_j
(the production and decay Langevin terms sqrt(P) dW - sqrt(decay x) dW' combined into one Brownian
motion with the same law). P_j = basal_j for master regulators; for a regulated gene it is the sum
over parents i of |k_ij| Hill(x_i) with Hill(x) = x^n / (h^n + x^n) (activation, k_ij > 0) or
h^n / (h^n + x^n) (repression, k_ij < 0), h_ij the parent's mean-field steady state (where either
Hill term is 1/2, so that state is mf_j = (basal_j + sum_i |k_ij| / 2) / decay_j in closed form).
Each cell is an independent path from the mean-field state to t_end; an intervention clamps the
gene at its value (knockout: 0) by zeroing its drift and diffusion. With technical noise
(engine.scm.technical) the cells are then measured: every gene, clamped ones too, is scaled,
dropped out and counted as a sequencing protocol would.
"""

from __future__ import annotations

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Bool, Float

from engine.scm import fastrand
from engine.scm.params import draw
from engine.scm.technical import TechnicalNoise, build_technical, log_cpm, log_cpm_reference, measure


class GrnDynamics(eqx.Module):
    """Parameters of one gene network, padded to d genes (padded genes stay at 0)."""

    k: Float[Array, "d d"]  # signed interaction strengths on edges (0 elsewhere)
    hill: Float[Array, "d d"]  # Hill coefficients n_ij
    half: Float[Array, "d d"]  # half-response h_ij = mean-field state of regulator i
    basal: Float[Array, " d"]  # production of master regulators (0 for regulated genes)
    decay: Float[Array, " d"]
    noise: Float[Array, " d"]
    start: Float[Array, " d"]  # mean-field steady state: every cell's initial state
    t_end: float = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    brownian: str = eqx.field(static=True, default="virtual_tree")
    shared_hill: float = eqx.field(static=True, default=0.0)  # > 0: every edge's coefficient
    technical: TechnicalNoise | None = None  # how the cells are measured (None: as they are)

    def production(self, x: Float[Array, " d"]) -> Float[Array, " d"]:
        x = jnp.maximum(x, 0.0)
        if n := self.shared_hill:
            # One Hill coefficient for every edge: a regulator's response is the same towards
            # all its targets (h_ij is the regulator's state), so it is computed once per gene,
            # and sum_i |k_ij| (act_i or 1 - act_i) = act @ k + sum_i max(-k_ij, 0): a [d]
            # vector and a matrix product instead of [d, d] Hill terms.
            h = self.half[:, 0]
            if float(n).is_integer():  # multiplications, not exp(n log x)
                xn, hn = jax.lax.integer_pow(x, int(n)), jax.lax.integer_pow(h, int(n))
            else:
                xn, hn = jnp.power(x, n), jnp.power(h, n)
            act = xn / (hn + xn + 1e-12)
            return self.basal + jnp.maximum(-self.k, 0.0).sum(0) + act @ self.k
        xn = jnp.power(x[:, None], self.hill)  # [i, j]: per-edge coefficients
        hn = jnp.power(self.half, self.hill)
        act = xn / (hn + xn + 1e-12)
        hill = jnp.where(self.k > 0, act, 1.0 - act)
        return self.basal + (jnp.abs(self.k) * hill).sum(0)


def build_grn(spec, key, G: Float[Array, "d d"], order, var_mask: Bool[Array, " d"]) -> GrnDynamics:
    d = G.shape[0]
    ks = fastrand.split(key, 5)
    k = draw(spec.k, ks[0], (d, d)) * G
    hill = jnp.where(G > 0, draw(spec.hill, ks[1], (d, d)), 1.0)
    master = var_mask & (G.sum(0) == 0)
    basal = jnp.where(master, draw(spec.basal, ks[2], (d,)), 0.0)
    decay = jnp.where(var_mask, draw(spec.decay, ks[3], (d,)), 1.0)
    noise = jnp.where(var_mask, draw(spec.noise, ks[4], (d,)), 0.0)
    start = jnp.where(var_mask, (basal + 0.5 * jnp.abs(k).sum(0)) / decay, 0.0)
    half = jnp.broadcast_to(jnp.maximum(start, 1e-6)[:, None], (d, d))
    shared = float(spec.hill) if isinstance(spec.hill, (int, float)) else 0.0
    tech = spec.technical_noise
    if tech is not None:  # its own key: the dynamics draw what they drew without it
        tech = build_technical(tech, fastrand.fold_in(key, 0), var_mask)
    return GrnDynamics(k, hill, half, basal, decay, noise, start, spec.t_end, spec.dt,
                       spec.brownian, shared, tech)


class IncrementPath(diffrax.AbstractBrownianPath):
    """Brownian motion for fixed-step solves, as diffrax.UnsafeBrownianPath: each interval's
    increment is a fresh normal with variance t1 - t0, keyed by the interval's endpoints (same
    key and step, same increment), drawn with fastrand instead of threefry (on CPU, threefry's
    two fold_ins and one normal per step and cell cost more than the cell's dynamics)."""

    shape: tuple[int, ...] = eqx.field(static=True)
    key: jax.Array
    levy_area: type = eqx.field(static=True, default=diffrax.BrownianIncrement)

    @property
    def t0(self):
        return -jnp.inf

    @property
    def t1(self):
        return jnp.inf

    def evaluate(self, t0, t1=None, left: bool = True, use_levy: bool = False):
        del left
        if t1 is None:
            t0, t1 = 0.0, t0
        t0, t1 = jnp.asarray(t0, jnp.float32), jnp.asarray(t1, jnp.float32)
        key = self.key
        for t in (t0, t1):  # the interval's float bits pick the draw (fixed steps repeat them)
            key = fastrand.fold_in(key, jax.lax.bitcast_convert_type(t, jnp.uint32))
        w = fastrand.normal(key, self.shape) * jnp.sqrt(t1 - t0)
        return diffrax.BrownianIncrement(dt=t1 - t0, W=w) if use_levy else w


def _cell(grn: GrnDynamics, key, clamp: Bool[Array, " d"], value: Float[Array, " d"],
          frozen: Bool[Array, " d"]):
    """One cell: (state at t_end [d], solver result is successful [])."""
    free = ~(clamp | frozen)

    def drift(t, y, args):
        x = jnp.maximum(y, 0.0)
        return jnp.where(free, grn.production(x) - grn.decay * x, 0.0)

    def diffusion(t, y, args):
        x = jnp.maximum(y, 0.0)
        g = grn.noise * jnp.sqrt(grn.production(x) + grn.decay * x)
        return lx.DiagonalLinearOperator(jnp.where(free, g, 0.0))

    d = value.shape[0]
    if grn.brownian == "virtual_tree":
        # The tree's own jax.random calls run on fastrand's kernels (a key of fastrand.IMPL with
        # the same words): 2.4-3.1x faster on CPU than threefry, the same construction.
        key = jax.random.wrap_key_data(jax.random.key_data(key), impl=fastrand.IMPL)
        bm = diffrax.VirtualBrownianTree(0.0, grn.t_end, tol=grn.dt / 2, shape=(d,), key=key)
    else:  # exact for this fixed-step solve: each step draws its own increment from the key
        bm = IncrementPath((d,), key)
    terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, bm))
    y0 = jnp.where(clamp, value, grn.start)
    y0 = jnp.where(frozen, 0.0, y0)
    n_steps = int(math.ceil(grn.t_end / grn.dt))
    sol = diffrax.diffeqsolve(
        terms, diffrax.Euler(), 0.0, grn.t_end, grn.t_end / n_steps, y0,
        saveat=diffrax.SaveAt(t1=True), max_steps=n_steps + 1, throw=False,
        adjoint=diffrax.ForwardMode(),  # sampling only: no reverse pass to checkpoint for
    )
    return sol.ys[-1], sol.result == diffrax.RESULTS.successful


def _measured(scm, key, do_mask: Bool[Array, "n d"], do_values: Float[Array, "n d"]):
    """Cells of `scm.grn` under row-wise clamps, before the output transform: ([n, d] expression,
    or what the technical noise makes of it; the dropout midpoint used (NaN without one);
    (fraction of values clipped at 0, any solve failed)). Non-finite states count as failed."""
    grn: GrnDynamics = scm.grn
    n, d = do_mask.shape
    raw = do_values if scm.transform == "log_cpm" else do_values * scm.scale + scm.loc
    raw = jnp.maximum(raw, 0.0)  # expression is non-negative
    keys = fastrand.split(key, n)
    y, ok = jax.vmap(_cell, in_axes=(None, 0, 0, 0, None))(grn, keys, do_mask, raw, ~scm.var_mask)
    real = scm.var_mask[None, :]
    finite = jnp.isfinite(y)
    clipped = ((y < 0) & finite & real).sum() / jnp.maximum(n * scm.var_mask.sum(), 1)
    failed = ~ok.all() | ~(finite | ~real).all()
    x = jnp.maximum(y, 0.0)
    mid = jnp.float32(jnp.nan)
    if grn.technical is not None:
        x, mid = measure(grn.technical, fastrand.fold_in(key, 0), x, scm.var_mask)
    return x, mid, (clipped.astype(jnp.float32), failed)


def _output(scm, x: Float[Array, "n d"]) -> Float[Array, "n d"]:
    if scm.transform == "log_cpm":
        return log_cpm(x, scm.loc[0], scm.scale[0], scm.var_mask)
    return jnp.where(scm.var_mask[None, :], (x - scm.loc) / scm.scale, 0.0)


def simulate_cells(scm, key, do_mask: Bool[Array, "n d"], do_values: Float[Array, "n d"]):
    """Cells of `scm.grn` under row-wise clamps: ([n, d] in scm's output units, (fraction of
    values clipped at 0, any solve failed)). Non-finite states count as failed solves."""
    x, _, health = _measured(scm, key, do_mask, do_values)
    return _output(scm, x), health


def observe_cells(scm, key, n: int):
    """`n` observational cells, and what they fix in `scm` for the cells measured after them:
    the protocol's dropout midpoint and, with transform "log_cpm", its reference (shift and
    spread in loc and scale). Returns (scm, [n, d] cells in its output units, health)."""
    d = scm.d
    x, mid, health = _measured(scm, key, jnp.zeros((n, d), bool), jnp.zeros((n, d)))
    if scm.grn.technical is not None:
        scm = eqx.tree_at(lambda s: s.grn.technical.dropout_mid, scm, mid)
    if scm.transform == "log_cpm":
        shift, spread = log_cpm_reference(x, scm.var_mask)
        scm = eqx.tree_at(lambda s: (s.loc, s.scale), scm, (jnp.full(d, shift), jnp.full(d, spread)))
    return scm, _output(scm, x), health
