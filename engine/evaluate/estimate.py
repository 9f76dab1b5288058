"""Statistics over graphs with bootstrap intervals: the one way a metric becomes a number.

`estimate(stage, metric, side)` resamples the stage's graphs `n_boot` times (the multiplicities
depend only on N and the seed, so two methods, or a method and its baseline, are always compared
on the same resamples: a paired bootstrap) and returns the statistic on all graphs with its
percentile 95% interval. A relative statistic (`vs` another method) is computed per resample on
the graphs both methods have, so its interval accounts for the pairing.
"""

from __future__ import annotations

import numpy as np

from engine.evaluate.catalog import METRICS, Metric, has
from engine.evaluate.record import Estimate, StageResult

RELATIVE = ("drop", "ratio", "difference")


def resample_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[1 + n_boot, n] graph multiplicities; row 0 is the full sample."""
    rng = np.random.default_rng(seed)
    boot = np.zeros((n_boot, n))
    for b in range(n_boot if n else 0):
        boot[b] = np.bincount(rng.integers(0, n, n), minlength=n)
    return np.concatenate([np.ones((1, n)), boot])


def _aggregate(values: np.ndarray, w: np.ndarray, aggregate: str, q: float, above: float | None):
    ok = np.isfinite(values)
    w = w * ok
    v = np.where(ok, values, 0.0)
    total = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if aggregate == "mean":
            out = (w @ v) / total
        elif aggregate == "share":
            out = (w @ (v > above).astype(np.float64)) / total
        else:  # median, quantile: the weighted lower quantile
            q = 0.5 if aggregate == "median" else q
            order = np.argsort(v, kind="mergesort")
            cw = np.cumsum(w[:, order], 1)
            idx = np.argmax(cw >= q * total[:, None] - 1e-9, 1)
            out = v[order][idx]
    return np.where(total > 0, out, np.nan)


def _values(stage: StageResult, metric: Metric, side_name: str, w: np.ndarray, aggregate: str,
            q: float, above: float | None) -> np.ndarray:
    side = stage.sides[side_name]
    w = w * side.ran
    if aggregate == "pooled":  # over no graphs, undefined (F1 of empty counts would read 1)
        return np.where(w.sum(1) > 0, metric.pooled(stage, side, w), np.nan)
    return _aggregate(metric.per_graph(stage, side), w, aggregate, q, above)


def _count(stage: StageResult, metric: Metric, side_name: str, w0: np.ndarray, aggregate: str) -> int:
    """Graphs that have the value: ran, and (per-graph metrics) finite there, e.g. timed."""
    side = stage.sides[side_name]
    ok = side.ran & (w0 > 0)
    if aggregate != "pooled":
        ok &= np.isfinite(metric.per_graph(stage, side))
    return int(ok.sum())


def relative_value(a, b, kind: str, higher_is_better: bool):
    """`drop`: the share by which `a` is worse than `b` (negative when better); `ratio`: a / b;
    `difference`: a - b."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "ratio":
            return a / b
        if kind == "difference":
            return a - b
        return 1 - a / b if higher_is_better else a / b - 1


def estimate(stage: StageResult, metric: str, side: str = "model", aggregate: str | None = None,
             q: float = 0.5, above: float | None = None, vs: str | None = None,
             relative: str = "drop", n_boot: int = 1000, seed: int = 0,
             vs_stage: StageResult | None = None) -> Estimate:
    """The `aggregate` of `metric` for `side` on `stage`, or relative to method `vs` (on the
    same graphs, paired), or to `vs` (default: the same side) on another stage `vs_stage`
    (other graphs: the two are resampled independently)."""
    m = METRICS[metric]
    aggregate = aggregate or m.default_aggregate
    if aggregate not in m.aggregates:
        raise ValueError(f"{metric} has no {aggregate} (it has {', '.join(m.aggregates)})")
    ref_stage, ref_side = vs_stage or stage, vs or side
    for st, name in ((stage, side), (ref_stage, ref_side)):
        if name not in st.sides or not has(m, name, st.sides[name]):
            raise KeyError(f"stage {st.name} has no {metric} for {name}")
    w = resample_weights(stage.n_graphs, n_boot, seed)
    paired = vs is not None and vs_stage is None
    if paired:
        w = w * stage.sides[vs].ran  # the graphs both methods have
    vals = _values(stage, m, side, w, aggregate, q, above)
    n = _count(stage, m, side, w[0], aggregate)
    if paired:
        ref = _values(stage, m, vs, w * stage.sides[side].ran, aggregate, q, above)
        vals = relative_value(vals, ref, relative, m.higher_is_better)
    elif vs_stage is not None:
        w_ref = resample_weights(vs_stage.n_graphs, n_boot, seed + 1)
        ref = _values(vs_stage, m, ref_side, w_ref, aggregate, q, above)
        vals = relative_value(vals, ref, relative, m.higher_is_better)
    boot = vals[1:][np.isfinite(vals[1:])]
    low, high = (np.percentile(boot, [2.5, 97.5]) if boot.size else (np.nan, np.nan))
    return Estimate(float(vals[0]), float(low), float(high), n)


def summarise(stage: StageResult, n_boot: int, seed: int) -> dict[str, dict[str, Estimate]]:
    """Every method's every metric at its default aggregate (what reports show)."""
    return {
        side_name: {
            name: estimate(stage, name, side_name, n_boot=n_boot, seed=seed)
            for name, m in METRICS.items() if has(m, side_name, side)
        }
        for side_name, side in stage.sides.items()
    }
