"""engine.evaluate.decision: from edge probabilities to one graph, against brute force."""

import itertools

import numpy as np
import pytest

from engine.evaluate.decision import ExpectedF1, Threshold, expected_f1_graph


def _plug_in(q: np.ndarray, chosen: np.ndarray) -> float:
    return 2 * q[chosen].sum() / (chosen.sum() + q.sum())


def _exact_expected_f1(q: np.ndarray, chosen: np.ndarray) -> float:
    """E[F1] over every truth, each pair adjacent independently with probability q."""
    total = 0.0
    for truth in itertools.product([0, 1], repeat=len(q)):
        t = np.array(truth, bool)
        weight = np.prod(np.where(t, q, 1 - q))
        denom = chosen.sum() + t.sum()
        total += weight * (2 * (chosen & t).sum() / denom if denom else 1.0)
    return total


@pytest.mark.parametrize("seed", range(12))
def test_adjacencies_maximise_the_plug_in_expected_f1_over_every_subset(seed):
    rng = np.random.default_rng(seed)
    d = 4
    probs = rng.uniform(0, 1, (d, d)) * rng.uniform(0, 0.7, (d, d)) ** rng.integers(0, 3)
    np.fill_diagonal(probs, 0)
    probs = probs / np.maximum(probs + probs.T, 1.0)  # p_ij + p_ji <= 1, as in a DAG posterior
    i, j = np.triu_indices(d, 1)
    q = np.minimum(probs[i, j] + probs[j, i], 1)
    graph = expected_f1_graph(probs)
    chosen = (graph + graph.T)[i, j] > 0
    subsets = [np.array(s, bool) for s in itertools.product([0, 1], repeat=len(q)) if any(s)]
    best = max(_plug_in(q, s) for s in subsets)
    assert _plug_in(q, chosen) == pytest.approx(best, abs=1e-12)
    # and the plug-in choice is near the exact optimum of E[F1] (Ye et al.: consistent)
    exact = max(_exact_expected_f1(q, s) for s in subsets)
    assert _exact_expected_f1(q, chosen) >= exact - 0.05


def test_orients_each_pair_one_way_by_its_likelier_direction():
    rng = np.random.default_rng(1)
    probs = rng.uniform(0, 0.5, (9, 9))
    np.fill_diagonal(probs, 0)
    graph = expected_f1_graph(probs)
    assert graph.sum() > 0 and not (graph * graph.T).any() and not np.diag(graph).any()
    for a, b in zip(*np.nonzero(graph)):
        assert probs[a, b] >= probs[b, a]


def test_certain_probabilities_give_their_graph_and_none_give_no_edge():
    adj = np.triu(np.random.default_rng(2).random((6, 6)) < 0.4, 1).astype(float)
    np.testing.assert_array_equal(expected_f1_graph(adj), adj)
    np.testing.assert_array_equal(expected_f1_graph(np.zeros((6, 6))), np.zeros((6, 6)))
    np.testing.assert_array_equal(expected_f1_graph(np.zeros((1, 1))), np.zeros((1, 1)))


def test_padded_variables_get_no_edge():
    probs = np.full((5, 5), 0.45)
    mask = np.array([1, 1, 1, 0, 0], bool)
    graph = ExpectedF1()(probs[None], mask[None])[0]
    assert graph[3:].sum() == 0 and graph[:, 3:].sum() == 0 and graph[:3, :3].sum() == 3


def test_scores_higher_f1_than_a_cut_at_one_half_when_belief_is_spread():
    """Truths drawn from the probabilities themselves (a calibrated but unsure model): the
    expected-F1 graph's realised F1 beats the edges above 0.5, by a wide margin."""
    rng = np.random.default_rng(3)
    d, n = 12, 200
    ours, cut = [], []
    for _ in range(n):
        probs = np.triu(rng.beta(0.6, 1.4, (d, d)) * 0.8, 1)
        truth = rng.random((d, d)) < probs
        for decide, out in ((ExpectedF1(), ours), (Threshold(0.5), cut)):
            pred = decide(probs[None], np.ones((1, d), bool))[0] > 0
            tp = (pred & truth).sum()
            out.append(2 * tp / max(pred.sum() + truth.sum(), 1))
    assert np.mean(ours) > np.mean(cut) + 0.1, (np.mean(ours), np.mean(cut))
