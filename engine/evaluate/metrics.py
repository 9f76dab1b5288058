"""Structure-learning and amortization metrics over padded batches (numpy only).

Definitions follow ``reference/metrics.md``. Conventions:

- ``probs[n, i]`` is P(X_i in Pa(Y)) for graph ``n``; ``mask[n, i]`` marks valid candidates (real
  variables that are not the target). Padded entries never count.
- A prediction is positive when ``prob > threshold`` (strict, so a constant 0.5 predicts nothing).
- F1 = 2TP / (2TP + FP + FN). When the prediction and the truth are both empty there is nothing to
  get wrong and F1 = 1 (a root target predicted as a root scores perfectly); precision (recall) is
  NaN when nothing is predicted (nothing is true).
- Rank metrics (AUROC, AUPRC) and calibration are NaN when they are undefined (one class only, or no
  entries); nothing here raises on degenerate inputs.
- Everything is computed in float64 and returned as plain Python floats / ints, so the dicts are
  JSON-ready (NaN aside).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "auroc",
    "average_precision",
    "ece",
    "brier",
    "f1_from_counts",
    "map_f1",
    "posterior_weighted_f1",
    "score_parents",
    "score_graphs",
    "shd_graphs",
    "timing_summary",
    "accuracy_drop",
]

_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps] for the log-likelihood
NAN = float("nan")


# --------------------------------------------------------------------------- basic rank metrics


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties given the mean of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # start index of each run of equal values
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], xs.size]
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def auroc(scores, labels) -> float:
    """Area under the ROC curve by the Mann-Whitney rank formula (ties count 1/2); NaN with one class.

    scores: [n] float, labels: [n] bool.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return NAN
    r = _average_ranks(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(scores, labels) -> float:
    """AUPRC as step-wise average precision, AP = sum_k (R_k - R_{k-1}) P_k over distinct thresholds.

    Tied scores form one threshold (as in scikit-learn). NaN when there are no positives.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    n_pos = int(y.sum())
    if n_pos == 0:
        return NAN
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.r_[s[1:] != s[:-1], True]  # last index of each tie group = one threshold
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    d_recall = np.diff(np.r_[0.0, recall])
    return float(np.sum(d_recall * precision))


def ece(probs, labels, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-width bins on [0, 1].

    ECE = sum_m |B_m| / N * |mean label in B_m - mean prob in B_m|; p = 1 goes in the last bin.
    """
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if p.size == 0:
        return NAN
    b = np.clip(np.floor(p * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    sum_p = np.bincount(b, weights=p, minlength=n_bins)
    sum_y = np.bincount(b, weights=y, minlength=n_bins)
    # |B|/N * |mean_y - mean_p| = |sum_y - sum_p| / N
    return float(np.abs(sum_y - sum_p).sum() / p.size)


def brier(probs, labels) -> float:
    """Mean squared error between probabilities and 0/1 labels; NaN when empty."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    return float(np.mean((p - y) ** 2)) if p.size else NAN


def f1_from_counts(tp, fp, fn):
    """F1 = 2TP / (2TP + FP + FN), with 1.0 where prediction and truth are both empty.

    Works elementwise on arrays (per-graph F1) and on scalars.
    """
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, 2 * tp / np.where(den > 0, den, 1.0), 1.0)
    return float(out) if out.ndim == 0 else out


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else NAN


# --------------------------------------------------------------------------- parent-set posteriors


def _set_f1(sets: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """F1 of every candidate set against the truth. sets [N,K,d], truth/mask [N,d] -> [N,K]."""
    s = sets & mask[:, None, :]
    t = (truth & mask)[:, None, :]
    tp = (s & t).sum(-1)
    fp = (s & ~t).sum(-1)
    fn = (~s & t).sum(-1)
    return f1_from_counts(tp, fp, fn)


def _set_inputs(set_probs, sets, truth, mask):
    w = np.asarray(set_probs, dtype=np.float64)
    s = np.asarray(sets, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    m = np.ones_like(t) if mask is None else np.asarray(mask, dtype=bool)
    return w, s, t, m


def map_f1(set_probs, sets, truth, mask=None, per_graph: bool = False):
    """F1 of the maximum-a-posteriori parent set, averaged over graphs.

    set_probs: [N, K] posterior weight of each candidate set (padding slots weight 0)
    sets:      [N, K, d] bool, candidate parent sets
    truth:     [N, d] bool, true parent sets; mask: optional [N, d] valid candidates
    Returns the mean over graphs, or the [N] per-graph values with ``per_graph=True``.
    """
    w, s, t, m = _set_inputs(set_probs, sets, truth, mask)
    if w.shape[0] == 0:
        return np.zeros(0) if per_graph else NAN
    f1 = _set_f1(s, t, m)
    best = np.argmax(w, axis=1)
    out = f1[np.arange(w.shape[0]), best]
    return out if per_graph else float(out.mean())


def posterior_weighted_f1(set_probs, sets, truth, mask=None, per_graph: bool = False):
    """The expert's own metric: sum_S w_S F1(S, true set), weights normalised per graph.

    Shapes as in :func:`map_f1`. Graphs whose weights sum to 0 give NaN.
    """
    w, s, t, m = _set_inputs(set_probs, sets, truth, mask)
    if w.shape[0] == 0:
        return np.zeros(0) if per_graph else NAN
    total = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (w * _set_f1(s, t, m)).sum(1) / total
    out = np.where(total > 0, out, np.nan)
    return out if per_graph else float(np.nanmean(out)) if np.isfinite(out).any() else NAN


# --------------------------------------------------------------------------- bootstrap


def _bootstrap_ci(
    scores: np.ndarray,
    labels: np.ndarray,
    graph: np.ndarray,
    counts: np.ndarray,
    n_graphs: int,
    n_boot: int,
    seed: int,
) -> dict[str, float]:
    """Percentile 95% intervals of the pooled F1 and pooled AUROC, resampling graphs.

    A resample is a vector of per-graph multiplicities, so pooled AUROC over the resample is a
    weighted Mann-Whitney statistic computed from one global sort (O(entries) per resample).
    counts: [N, 3] per-graph (TP, FP, FN); graph: [entries] graph index of each pooled entry.
    """
    out = {k: NAN for k in ("f1_ci_low", "f1_ci_high", "auroc_ci_low", "auroc_ci_high")}
    if n_graphs == 0 or n_boot <= 0:
        return out
    rng = np.random.default_rng(seed)
    order = np.argsort(scores, kind="mergesort")
    s_sorted = scores[order]
    # tie group of each sorted entry
    group = np.cumsum(np.r_[False, s_sorted[1:] != s_sorted[:-1]]) if s_sorted.size else s_sorted
    n_groups = int(group[-1]) + 1 if group.size else 0
    y_sorted = labels[order]
    g_sorted = graph[order]
    f1s = np.empty(n_boot)
    aucs = np.empty(n_boot)
    for b in range(n_boot):
        mult = np.bincount(rng.integers(0, n_graphs, n_graphs), minlength=n_graphs).astype(float)
        tp, fp, fn = mult @ counts
        f1s[b] = f1_from_counts(tp, fp, fn)
        if n_groups == 0:
            aucs[b] = NAN
            continue
        w = mult[g_sorted]
        pos = np.bincount(group, weights=w * y_sorted, minlength=n_groups)
        neg = np.bincount(group, weights=w * ~y_sorted, minlength=n_groups)
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos == 0 or n_neg == 0:
            aucs[b] = NAN
            continue
        neg_below = np.cumsum(neg) - neg
        aucs[b] = np.sum(pos * (neg_below + 0.5 * neg)) / (n_pos * n_neg)
    out["f1_ci_low"], out["f1_ci_high"] = (float(v) for v in np.nanpercentile(f1s, [2.5, 97.5]))
    if np.isfinite(aucs).any():
        out["auroc_ci_low"], out["auroc_ci_high"] = (
            float(v) for v in np.nanpercentile(aucs, [2.5, 97.5])
        )
    return out


# --------------------------------------------------------------------------- scoring


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return NAN, NAN, NAN
    q = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
    return float(q[1]), float(q[0]), float(q[2])


def _score_entries(probs, truth, mask, threshold, n_boot, seed) -> dict[str, Any]:
    """Metrics over [N, E] entries with a validity mask (shared by parents and graphs)."""
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(truth, dtype=bool)
    m = np.asarray(mask, dtype=bool)
    if not (p.shape == t.shape == m.shape) or p.ndim != 2:
        raise ValueError(f"probs, truth, mask must share shape [N, E]: {p.shape}, {t.shape}, {m.shape}")
    n_graphs = p.shape[0]
    pred = (p > threshold) & m
    tt = t & m
    tp_g = (pred & tt).sum(1)
    fp_g = (pred & ~tt).sum(1)
    fn_g = (~pred & tt).sum(1)
    tp, fp, fn = int(tp_g.sum()), int(fp_g.sum()), int(fn_g.sum())

    flat_p, flat_y = p[m], t[m]
    graph_idx = np.broadcast_to(np.arange(n_graphs)[:, None], p.shape)[m]

    per_auc, per_ap = [], []
    for n in range(n_graphs):
        yn = t[n][m[n]]
        if 0 < yn.sum() < yn.size:
            per_auc.append(auroc(p[n][m[n]], yn))
        if yn.any():
            per_ap.append(average_precision(p[n][m[n]], yn))
    auc_med, auc_q25, auc_q75 = _quartiles(per_auc)
    ap_med, ap_q25, ap_q75 = _quartiles(per_ap)

    pc = np.clip(p, _EPS, 1.0 - _EPS)
    ll_g = np.where(m, np.where(t, np.log(pc), np.log1p(-pc)), 0.0).sum(1)
    f1_g = f1_from_counts(tp_g, fp_g, fn_g)
    shd_g = fp_g + fn_g

    out: dict[str, Any] = {
        "threshold": float(threshold),
        "n_graphs": int(n_graphs),
        "n_entries": int(m.sum()),
        "n_positives": int(tt.sum()),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": f1_from_counts(tp, fp, fn) if n_graphs else NAN,
        "f1_per_graph_mean": float(f1_g.mean()) if n_graphs else NAN,
        "auroc": auroc(flat_p, flat_y),
        "auprc": average_precision(flat_p, flat_y),
        "auprc_chance": _ratio(float(flat_y.sum()), float(flat_y.size)),
        "auroc_per_graph_median": auc_med,
        "auroc_per_graph_q25": auc_q25,
        "auroc_per_graph_q75": auc_q75,
        "auroc_per_graph_n": len(per_auc),
        "auprc_per_graph_median": ap_med,
        "auprc_per_graph_q25": ap_q25,
        "auprc_per_graph_q75": ap_q75,
        "shd_mean": float(shd_g.mean()) if n_graphs else NAN,
        "shd_total": int(shd_g.sum()),
        "ece": ece(flat_p, flat_y),
        "brier": brier(flat_p, flat_y),
        "loglik_mean": float(ll_g.mean()) if n_graphs else NAN,
        "n_boot": int(n_boot),
    }
    counts = np.stack([tp_g, fp_g, fn_g], axis=1).astype(np.float64)
    out.update(_bootstrap_ci(flat_p, flat_y, graph_idx, counts, n_graphs, n_boot, seed))
    out["_per_graph"] = {"f1": f1_g, "shd": shd_g, "loglik": ll_g}
    return out


def score_parents(
    probs,
    truth,
    mask,
    threshold: float = 0.5,
    set_probs=None,
    sets=None,
    n_boot: int = 1000,
    seed: int = 0,
    per_graph: bool = False,
) -> dict[str, Any]:
    """Score parent-set marginals of one target per graph against the true parents.

    probs: [N, d] float P(X_i in Pa(Y)); truth: [N, d] bool; mask: [N, d] bool valid candidates.
    set_probs [N, K] / sets [N, K, d] (optional, e.g. the expert's posterior over parent sets) add
    ``map_f1`` and ``posterior_weighted_f1``. ``per_graph=True`` adds a ``per_graph`` dict of
    lists (f1, shd, loglik). Keys: see the module docstring and ``reference/metrics.md``;
    ``shd_*`` is FP + FN per graph; ``*_ci_*`` are bootstrap 95% intervals over graphs.
    """
    out = _score_entries(probs, truth, mask, threshold, n_boot, seed)
    pg = out.pop("_per_graph")
    if set_probs is not None and sets is not None:
        out["map_f1"] = map_f1(set_probs, sets, truth, mask)
        out["posterior_weighted_f1"] = posterior_weighted_f1(set_probs, sets, truth, mask)
    if per_graph:
        out["per_graph"] = {k: v.tolist() for k, v in pg.items()}
    return out


def shd_graphs(pred, truth, var_mask=None) -> np.ndarray:
    """Structural Hamming distance per graph, a reversed edge counting once.

    pred, truth: [N, d, d] bool adjacency (G[i, j] = i -> j); var_mask: [N, d]. For every
    unordered pair {i, j} of valid variables, SHD adds 1 when the pair's edge state (none, i->j,
    j->i, both) differs between prediction and truth. Returns [N] ints.
    """
    a = np.asarray(pred, dtype=bool)
    b = np.asarray(truth, dtype=bool)
    n, d, _ = a.shape
    vm = np.ones((n, d), bool) if var_mask is None else np.asarray(var_mask, dtype=bool)
    pair = vm[:, :, None] & vm[:, None, :]
    upper = np.triu(np.ones((d, d), bool), k=1)
    differs = (a != b) | (a.transpose(0, 2, 1) != b.transpose(0, 2, 1))
    return (differs & pair & upper).sum((1, 2))


def score_graphs(
    edge_probs,
    truth,
    var_mask,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    per_graph: bool = False,
) -> dict[str, Any]:
    """Score full-graph edge probabilities over off-diagonal entries between real variables.

    edge_probs: [N, d, d] float P(i -> j); truth: [N, d, d] bool; var_mask: [N, d] bool.
    Same keys as :func:`score_parents`, except that ``shd_*`` counts a reversal once
    (:func:`shd_graphs`), plus ``skeleton_f1`` (pooled F1 of the undirected skeleton).
    """
    p = np.asarray(edge_probs, dtype=np.float64)
    t = np.asarray(truth, dtype=bool)
    vm = np.asarray(var_mask, dtype=bool)
    n, d, _ = p.shape
    valid = vm[:, :, None] & vm[:, None, :] & ~np.eye(d, dtype=bool)[None]
    out = _score_entries(p.reshape(n, -1), t.reshape(n, -1), valid.reshape(n, -1), threshold,
                         n_boot, seed)
    pg = out.pop("_per_graph")
    pred = (p > threshold) & valid
    shd_g = shd_graphs(pred, t & valid, vm)
    out["shd_mean"] = float(shd_g.mean()) if n else NAN
    out["shd_total"] = int(shd_g.sum())
    pg["shd"] = shd_g
    # skeleton: unordered pair present if either direction is
    upper = np.triu(np.ones((d, d), bool), k=1)[None] & valid
    sk_p = (pred | pred.transpose(0, 2, 1))[upper]
    sk_t = ((t & valid) | (t & valid).transpose(0, 2, 1))[upper]
    out["skeleton_f1"] = (
        f1_from_counts((sk_p & sk_t).sum(), (sk_p & ~sk_t).sum(), (~sk_p & sk_t).sum()) if n else NAN
    )
    if per_graph:
        out["per_graph"] = {k: np.asarray(v).tolist() for k, v in pg.items()}
    return out


# --------------------------------------------------------------------------- amortization


def accuracy_drop(model_score: float, expert_score: float) -> float:
    """1 - model / expert (reference/metrics.md); NaN when the expert score is 0 or not finite."""
    if expert_score is None or model_score is None:
        return NAN
    if not math.isfinite(expert_score) or not math.isfinite(model_score) or expert_score == 0:
        return NAN
    return 1.0 - model_score / expert_score


def timing_summary(expert_s, model_s, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per-graph speedup = expert wall time / model wall time on the same graphs.

    expert_s, model_s: [N] seconds (compile time excluded; report it separately). Graphs with a
    non-positive or non-finite time are left out of the speedup statistics (``n_timed`` counts
    the rest). Returns speedups (list), median / mean / geometric mean with quartiles, the
    ratio of totals, the share of graphs where the model is faster, and a bootstrap 95% interval
    of the geometric mean.
    """
    e = np.asarray(expert_s, dtype=np.float64).ravel()
    m = np.asarray(model_s, dtype=np.float64).ravel()
    if e.shape != m.shape:
        raise ValueError(f"expert_s and model_s differ in length: {e.size} vs {m.size}")
    ok = np.isfinite(e) & np.isfinite(m) & (e > 0) & (m > 0)
    sp = np.full(e.shape, np.nan)
    sp[ok] = e[ok] / m[ok]
    s = sp[ok]
    out: dict[str, Any] = {"n_graphs": int(e.size), "n_timed": int(s.size), "speedups": sp.tolist()}
    if s.size == 0:
        keys = ("speedup_median", "speedup_mean", "speedup_geomean", "speedup_q25", "speedup_q75",
                "speedup_min", "speedup_max", "speedup_of_totals", "share_model_faster",
                "speedup_geomean_ci_low", "speedup_geomean_ci_high")
        out.update({k: NAN for k in keys})
    else:
        q25, med, q75 = np.percentile(s, [25, 50, 75])
        logs = np.log(s)
        rng = np.random.default_rng(seed)
        boot = np.exp(logs[rng.integers(0, s.size, (n_boot, s.size))].mean(1)) if n_boot > 0 else []
        lo, hi = np.percentile(boot, [2.5, 97.5]) if n_boot > 0 else (NAN, NAN)
        out.update({
            "speedup_median": float(med),
            "speedup_mean": float(s.mean()),
            "speedup_geomean": float(np.exp(logs.mean())),
            "speedup_q25": float(q25),
            "speedup_q75": float(q75),
            "speedup_min": float(s.min()),
            "speedup_max": float(s.max()),
            "speedup_of_totals": float(e[ok].sum() / m[ok].sum()),
            "share_model_faster": float(np.mean(s > 1.0)),
            "speedup_geomean_ci_low": float(lo),
            "speedup_geomean_ci_high": float(hi),
        })
    out["expert_s_total"] = float(np.nansum(e))
    out["model_s_total"] = float(np.nansum(m))
    out["expert_s_median"] = float(np.nanmedian(e)) if e.size else NAN
    out["model_s_median"] = float(np.nanmedian(m)) if m.size else NAN
    return out
