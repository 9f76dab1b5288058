"""Losses against numpy, the acyclicity penalty on DAGs and cycles, the Loss interface."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.data.demos import Batch
from engine.spec.model import BceLoss, FocalLoss, KlExpertLoss, StatsModel
from engine.train import losses


def _batch(b=6, d=5, n=12, seed=0):
    rng = np.random.default_rng(seed)
    var_mask = np.ones((b, d), bool)
    var_mask[::2, -1] = False
    target = rng.integers(0, d - 1, b).astype(np.int32)
    adjacency = np.triu(rng.random((b, d, d)) < 0.4, 1) & var_mask[:, :, None] & var_mask[:, None, :]
    x = rng.normal(size=(b, n, d, 2)).astype(np.float32)
    x[..., 1] = rng.random((b, n, d)) < 0.1
    return Batch(
        x=jnp.asarray(x),
        row_mask=jnp.asarray(np.arange(n)[None, :] < n - np.arange(b)[:, None] % 3),
        var_mask=jnp.asarray(var_mask),
        target=jnp.asarray(target),
        parents=jnp.asarray(adjacency[np.arange(b), :, target]),
        expert=jnp.asarray(rng.random((b, d)).astype(np.float32)),
        adjacency=jnp.asarray(adjacency),
    )


def _np_mask(batch):
    vm = np.asarray(batch.var_mask)
    return vm & (np.arange(vm.shape[1])[None, :] != np.asarray(batch.target)[:, None])


def _sig(z):
    return 1 / (1 + np.exp(-z))


LOGITS = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32) * 2


def test_bce_with_pos_weight_matches_numpy():
    batch = _batch()
    y, p, m = np.asarray(batch.parents, float), _sig(LOGITS.astype(float)), _np_mask(batch)
    want = -(3.0 * y * np.log(p) + (1 - y) * np.log(1 - p))[m].mean()
    got = losses.bce(jnp.asarray(LOGITS), batch, 3.0)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


@pytest.mark.parametrize("gamma,alpha", [(2.0, None), (1.5, 0.25)])
def test_focal_matches_numpy(gamma, alpha):
    batch = _batch()
    y, p, m = np.asarray(batch.parents, float), _sig(LOGITS.astype(float)), _np_mask(batch)
    a1, a0 = (1.0, 1.0) if alpha is None else (alpha, 1 - alpha)
    per = -(a1 * y * (1 - p) ** gamma * np.log(p) + a0 * (1 - y) * p**gamma * np.log(1 - p))
    np.testing.assert_allclose(float(losses.focal(jnp.asarray(LOGITS), batch, gamma, alpha)), per[m].mean(), rtol=1e-5)


def test_focal_with_gamma_zero_is_bce():
    batch = _batch()
    np.testing.assert_allclose(
        float(losses.focal(jnp.asarray(LOGITS), batch, 0.0)), float(losses.bce(jnp.asarray(LOGITS), batch)), rtol=1e-6
    )


def test_kl_expert_matches_numpy_and_vanishes_at_the_expert():
    batch = _batch()
    p, q, m = np.asarray(batch.expert, float), _sig(LOGITS.astype(float)), _np_mask(batch)
    want = (p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q)))[m].mean()
    np.testing.assert_allclose(float(losses.kl_expert(jnp.asarray(LOGITS), batch)), want, rtol=1e-4)
    at_expert = jnp.log(batch.expert) - jnp.log1p(-batch.expert)
    assert abs(float(losses.kl_expert(at_expert, batch))) < 1e-5


def test_soft_ece_matches_numpy_and_tends_to_hard_binned_ece():
    rng = np.random.default_rng(2)
    p = rng.random(400)
    y = rng.random(400) < p**2  # overconfident-ish probabilities
    m = rng.random(400) < 0.9
    bins, width = 10, 0.05
    c = (np.arange(bins) + 0.5) / bins
    w = np.exp(-((p[:, None] - c) ** 2) / (2 * width**2))
    w = w / w.sum(1, keepdims=True) * m[:, None]
    conf, acc = (w * p[:, None]).sum(0) / w.sum(0), (w * y[:, None]).sum(0) / w.sum(0)
    want = (w.sum(0) * np.abs(conf - acc)).sum() / m.sum()
    got = losses.soft_ece(jnp.asarray(p, jnp.float32), jnp.asarray(y), jnp.asarray(m), bins)
    np.testing.assert_allclose(float(got), want, rtol=1e-4)
    # hard-binned ECE as the soft bins narrow
    idx = np.minimum((p * bins).astype(int), bins - 1)
    hard = sum(abs(p[m & (idx == b)].mean() - y[m & (idx == b)].mean()) * (m & (idx == b)).sum() for b in range(bins) if (m & (idx == b)).any())
    sharp = losses.soft_ece(jnp.asarray(p, jnp.float32), jnp.asarray(y), jnp.asarray(m), bins, width=1e-3)
    np.testing.assert_allclose(float(sharp), hard / m.sum(), atol=2e-3)
    # calibrated labels score near zero
    y_cal = rng.random(400) < p
    assert float(losses.soft_ece(jnp.asarray(p, jnp.float32), jnp.asarray(y_cal), jnp.ones(400, bool), bins)) < 0.08


def test_spectral_radius_is_zero_on_dags_and_positive_on_cycles():
    rng = np.random.default_rng(3)
    for d in (4, 8):
        dag = np.triu(rng.random((d, d)), 1) * (rng.random((d, d)) < 0.6)
        perm = rng.permutation(d)
        dag = dag[np.ix_(perm, perm)]
        assert abs(float(losses.spectral_radius(jnp.asarray(dag, jnp.float32)))) < 1e-6
        cyc = dag.copy()
        cyc[perm[-1], perm[0]] = 0.9  # close a path into a cycle
        cyc[perm[0], perm[-1]] = 0.9
        assert float(losses.spectral_radius(jnp.asarray(cyc, jnp.float32))) > 0.5
    # a positive matrix: the Perron root
    a = rng.random((6, 6))
    want = np.max(np.abs(np.linalg.eigvals(a)))
    np.testing.assert_allclose(float(losses.spectral_radius(jnp.asarray(a, jnp.float32), 30)), want, rtol=1e-4)
    # its gradient is that of the Perron eigenvalue: v u^T / v^T u
    w, vr = np.linalg.eig(a)
    wl, vl = np.linalg.eig(a.T)
    u, v = np.real(vr[:, np.argmax(np.abs(w))]), np.real(vl[:, np.argmax(np.abs(wl))])
    grad = jax.grad(lambda m: losses.spectral_radius(m, 30))(jnp.asarray(a, jnp.float32))
    np.testing.assert_allclose(np.asarray(grad), np.outer(v, u) / (v @ u), atol=1e-4)


class _Fixed(eqx.Module):
    """A stand-in model with given graph logits: parent head = graph column, known cell logits
    (for a batch of one; jax.vmap closes over the fields)."""

    g: jax.Array
    cells: jax.Array

    def graph(self, x, row_mask, var_mask):
        return self.g

    def __call__(self, x, row_mask, var_mask, target):
        return self.g[:, target]

    def intervened(self, x, row_mask, var_mask):
        return self.cells


def _numpy_bce(z, y):
    p = _sig(z)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_loss_object_sums_its_weighted_terms():
    batch = _batch(b=1, d=4, n=8, seed=4)
    rng = np.random.default_rng(5)
    g = rng.normal(size=(4, 4)).astype(np.float32)
    cells = rng.normal(size=(8, 4)).astype(np.float32)
    model = _Fixed(jnp.asarray(g), jnp.asarray(cells))
    spec = BceLoss(kind="bce", graph_weight=0.5, acyclicity_weight=2.0, intervention_weight=0.25, calibration_weight=0.1)
    total, aux = losses.build_loss(spec)(model, batch, jnp.float32(0.3))
    vm = np.asarray(batch.var_mask[0])
    pairs = vm[:, None] & vm[None, :] & ~np.eye(4, dtype=bool)
    adj = np.asarray(batch.adjacency[0], float)
    want_graph = _numpy_bce(g.astype(float), adj)[pairs].mean()
    rm = np.asarray(batch.row_mask[0])
    want_iv = _numpy_bce(cells.astype(float), np.asarray(batch.x[0, ..., 1]))[rm[:, None] & vm[None, :]].mean()
    probs = _sig(g.astype(float)) * pairs
    want_h = np.max(np.abs(np.linalg.eigvals(probs)))
    np.testing.assert_allclose(float(aux["graph"]), want_graph, rtol=1e-5)
    np.testing.assert_allclose(float(aux["intervention"]), want_iv, rtol=1e-5)
    np.testing.assert_allclose(float(aux["acyclicity"]), want_h, rtol=2e-2)
    want_total = aux["base"] + 0.5 * aux["graph"] + 2.0 * 0.3 * aux["acyclicity"] + 0.25 * aux["intervention"] + 0.1 * aux["calibration"]
    np.testing.assert_allclose(float(total), float(want_total), rtol=1e-6)
    np.testing.assert_allclose(float(aux["base"]), float(losses.bce(g[:, int(batch.target[0])][None], batch)), rtol=1e-6)


@pytest.mark.parametrize("spec", [BceLoss(kind="bce"), KlExpertLoss(kind="kl_expert"), FocalLoss(kind="focal")])
def test_default_loss_is_the_base_term_with_zero_acyclicity(spec):
    batch = _batch()
    model = StatsModel(kind="stats", dim=8, layers=1, heads=2).build(jax.random.PRNGKey(0))
    loss = losses.build_loss(spec)
    total, aux = eqx.filter_jit(loss)(model, batch, jnp.float32(5.0))
    logits = eqx.filter_jit(lambda m, b: jax.vmap(m)(b.x, b.row_mask, b.var_mask, b.target))(model, batch)
    np.testing.assert_allclose(float(total), float(losses.base_term(spec, logits, batch)), rtol=1e-5)
    assert float(aux["acyclicity"]) == 0.0 and set(aux) == {"base", "acyclicity"}
