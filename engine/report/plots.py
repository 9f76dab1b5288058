"""Report figures as PNG bytes (matplotlib, Agg; imported lazily so tables need no matplotlib).

Figures are drawn on bare ``matplotlib.figure.Figure`` objects, never pyplot, so no global backend
state is touched and nothing leaks between calls. Each function raises ``ValueError`` when its input
holds nothing to draw; :func:`figures` picks the ones a run can support.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from engine.report.run import RunRecord, fmt, is_num

MODEL_C, EXPERT_C = "#1f77b4", "#ff7f0e"


def _figure(w: float, h: float):
    from matplotlib.figure import Figure  # lazy: matplotlib only when drawing

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _png(fig) -> bytes:
    import matplotlib

    buf = io.BytesIO()
    # fixed metadata so the same input gives the same bytes
    fig.savefig(buf, format="png", metadata={"Software": f"matplotlib {matplotlib.__version__}"})
    return buf.getvalue()


def loss_curve(metrics: list[dict[str, Any]]) -> bytes:
    """Training (and validation) loss against step; log y when every loss is positive."""
    pts = [(m["step"], m["loss"]) for m in metrics if is_num(m.get("step")) and is_num(m.get("loss"))]
    val = [(m["step"], m["val_loss"]) for m in metrics
           if is_num(m.get("step")) and is_num(m.get("val_loss"))]
    if not pts:
        raise ValueError("no (step, loss) points to plot")
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    ax.plot(*zip(*pts), color=MODEL_C, lw=1.2, label="train loss")
    if val:
        ax.plot(*zip(*val), color=EXPERT_C, lw=1.2, marker="o", ms=3, label="validation loss")
    if all(y > 0 for _, y in pts + val):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"Training loss ({len(pts)} logged steps)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _png(fig)


BAR_METRICS = [("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"),
               ("map_f1", "MAP F1"), ("auroc", "AUROC"), ("auprc", "AUPRC")]


def metric_bars(evaluation: dict[str, Any]) -> bytes:
    """Model vs expert bars for the [0, 1] metrics, bootstrap intervals on F1 / AUROC, AUPRC chance."""
    model, expert = evaluation.get("model") or {}, evaluation.get("expert") or {}
    keys = [(k, lab) for k, lab in BAR_METRICS if is_num(model.get(k)) or is_num(expert.get(k))]
    if not keys:
        raise ValueError("no model or expert metrics to plot")
    fig = _figure(6.8, 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(keys))
    for off, (name, m, color) in zip((-0.2, 0.2), (("model", model, MODEL_C),
                                                   ("expert", expert, EXPERT_C))):
        vals = [m.get(k) if is_num(m.get(k)) else np.nan for k, _ in keys]
        ax.bar(x + off, vals, width=0.4, color=color, label=name)
        for i, (k, _) in enumerate(keys):  # error bars only where an interval exists
            lo, hi = m.get(f"{k}_ci_low"), m.get(f"{k}_ci_high")
            if is_num(lo) and is_num(hi) and is_num(vals[i]):
                ax.errorbar(x[i] + off, vals[i], yerr=[[max(vals[i] - lo, 0)], [max(hi - vals[i], 0)]],
                            color="k", capsize=3, lw=1)
    chance = model.get("auprc_chance", expert.get("auprc_chance"))
    if is_num(chance) and any(k == "auprc" for k, _ in keys):
        i = [k for k, _ in keys].index("auprc")
        ax.hlines(chance, i - 0.45, i + 0.45, colors="k", linestyles="--", label="AUPRC chance")
    ax.set_xticks(x, [lab for _, lab in keys])
    ax.set_ylim(0, 1.05)
    n = evaluation.get("n_graphs", model.get("n_graphs"))
    ax.set_title(f"Model vs expert (N = {n} graphs, threshold {evaluation.get('threshold', 0.5)})")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, fontsize=8)
    return _png(fig)


def speedup_histogram(timing: dict[str, Any]) -> bytes:
    """Histogram of per-graph speedups (expert / model time) on a log x axis, 1× and median marked."""
    if timing.get("speedups") is not None:
        s = np.asarray([v for v in timing["speedups"] if is_num(v)], dtype=float)
    else:
        e = np.asarray(timing.get("expert_s") or [], dtype=float)
        m = np.asarray(timing.get("model_s") or [], dtype=float)
        ok = (e > 0) & (m > 0) if e.shape == m.shape else np.zeros(0, bool)
        s = e[ok] / m[ok] if ok.size else np.zeros(0)
    s = s[np.isfinite(s) & (s > 0)]
    if s.size == 0:
        raise ValueError("no per-graph speedups to plot")
    lo, hi = math.log10(s.min()), math.log10(s.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    ax.hist(s, bins=np.logspace(lo, hi, min(40, max(5, s.size // 3)) + 1), color=MODEL_C, alpha=0.8)
    ax.set_xscale("log")
    med = float(np.median(s))
    ax.axvline(1.0, color="k", ls=":", label="1× (break-even)")
    ax.axvline(med, color="C3", ls="--", label=f"median {fmt(med)}×")
    ax.set_xlabel("speedup = expert time / model time")
    ax.set_ylabel("graphs")
    ax.set_title(f"Per-graph speedup (N = {s.size}, model faster on {np.mean(s > 1):.0%})")
    ax.legend(fontsize=8)
    return _png(fig)


def f1_by_size(per_graph: dict[str, Any]) -> bytes:
    """Mean F1 (± standard error) of model and expert by graph size, with graph counts."""
    nv = np.asarray(per_graph.get("n_vars") or [], dtype=float)
    if nv.size == 0:
        raise ValueError("no per-graph sizes to plot")
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    sizes = np.unique(nv)
    drawn = False
    for key, name, color in (("model_f1", "model", MODEL_C), ("expert_f1", "expert", EXPERT_C)):
        vals = per_graph.get(key)
        if vals is None or len(vals) != nv.size:
            continue
        v = np.asarray([x if is_num(x) else np.nan for x in vals], dtype=float)
        mean, se = [], []
        for k in sizes:
            g = v[(nv == k) & np.isfinite(v)]
            mean.append(g.mean() if g.size else np.nan)
            se.append(g.std(ddof=1) / math.sqrt(g.size) if g.size > 1 else 0.0)
        ax.errorbar(sizes, mean, yerr=se, color=color, marker="o", capsize=3, label=name)
        drawn = True
    if not drawn:
        raise ValueError("no per-graph F1 values to plot")
    counts = [int((nv == k).sum()) for k in sizes]
    for k, c in zip(sizes, counts):
        ax.annotate(f"n={c}", (k, 0.02), ha="center", fontsize=7, color="0.4")
    if sizes.size <= 20:
        ax.set_xticks(sizes, [str(int(k)) for k in sizes])
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("number of variables")
    ax.set_ylabel("F1 (mean ± s.e.)")
    ax.set_title(f"F1 by graph size (N = {nv.size} graphs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _pad_rows(rows: list[list[float]]) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = [np.nan if v is None else float(v) for v in r]
    return out


def parent_heatmaps(examples: list[dict[str, Any]]) -> bytes:
    """Truth / model / expert parent probabilities for a few held-out graphs.

    Parent-set examples (1-D vectors) become one panel per source with a row per graph (the
    target's cell hatched, padding grey); full-graph examples (2-D matrices) a row of panels each.
    """
    if not examples:
        raise ValueError("no examples to plot")
    sources = [s for s in ("truth", "model", "expert") if any(e.get(s) is not None for e in examples)]
    two_d = np.asarray(examples[0].get(sources[0]), dtype=float).ndim == 2
    cmap = _cmap()
    if two_d:
        fig = _figure(3.0 * len(sources) + 0.8, 2.8 * len(examples))
        axes = fig.subplots(len(examples), len(sources), squeeze=False)
        for r, ex in enumerate(examples):
            for c, src in enumerate(sources):
                ax = axes[r][c]
                a = np.array(ex.get(src) if ex.get(src) is not None else [[np.nan]], dtype=float)
                if a.ndim == 2 and a.shape[0] == a.shape[1]:
                    np.fill_diagonal(a, np.nan)  # the diagonal never counts
                im = ax.imshow(a, vmin=0, vmax=1, cmap=cmap)
                ax.set_title(f"{src} (graph {r}, d={ex.get('n_vars', a.shape[0])})", fontsize=8)
                ax.set_xlabel("child j", fontsize=7)
                ax.set_ylabel("parent i", fontsize=7)
    else:
        fig = _figure(3.2 * len(sources) + 0.8, 0.9 + 0.35 * len(examples))
        axes = fig.subplots(1, len(sources), squeeze=False)[0]
        for ax, src in zip(axes, sources):
            a = _pad_rows([e.get(src) or [] for e in examples])
            for i, e in enumerate(examples):  # truncate to the graph's real variables
                if is_num(e.get("n_vars")):
                    a[i, int(e["n_vars"]):] = np.nan
            im = ax.imshow(a, vmin=0, vmax=1, cmap=cmap, aspect="auto", interpolation="nearest")
            for i, e in enumerate(examples):
                t = e.get("target")
                if is_num(t) and 0 <= int(t) < a.shape[1]:
                    ax.add_patch(_target_patch(int(t), i))
            ax.set_title(src, fontsize=9)
            ax.set_xlabel("candidate parent X_i", fontsize=8)
            ax.set_yticks(range(len(examples)), [f"graph {i}" for i in range(len(examples))],
                          fontsize=7)
    fig.colorbar(im, ax=fig.axes, shrink=0.8, label="P(i -> j)" if two_d else "P(X_i in Pa(Y))")
    what = "Edge" if two_d else "Parent"
    note = "grey = diagonal" if two_d else "grey = padding, hatched = target"
    fig.suptitle(f"{what} probabilities on {len(examples)} held-out graphs ({note})", fontsize=9)
    return _png(fig)


def _cmap():
    import matplotlib

    return matplotlib.colormaps["viridis"].with_extremes(bad="0.85")


def _target_patch(col: int, row: int):
    from matplotlib.patches import Rectangle

    return Rectangle((col - 0.5, row - 0.5), 1, 1, fill=True, facecolor="white",
                     edgecolor="0.3", hatch="xx", lw=0.5)


def figures(run: RunRecord) -> dict[str, bytes]:
    """Every figure the run's records support, by file stem (``loss``, ``metrics``, ...)."""
    out: dict[str, bytes] = {}
    ev = run.evaluation or {}
    jobs = [
        ("loss", loss_curve, run.metrics),
        ("metrics", metric_bars, ev if ev.get("model") or ev.get("expert") else None),
        ("speedup", speedup_histogram, ev.get("timing")),
        ("f1_by_size", f1_by_size, ev.get("per_graph")),
        ("heatmaps", parent_heatmaps, ev.get("examples")),
    ]
    for name, fn, data in jobs:
        if not data:
            continue
        try:
            out[name] = fn(data)
        except ValueError:  # nothing drawable in this record
            continue
    return out
