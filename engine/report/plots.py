"""Report figures as PNG bytes (matplotlib, Agg; imported lazily so tables need no matplotlib).

Figures are drawn on bare ``matplotlib.figure.Figure`` objects, never pyplot, so no global backend
state is touched and nothing leaks between calls. Each function raises ``ValueError`` when its input
holds nothing to draw; :func:`figures` picks the ones a run can support. The evaluation figures
are in :mod:`engine.report.stage_plots`.
"""

from __future__ import annotations

import io
from typing import Any

from engine.report.run import RunRecord, is_num

MODEL_C, EXPERT_C = "#1f77b4", "#ff7f0e"
COLOURS = {"model": MODEL_C, "expert": EXPERT_C, "pc": "#2ca02c", "ges": "#9467bd", "random": "#7f7f7f"}
EXTRA_COLOURS = ("#17becf", "#8c564b", "#e377c2", "#bcbd22")

FIGURE_TITLES = {
    "roc_pr": "ROC and precision-recall curves",
    "reliability": "Reliability of the parent probabilities",
    "speedup": "Per-graph speedup",
    "f1_by_size": "F1 by graph size",
    "heatmaps": "Truth beside prediction on a few graphs",
    "transfer": "F1 across stages",
    "loss": "Training loss",
}


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


def loss_curve(metrics: list[dict[str, Any]]) -> bytes:
    """Training loss (each interval's mean where logged) and validation loss against step; log y
    when every loss is positive."""
    key = "loss_mean" if any(is_num(m.get("loss_mean")) for m in metrics) else "loss"
    pts = [(m["step"], m[key]) for m in metrics if is_num(m.get("step")) and is_num(m.get(key))]
    val = [(m["step"], m["val_loss"]) for m in metrics
           if is_num(m.get("step")) and is_num(m.get("val_loss"))]
    if not pts:
        raise ValueError("no (step, loss) points to plot")
    fig = figure(6.4, 3.6)
    ax = fig.add_subplot()
    label = "train loss (mean per interval)" if key == "loss_mean" else "train loss (last batch)"
    ax.plot(*zip(*pts), color=MODEL_C, lw=1.2, label=label)
    if val:
        ax.plot(*zip(*val), color=EXPERT_C, lw=1.2, marker="o", ms=3, label="validation loss")
    if all(y > 0 for _, y in pts + val):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"Training loss ({len(pts)} logged steps)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return png(fig)


def figures(run: RunRecord) -> dict[str, bytes]:
    """Every figure the run's records support, by file stem (``roc_pr``, ``loss``, ...), in the
    order the report shows them."""
    from engine.report import stage_plots as sp

    out: dict[str, bytes] = {}
    jobs = []
    ev = run.evaluation
    if ev is not None and ev.stages:
        first = ev.stage()
        jobs += [("transfer", sp.transfer, ev), ("roc_pr", sp.roc_pr, first),
                 ("reliability", sp.reliability, first), ("speedup", sp.speedup, first),
                 ("f1_by_size", sp.f1_by_size, ev), ("heatmaps", sp.heatmaps, first)]
    if run.metrics:
        jobs.append(("loss", loss_curve, run.metrics))
    for name, fn, data in jobs:
        try:
            out[name] = fn(data)
        except ValueError:  # nothing drawable in this record
            continue
    return out
