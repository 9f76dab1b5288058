"""Exact Bayesian edge marginals (engine/evaluate/bayes_dp.py) and the exact_dp baseline: equal to
brute-force enumeration of every order and DAG, and right on data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.evaluate import bayes_dp
from engine.evaluate.baselines import BaselineTooLarge, predict_graph


def _linear(adj: np.ndarray, n: int, seed: int, weight: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((n, adj.shape[0]))
    for j in range(adj.shape[0]):
        x[:, j] = x @ (weight * adj[:, j]) + rng.normal(size=n)
    return x


def _brute_force(x: np.ndarray, k: int, scores=bayes_dp.local_scores) -> np.ndarray:
    """Sum over all orders and every DAG consistent with each (parents among the predecessors,
    at most k): the order-modular posterior by definition."""
    d = x.shape[1]
    s = scores(x, k)
    num, tot = np.full((d, d), -np.inf), -np.inf
    for order in itertools.permutations(range(d)):
        choices = [[c for m in range(min(k, p) + 1) for c in itertools.combinations(order[:p], m)]
                   for p in range(d)]
        for sets in itertools.product(*choices):
            w = sum(s[i, sum(1 << j for j in S)] for i, S in zip(order, sets))
            tot = np.logaddexp(tot, w)
            for i, S in zip(order, sets):
                for j in S:
                    num[j, i] = np.logaddexp(num[j, i], w)
    return np.exp(num - tot)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_marginals_equal_brute_force(k):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(40, 4))
    x[:, 1] += x[:, 0]
    x[:, 3] += 0.5 * x[:, 1] - x[:, 2]  # weak enough that the marginals are not all 0 or 1
    want = _brute_force(x, k)
    assert 0.03 < want[want > 0.01].min() and want.max() < 0.99  # a non-trivial posterior
    np.testing.assert_allclose(bayes_dp.edge_marginals(x, k), want, atol=1e-10)


def test_local_scores_are_the_bic_of_least_squares():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0, 0, 1]])
    s = bayes_dp.local_scores(x, 2)
    z = (x - x.mean(0)) / x.std(0)
    beta, *_ = np.linalg.lstsq(z[:, [0, 2]], z[:, 1], rcond=None)
    rss = np.mean((z[:, 1] - z[:, [0, 2]] @ beta) ** 2)
    assert s[1, 0b101] == pytest.approx(-100 * np.log(rss) - np.log(200))
    assert s[1, 0b010] == -np.inf and s[1, 0b111] == -np.inf  # a set holding the variable itself


def test_collider_and_chain():
    """A collider is identified from observational data; a chain only up to its equivalence class,
    whose orientations the order-modular prior weighs: its skeleton is certain, no direction is."""
    collider = np.zeros((3, 3), bool)
    collider[0, 2] = collider[1, 2] = True
    P = bayes_dp.edge_marginals(_linear(collider, 2000, 1))
    # not 1 and 0: the order-modular prior gives the complete DAG 6 orders, the collider 2
    assert P[collider].min() > 0.85 and P[~collider].max() < 0.15
    chain = np.zeros((3, 3), bool)
    chain[0, 1] = chain[1, 2] = True
    P = bayes_dp.edge_marginals(_linear(chain, 2000, 2))
    assert (P + P.T)[chain | chain.T].min() > 0.85 and P[0, 2] + P[2, 0] < 0.15
    assert 0.1 < P[0, 1] < 0.9 and 0.1 < P[1, 2] < 0.9


def test_ranks_a_random_graph_and_decides_it():
    """12 variables, 1,000 linear-Gaussian rows: the marginals rank the true skeleton above every
    non-adjacent pair, and the baseline's graph (expected-F1) finds most true edges."""
    rng = np.random.default_rng(5)
    d = 12
    adj = np.triu(rng.random((d, d)) < 0.3, 1)
    perm = rng.permutation(d)  # sampled in topological order, then shuffled
    x = _linear(adj, 1000, 3)[:, perm]
    adj = adj[np.ix_(perm, perm)]
    p = predict_graph("exact_dp", x, seed=0)
    q = (p.scores + p.scores.T)[np.triu_indices(d, 1)]
    skel = (adj | adj.T)[np.triu_indices(d, 1)]
    assert q[skel].min() > q[~skel].max()
    found = (p.weights + p.weights.T)[np.triu_indices(d, 1)] > 0
    assert found[skel].mean() > 0.9 and found[~skel].mean() < 0.1
    assert p.seconds > 0


def test_default_parent_limit_and_size_limit():
    assert bayes_dp.default_max_parents(10) == 9  # every set
    assert bayes_dp.default_max_parents(20) == 5
    x = np.random.default_rng(0).normal(size=(50, 21))
    with pytest.raises(BaselineTooLarge, match="21 variables; exact_dp takes at most 20"):
        predict_graph("exact_dp", x, seed=0)
    with pytest.raises(ValueError, match="at most 20 variables"):
        bayes_dp.edge_marginals(x)


def test_constant_variable_gets_no_edges():
    x = _linear(np.triu(np.ones((3, 3), bool), 1), 500, 0)
    x = np.column_stack([x, np.full(500, 2.0)])
    p = predict_graph("exact_dp", x, seed=0)
    assert not p.scores[3].any() and not p.scores[:, 3].any() and p.scores[:3, :3].sum() > 1


def _bic(y: np.ndarray, features: np.ndarray) -> float:
    n = len(y)
    f = features - features.mean(0)
    beta, *_ = np.linalg.lstsq(f, y, rcond=None)
    return -n / 2 * np.log(np.mean((y - f @ beta) ** 2)) - f.shape[1] / 2 * np.log(n)


def test_additive_scores_average_the_linear_and_additive_least_squares_evidence():
    """Each family's score is log((e^linear BIC + e^additive BIC) / 2), every BIC from lstsq on
    the z-scored columns and the stated basis (x, sin wx, cos wx for w in FREQUENCIES)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4))
    x[:, 2] += np.sin(2 * x[:, 0]) + 0.3 * x[:, 1] ** 2
    z = (x - x.mean(0)) / x.std(0)
    w = np.asarray(bayes_dp.FREQUENCIES)
    basis = lambda j: np.column_stack([z[:, j], np.sin(w * z[:, j, None]), np.cos(w * z[:, j, None])])  # noqa: E731
    s = bayes_dp.additive_scores(x, 3)
    for i, S in [(2, (0,)), (2, (0, 1)), (0, (1, 2, 3)), (3, (2,))]:
        mask = sum(1 << j for j in S)
        lin = _bic(z[:, i], z[:, list(S)])
        add = _bic(z[:, i], np.column_stack([basis(j) for j in S]))
        assert s[i, mask] == pytest.approx(np.logaddexp(lin, add) - np.log(2), abs=1e-3)  # 1e-9 n ridge
    assert s[2, 0] == pytest.approx(bayes_dp.local_scores(x, 3)[2, 0])  # no parents: one model
    assert s[2, 0b0100] == -np.inf and np.isfinite(s).sum() == 4 * 8  # sets without the variable


def test_additive_marginals_equal_brute_force():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 4))
    x[:, 1] += np.tanh(2 * x[:, 0])
    x[:, 3] += 0.4 * np.sin(2 * x[:, 1]) - 0.4 * x[:, 2]
    want = _brute_force(x, 2, bayes_dp.additive_scores)
    assert 0.03 < want[want > 0.01].min() and want.max() < 0.99
    np.testing.assert_allclose(bayes_dp.edge_marginals(x, 2, bayes_dp.additive_scores), want, atol=1e-10)


def test_additive_scores_orient_a_nonlinear_pair_the_linear_scores_cannot():
    """x1 = tanh(2 x0) + noise: additive noise models are identifiable, linear-Gaussian ones are
    not. exact_additive puts the edge one way; exact_dp, on the same rows, splits it."""
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=1000)
    x = np.column_stack([x0, np.sin(2 * x0) + 0.5 * x0 + 0.3 * rng.normal(size=1000)])
    add = predict_graph("exact_additive", x, seed=0).scores
    lin = predict_graph("exact_dp", x, seed=0).scores
    assert add[0, 1] > 0.95 and add[1, 0] < 0.05
    assert 0.3 < lin[0, 1] < 0.7 and lin[0, 1] + lin[1, 0] > 0.99


def test_additive_scores_leave_linear_data_to_the_linear_model():
    """On linear-Gaussian rows the additive fit's 6 extra coefficients a parent cost 3 log n, so
    each family's average is the linear evidence halved (the additive half is ~0), and the
    collider of test_collider_and_chain is found as before."""
    collider = np.zeros((3, 3), bool)
    collider[0, 2] = collider[1, 2] = True
    x = _linear(collider, 2000, 1)
    add, lin = bayes_dp.additive_scores(x, 2), bayes_dp.local_scores(x, 2)
    ok = np.isfinite(lin)
    ok[:, 0] = False
    np.testing.assert_allclose(add[ok], lin[ok] - np.log(2), atol=1e-6)
    P = bayes_dp.edge_marginals(x, scores=bayes_dp.additive_scores)
    assert P[collider].min() > 0.85 and P[~collider].max() < 0.15


def test_exact_additive_takes_8_parents_at_20_variables():
    assert bayes_dp.default_max_parents(20, 300_000) == 8
    x = np.random.default_rng(0).normal(size=(50, 21))
    with pytest.raises(BaselineTooLarge, match="21 variables; exact_additive takes at most 20"):
        predict_graph("exact_additive", x, seed=0)
