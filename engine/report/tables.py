"""Report tables as plain data (text + tone per cell), rendered by console (rich), markdown and html.

One builder per table keeps the three renderings in agreement. A tone is ``"good"``, ``"bad"``,
``"dim"`` or None; renderers map it to a colour. Evaluation tables are in
:mod:`engine.report.stages`, gates in :mod:`engine.report.verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from engine.report.run import (
    RunRecord,
    fmt,
    fmt_duration,
    fmt_time,
    is_num,
    short_hash,
    short_sha,
    time_unit,
)

Cell = tuple[str, "str | None"]


@dataclass(frozen=True)
class Grid:
    """A titled table: headers, rows of (text, tone) cells, an optional caption (sample sizes)
    and footnotes (what a marked row or cell means)."""

    title: str
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str | None = None
    notes: list[str] = field(default_factory=list)


def _c(text: Any, tone: str | None = None) -> Cell:
    return (text if isinstance(text, str) else fmt(text), tone)


VERDICT_TONE = {"GO": "good", "NO-GO": "bad", "INCONCLUSIVE": "warn"}


def verdict_cell(verdict: str | None) -> Cell:
    return (verdict, VERDICT_TONE.get(verdict)) if verdict else ("—", "dim")


def _status_cell(status: str | None) -> Cell:
    tone = {"complete": "good", "failed": "bad", "died": "bad", "damaged": "bad",
            "running": "dim"}.get(status or "")
    return (status or "—", tone)


def fmt_interval(value: float | None, low: float | None, high: float | None, unit: str = "") -> str:
    """"0.812 [0.774, 0.851]", "3.1x [2.9, 3.3]", "1.2 ms [1.1, 1.4]", "12% [5, 20]": the unit
    follows the value and the interval is in the same unit."""
    if not is_num(value):
        return "n/a"
    scale, suffix = 1.0, unit
    if unit == "s":
        scale, u = time_unit(value)
        suffix = f" {u}"
    elif unit == "%":
        scale = 100.0
    text = f"{fmt(float(value) * scale)}{suffix}"
    if is_num(low) and is_num(high):
        text += f" [{fmt(float(low) * scale)}, {fmt(float(high) * scale)}]"
    return text


def estimate_text(e, unit: str = "") -> str:
    """An Estimate (value, low, high, n) as "value [low, high]"; "—" when no graph had it."""
    if e is None or (e.n == 0 and not is_num(e.value)):
        return "—"
    return fmt_interval(e.value, e.low, e.high, unit)


# --------------------------------------------------------------------------- runs overview


def run_summary(run: RunRecord) -> dict[str, Any]:
    """Headline numbers of one run from its first evaluation stage's summary (absent: None)."""
    out = {"model_f1": None, "model_auroc": None, "expert_f1": None, "speedup": None}
    if run.evaluation is not None and run.evaluation.stages:
        summary = run.evaluation.stage().summary
        for key, (side, metric) in {"model_f1": ("model", "f1"), "model_auroc": ("model", "auroc"),
                                    "expert_f1": ("expert", "f1"),
                                    "speedup": ("model", "speedup")}.items():
            e = summary.get(side, {}).get(metric)
            out[key] = e.value if e is not None and is_num(e.value) else None
    return {**out, "verdict": run.verdict}


def runs_grid(runs: Iterable[RunRecord]) -> Grid:
    rows = []
    for run in runs:
        lock = run.lock or {}
        s = run_summary(run)
        duration = run.duration_s
        rows.append([
            _c(run.spec_name),
            _c(run.run_id),
            _c(short_hash(lock.get("spec_hash"))),
            _c(fmt_time(run.started)),
            _c(fmt_duration(duration) if duration is not None else
               ("running" if run.status == "running" else "—")),
            _c(short_sha(lock)),
            _status_cell(run.status),
            _c(f"{fmt(s['model_f1'])} / {fmt(s['model_auroc'])}"
               if s["model_f1"] is not None or s["model_auroc"] is not None else "—"),
            _c(s["expert_f1"]),
            _c(f"{fmt(s['speedup'])}x" if is_num(s["speedup"]) else "—"),
            verdict_cell(s["verdict"]),
        ])
    return Grid(
        "Runs",
        ["Spec", "Run", "Spec hash", "Started", "Duration", "Git", "Status",
         "Model F1 / AUROC", "Expert F1", "Speedup (median)", "Verdict"],
        rows,
        caption=f"{len(rows)} run(s), newest first; metrics of each run's first evaluation stage",
    )


# --------------------------------------------------------------------------- provenance, training


def provenance_grid(run: RunRecord) -> Grid:
    lock = run.lock or {}
    rows: list[list[Cell]] = []

    def add(label: str, value: Any):
        rows.append([_c(label), _c(value if isinstance(value, str) else fmt(value))])

    add("Run", run.run_id)
    add("Spec", run.spec_name)
    for key in ("spec_path", "spec_hash"):
        if key in lock:
            add(key.replace("_", " ").capitalize(), str(lock[key]))
    if "git_sha" in lock:
        add("Git SHA", f"{lock['git_sha']}{' (dirty)' if lock.get('git_dirty') else ''}")
    if run.status:
        add("Status", run.status)
    if "seed" in lock:
        add("Seed", lock["seed"])
    add("Started", str(lock.get("started") or "—"))
    add("Finished", str(lock.get("finished") or "—"))
    add("Duration", fmt_duration(run.duration_s))
    if lock.get("devices"):
        add("Devices", ", ".join(map(str, lock["devices"])))
    if lock.get("overrides"):
        add("Overrides", " ".join(map(str, lock["overrides"])))
    for stage, h in (lock.get("stage_hashes") or {}).items():
        add(f"Stage hash: {stage}", str(h))
    if lock.get("versions"):
        add("Versions", ", ".join(f"{k} {v}" for k, v in sorted(lock["versions"].items())))
    return Grid("Provenance", ["Field", "Value"], rows,
                caption=None if run.lock else "no lock.json in this run folder")


def training_grid(metrics: list[dict[str, Any]]) -> Grid | None:
    """From ``metrics.jsonl``: each line covers one logging interval (``time_s`` is that
    interval's wall time; ``loss_mean`` its mean loss, ``loss`` only its last batch's)."""
    if not metrics:
        return None
    rows: list[list[Cell]] = []
    last = metrics[-1]

    def col(key: str) -> list[float]:
        return [m[key] for m in metrics if is_num(m.get(key))]

    key = "loss_mean" if col("loss_mean") else "loss"
    loss, val = col(key), col("val_loss")
    rows.append([_c("Steps logged / last step"), _c(f"{len(metrics)} / {fmt(last.get('step'))}")])
    if loss:
        label = "Loss (mean over each interval)" if key == "loss_mean" else "Loss (last batch)"
        rows.append([_c(f"{label}: first → last (min)"),
                     _c(f"{fmt(loss[0])} → {fmt(loss[-1])} ({fmt(min(loss))})")])
    if val:
        rows.append([_c("Validation loss: last (min)"), _c(f"{fmt(val[-1])} ({fmt(min(val))})")])
        warning = overfitting(metrics, key)
        if warning:
            rows.append([_c("Warning"), (warning, "bad")])
    eps = col("examples_per_s")
    if len(eps) > 1:  # the first interval includes compiling the step
        rows.append([_c("Examples / s (mean, first interval apart: it compiles)"),
                     _c(sum(eps[1:]) / len(eps[1:]))])
    elif eps:
        rows.append([_c("Examples / s (one interval, compile included)"), _c(eps[0])])
    times = col("time_s")
    if times:
        rows.append([_c("Training time (all logged intervals)"), _c(fmt_duration(sum(times)))])
    lr = col("lr")
    if lr:
        rows.append([_c("Learning rate: last"), _c(lr[-1])])
    return Grid("Training", ["Quantity", "Value"], rows)


def overfitting(metrics: list[dict[str, Any]], key: str = "loss_mean") -> str | None:
    """A warning when validation loss rose (by 5% or more) from its best while training loss fell."""
    pts = [(m["step"], m["val_loss"], m.get(key)) for m in metrics
           if is_num(m.get("val_loss")) and is_num(m.get("step"))]
    if len(pts) < 2:
        return None
    best = min(pts, key=lambda p: p[1])
    step, val, train = pts[-1]
    if val <= best[1] * 1.05 or not (is_num(train) and is_num(best[2]) and train < best[2]):
        return None
    return (f"validation loss rose {fmt(best[1])} → {fmt(val)} (steps {best[0]} → {step}) while "
            f"training loss fell {fmt(best[2])} → {fmt(train)}: the model is overfitting")
