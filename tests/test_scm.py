"""The SCM simulator's spine: ER graphs, linear-Gaussian mechanisms, hard interventions, targets,
padding, determinism, save/load. Statistical checks against closed forms."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.scm import load, save, simulate
from engine.spec.scm import ScmSpec

P = 0.3
SPEC = ScmSpec.model_validate(
    {
        "graphs": [{"kind": "erdos_renyi", "p": P}],
        "n_nodes": {"low": 3, "high": 8},
        "mechanism": {"kind": "linear"},
        "noise": {"kind": "gaussian", "scale": {"dist": "uniform", "low": 0.5, "high": 1.5}},
        "interventions": {"kind": "hard", "rows_per_node": 2},
        "n_obs": 40,
    }
)
N_GRAPHS = 300


@pytest.fixture(scope="module")
def batch():
    return simulate(SPEC, jax.random.key(7), N_GRAPHS)


def one(tree, g: int):
    return jax.tree.map(lambda a: a[g], tree)


def test_shapes_and_layout(batch):
    scm, data = batch
    d = SPEC.max_nodes
    assert d == 8 and SPEC.n_int == 2 * 7
    assert data.obs.shape == (N_GRAPHS, 40, d)
    assert data.int_values.shape == data.int_mask.shape == (N_GRAPHS, 14, d)
    k = np.asarray(scm.var_mask).sum(1)
    assert set(k.tolist()) == set(range(3, 9))  # every size in the range occurs
    rows = np.asarray(data.int_row_mask)
    mask = np.asarray(data.int_mask)
    for g in range(20):
        assert rows[g].sum() == 2 * (k[g] - 1)
        nodes = mask[g][rows[g]].argmax(1)
        assert (mask[g][rows[g]].sum(1) == 1).all()  # one intervened node per real row
        expect = np.repeat([j for j in range(k[g]) if j != int(scm.target[g])], 2)
        np.testing.assert_array_equal(nodes, expect)  # variable order, rows_per_node each
        assert not mask[g][~rows[g]].any()


def test_erdos_renyi_density_within_three_standard_errors(batch):
    scm, _ = batch
    G = np.asarray(scm.adjacency)
    k = np.asarray(scm.var_mask).sum(1)
    pairs = k * (k - 1) / 2
    # A graph that drew no edge gets one (the target needs a parent): X' = X + 1[X = 0].
    q = (1 - P) ** pairs
    mean = P * pairs + q
    second = pairs * P * (1 - P) + (P * pairs) ** 2 + q
    var = second - mean**2
    observed = G.sum()
    assert abs(observed - mean.sum()) < 3 * np.sqrt(var.sum()), (observed, mean.sum())
    # Acyclic: order is topological and no edges touch padding.
    for g in range(N_GRAPHS):
        pos = np.argsort(np.asarray(scm.order[g]))
        i, j = np.nonzero(G[g])
        assert (pos[i] < pos[j]).all()
        assert (i < k[g]).all() and (j < k[g]).all()


def test_target_has_a_parent(batch):
    scm, _ = batch
    G = np.asarray(scm.adjacency)
    t = np.asarray(scm.target)
    assert all(G[g, :, t[g]].sum() >= 1 for g in range(N_GRAPHS))
    assert (t < np.asarray(scm.var_mask).sum(1)).all()


def test_padding_is_zero(batch):
    scm, data = batch
    vm = np.asarray(scm.var_mask)
    assert (np.asarray(data.obs)[~np.broadcast_to(vm[:, None], data.obs.shape)] == 0).all()
    assert (np.asarray(data.int_values)[~np.broadcast_to(vm[:, None], data.int_values.shape)]
            == 0).all()
    assert not np.asarray(data.int_mask)[~np.broadcast_to(vm[:, None], data.int_mask.shape)].any()


def test_padding_never_affects_real_variables(batch):
    scm, _ = batch
    g = int(np.argmin(np.asarray(scm.var_mask).sum(1)))  # a small graph: most padding
    s = one(scm, g)
    pad = ~s.var_mask
    # Give the padded variables wild parameters and edges into the real ones: nothing may change.
    lin = s.mechanisms[0]
    loud = eqx.tree_at(
        lambda m: (m.mechanisms[0].bias, m.noises[0].scale, m.mechanisms[0].coef),
        s,
        (jnp.where(pad, 50.0, lin.bias), jnp.where(pad, 9.0, s.noises[0].scale),
         jnp.where(pad[:, None], 3.0, lin.coef)),
    )
    n, d = 64, s.d
    key = jax.random.key(3)
    mask = jnp.zeros((n, d), bool).at[:, 0].set(jnp.arange(n) % 2 == 0)
    vals = jnp.full((n, d), 1.5)
    a = s.sample(key, mask, vals)
    b = loud.sample(key, mask | pad, vals)  # even "intervening" on padding changes nothing
    np.testing.assert_array_equal(a, b)
    assert (np.asarray(a)[:, np.asarray(pad)] == 0).all()


def _closed_form_cov(s) -> np.ndarray:
    vm = np.asarray(s.var_mask)
    W = np.asarray(s.mechanisms[0].coef, np.float64)[np.ix_(vm, vm)]
    sig = np.asarray(s.noises[0].scale, np.float64)[vm]
    A = np.linalg.inv(np.eye(len(W)) - W)  # x = (b + e) A  (row vectors)
    return A.T @ np.diag(sig**2) @ A


@pytest.mark.parametrize("path", ["ancestral", "closed_form"])
def test_linear_gaussian_covariance_matches_closed_form(batch, path):
    scm, _ = batch
    k = np.asarray(scm.var_mask).sum(1)
    G = np.asarray(scm.adjacency)
    g = int(np.argmax(k * 100 + G.sum((1, 2))))  # a big, dense graph
    s = one(scm, g)
    n, d = 40_000, s.d
    if path == "ancestral":
        x = s.sample(jax.random.key(11), jnp.zeros((n, d), bool), jnp.zeros((n, d)))
    else:  # the simulator's observational rows: (b + s * eps) (I - W)^-1 in one product
        x = s.observational(jax.random.key(11), n)
    x = np.asarray(x, np.float64)[:, np.asarray(s.var_mask)]
    S, C = np.cov(x, rowvar=False), _closed_form_cov(s)
    se = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C**2) / n)
    assert np.all(np.abs(S - C) < 5 * se), np.max(np.abs(S - C) / se)
    np.testing.assert_allclose(x.mean(0), np.asarray(s.mechanisms[0].bias)[:k[g]] @
                               np.linalg.inv(np.eye(k[g]) - np.asarray(
                                   s.mechanisms[0].coef)[:k[g], :k[g]]), atol=0.1)


def test_hard_intervention_cuts_the_node_from_its_parents(batch):
    scm, _ = batch
    s = one(scm, int(np.argmax(np.asarray(scm.adjacency).sum((1, 2)))))
    G = np.asarray(s.adjacency)
    j = int(np.argmax(G.sum(0)))  # the node with most parents
    pa = np.flatnonzero(G[:, j])
    n, d = 20_000, s.d
    vals = jax.random.uniform(jax.random.key(5), (n, d), minval=-3, maxval=3)
    obs = np.asarray(s.sample(jax.random.key(6), jnp.zeros((n, d), bool), vals))
    do = np.asarray(s.sample(jax.random.key(6), jnp.zeros((n, d), bool).at[:, j].set(True), vals))
    np.testing.assert_array_equal(do[:, j], np.asarray(vals)[:, j])
    bound = 4.5 / np.sqrt(n)
    r_obs = [abs(np.corrcoef(obs[:, i], obs[:, j])[0, 1]) for i in pa]
    r_do = [abs(np.corrcoef(do[:, i], do[:, j])[0, 1]) for i in pa]
    assert max(r_obs) > 10 * bound  # the parents did matter
    assert max(r_do) < bound, r_do
    # Non-descendants of j keep exactly their values (same noise draw, same key).
    anc = np.asarray(s.order)[: list(np.asarray(s.order)).index(j)]
    np.testing.assert_allclose(do[:, anc], obs[:, anc])


def test_soft_shift_moves_the_mean_by_the_shift(batch):
    scm, _ = batch
    G = np.asarray(scm.adjacency)
    g = int(np.argmax(G.sum((1, 2))))
    s = one(scm, g)
    j = int(np.argmax(G[g].sum(1)))  # a node with children
    child = int(np.flatnonzero(G[g][j])[0])
    n, d = 20_000, s.d
    mask = jnp.zeros((n, d), bool).at[:, j].set(True)
    vals = jnp.full((n, d), 2.0)
    key = jax.random.key(1)
    base = np.asarray(s.sample(key, mask, vals * 0, mode="shift"))
    moved = np.asarray(s.sample(key, mask, vals, mode="shift"))
    np.testing.assert_allclose(moved[:, j] - base[:, j], 2.0, rtol=1e-4)  # same noise: exact
    effect = float(s.mechanisms[0].coef[j, child])  # plus paths through other descendants
    total = np.linalg.inv(np.eye(d) - np.asarray(s.mechanisms[0].coef, np.float64))[j, child]
    assert abs(effect) > 0
    np.testing.assert_allclose(moved[:, child] - base[:, child], 2.0 * total, rtol=1e-3,
                               atol=1e-4)
    obs = np.asarray(s.sample(jax.random.key(2), mask & False, vals))
    se = np.sqrt(obs[:, j].var() * 2 / n)
    assert abs(moved[:, j].mean() - obs[:, j].mean() - 2.0) < 4.5 * se
    scaled = np.asarray(s.sample(key, mask, vals, mode="scale"))
    np.testing.assert_allclose(scaled[:, j], 2.0 * base[:, j], rtol=1e-5)


def test_same_seed_same_data_and_new_seed_new_data(batch):
    scm, data = batch
    scm2, data2 = simulate(SPEC, jax.random.key(7), N_GRAPHS)
    for a, b in zip(jax.tree.leaves((scm, data)), jax.tree.leaves((scm2, data2))):
        np.testing.assert_array_equal(a, b)
    _, data4 = simulate(SPEC, jax.random.key(8), N_GRAPHS)
    assert not np.allclose(data4.obs, data.obs)


def test_save_load_roundtrip(batch, tmp_path):
    scm, data = batch
    save(tmp_path / "scms.eqx", scm, data)
    scm2, data2 = load(tmp_path / "scms.eqx", SPEC, N_GRAPHS)
    for a, b in zip(jax.tree.leaves((scm, data)), jax.tree.leaves((scm2, data2))):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure((scm, data)) == jax.tree.structure((scm2, data2))


@pytest.mark.parametrize("d", [7, 33, 50, 67])
def test_dag_inverse_equals_the_dense_inverse(d):
    # (I - W)^-1 by doubling (d <= 32) or by half-size blocks, against float64 LU; odd sizes
    # exercise the padding of the halves, the chain the longest possible path.
    from engine.scm.model import _dag_inverse

    rng = np.random.default_rng(d)
    for W in (np.triu(rng.uniform(-1, 1, (d, d)) * (rng.random((d, d)) < 3 / d), 1),
              np.diag(np.full(d - 1, 0.9), 1)):
        got = np.asarray(jax.jit(_dag_inverse)(jnp.asarray(W, jnp.float32)), np.float64)
        want = np.linalg.inv(np.eye(d) - W)
        np.testing.assert_allclose(got, want, atol=1e-5 * max(1.0, np.abs(want).max()))


def test_large_linear_gaussian_covariance_matches_closed_form():
    # d = 40: the block inverse in topological order and the noise columns reassigned to
    # variables (see SCM.observational_with_bound), against (I - W)^-T diag(s^2) (I - W)^-1.
    spec = SPEC.model_copy(update={"n_nodes": 40, "graphs": [
        SPEC.graphs[0].model_copy(update={"p": 0.1})]})
    scm, _ = simulate(spec, jax.random.key(3), 2)
    s = one(scm, 0)
    assert s.d == 40 and np.asarray(s.adjacency).sum() > 40
    n = 40_000
    x = np.asarray(s.observational(jax.random.key(5), n), np.float64)
    S, C = np.cov(x, rowvar=False), _closed_form_cov(s)
    se = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C**2) / n)
    assert np.all(np.abs(S - C) < 5 * se), np.max(np.abs(S - C) / se)


MECHANISMS = {
    "linear": {"kind": "linear"},
    "rff": {"kind": "rff"},
    "mlp": {"kind": "mlp"},
    "sine": {"kind": "sine"},
}
COMBOS = [["linear"], ["rff"], ["linear", "rff"], ["rff", "mlp"], ["linear", "rff", "mlp", "sine"]]


@pytest.mark.parametrize("names", COMBOS, ids=["+".join(c) for c in COMBOS])
def test_every_mechanism_mixture_round_trips_on_larger_graphs(names, tmp_path):
    """10-20 nodes at ER-2: rff stores its sparse parent-list form, whose shape the simulator
    chose for the batch; the file must say which, or loading rebuilds the dense one."""
    spec = ScmSpec.model_validate({
        "graphs": [{"kind": "erdos_renyi", "edges_per_node": 2.0}],
        "n_nodes": {"low": 10, "high": 20},
        "mechanism": [{**MECHANISMS[n], "weight": 1.0} for n in names],
        "interventions": {"kind": "hard", "rows_per_node": 1},
        "n_obs": 30,
    })
    scm, data = simulate(spec, jax.random.key(3), 12)
    save(tmp_path / "scms.eqx", scm, data)
    scm2, data2 = load(tmp_path / "scms.eqx", spec, 12)
    assert jax.tree.structure((scm, data)) == jax.tree.structure((scm2, data2))
    for a, b in zip(jax.tree.leaves((scm, data)), jax.tree.leaves((scm2, data2))):
        np.testing.assert_array_equal(a, b)


def test_erdos_renyi_density_is_capped_at_the_complete_dag_on_small_graphs():
    """ER-3 over 5-9 nodes: a 5-node graph cannot hold 3 edges per node, so it is the complete
    DAG (10 edges); 9-node graphs keep edge probability 6 / 8."""
    spec = ScmSpec.model_validate({
        "graphs": [{"kind": "erdos_renyi", "edges_per_node": 3.0}],
        "n_nodes": {"values": [5, 9]}, "n_obs": 10,
    })
    scm, _ = simulate(spec, jax.random.key(11), 200)
    k = np.asarray(scm.var_mask).sum(1)
    edges = np.asarray(scm.adjacency).sum((1, 2))
    assert (k == 5).any() and (k == 9).any()
    np.testing.assert_array_equal(edges[k == 5], 10)
    pairs = 36 * (k == 9).sum()
    assert abs(edges[k == 9].sum() - 0.75 * pairs) < 3 * np.sqrt(pairs * 0.75 * 0.25)
