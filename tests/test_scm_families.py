"""Graph families, mechanisms, noises, soft interventions, bnlearn files and standardisation
(GRN dynamics: test_grn.py). Each check is statistical or exact; most compile a new simulator
(slow on CPU)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.scm import simulate, simulate_with_diagnostics
from engine.scm.graphs import random_graph
from engine.spec.scm import ScmSpec

ECOLI = Path("/work/shared/data/bnlearn/ecoli70_lgbn.npz")


def graphs(kind: dict, k: int, n: int, seed: int = 0) -> np.ndarray:
    spec = ScmSpec.model_validate({"graphs": kind, "n_nodes": k}).graphs[0]
    keys = jax.random.split(jax.random.key(seed), n)
    G, _ = jax.jit(jax.vmap(lambda key: random_graph(spec, key, k, k)))(keys)
    return np.asarray(G)


def one(tree, g: int):
    return jax.tree.map(lambda a: a[g], tree)


@pytest.mark.slow
def test_scale_free_in_degree_tail_heavier_than_erdos_renyi():
    k, m, n = 40, 2, 200
    edges = m * (k - 1) - m * (m - 1) // 2  # preferential attachment's exact edge count
    sf = graphs({"kind": "scale_free", "m": m}, k, n)
    er = graphs({"kind": "erdos_renyi", "p": edges / (k * (k - 1) / 2)}, k, n, seed=1)
    assert (sf.sum((1, 2)) == edges).all()
    assert abs(er.sum() / n - edges) < 3 * np.sqrt(edges / n)  # same density
    din_sf, din_er = sf.sum(1).ravel(), er.sum(1).ravel()
    assert din_sf.var() > 2 * din_er.var()
    # Tail: P(in-degree >= 10) ~ 4% vs ~0.04% for ER at this density.
    assert (din_sf >= 10).mean() > 20 * max((din_er >= 10).mean(), 1e-4)
    assert din_sf.max() > 1.5 * din_er.max()
    # The transpose has the heavy tail on the out-degree and at most m parents per node.
    sft = graphs({"kind": "scale_free_transpose", "m": m}, k, n, seed=2)
    assert sft.sum(1).max() <= m and sft.sum(2).ravel().var() > 2 * din_er.var()


@pytest.mark.slow
def test_fixed_shapes_and_small_worlds():
    k, n = 9, 50
    for G in graphs({"kind": "chain"}, k, n):
        assert G.sum() == k - 1 and G.sum(0).max() == 1 and G.sum(1).max() == 1
    for G in graphs({"kind": "fork"}, k, n):
        assert sorted(G.sum(1))[-1] == k - 1 and G.sum() == k - 1
    for G in graphs({"kind": "collider"}, k, n):
        assert sorted(G.sum(0))[-1] == k - 1 and G.sum() == k - 1
    ws = graphs({"kind": "watts_strogatz", "k": 2, "rewire": 0.0}, k, n)
    assert (ws.sum((1, 2)) == 2 * k).all()  # a ring lattice: k nodes x 2 neighbours each side / 2
    und = ws + ws.transpose(0, 2, 1)
    assert (und.sum(1) == 4).all()
    sbm = graphs({"kind": "stochastic_block", "blocks": 3, "p_in": 0.9, "p_out": 0.0}, k, 400)
    pairs = k * (k - 1) / 2
    mean = pairs * 0.9 / 3  # pairs share a block with probability 1/3
    assert abs(sbm.sum((1, 2)).mean() - mean) < 0.1 * mean
    for G in np.concatenate([ws, sbm[:50]]):  # acyclic
        assert np.allclose(np.linalg.matrix_power(G.astype(float), k), 0)


@pytest.mark.slow
def test_every_mechanism_and_noise_in_one_mixture():
    spec = ScmSpec.model_validate({
        "graphs": [{"kind": "erdos_renyi", "edges_per_node": 1.0}, {"kind": "scale_free"},
                   {"kind": "watts_strogatz"}, {"kind": "stochastic_block"}, {"kind": "chain"},
                   {"kind": "fork"}, {"kind": "collider"}, {"kind": "scale_free_transpose"}],
        "n_nodes": {"low": 5, "high": 10},
        "mechanism": [{"kind": k} for k in ("linear", "mlp", "rff", "sine", "tanh",
                                            "quadratic", "threshold")],
        "mechanism_mix": "node",
        "noise": [{"kind": "gaussian", "heteroscedastic": True}, {"kind": "laplace"},
                  {"kind": "uniform"}, {"kind": "student_t", "df": 4.0}],
        "interventions": {"kind": "soft", "mode": "shift", "fraction": 0.5, "rows_per_node": 3},
        "n_obs": 200,
    })
    scm, data, diag = simulate_with_diagnostics(spec, jax.random.key(0), 64)
    assert int(diag.nonfinite.sum()) == 0
    k = np.asarray(scm.var_mask).sum(1)
    assert (np.asarray(data.int_row_mask).sum(1) == 3 * np.ceil(0.5 * (k - 1))).all()
    idx = np.asarray(scm.mech_index)
    assert len(np.unique(idx[np.asarray(scm.var_mask)])) == 7  # every mechanism is used
    # Every real non-root variable varies with its parents: not constant, not all-noise-free.
    sd = np.asarray(data.obs).std(1)
    assert (sd[np.asarray(scm.var_mask)] > 0).all()


@pytest.mark.slow
@pytest.mark.skipif(not ECOLI.exists(), reason="bnlearn data not present")
def test_from_file_reproduces_the_bnlearn_covariance():
    spec = ScmSpec.model_validate({
        "graphs": {"kind": "from_file", "path": str(ECOLI)}, "n_obs": 30_000,
        "interventions": {"kind": "hard", "rows_per_node": 0},
        "target": {"kind": "named", "name": "lacZ"},
    })
    z = np.load(ECOLI)
    scm, data = simulate(spec, jax.random.key(0), 1)
    s = one(scm, 0)
    assert int(s.target) == list(z["names"]).index("lacZ")
    np.testing.assert_array_equal(np.asarray(s.adjacency), z["G"])
    A = np.linalg.inv(np.eye(len(z["W"])) - z["W"])
    C = A.T @ np.diag(z["sigma"] ** 2) @ A
    mu = z["b"] @ A
    x = np.asarray(data.obs[0], np.float64)
    n = len(x)
    S = np.cov(x, rowvar=False)
    se = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C**2) / n)
    assert np.all(np.abs(S - C) < 5 * se), np.max(np.abs(S - C) / se)
    assert np.all(np.abs(x.mean(0) - mu) < 5 * np.sqrt(np.diag(C) / n))


@pytest.mark.slow
def test_standardize_and_linear_optimum():
    from engine.scm.optimum import linear_means, linear_optimum

    spec = ScmSpec.model_validate({
        "graphs": {"kind": "erdos_renyi", "p": 0.6}, "n_nodes": 5, "n_obs": 500,
        "mechanism": {"kind": "linear", "bias": {"dist": "uniform", "low": -2, "high": 2}},
        "interventions": {"kind": "hard", "value": 1.25, "rows_per_node": 2},
        "standardize": True,
    })
    scm, data = simulate(spec, jax.random.key(0), 8)
    obs = np.asarray(data.obs)
    np.testing.assert_allclose(obs.mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(obs.std(1), 1, atol=1e-3)
    iv, im = np.asarray(data.int_values), np.asarray(data.int_mask)
    np.testing.assert_allclose(iv[im], 1.25, rtol=1e-5)  # values are in standardised units
    s = one(scm, 0)
    best, node, v = linear_optimum(s, -2.0, 2.0)
    n, d = 40_000, s.d
    x = s.sample(jax.random.key(9), jnp.zeros((n, d), bool).at[:, node].set(True),
                 jnp.full((n, d), v))
    y = np.asarray(x[:, s.target])
    assert abs(y.mean() - float(best)) < 5 * y.std() / np.sqrt(n)
    for j in range(d):  # no other single-node intervention at the bounds does better
        if j != int(s.target):
            for val in (-2.0, 2.0):
                m = linear_means(s, jnp.arange(d) == j, jnp.full(d, val))[s.target]
                assert float(m) >= float(best) - 1e-5


def test_rff_sparse_parent_lists_give_the_same_data_as_dense():
    """Batches with a small in-degree run rff on [K]-parent lists; the SCM and data must not
    change (omega is drawn by index), and graph g must not depend on the batch size."""
    from engine.scm.simulator import Simulator

    spec = ScmSpec.model_validate({
        "graphs": {"kind": "erdos_renyi", "edges_per_node": 1.0}, "n_nodes": 24,
        "mechanism": {"kind": "rff", "features": 16}, "n_obs": 50,
        "interventions": {"kind": "hard", "rows_per_node": 1},
    })
    sim, key = Simulator(spec), jax.random.key(3)
    bound = sim._parent_bound(key, 6)
    assert bound is not None and bound <= 12  # the sparse form is in use here
    dense = sim._batch(key, 6, None)[1]
    sparse = sim.with_diagnostics(key, 6)[1]
    np.testing.assert_allclose(np.asarray(sparse.obs), np.asarray(dense.obs), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(sparse.int_values), np.asarray(dense.int_values),
                               rtol=1e-5, atol=1e-5)
    more = sim.with_diagnostics(key, 9)[1]
    np.testing.assert_allclose(np.asarray(more.obs[:6]), np.asarray(dense.obs), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("kind", [{"kind": "erdos_renyi", "edges_per_node": 1.5},
                                  {"kind": "stochastic_block", "blocks": 2},
                                  {"kind": "scale_free", "m": 1}])
def test_labels_carry_no_order(kind):
    # Positions are a topological order; labels are a uniform relabelling of them, so every
    # label has the same in-degree law (label 0 is not the first position).
    k, n = 8, 600
    G = graphs(kind, k, n, seed=3)
    din = G.sum(1)  # [graphs, k]: in-degree of each label
    se = din.std() / np.sqrt(n)
    assert np.abs(din.mean(0) - din.mean()).max() < 4.5 * se, din.mean(0)
