"""The metric catalog and the estimator against brute force, hand cases and closed forms.

Brute force is written out here (pairs for AUROC, counts for F1, expanded resamples for the
bootstrap), so the tests need nothing beyond numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.evaluate.catalog import METRICS, has
from engine.evaluate.estimate import estimate, resample_weights
from engine.evaluate.record import Side, StageResult

B = 60  # bootstrap resamples in these tests


def stage(truth, mask, sides, adjacency=None, var_mask=None, run_seconds=None) -> StageResult:
    truth, mask = np.asarray(truth, bool), np.asarray(mask, bool)
    n, d = truth.shape
    return StageResult(
        "s", "", truth, mask,
        np.zeros((n, d, d), bool) if adjacency is None else np.asarray(adjacency, bool),
        np.ones((n, d), bool) if var_mask is None else np.asarray(var_mask, bool),
        np.zeros(n, np.int64), np.full(n, np.nan) if run_seconds is None else np.asarray(run_seconds, float),
        sides)


def side(probs, pred=None, seconds=None, **kw) -> Side:
    probs = np.asarray(probs, float)
    return Side(probs=probs, pred=(probs > 0.5).astype(float) if pred is None else np.asarray(pred, float),
                seconds=np.full(len(probs), np.nan) if seconds is None else np.asarray(seconds, float), **kw)


def value(st, metric, who="model", **kw) -> float:
    return estimate(st, metric, who, n_boot=kw.pop("n_boot", B), **kw).value


def brute_auroc(s, y):
    pos = [a for a, t in zip(s, y) if t]
    neg = [a for a, t in zip(s, y) if not t]
    return sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg) / (len(pos) * len(neg))


def brute_ap(s, y):
    """Average precision, one threshold per distinct score (ties together)."""
    s, y = np.asarray(s, float), np.asarray(y, bool)
    ap, prev = 0.0, 0.0
    for thr in sorted(set(s.tolist()), reverse=True):
        sel = s >= thr
        r = (sel & y).sum() / y.sum()
        ap += (r - prev) * (sel & y).sum() / sel.sum()
        prev = r
    return ap


def batch(n=30, d=6, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    nv = rng.integers(3, d + 1, n)
    mask = np.arange(d)[None] < nv[:, None]
    mask[:, 0] = False  # variable 0 is the target
    truth = (rng.random((n, d)) < 0.35) & mask
    probs = np.clip(0.35 * truth + 0.65 * rng.random((n, d)), 0, 1)
    if ties:
        probs = np.round(probs * 4) / 4
    probs[~mask] = 0.77  # padding must never count
    return truth, mask, probs


# --------------------------------------------------------------------------- pooled parent metrics


def test_auroc_and_auprc_match_brute_force_with_ties():
    for seed in range(5):
        truth, mask, probs = batch(seed=seed, ties=True)
        st = stage(truth, mask, {"model": side(probs)})
        assert value(st, "auroc") == pytest.approx(brute_auroc(probs[mask], truth[mask]), abs=1e-12)
        assert value(st, "auprc") == pytest.approx(brute_ap(probs[mask], truth[mask]), abs=1e-12)


def test_average_precision_hand_cases():
    one = lambda s, y: stage([y], [[True] * len(y)], {"model": side([s])})  # noqa: E731
    # the textbook case: scores .1 .4 .35 .8 for labels 0 0 1 1 give 5/6
    assert value(one([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]), "auprc") == pytest.approx(5 / 6)
    # a tie at the top between a positive and a negative is one threshold
    assert value(one([0.9, 0.9, 0.1], [1, 0, 1]), "auprc") == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert value(one([0.9, 0.9, 0.1], [1, 0, 1]), "auroc") == pytest.approx(0.25)  # (1/2 + 0) / 2


def test_bootstrap_rank_metrics_equal_brute_force_on_expanded_resamples():
    """A resample weights each graph by its multiplicity; the same as repeating the graph."""
    truth, mask, probs = batch(n=12, d=5, seed=5, ties=True)
    st = stage(truth, mask, {"model": side(probs)})
    w = resample_weights(12, 8, seed=3)
    auroc = METRICS["auroc"].pooled(st, st.sides["model"], w)
    auprc = METRICS["auprc"].pooled(st, st.sides["model"], w)
    for b, row in enumerate(w):
        idx = np.repeat(np.arange(12), row.astype(int))
        s, y = probs[idx][mask[idx]], truth[idx][mask[idx]]
        assert auroc[b] == pytest.approx(brute_auroc(s, y), abs=1e-12)
        assert auprc[b] == pytest.approx(brute_ap(s, y), abs=1e-12)


def test_f1_precision_recall_from_counts():
    truth, mask, probs = batch(n=25, seed=4)
    st = stage(truth, mask, {"model": side(probs)})
    pred, y = probs[mask] > 0.5, truth[mask]
    tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
    assert value(st, "precision") == pytest.approx(tp / (tp + fp))
    assert value(st, "recall") == pytest.approx(tp / (tp + fn))
    assert value(st, "f1") == pytest.approx(2 * tp / (2 * tp + fp + fn))
    per = [2 * (p & t).sum() / max(2 * (p & t).sum() + (p & ~t).sum() + (~p & t).sum(), 1e-12)
           if (p | t).any() else 1.0
           for p, t in ((probs[i][mask[i]] > 0.5, truth[i][mask[i]]) for i in range(25))]
    assert value(st, "f1", aggregate="mean") == pytest.approx(np.mean(per))
    shd = [int(((probs[i] > 0.5) != truth[i])[mask[i]].sum()) for i in range(25)]
    assert value(st, "shd") == pytest.approx(np.mean(shd))  # parent SHD: false + missed, mean


def test_cpdag_half_edges_count_half():
    # true parents {0, 2}; predicted: 0 directed, 1 and 2 undirected (half an edge each)
    st = stage([[1, 0, 1]], [[1, 1, 1]], {"pc": side([[1.0, 0.5, 0.5]], pred=[[1.0, 0.5, 0.5]])})
    tp, fp, fn = 1.5, 0.5, 0.5
    assert value(st, "precision", "pc") == pytest.approx(tp / (tp + fp))
    assert value(st, "recall", "pc") == pytest.approx(tp / (tp + fn))
    assert value(st, "f1", "pc") == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert value(st, "shd", "pc") == pytest.approx(fp + fn)


def test_brier_and_ece_hand_case():
    p = np.array([[0.05, 0.15, 0.15, 0.95, 1.0]])
    y = np.array([[0, 1, 0, 1, 1]], bool)
    st = stage(y, np.ones_like(y), {"model": side(p)})
    # bins [0, .1): gap .05; [.1, .2): |1 - .3| = .7; [.9, 1]: |2 - 1.95| = .05
    assert value(st, "ece") == pytest.approx((0.05 + 0.7 + 0.05) / 5)
    assert value(st, "brier") == pytest.approx(np.mean((p - y) ** 2))


def test_degenerate_inputs():
    nothing = stage(np.zeros((3, 4), bool), np.ones((3, 4), bool), {"model": side(np.full((3, 4), 0.2))})
    assert math.isnan(value(nothing, "auroc")) and math.isnan(value(nothing, "auprc"))
    assert value(nothing, "f1") == 1.0  # nothing true, nothing predicted
    never = stage(np.ones((2, 3), bool), np.ones((2, 3), bool), {"model": side(np.full((2, 3), np.nan))})
    e = estimate(never, "f1", "model", n_boot=B)
    assert e.n == 0 and math.isnan(e.value)  # ran on no graph: undefined, not 1


def test_graphs_a_method_did_not_run_on_do_not_count():
    truth, mask, probs = batch(n=10, seed=6)
    gaps = probs.copy()
    gaps[[2, 5]] = np.nan
    st = stage(truth, mask, {"model": side(gaps)})
    keep = np.setdiff1d(np.arange(10), [2, 5])
    sub = stage(truth[keep], mask[keep], {"model": side(probs[keep])})
    for m in ("f1", "auroc", "shd"):
        assert value(st, m) == pytest.approx(value(sub, m)), m
    assert estimate(st, "f1", "model", n_boot=B).n == 8


# --------------------------------------------------------------------------- whole-graph metrics


def test_graph_shd_counts_a_reversal_once():
    truth = np.zeros((1, 3, 3), bool)
    truth[0, 0, 1] = truth[0, 1, 2] = True  # 0 -> 1 -> 2
    pred = np.zeros((1, 3, 3))
    pred[0, 1, 0] = pred[0, 1, 2] = pred[0, 0, 2] = 1.0  # reversed, right, extra
    g = side(np.zeros((1, 3)), graph_scores=pred, graph_pred=pred)
    st = stage(np.zeros((1, 3), bool), np.ones((1, 3), bool), {"pc": g}, adjacency=truth)
    assert value(st, "graph_shd", "pc") == 2
    assert value(st, "graph_f1", "pc") == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))  # tp 1, fp 2, fn 1
    half = np.zeros((1, 3, 3))
    half[0, 0, 1] = half[0, 1, 0] = 0.5  # an undirected edge over the true 0 -> 1
    half[0, 1, 2] = 1.0
    st = stage(np.zeros((1, 3), bool), np.ones((1, 3), bool),
               {"pc": side(np.zeros((1, 3)), graph_scores=half, graph_pred=half)}, adjacency=truth)
    assert value(st, "graph_shd", "pc") == 0.5


def test_skeleton_f1_ignores_direction_and_counts_an_undirected_edge_once():
    truth = np.zeros((1, 4, 4), bool)
    truth[0, 0, 1] = truth[0, 1, 2] = True  # 0 -> 1 -> 2; 3 alone
    pred = np.zeros((1, 4, 4))
    pred[0, 1, 0] = 1.0  # reversed: a right adjacency
    pred[0, 1, 2] = pred[0, 2, 1] = 1.0  # both ways: one adjacency, not two
    pred[0, 2, 3] = pred[0, 3, 2] = 0.5  # an undirected CPDAG edge: one wrong adjacency
    st = stage(np.zeros((1, 4), bool), np.ones((1, 4), bool),
               {"pc": side(np.zeros((1, 4)), graph_scores=pred, graph_pred=pred)}, adjacency=truth)
    assert value(st, "skeleton_f1", "pc") == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))  # tp 2, fp 1
    assert value(st, "graph_f1", "pc") == pytest.approx(2 * 1 / (2 * 1 + 3 + 1))  # tp 1, fp 1 + 2 halves


def test_graph_metrics_ignore_padding_and_the_diagonal():
    rng = np.random.default_rng(2)
    n, d = 4, 5
    adj = rng.random((n, d, d)) < 0.3
    scores = rng.random((n, d, d))
    vm = np.arange(d)[None].repeat(n, 0) < 3
    def run(a, s):  # noqa: E306
        g = side(np.zeros((n, d)), graph_scores=s, graph_pred=(s > 0.5).astype(float))
        st = stage(np.zeros((n, d), bool), vm, {"pc": g}, adjacency=a, var_mask=vm)
        return [value(st, m, "pc") for m in ("graph_f1", "graph_auroc", "graph_auprc", "graph_shd")]
    ref = run(adj & ~np.eye(d, dtype=bool), scores)
    adj2, scores2 = adj.copy(), scores.copy()
    scores2[:, 3:, :] = 0.99
    adj2[:, :, 3:] = True
    scores2[:, np.arange(d), np.arange(d)] = 0.99
    adj2[:, np.arange(d), np.arange(d)] = True
    assert run(adj2, scores2) == pytest.approx(ref, nan_ok=True)


def test_who_has_which_metric():
    truth, mask, probs = batch(n=6, seed=1)
    st = stage(truth, mask, {"model": side(probs, seconds=np.ones(6)),
                             "expert": side(probs, seconds=np.ones(6), map_pred=probs > 0.5)})
    assert has(METRICS["map_f1"], "expert", st.sides["expert"])
    assert not has(METRICS["map_f1"], "model", st.sides["model"])
    with pytest.raises(KeyError):
        estimate(st, "graph_f1", "model", n_boot=B)  # no graph head
    with pytest.raises(KeyError):
        estimate(st, "speedup", "expert", n_boot=B)  # the expert against itself
    with pytest.raises(ValueError):
        estimate(st, "auroc", "model", aggregate="median", n_boot=B)  # pooled only


# --------------------------------------------------------------------------- aggregates, bootstrap


def lower_quantile(v, q):
    s = np.sort(v)
    return s[max(math.ceil(q * len(s) - 1e-9), 1) - 1]


@pytest.mark.parametrize("aggregate, kw, brute", [
    ("mean", {}, np.mean),
    ("median", {}, lambda v: lower_quantile(v, 0.5)),
    ("quantile", {"q": 0.9}, lambda v: lower_quantile(v, 0.9)),
    ("share", {"above": 2.0}, lambda v: np.mean(v > 2.0)),
])
def test_weighted_aggregates_equal_brute_force_on_expanded_resamples(aggregate, kw, brute):
    rng = np.random.default_rng(7)
    n = 15
    seconds = rng.uniform(0.5, 1.5, n)
    expert = rng.uniform(0.5, 4.0, n)
    seconds[[3, 9]] = np.nan  # not timed: left out
    st = stage(np.zeros((n, 3), bool), np.ones((n, 3), bool),
               {"model": side(np.full((n, 3), 0.1), seconds=seconds),
                "expert": side(np.full((n, 3), 0.1), seconds=expert)})
    e = estimate(st, "speedup", "model", aggregate=aggregate, n_boot=B, seed=4, **kw)
    per = expert / seconds
    assert e.n == n - 2 and e.value == pytest.approx(brute(per[np.isfinite(per)]))
    boots = []
    for row in resample_weights(n, B, 4)[1:]:
        v = np.repeat(per, row.astype(int))
        boots.append(brute(v[np.isfinite(v)]))
    low, high = np.percentile(boots, [2.5, 97.5])
    assert (e.low, e.high) == pytest.approx((low, high))


def test_full_speedup_reads_the_expert_whole_run():
    st = stage(np.zeros((3, 2), bool), np.ones((3, 2), bool),
               {"model": side(np.zeros((3, 2)), seconds=[0.1, 0.2, np.nan]),
                "expert": side(np.zeros((3, 2)), seconds=[0.2, 0.2, 0.2])}, run_seconds=[10.0, 40.0, 5.0])
    assert value(st, "full_speedup", aggregate="mean") == pytest.approx((100 + 200) / 2)
    assert value(st, "speedup", aggregate="mean") == pytest.approx((2 + 1) / 2)
    assert value(st, "seconds") == 0.1  # the lower median of the two timed graphs


def test_intervals_contain_the_estimate_and_shrink_with_more_graphs():
    widths = {}
    for n in (20, 320):
        truth, mask, probs = batch(n=n, seed=8)
        st = stage(truth, mask, {"model": side(probs)})
        for m in ("f1", "auroc", "auprc", "shd", "ece"):
            e = estimate(st, m, "model", n_boot=200, seed=1)
            assert e.low <= e.value <= e.high, (n, m)
            widths[n, m] = e.high - e.low
    for m in ("f1", "auroc", "auprc", "shd", "ece"):
        assert widths[320, m] < 0.5 * widths[20, m], m  # about 1/4 expected: 1/sqrt(16)


def test_relative_estimates_are_paired():
    truth, mask, probs = batch(n=25, seed=9)
    rng = np.random.default_rng(0)
    other = np.clip(probs + rng.normal(0, 0.2, probs.shape), 0, 1)
    st = stage(truth, mask, {"model": side(probs), "expert": side(other)})
    for rel, same in (("drop", 0.0), ("ratio", 1.0), ("difference", 0.0)):
        e = estimate(st, "f1", "model", vs="model", relative=rel, n_boot=B)
        assert (e.value, e.low, e.high) == (same, same, same), rel  # itself, on the same resamples
    a, b = value(st, "f1"), value(st, "f1", "expert")
    assert estimate(st, "f1", "model", vs="expert", n_boot=B).value == pytest.approx(1 - a / b)
    a, b = value(st, "shd"), value(st, "shd", "expert")  # lower is better: a / b - 1
    assert estimate(st, "shd", "model", vs="expert", n_boot=B).value == pytest.approx(a / b - 1)
