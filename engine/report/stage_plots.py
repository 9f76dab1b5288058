"""Evaluation figures drawn from the typed record's arrays (every probability is kept there).

Numbers shown as numbers (legends, error bars) are summary Estimates or `estimate(...)` calls;
what is computed here is only what a curve needs to be drawn (ROC / PR points, calibration bins).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.evaluate.baselines import BASELINES
from engine.evaluate.catalog import METRICS, SIDES
from engine.evaluate.estimate import estimate
from engine.evaluate.record import Evaluation, StageResult
from engine.report.plots import colour, figure, png
from engine.report.run import fmt
from engine.report.stages import method_label, methods
from engine.report.tables import estimate_text

MAX_SIZE_PANELS = 6


def _extras(stage: StageResult) -> list[str]:
    return [k for k in stage.sides if k not in SIDES]


def _label(stage: StageResult, side: str, metric: str) -> str:
    e = stage.summary.get(side, {}).get(metric)
    return f"{method_label(side)}: {metric.upper()} {estimate_text(e)}" if e else method_label(side)


def _entries(stage: StageResult, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) of every candidate parent of the graphs the method ran on."""
    s = stage.sides[side]
    keep = stage.mask & s.ran[:, None]
    return np.nan_to_num(s.probs[keep]), stage.truth[keep]


def _curves(scores: np.ndarray, labels: np.ndarray):
    """(fpr, tpr, recall, precision) at every distinct threshold, highest first."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[s[1:] != s[:-1], True]  # ties form one threshold
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    p, n = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return (np.r_[0, fp / n], np.r_[0, tp / p], tp / p, tp / np.maximum(tp + fp, 1))


def roc_pr(stage: StageResult) -> bytes:
    """ROC and precision-recall curves of every method on one stage."""
    names = [s for s in methods(stage) if _entries(stage, s)[1].any()]
    if not names:
        raise ValueError("no method has a true parent among its candidates")
    fig = figure(10.0, 4.2)
    roc, pr = fig.subplots(1, 2)
    extras = _extras(stage)
    for s in names:
        fpr, tpr, rec, prec = _curves(*_entries(stage, s))
        kw = dict(color=colour(s, extras), lw=1.3, ls="--" if s == "random" else "-")
        roc.plot(fpr, tpr, label=_label(stage, s, "auroc"), **kw)
        pr.plot(rec, prec, label=_label(stage, s, "auprc"), drawstyle="steps-post", **kw)
    roc.plot([0, 1], [0, 1], color="k", ls=":", lw=0.8)
    base = stage.truth[stage.mask].mean() if stage.mask.any() else np.nan
    pr.axhline(base, color="k", ls=":", lw=0.8, label=f"chance ({fmt(float(base))})")
    for ax, (x, y) in ((roc, ("false positive rate", "true positive rate")), (pr, ("recall", "precision"))):
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right" if ax is roc else "lower left")
    fig.suptitle(f"Stage {stage.name}: the target's candidate parents ({stage.n_graphs} graphs; "
                 "[95% bootstrap interval])", fontsize=9)
    return png(fig)


def reliability(stage: StageResult, bins: int = 10) -> bytes:
    """Observed frequency of true parents against the predicted probability (10 equal bins),
    for the methods that give probabilities (the models and the expert)."""
    names = [s for s in methods(stage) if s not in BASELINES and stage.sides[s].ran.any()]
    if not names:
        raise ValueError("no probabilities to plot")
    fig = figure(5.2, 4.4)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="k", ls=":", lw=0.8, label="perfect calibration")
    for s in names:
        p, y = _entries(stage, s)
        b = np.clip((p * bins).astype(int), 0, bins - 1)
        count = np.bincount(b, minlength=bins)
        ok = count > 0
        mean_p = np.bincount(b, p, bins)[ok] / count[ok]
        freq = np.bincount(b, y.astype(float), bins)[ok] / count[ok]
        e = stage.summary.get(s, {}).get("ece")
        ax.plot(mean_p, freq, color=colour(s, _extras(stage)), marker="o", lw=1.2,
                label=f"{method_label(s)}: ECE {estimate_text(e)}" if e else method_label(s))
        ax.scatter(mean_p, freq, s=8 + 120 * count[ok] / count.max(), color=colour(s, _extras(stage)), alpha=0.4)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability of a parent (bin mean)")
    ax.set_ylabel("share that are true parents")
    ax.set_title(f"Stage {stage.name}: reliability (marker area = entries in the bin)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return png(fig)


def speedup(stage: StageResult) -> bytes:
    """Per-graph speedup of each model over the expert (its posterior; and its whole run where
    recorded), log x, 1x and each median with its interval marked."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    panels = []
    for metric in ("speedup", "full_speedup"):
        per = {}
        for s in [k for k in methods(stage) if k not in ("expert", *BASELINES)]:
            v = METRICS[metric].per_graph(stage, stage.sides[s])
            v = v[np.isfinite(v) & (v > 0)]
            if v.size:
                per[s] = v
        if per:
            panels.append((metric, per))
    if not panels:
        raise ValueError("no per-graph speedups to plot")
    fig = figure(5.2 * len(panels), 3.8)
    for ax, (metric, per) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        allv = np.concatenate(list(per.values()))
        lo, hi = np.log10(allv.min()), np.log10(allv.max())
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.logspace(lo, hi, min(40, max(5, allv.size // 3)) + 1)
        for s, v in per.items():
            c = colour(s, _extras(stage))
            ax.hist(v, bins=edges, color=c, alpha=0.5)
            e = stage.summary.get(s, {}).get(metric)
            if e is not None:
                ax.axvline(e.value, color=c, ls="--", lw=1.2,
                           label=f"{method_label(s)}: median {estimate_text(e, 'x')}, n = {v.size}")
                ax.axvspan(e.low, e.high, color=c, alpha=0.12)
        ax.axvline(1.0, color="k", ls=":", label="1x (break-even)")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("expert's posterior time / method's time" if metric == "speedup"
                      else "expert's whole run (prior + trials) / method's time")
        ax.set_ylabel("graphs")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"Stage {stage.name}: per-graph speedup (shaded: 95% interval of the median)", fontsize=9)
    return png(fig)


def subset(stage: StageResult, idx: np.ndarray) -> StageResult:
    """The stage restricted to graphs `idx` (summary dropped: it was for all graphs)."""
    cut = lambda a: None if a is None else a[idx]  # noqa: E731
    sides = {k: dataclasses.replace(v, **{f: cut(getattr(v, f)) for f in
                                          ("probs", "pred", "seconds", "graph_scores", "graph_pred", "map_pred")})
             for k, v in stage.sides.items()}
    arrays = {f: cut(getattr(stage, f)) for f in
              ("truth", "mask", "adjacency", "var_mask", "target", "expert_run_seconds")}
    return dataclasses.replace(stage, sides=sides, summary={}, **arrays)


def f1_by_size(evaluation: Evaluation) -> bytes:
    """Pooled F1 [95% interval] of every method by number of variables: a panel per stage
    whose graph sizes vary (a stage of one size is its table)."""
    stages = [st for st in evaluation.stages.values() if np.unique(st.n_vars).size > 1][:MAX_SIZE_PANELS]
    if not stages:
        raise ValueError("no stage has graphs of several sizes")
    fig = figure(min(5.0 * len(stages), 15.0), 3.8 * ((len(stages) + 2) // 3))
    axes = fig.subplots((len(stages) + 2) // 3, min(len(stages), 3), squeeze=False).ravel()
    for ax, st in zip(axes, stages):
        sizes = np.unique(st.n_vars)
        names = methods(st)
        for j, s in enumerate(names):
            vals = []
            for k in sizes:
                e = estimate(subset(st, np.flatnonzero(st.n_vars == k)), "f1", s,
                             n_boot=evaluation.n_boot, seed=evaluation.seed)
                vals.append((e.value, e.low, e.high))
            v, lo, hi = (np.array(x, float) for x in zip(*vals))
            x = sizes + 0.08 * (j - (len(names) - 1) / 2)  # dodge
            ax.errorbar(x, v, yerr=[np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)],
                        color=colour(s, _extras(st)), marker="o", ms=4, capsize=2, lw=1,
                        ls="--" if s == "random" else "-", label=method_label(s))
        for k in sizes:
            ax.annotate(f"n={int((st.n_vars == k).sum())}", (k, 0.02), ha="center", fontsize=7, color="0.4")
        if sizes.size <= 20:
            ax.set_xticks(sizes, [str(int(k)) for k in sizes])
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("number of variables")
        ax.set_ylabel("F1 (pooled) [95% CI]")
        ax.set_title(f"Stage {st.name}", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[len(stages):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="lower left")
    return png(fig)


def _shown(stage: StageResult, side: str, i: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores, predicted edges) of graph i over its variables idx; a method that predicts only
    the target's parents fills only the target's column (the rest grey)."""
    s, k = stage.sides[side], len(idx)
    if s.graph_scores is not None:
        return s.graph_scores[i][np.ix_(idx, idx)], s.graph_pred[i][np.ix_(idx, idx)]
    scores, pred = np.full((k, k), np.nan), np.full((k, k), np.nan)
    col = int(np.flatnonzero(idx == stage.target[i])[0])
    scores[:, col], pred[:, col] = s.probs[i][idx], s.pred[i][idx]
    scores[col, col] = pred[col, col] = np.nan
    return scores, pred


def heatmaps(stage: StageResult, n: int = 3) -> bytes:
    """Truth beside each method's edge probabilities for the first `n` graphs they all ran on;
    false edges (weight above 1/2) marked x, missed ones (below 1/2) o."""
    import matplotlib
    from matplotlib.patches import Rectangle

    names = [s for s in methods(stage) if s != "random"]
    graphs = [i for i in range(stage.n_graphs) if all(stage.sides[s].ran[i] for s in names)][:n]
    if not graphs or not names:
        raise ValueError("no graph every method ran on")
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")
    fig = figure(2.4 * (len(names) + 1) + 0.8, 2.5 * len(graphs))
    axes = fig.subplots(len(graphs), len(names) + 1, squeeze=False)
    for r, i in enumerate(graphs):
        idx = np.flatnonzero(stage.var_mask[i])
        truth = stage.adjacency[i][np.ix_(idx, idx)]
        col = int(np.flatnonzero(idx == stage.target[i])[0])
        for c, side in enumerate(["truth", *names]):
            ax = axes[r][c]
            if side == "truth":
                shown = truth.astype(float)
                np.fill_diagonal(shown, np.nan)
            else:
                shown, pred = _shown(stage, side, i, idx)
                off = np.isfinite(pred) & ~np.eye(len(idx), dtype=bool)
                # a CPDAG's half edge (weight 1/2) is neither predicted nor missed: unmarked
                fp, fn = np.nonzero(off & (pred > 0.5) & ~truth), np.nonzero(off & (pred < 0.5) & truth)
                ax.scatter(fp[1], fp[0], marker="x", color="red", s=30, lw=1.2)
                ax.scatter(fn[1], fn[0], marker="o", facecolors="none", edgecolors="red", s=40, lw=1.2)
            im = ax.imshow(shown, vmin=0, vmax=1, cmap=cmap, interpolation="nearest")
            ax.add_patch(Rectangle((col - 0.5, -0.5), 1, len(idx), fill=False, edgecolor="white", lw=1.2))
            ax.set_title(f"{method_label(side)} (graph {i}, d={len(idx)})", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel("parent i", fontsize=7)
            if r == len(graphs) - 1:
                ax.set_xlabel("child j", fontsize=7)
    fig.colorbar(im, ax=fig.axes, shrink=0.8, label="P(i -> j)")
    fig.suptitle(f"Stage {stage.name}: edges i -> j (white box: the target's column; x false, "
                 "o missed; grey: not predicted)", fontsize=9)
    return png(fig)


def transfer(evaluation: Evaluation) -> bytes:
    """Pooled F1 [95% interval] of every method on every stage (the table's transfer view)."""
    stages = list(evaluation.stages.values())
    if len(stages) < 2:
        raise ValueError("one stage: no transfer to plot")
    names = list(dict.fromkeys(s for st in stages for s in methods(st)))
    extras = [s for s in names if s not in SIDES]
    fig = figure(max(6.0, 1.1 * len(stages) + 2), 3.8)
    ax = fig.add_subplot()
    x = np.arange(len(stages))
    for j, s in enumerate(names):
        es = [st.summary.get(s, {}).get("f1") for st in stages]
        v = np.array([e.value if e else np.nan for e in es])
        lo = np.array([e.low if e else np.nan for e in es])
        hi = np.array([e.high if e else np.nan for e in es])
        ax.errorbar(x + 0.1 * (j - (len(names) - 1) / 2), v,
                    yerr=[np.nan_to_num(np.clip(v - lo, 0, None)), np.nan_to_num(np.clip(hi - v, 0, None))],
                    color=colour(s, extras), marker="o", ms=5, capsize=3, lw=0,
                    elinewidth=1.2, label=method_label(s))
    ax.set_xticks(x, [st.name for st in stages], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1 (pooled) [95% CI]")
    ax.set_title("F1 of the target's parents on every evaluation stage", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncols=min(len(names), 4), loc="lower left")
    return png(fig)
