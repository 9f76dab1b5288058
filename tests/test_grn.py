"""GRN dynamics: the shared-Hill production against its per-edge form, the Brownian increments of
brownian = "path", and simulated cells against an independent NumPy Euler-Maruyama."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.scm import simulate, simulate_with_diagnostics
from engine.scm.grn import GrnDynamics, IncrementPath, simulate_cells
from engine.spec.scm import ScmSpec


def _dynamics(d: int, hill: float, seed: int = 0) -> GrnDynamics:
    rng = np.random.default_rng(seed)
    G = np.triu(rng.random((d, d)) < 0.5, 1)
    k = rng.uniform(1, 5, (d, d)) * rng.choice([-1.0, 1.0], (d, d)) * G
    basal = np.where(G.sum(0) == 0, rng.uniform(1, 3, d), 0.0)
    decay = np.full(d, 0.8)
    start = (basal + 0.5 * np.abs(k).sum(0)) / decay
    half = np.broadcast_to(np.maximum(start, 1e-6)[:, None], (d, d))
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return GrnDynamics(f32(k), f32(np.full((d, d), float(hill))), f32(half), f32(basal),
                       f32(decay), f32(np.ones(d)), f32(start), 10.0, 0.05, "path", hill)


@pytest.mark.parametrize("hill", [1.0, 2.0, 3.0, 2.5])
def test_shared_hill_production_equals_the_per_edge_sum(hill):
    grn = _dynamics(7, hill)
    per_edge = dataclasses.replace(grn, shared_hill=0.0)  # [d, d] Hill terms, one per edge
    x = np.abs(np.random.default_rng(1).normal(2.0, 2.0, (50, 7))).astype(np.float32)
    x[:5] = 0.0  # silent genes: every activation is 0, every repression 1
    fast = jax.vmap(grn.production)(jnp.asarray(x))
    slow = jax.vmap(per_edge.production)(jnp.asarray(x))
    np.testing.assert_allclose(fast, slow, rtol=2e-5, atol=1e-5)


def test_increment_path_draws_independent_normal_increments():
    n = 40_000
    keys = jax.random.split(jax.random.key(1), n)
    draw = jax.jit(jax.vmap(lambda k, a, b: IncrementPath((3,), k).evaluate(a, b),
                            in_axes=(0, None, None)))
    w1, w2 = np.asarray(draw(keys, 0.1, 0.15)), np.asarray(draw(keys, 0.15, 0.2))
    np.testing.assert_array_equal(w1, np.asarray(draw(keys, 0.1, 0.15)))  # same step, same draw
    var, se = 0.05, 0.05 * np.sqrt(2 / (3 * n))
    assert abs(w1.var() - var) < 4 * se and abs(w2.var() - var) < 4 * se, (w1.var(), w2.var())
    assert abs(w1.mean()) < 4 * np.sqrt(var / (3 * n))
    kurtosis = (w1**4).mean() / w1.var() ** 2
    assert abs(kurtosis - 3.0) < 0.1, kurtosis  # normal tails
    for a, b in [(w1[:, 0], w2[:, 0]), (w1[:, 0], w1[:, 1]), (w1[:-1, 2], w1[1:, 2])]:
        assert abs(np.corrcoef(a, b)[0, 1]) < 4 / np.sqrt(n)  # steps, genes and cells independent


def _numpy_cells(grn: GrnDynamics, n: int, seed: int) -> np.ndarray:
    """Euler-Maruyama of the same SDE, written independently: per-edge Hill terms, NumPy noise."""
    k, hill, half = (np.asarray(a, np.float64) for a in (grn.k, grn.hill, grn.half))
    basal, decay, noise = (np.asarray(a, np.float64) for a in (grn.basal, grn.decay, grn.noise))
    rng, dt = np.random.default_rng(seed), grn.t_end / int(np.ceil(grn.t_end / grn.dt))
    x = np.tile(np.asarray(grn.start, np.float64), (n, 1))
    for _ in range(int(np.ceil(grn.t_end / grn.dt))):
        xc = np.maximum(x, 0.0)
        xn, hn = xc[:, :, None] ** hill, half**hill
        act = xn / (hn + xn + 1e-12)
        P = basal + (np.abs(k) * np.where(k > 0, act, 1.0 - act)).sum(1)
        x = x + (P - decay * xc) * dt + noise * np.sqrt((P + decay * xc) * dt) * rng.normal(size=x.shape)
    return np.maximum(x, 0.0)


def _valid_cells(brownian: str):
    """Simulate 4 gene networks with knockouts; check what every GRN batch must satisfy; return
    the SCMs and the key."""
    spec = ScmSpec.model_validate({
        "graphs": {"kind": "erdos_renyi", "edges_per_node": 1.5}, "n_nodes": 6,
        "mechanism": {"kind": "grn", "brownian": brownian},
        "interventions": {"kind": "hard", "value": 0.0, "rows_per_node": 10},
        "n_obs": 400,
    })
    key = jax.random.key(3)
    scm, data, diag = simulate_with_diagnostics(spec, key, 4)
    assert not np.asarray(diag.solver_failed).any() and int(diag.nonfinite.sum()) == 0
    assert (np.asarray(data.obs) >= 0).all() and (np.asarray(data.int_values) >= 0).all()
    iv, im = np.asarray(data.int_values), np.asarray(data.int_mask)
    assert im.any() and (iv[im] == 0).all()  # knocked-out genes sit at exactly zero
    assert (np.asarray(data.obs).mean(1)[np.asarray(scm.var_mask)] > 0).all()
    np.testing.assert_array_equal(data.obs, simulate(spec, key, 4)[1].obs)  # same seed, cells
    s = jax.tree.map(lambda a: a[0], scm)
    assert int(np.asarray(s.adjacency).sum()) > 0
    return s


def _cells(s, key, n: int = 4000, t_end: float | None = None) -> np.ndarray:
    if t_end is not None:
        s = dataclasses.replace(s, grn=dataclasses.replace(s.grn, t_end=t_end))
    z = jnp.zeros((n, s.d), bool)
    return np.asarray(jax.jit(simulate_cells)(s, key, z, jnp.zeros((n, s.d)))[0], np.float64)


def _same_means(a: np.ndarray, b: np.ndarray) -> bool:
    se = np.sqrt(a.var(0) / len(a) + b.var(0) / len(b)) + 1e-6
    return bool((np.abs(a.mean(0) - b.mean(0)) < 4.5 * se).all())


def test_grn_path_cells_match_an_independent_euler_maruyama():
    s = _valid_cells("path")
    a, b = _cells(s, jax.random.key(4)), _numpy_cells(s.grn, 4000, seed=5)
    assert _same_means(a, b), (a.mean(0), b.mean(0))
    np.testing.assert_allclose(a.std(0), b.std(0), rtol=0.1)


@pytest.mark.slow
def test_grn_virtual_tree_cells_reach_their_steady_state():
    s = _valid_cells("virtual_tree")
    a, b = _cells(s, jax.random.key(4), 2000), _cells(s, jax.random.key(5), 2000, t_end=20.0)
    assert _same_means(a, b), (a.mean(0), b.mean(0))  # twice as long moves nothing
