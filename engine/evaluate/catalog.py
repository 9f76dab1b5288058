"""The one registry of evaluation metrics: what each means, which way is better, who has it.

Every metric is computed here and nowhere else. A metric reads one method's predictions on one
evaluation stage (`engine.evaluate.record`) and is evaluated for a batch of bootstrap resamples
at once: `w` [B, N] holds how often each of the N graphs appears in each resample (a row of
ones is the plain estimate). Metrics are either

- per graph (`per_graph(stage, side) -> [N]`), then summarised by an aggregate (mean, median,
  quantile, share above a value), or
- pooled over every candidate entry of every graph (`pooled(stage, side, w) -> [B]`): F1 from the
  summed counts, AUROC over all entries, and so on.

Predictions are weights in [0, 1]: a thresholded probability (0 or 1), or a CPDAG's undirected
edge, which counts as half an edge in each direction. Counts are weighted sums, so a half edge is
half a true or false positive. This module imports numpy only (spec validation reads the names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from engine.evaluate.baselines import BASELINES

Scope = Literal["parents", "graph", "time", "episode"]
AGGREGATES = ("pooled", "mean", "median", "quantile", "share")
SIDES = ("model", "expert", *BASELINES)  # the methods an evaluation compares
EPS = 1e-12


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    higher_is_better: bool
    scope: Scope
    default_aggregate: str
    lower: float | None = 0.0  # the range of values (None: unbounded)
    upper: float | None = 1.0
    per_graph: Callable | None = None  # (stage, side) -> [N]
    pooled: Callable | None = None  # (stage, side, w [B, N]) -> [B]
    sides: tuple[str, ...] | None = None  # None: every side that has the metric's inputs

    @property
    def aggregates(self) -> tuple[str, ...]:
        pooled = ("pooled",) if self.pooled is not None else ()
        return pooled + (AGGREGATES[1:] if self.per_graph is not None else ())

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


# --------------------------------------------------------------------------- inputs


def _parents(stage, side):
    """(pred, scores, truth, mask) over the target's candidate parents, [N, d] each."""
    return side.pred, side.probs, stage.truth, stage.mask


def _graph(stage, side):
    """The same over ordered pairs of real variables, flattened to [N, d * d]."""
    n, d = stage.var_mask.shape
    valid = stage.var_mask[:, :, None] & stage.var_mask[:, None, :] & ~np.eye(d, dtype=bool)
    flat = lambda a: a.reshape(n, d * d)  # noqa: E731
    return flat(side.graph_pred), flat(side.graph_scores), flat(stage.adjacency), flat(valid)


# --------------------------------------------------------------------------- counts and ranks


def _counts(pred, truth, mask):
    """Per-graph weighted (TP, FP, FN) [N, 3]."""
    p = np.where(mask, np.nan_to_num(pred), 0.0)
    t = (truth & mask).astype(np.float64)
    return np.stack([(p * t).sum(1), (p * (1 - t)).sum(1), ((1 - p) * t).sum(1)], axis=1)


def _f1(c):
    tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
    den = 2 * tp + fp + fn
    return np.where(den > EPS, 2 * tp / np.maximum(den, EPS), 1.0)  # nothing true or predicted: 1


def _ratio(a, b):
    return np.where(b > EPS, a / np.maximum(b, EPS), np.nan)


def _pooled_counts(inputs, which):
    def fn(stage, side, w):
        pred, _, truth, mask = inputs(stage, side)
        c = w @ _counts(pred, truth, mask)  # [B, 3]
        if which == "f1":
            return _f1(c)
        if which == "precision":
            return _ratio(c[:, 0], c[:, 0] + c[:, 1])
        return _ratio(c[:, 0], c[:, 0] + c[:, 2])
    return fn


def _entries(inputs, stage, side):
    """Flat (scores, labels, graph index) of the valid entries, sorted by score."""
    _, scores, truth, mask = inputs(stage, side)
    g = np.broadcast_to(np.arange(mask.shape[0])[:, None], mask.shape)[mask]
    s, y = np.nan_to_num(scores[mask]), truth[mask]
    order = np.argsort(s, kind="mergesort")
    return s[order], y[order], g[order]


def _tie_groups(s):
    return np.cumsum(np.r_[False, s[1:] != s[:-1]]) if s.size else s.astype(int)


def _auroc(inputs):
    """Mann-Whitney with ties as 1/2, every entry weighted by its graph's multiplicity."""
    def fn(stage, side, w):
        s, y, g = _entries(inputs, stage, side)
        if s.size == 0:
            return np.full(w.shape[0], np.nan)
        grp = _tie_groups(s)
        ew = w[:, g]  # [B, E]
        n_groups = int(grp[-1]) + 1
        pos = np.zeros((w.shape[0], n_groups))
        neg = np.zeros((w.shape[0], n_groups))
        np.add.at(pos.T, grp, (ew * y).T)
        np.add.at(neg.T, grp, (ew * ~y).T)
        below = np.cumsum(neg, 1) - neg
        n_pos, n_neg = pos.sum(1), neg.sum(1)
        return _ratio((pos * (below + 0.5 * neg)).sum(1), n_pos * n_neg)
    return fn


def _auprc(inputs):
    """Average precision over distinct score thresholds (ties form one threshold)."""
    def fn(stage, side, w):
        s, y, g = _entries(inputs, stage, side)
        if s.size == 0:
            return np.full(w.shape[0], np.nan)
        s, y, g = s[::-1], y[::-1], g[::-1]  # descending
        ew = w[:, g]
        tp, fp = np.cumsum(ew * y, 1), np.cumsum(ew * ~y, 1)
        last = np.r_[s[1:] != s[:-1], True]
        tp, fp = tp[:, last], fp[:, last]
        n_pos = tp[:, -1:]
        recall = _ratio(tp, n_pos)
        precision = _ratio(tp, tp + fp)
        d_recall = np.diff(np.concatenate([np.zeros_like(recall[:, :1]), recall], 1), axis=1)
        return np.where(n_pos[:, 0] > EPS, np.nansum(d_recall * precision, 1), np.nan)
    return fn


def _brier(stage, side, w):
    _, p, t, m = _parents(stage, side)
    sq = np.where(m, (np.nan_to_num(p) - t) ** 2, 0.0).sum(1)
    return _ratio(w @ sq, w @ m.sum(1).astype(np.float64))


def _ece(stage, side, w, bins: int = 10):
    """sum_b |sum of labels - sum of probabilities in bin b| / entries (10 equal-width bins)."""
    _, p, t, m = _parents(stage, side)
    p = np.nan_to_num(p)
    b = np.clip(np.floor(p * bins).astype(int), 0, bins - 1)
    per = np.zeros((p.shape[0], bins))  # per graph and bin: sum(label - prob)
    rows = np.broadcast_to(np.arange(p.shape[0])[:, None], p.shape)
    np.add.at(per, (rows[m], b[m]), (t[m] - p[m]))
    return _ratio(np.abs(w @ per).sum(1), w @ m.sum(1).astype(np.float64))


# --------------------------------------------------------------------------- per-graph metrics


def _f1_per_graph(inputs):
    def fn(stage, side):
        pred, _, truth, mask = inputs(stage, side)
        return _f1(_counts(pred, truth, mask))
    return fn


def _parent_shd(stage, side):
    """Expected number of wrong candidates: FP + FN of the parent set."""
    c = _counts(side.pred, stage.truth, stage.mask)
    return c[:, 1] + c[:, 2]


def _graph_shd(stage, side):
    """Structural Hamming distance, a reversed edge counting once: per unordered pair the larger
    of the two directions' errors (so an undirected CPDAG edge over a true edge costs 1/2)."""
    d = stage.var_mask.shape[1]
    pred, _, truth, valid = _graph(stage, side)
    n = pred.shape[0]
    err = np.where(valid, np.abs(np.nan_to_num(pred) - truth), 0.0).reshape(n, d, d)
    upper = np.triu(np.ones((d, d), bool), 1)
    return (np.maximum(err, err.transpose(0, 2, 1)) * upper).sum((1, 2))


def _skeleton(stage, side):
    """(pred, scores, truth, mask) over unordered pairs of real variables, [N, d * d]: an
    adjacency whichever its direction (a CPDAG's undirected edge, 1/2 each way, is a whole one)."""
    n, d = stage.var_mask.shape
    upper = stage.var_mask[:, :, None] & stage.var_mask[:, None, :] & np.triu(np.ones((d, d), bool), 1)
    both = lambda a: np.nan_to_num(a) + np.nan_to_num(a).transpose(0, 2, 1)  # noqa: E731
    sym = lambda a: np.maximum(a, a.transpose(0, 2, 1))  # noqa: E731
    flat = lambda a: a.reshape(n, d * d)  # noqa: E731
    pred = np.clip(both(side.graph_pred), 0.0, 1.0)
    return flat(pred), flat(sym(side.graph_scores)), flat(sym(stage.adjacency)), flat(upper)


def _map_f1(stage, side):
    return _f1(_counts(side.map_pred, stage.truth, stage.mask))


def _seconds(stage, side):
    return side.seconds


def _speedup(stage, side):
    """The expert's posterior computation (prior included) over this side's, per graph."""
    return _ratio(stage.sides["expert"].seconds, side.seconds)


def _full_speedup(stage, side):
    """The expert's whole run (prior and every trial of causal BO) over this side's, per graph."""
    return _ratio(stage.expert_run_seconds, side.seconds)


# --------------------------------------------------------------------------- episodes
# [optimize] problems: each side is a strategy, each graph one episode minimising the target.
# The formulas are engine.cbo.regret's (defined there once; imported lazily: it needs jax).


def _regret():
    from engine.cbo import regret

    return regret


def simple_regret_curve(stage, side) -> np.ndarray:
    """[N, T] simple regret after each trial (what regret plots draw)."""
    return np.asarray(_regret().simple_regret(side.best_y, stage.optimum), np.float64)


def _simple_regret(stage, side):
    return simple_regret_curve(stage, side)[:, -1]


def _cumulative_regret(stage, side):
    return np.asarray(_regret().cumulative_regret(side.trial_y, stage.optimum), np.float64)[:, -1]


def _gap_closure(stage, side):
    return np.asarray(_regret().gap_closure(stage.y0, side.best_y[:, -1], stage.optimum), np.float64)


def _trials_to_95(stage, side):
    return np.asarray(_regret().trials_to_closure(side.best_y, stage.y0, stage.optimum, 0.95), np.float64)


def _m(name, description, higher, scope, aggregate, **kw) -> Metric:
    return Metric(name, description, higher, scope, aggregate, **kw)


_NOT_EXPERT = tuple(s for s in SIDES if s != "expert")

METRICS: dict[str, Metric] = {m.name: m for m in [
    _m("f1", "F1 of the target's predicted parent set (pooled: from the counts summed over graphs)",
       True, "parents", "pooled", per_graph=_f1_per_graph(_parents), pooled=_pooled_counts(_parents, "f1")),
    _m("precision", "share of predicted parents that are true parents", True, "parents", "pooled",
       pooled=_pooled_counts(_parents, "precision")),
    _m("recall", "share of true parents that are predicted", True, "parents", "pooled",
       pooled=_pooled_counts(_parents, "recall")),
    _m("auroc", "area under the ROC curve of the parent probabilities, over every candidate",
       True, "parents", "pooled", pooled=_auroc(_parents)),
    _m("auprc", "area under the precision-recall curve of the parent probabilities", True,
       "parents", "pooled", pooled=_auprc(_parents)),
    _m("shd", "wrong candidate parents per graph (false plus missed)", False, "parents", "mean",
       upper=None, per_graph=_parent_shd),
    _m("brier", "mean squared error of the parent probabilities", False, "parents", "pooled",
       pooled=_brier),
    _m("ece", "expected calibration error of the parent probabilities (10 bins)", False,
       "parents", "pooled", pooled=_ece),
    _m("map_f1", "F1 of the expert's most probable parent set", True, "parents", "mean",
       per_graph=_map_f1, sides=("expert",)),
    _m("graph_f1", "F1 over every edge of the whole graph", True, "graph", "pooled",
       per_graph=_f1_per_graph(_graph), pooled=_pooled_counts(_graph, "f1")),
    _m("graph_auroc", "AUROC of the edge scores over every ordered pair", True, "graph", "pooled",
       pooled=_auroc(_graph)),
    _m("graph_auprc", "AUPRC of the edge scores over every ordered pair", True, "graph", "pooled",
       pooled=_auprc(_graph)),
    _m("skeleton_f1", "F1 over unordered pairs: an edge found in either direction", True, "graph",
       "pooled", per_graph=_f1_per_graph(_skeleton), pooled=_pooled_counts(_skeleton, "f1")),
    _m("graph_shd", "structural Hamming distance of the whole graph (a reversal counts once)",
       False, "graph", "mean", upper=None, per_graph=_graph_shd),
    _m("seconds", "wall time from the data to the prediction, per graph (compile apart)", False,
       "time", "median", upper=None, per_graph=_seconds),
    _m("speedup", "expert's posterior time (prior included) / this method's time, per graph",
       True, "time", "median", upper=None, per_graph=_speedup, sides=_NOT_EXPERT),
    _m("full_speedup", "expert's whole run (prior + causal BO trials) / this method's time",
       True, "time", "median", upper=None, per_graph=_full_speedup, sides=_NOT_EXPERT),
    _m("simple_regret", "best outcome after the last trial minus the true optimum (target units)",
       False, "episode", "mean", lower=None, upper=None, per_graph=_simple_regret),
    _m("cumulative_regret", "sum over trials of the outcome minus the true optimum", False,
       "episode", "mean", lower=None, upper=None, per_graph=_cumulative_regret),
    _m("gap_closure", "share of the gap from the observational mean to the optimum closed by the "
       "best outcome", True, "episode", "mean", lower=None, upper=None, per_graph=_gap_closure),
    _m("trials_to_95", "trials until the best outcome closes 95% of the gap (T + 1: never)", False,
       "episode", "mean", lower=1.0, upper=None, per_graph=_trials_to_95),
]}


def has(metric: Metric, side_name: str, side) -> bool:
    """Whether `side` (a record's Side) has the inputs of `metric`."""
    # Another spec's model (evaluation.models, named by its spec) is a "model" side.
    role = side_name if side_name in SIDES else "model"
    if metric.sides is not None and role not in metric.sides:
        return False
    if metric.scope == "episode" or side.best_y is not None:
        # a strategy of an [optimize] problem: its episodes, its belief's parent-set metrics
        # and seconds per episode (no expert side to be faster than)
        return side.best_y is not None and (metric.scope in ("episode", "parents")
                                            or metric.name == "seconds") and metric.name != "map_f1"
    if metric.scope == "graph":
        return side.graph_pred is not None
    if metric.scope == "time":
        return bool(np.isfinite(side.seconds).any())
    if metric.name == "map_f1":
        return side.map_pred is not None
    return True


def describe() -> list[tuple[str, str, str, str]]:
    """(name, direction, aggregates, description) of every metric, for schema and errors."""
    return [(m.name, m.direction, ", ".join(m.aggregates), m.description) for m in METRICS.values()]
