"""Metrics against brute force, hand cases and closed forms."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from engine.evaluate import metrics as M


def brute_auroc(s, y):
    pos = [a for a, l in zip(s, y) if l]
    neg = [a for a, l in zip(s, y) if not l]
    tot = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return tot / (len(pos) * len(neg))


def brute_ap(s, y):
    """scikit-learn's average_precision_score, written out: one threshold per distinct score."""
    s, y = np.asarray(s, float), np.asarray(y, bool)
    ap, prev_r = 0.0, 0.0
    for thr in sorted(set(s.tolist()), reverse=True):
        sel = s >= thr
        tp = (sel & y).sum()
        p, r = tp / sel.sum(), tp / y.sum()
        ap += (r - prev_r) * p
        prev_r = r
    return ap


def test_auroc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(2, 40))
        s = rng.integers(0, 5, n) / 4.0  # many ties
        y = rng.random(n) < 0.4
        if y.all() or not y.any():
            continue
        assert M.auroc(s, y) == pytest.approx(brute_auroc(s, y), abs=1e-12)


def test_average_precision_hand_cases():
    # sklearn docs example: average_precision_score([0,0,1,1], [.1,.4,.35,.8]) = 0.8333...
    assert M.average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(5 / 6)
    # tie at the top between a positive and a negative: one threshold, precision 1/2 at recall 1/2
    assert M.average_precision([0.9, 0.9, 0.1], [1, 0, 1]) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    rng = np.random.default_rng(1)
    for _ in range(30):
        n = int(rng.integers(2, 30))
        s = rng.integers(0, 6, n) / 5.0
        y = rng.random(n) < 0.3
        if not y.any():
            assert math.isnan(M.average_precision(s, y))
            continue
        assert M.average_precision(s, y) == pytest.approx(brute_ap(s, y), abs=1e-12)


def test_degenerate_rank_metrics_are_nan():
    assert math.isnan(M.auroc([0.1, 0.2], [0, 0]))
    assert math.isnan(M.auroc([0.1, 0.2], [1, 1]))
    assert math.isnan(M.average_precision([0.1, 0.2], [0, 0]))
    assert math.isnan(M.ece([], []))


def test_ece_hand_case():
    p = np.array([0.05, 0.15, 0.15, 0.95, 1.0])
    y = np.array([0, 1, 0, 1, 1])
    # bins: [0,.1): {0.05|0} gap .05 ; [.1,.2): {.15,.15|1,0} gap .35 ; [.9,1]: {.95,1.0|1,1} gap .025
    expected = (1 * 0.05 + 2 * 0.35 + 2 * 0.025) / 5
    assert M.ece(p, y) == pytest.approx(expected)
    assert M.brier(p, y) == pytest.approx(np.mean((p - y) ** 2))


def test_shd_reversal_counts_once():
    d = 3
    truth = np.zeros((1, d, d), bool)
    truth[0, 0, 1] = True  # 0 -> 1
    truth[0, 1, 2] = True  # 1 -> 2
    pred = np.zeros_like(truth)
    pred[0, 1, 0] = True  # reversed 0 -> 1
    pred[0, 1, 2] = True  # correct
    pred[0, 0, 2] = True  # extra
    assert M.shd_graphs(pred, truth).tolist() == [2]
    vm = np.ones((1, d), bool)
    out = M.score_graphs(pred.astype(float), truth, vm, n_boot=0)
    assert out["shd_total"] == 2
    # directed counts: tp=1 (1->2), fp=2 (1->0, 0->2), fn=1 (0->1)
    assert out["f1"] == pytest.approx(2 / (2 + 2 + 1))
    # skeleton: pred {01, 12, 02}, truth {01, 12}
    assert out["skeleton_f1"] == pytest.approx(4 / 5)


def test_score_graphs_ignores_padding_and_diagonal():
    rng = np.random.default_rng(2)
    n, d = 4, 5
    truth = rng.random((n, d, d)) < 0.3
    probs = rng.random((n, d, d))
    vm = np.ones((n, d), bool)
    vm[:, 3:] = False
    ref = M.score_graphs(probs[:, :3, :3], truth[:, :3, :3], vm[:, :3], n_boot=0)
    # garbage in padded rows/cols and on the diagonal must not matter
    probs2, truth2 = probs.copy(), truth.copy()
    probs2[:, 3:, :] = 0.99
    truth2[:, :, 3:] = True
    idx = np.arange(d)
    probs2[:, idx, idx] = 0.99
    out = M.score_graphs(probs2, truth2, vm, n_boot=0)
    for k in ("f1", "auroc", "auprc", "shd_total", "ece", "loglik_mean", "n_entries"):
        assert out[k] == pytest.approx(ref[k], nan_ok=True), k
    assert out["n_entries"] == n * 3 * 2


def _batch(n=50, d=8, seed=3):
    rng = np.random.default_rng(seed)
    nv = rng.integers(3, d + 1, n)
    mask = np.arange(d)[None] < nv[:, None]
    mask[np.arange(n), 0] = False  # variable 0 is the target
    truth = (rng.random((n, d)) < 0.3) & mask
    return truth, mask, rng


def test_perfect_and_constant_predictors():
    truth, mask, _ = _batch()
    perfect = M.score_parents(truth.astype(float), truth, mask, n_boot=50)
    for k in ("precision", "recall", "f1", "f1_per_graph_mean", "auroc", "auprc"):
        assert perfect[k] == pytest.approx(1.0), k
    assert perfect["shd_total"] == 0 and perfect["brier"] == 0.0 and perfect["ece"] == 0.0
    assert perfect["f1_ci_low"] == pytest.approx(1.0) and perfect["auroc_ci_high"] == pytest.approx(1.0)
    assert perfect["loglik_mean"] == pytest.approx(0.0, abs=1e-4)
    const = M.score_parents(np.full(truth.shape, 0.3), truth, mask, n_boot=50)
    assert const["auroc"] == pytest.approx(0.5)
    assert const["auroc_per_graph_median"] == pytest.approx(0.5)
    assert const["auprc"] == pytest.approx(const["auprc_chance"])
    assert const["auprc_chance"] == pytest.approx(truth[mask].mean())
    assert const["recall"] == 0.0 and math.isnan(const["precision"])
    assert const["shd_total"] == int(truth.sum())


def test_score_parents_pooled_values_brute_force():
    truth, mask, rng = _batch(n=20, d=6, seed=4)
    probs = np.clip(truth * 0.4 + rng.random(truth.shape) * 0.6, 0, 1)
    probs[~mask] = 0.77  # padding must not count
    out = M.score_parents(probs, truth, mask, threshold=0.5, n_boot=200, per_graph=True)
    p, y = probs[mask], truth[mask]
    pred = p > 0.5
    tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
    assert out["precision"] == pytest.approx(tp / (tp + fp))
    assert out["recall"] == pytest.approx(tp / (tp + fn))
    assert out["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert out["auroc"] == pytest.approx(brute_auroc(p, y))
    assert out["auprc"] == pytest.approx(brute_ap(p, y))
    assert out["n_entries"] == mask.sum() and out["n_graphs"] == 20
    ll = [sum(math.log(q) if t else math.log(1 - q)
              for q, t, m in zip(probs[i], truth[i], mask[i]) if m) for i in range(20)]
    assert out["loglik_mean"] == pytest.approx(np.mean(ll))
    shd = [int(((probs[i] > 0.5) != truth[i])[mask[i]].sum()) for i in range(20)]
    assert out["per_graph"]["shd"] == shd and out["shd_mean"] == pytest.approx(np.mean(shd))
    aucs = [brute_auroc(probs[i][mask[i]], truth[i][mask[i]]) for i in range(20)
            if 0 < truth[i][mask[i]].sum() < mask[i].sum()]
    assert out["auroc_per_graph_n"] == len(aucs)
    assert out["auroc_per_graph_median"] == pytest.approx(np.median(aucs))
    assert out["f1_ci_low"] <= out["f1"] <= out["f1_ci_high"]
    assert out["auroc_ci_low"] <= out["auroc"] <= out["auroc_ci_high"]


def test_bootstrap_auroc_matches_direct_resample():
    """The weighted one-sort bootstrap equals AUROC recomputed on explicitly resampled graphs."""
    truth, mask, rng = _batch(n=12, d=5, seed=5)
    probs = np.round(rng.random(truth.shape) * 4) / 4  # ties
    n = truth.shape[0]
    r = np.random.default_rng(9)
    direct = []
    for _ in range(40):
        idx = r.integers(0, n, n)
        direct.append(M.auroc(probs[idx][mask[idx]], truth[idx][mask[idx]]))
    out = M.score_parents(probs, truth, mask, n_boot=40, seed=9)
    lo, hi = np.nanpercentile(direct, [2.5, 97.5])
    assert out["auroc_ci_low"] == pytest.approx(lo) and out["auroc_ci_high"] == pytest.approx(hi)


def test_empty_batch_and_no_positive_do_not_crash():
    z = np.zeros((0, 4))
    out = M.score_parents(z, z.astype(bool), z.astype(bool), n_boot=10)
    assert out["n_graphs"] == 0 and math.isnan(out["auroc"]) and math.isnan(out["f1"])
    probs = np.full((3, 4), 0.2)
    out = M.score_parents(probs, np.zeros((3, 4), bool), np.ones((3, 4), bool), n_boot=10)
    assert math.isnan(out["auroc"]) and math.isnan(out["auprc"])
    assert out["f1"] == 1.0  # nothing true, nothing predicted
    assert out["auroc_per_graph_n"] == 0 and math.isnan(out["auroc_per_graph_median"])
    out = M.score_parents(probs, np.zeros((3, 4), bool), np.zeros((3, 4), bool), n_boot=10)
    assert out["n_entries"] == 0 and math.isnan(out["auroc"]) and math.isnan(out["ece"])
    assert math.isnan(out["auroc_ci_low"]) and out["f1_ci_low"] == 1.0


def test_map_and_posterior_weighted_f1():
    d = 3
    truth = np.array([[True, True, False]])
    subsets = [tuple(bool(v) for v in c) for c in itertools.product([0, 1], repeat=d)]
    sets = np.array(subsets)[None]  # [1, 8, 3]
    w = np.zeros((1, 8))
    w[0, subsets.index((True, False, False))] = 0.6
    w[0, subsets.index((True, True, False))] = 0.4
    # MAP = {0}: tp=1, fn=1 -> F1 = 2/3 ; weighted = 0.6 * 2/3 + 0.4 * 1
    assert M.map_f1(w, sets, truth) == pytest.approx(2 / 3)
    assert M.posterior_weighted_f1(w * 5, sets, truth) == pytest.approx(0.6 * 2 / 3 + 0.4)
    out = M.score_parents(np.array([[0.9, 0.4, 0.0]]), truth, np.ones((1, 3), bool),
                          set_probs=w, sets=sets, n_boot=0)
    assert out["map_f1"] == pytest.approx(2 / 3)


def test_timing_summary():
    e = np.array([10.0, 20.0, 1.0, 4.0])
    m = np.array([1.0, 2.0, 2.0, 0.0])  # last graph untimed
    t = M.timing_summary(e, m, n_boot=100)
    assert t["n_timed"] == 3 and math.isnan(t["speedups"][3])
    assert t["speedups"][:3] == [10.0, 10.0, 0.5]
    assert t["speedup_median"] == 10.0
    assert t["speedup_mean"] == pytest.approx(20.5 / 3)
    assert t["speedup_geomean"] == pytest.approx((10 * 10 * 0.5) ** (1 / 3))
    assert t["share_model_faster"] == pytest.approx(2 / 3)
    assert t["speedup_of_totals"] == pytest.approx(31 / 5)
    assert t["speedup_geomean_ci_low"] <= t["speedup_geomean"] <= t["speedup_geomean_ci_high"]
    assert math.isnan(M.timing_summary([1.0], [0.0])["speedup_median"])
    assert M.accuracy_drop(0.8, 1.0) == pytest.approx(0.2)
    assert math.isnan(M.accuracy_drop(0.8, 0.0))
