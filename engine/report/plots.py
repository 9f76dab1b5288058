"""Report figures as PNG bytes (matplotlib, Agg; imported lazily so tables need no matplotlib).

Figures are drawn on bare ``matplotlib.figure.Figure`` objects, never pyplot, so no global backend
state is touched and nothing leaks between calls. Each function raises ``ValueError`` when its input
holds nothing to draw; :func:`figures` picks the ones a run can support. The evaluation figures
are in :mod:`engine.report.stage_plots`.
"""

from __future__ import annotations

import io
import re
from typing import Any

from engine.report.run import RunRecord, is_num

MODEL_C, EXPERT_C = "#1f77b4", "#ff7f0e"
COLOURS = {"model": MODEL_C, "expert": EXPERT_C, "pc": "#2ca02c", "ges": "#9467bd", "exact_dp": "#d62728", "random": "#7f7f7f"}
EXTRA_COLOURS = ("#17becf", "#8c564b", "#e377c2", "#bcbd22")

FIGURE_TITLES = {
    "roc_pr": "ROC and precision-recall curves",
    "reliability": "Reliability of the parent probabilities",
    "speedup": "Per-graph speedup",
    "f1_by_size": "F1 by graph size",
    "heatmaps": "Truth beside prediction on a few graphs",
    "graphs": "A few graphs drawn: false and missed edges marked",
    "regret": "Regret per trial",
    "transfer": "F1 across stages",
    "loss": "Training and validation loss",
    "runs": "Key metrics across runs",
}


def stage_figure(kind: str, stage: str) -> str:
    """The file stem of a figure of one (not the first) stage: "roc_pr.larger"."""
    return f"{kind}.{re.sub(r'[^A-Za-z0-9_-]+', '_', stage)}"


def figure_title(name: str) -> str:
    """A figure's caption; a stage's own figure names its stage."""
    kind, _, stage = name.partition(".")
    title = FIGURE_TITLES.get(kind, kind)
    return f"{title} (stage {stage})" if stage else title


def colour(side: str, extras: list[str] | tuple[str, ...] = ()) -> str:
    if side in COLOURS:
        return COLOURS[side]
    i = list(extras).index(side) if side in extras else 0
    return EXTRA_COLOURS[i % len(EXTRA_COLOURS)]


def figure(w: float, h: float):
    from matplotlib.figure import Figure  # lazy: matplotlib only when drawing

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def png(fig) -> bytes:
    import matplotlib

    buf = io.BytesIO()
    # fixed metadata so the same input gives the same bytes
    fig.savefig(buf, format="png", metadata={"Software": f"matplotlib {matplotlib.__version__}"})
    return buf.getvalue()


def plain_log_ticks(axis) -> None:
    """Tick labels on a log axis as plain numbers (0.2, 0.05), not 2x10^-1."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.1e}"[0] in "25" else ""))


def _loss_points(metrics: list[dict[str, Any]]):
    key = "loss_mean" if any(is_num(m.get("loss_mean")) for m in metrics) else "loss"
    pts = [(m["step"], m[key]) for m in metrics if is_num(m.get("step")) and is_num(m.get(key))]
    val = [(m["step"], m["val_loss"]) for m in metrics
           if is_num(m.get("step")) and is_num(m.get("val_loss"))]
    return key, pts, val


def loss_curve(metrics: list[dict[str, Any]]) -> bytes:
    """Training loss (each interval's mean where logged) and validation loss against step; log y
    when every loss is positive. Where validation loss rose while training loss fell (the
    report's warning), its best point is marked and the rise shaded."""
    from engine.report.training import overfitting

    key, pts, val = _loss_points(metrics)
    if not pts:
        raise ValueError("no (step, loss) points to plot")
    fig = figure(6.4, 3.6)
    ax = fig.add_subplot()
    label = "train loss (mean per interval)" if key == "loss_mean" else "train loss (last batch)"
    ax.plot(*zip(*pts), color=MODEL_C, lw=1.2, label=label)
    if val:
        ax.plot(*zip(*val), color=EXPERT_C, lw=1.2, marker="o", ms=3, label="validation loss")
        if overfitting(metrics, key):
            best = min(val, key=lambda p: p[1])
            ax.axvspan(best[0], val[-1][0], color="#d62728", alpha=0.08,
                       label="validation loss rising, training loss falling")
            ax.plot(*best, marker="*", ms=11, color="#d62728", ls="",
                    label=f"best validation loss (step {best[0]})")
    if all(y > 0 for _, y in pts + val):
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"Training loss ({len(pts)} logged steps)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper right")
    return png(fig)


def loss_curves(series: dict[str, list[dict[str, Any]]], title: str = "Training loss") -> bytes:
    """Several runs' training (solid) and validation (dashed) losses on one plot."""
    fig = figure(7.0, 3.8)
    ax = fig.add_subplot()
    palette = [MODEL_C, EXPERT_C, *COLOURS.values(), *EXTRA_COLOURS]
    ys = []
    for i, (name, metrics) in enumerate(series.items()):
        key, pts, val = _loss_points(metrics)
        c = palette[i % len(palette)]
        if pts:
            ax.plot(*zip(*pts), color=c, lw=1.3, label=f"{name}: train"
                    + (" (mean per interval)" if key == "loss_mean" else " (last batch)"))
        if val:
            ax.plot(*zip(*val), color=c, lw=1.2, ls="--", marker="o", ms=3, label=f"{name}: validation")
        ys += [y for _, y in pts + val]
    if not ys:
        raise ValueError("no (step, loss) points to plot")
    if all(y > 0 for y in ys):
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper right")
    return png(fig)


def figures(run: RunRecord) -> dict[str, bytes]:
    """Every figure the run's records support, by file stem (``roc_pr``, ``loss``, ...), in the
    order the report shows them."""
    from engine.report import graphs, regret
    from engine.report import stage_plots as sp

    out: dict[str, bytes] = {}
    jobs = []
    ev = run.evaluation
    if ev is not None and ev.stages:
        first = ev.stage()
        jobs += [("transfer", sp.transfer, ev), ("roc_pr", sp.roc_pr, first),
                 ("reliability", sp.reliability, first), ("speedup", sp.speedup, first),
                 ("heatmaps", sp.heatmaps, first), ("graphs", graphs.drawn_graphs, first)]
        # every other stage gets its ROC / PR curves beside its table, an [optimize] problem its
        # regret curves
        jobs += [(stage_figure("regret", st.name), regret.stage_figure, st) if st.is_optimization
                 else (stage_figure("roc_pr", st.name), sp.roc_pr, st) for st in list(ev.stages.values())[1:]]
        jobs.append(("f1_by_size", sp.f1_by_size, ev))
    if run.metrics:
        jobs.append(("loss", loss_curve, run.metrics))
    for name, fn, data in jobs:
        try:
            out[name] = fn(data)
        except ValueError:  # nothing drawable in this record
            continue
    return out


def runs_figure(runs: list[RunRecord]) -> bytes:
    """The key metrics of every evaluated run, oldest to newest: the model's F1 and AUROC (the
    expert's F1 beside them) and its median speedup, each with its 95% interval, on the runs'
    first evaluation stage."""
    rows = [r for r in reversed(runs) if r.evaluation is not None and r.evaluation.stages]
    if not rows:
        raise ValueError("no evaluated run")
    panels = (("F1 of the target's parents", [("model", "f1"), ("expert", "f1")]),
              ("AUROC", [("model", "auroc"), ("expert", "auroc")]),
              ("median speedup over the expert", [("model", "speedup")]))
    fig = figure(max(7.0, 0.45 * len(rows) + 3), 7.6)
    axes = fig.subplots(len(panels), 1, sharex=True)
    x = list(range(len(rows)))
    for ax, (title, series) in zip(axes, panels):
        drawn = False
        for j, (side, metric) in enumerate(series):
            pts = []
            for i, r in enumerate(rows):
                e = r.evaluation.stage().summary.get(side, {}).get(metric)
                if e is not None and is_num(e.value):
                    lo = e.low if is_num(e.low) else e.value
                    hi = e.high if is_num(e.high) else e.value
                    pts.append((i + 0.12 * (j - (len(series) - 1) / 2), e.value, lo, hi))
            if not pts:
                continue
            xs, v, lo, hi = (list(t) for t in zip(*pts))
            ax.errorbar(xs, v, yerr=[[max(a - b, 0) for a, b in zip(v, lo)],
                                     [max(b - a, 0) for a, b in zip(v, hi)]],
                        color=COLOURS[side], marker="o", ms=4, capsize=2, lw=0, elinewidth=1.1,
                        label=side)
            drawn = True
        if metric == "speedup" and drawn:
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.axhline(1.0, color="k", ls=":", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7, loc="lower left")
    axes[-1].set_xlim(-0.6, len(rows) - 0.4)
    axes[-1].set_xticks(x, [f"{r.spec_name}\n{r.run_id}" for r in rows], rotation=60, ha="right",
                        fontsize=6)
    fig.suptitle("Key metrics across runs (first evaluation stage; [95% bootstrap interval])",
                 fontsize=10)
    return png(fig)
