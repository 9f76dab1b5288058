"""The training section: true totals from the train stage's record, throughput without the
compile step, the smoothed loss, validation, and warnings.

``metrics.jsonl`` has one line per log point: ``loss_mean`` (the mean loss since the previous
line), ``loss`` (the last batch's only), ``val_loss``, and ``time_s`` / ``examples_per_s`` of the
*last scanned call* before the line (so summing ``time_s`` undercounts the training whenever a log
interval takes several calls). The wall time of the whole train stage is in the stage's record
(its manifest's ``seconds``); without it the total is estimated from the logged throughput and
said to be an estimate.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from engine.report.run import fmt, fmt_duration, is_num
from engine.report.tables import Grid, _c

RISE = 1.05  # validation loss this much above its best (while training loss fell) warns


@dataclass(frozen=True)
class TrainingFacts:
    """Numbers of one training (None: not recorded)."""

    steps_logged: int = 0
    last_step: int | None = None
    planned_steps: int | None = None
    batch_size: int | None = None
    seconds: float | None = None  # the train stage's wall time
    seconds_estimated: bool = False  # from the logged throughput, not the stage's record
    compile_seconds: float | None = None  # the first call's excess over the steady pace
    examples_per_s: float | None = None  # median over log points after the first (compiled)
    loss_key: str = "loss_mean"
    loss: list[tuple[float, float]] = field(default_factory=list)  # (step, smoothed loss)
    val: list[tuple[float, float]] = field(default_factory=list)  # (step, validation loss)
    lr: float | None = None
    peak_memory_gb: float | None = None
    stopped_early: bool | None = None
    best_step: int | None = None
    skipped_steps: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def steps_per_s(self) -> float | None:
        if is_num(self.examples_per_s) and self.batch_size:
            return self.examples_per_s / self.batch_size
        return None


def _num(m: dict, key: str) -> float | None:
    v = m.get(key)
    return float(v) if is_num(v) else None


def training_facts(metrics: list[dict[str, Any]], train: dict[str, Any] | None = None,
                   spec: dict[str, Any] | None = None) -> TrainingFacts:
    """What `metrics.jsonl`, the train stage's record (`train`) and the resolved spec say."""
    train, tspec = train or {}, ((spec or {}).get("train") or {})
    batch = tspec.get("batch_size") if isinstance(tspec.get("batch_size"), int) else None
    rows = [m for m in metrics if is_num(m.get("step"))]
    key = "loss_mean" if any(is_num(m.get("loss_mean")) for m in rows) else "loss"
    loss = [(float(m["step"]), float(m[key])) for m in rows if is_num(m.get(key))]
    val = [(float(m["step"]), float(m["val_loss"])) for m in rows if is_num(m.get("val_loss"))]
    eps = [(m, _num(m, "examples_per_s"), _num(m, "time_s")) for m in rows]
    steady = [e for _, e, _ in eps[1:] if e]
    examples_per_s = statistics.median(steady) if steady else None
    compile_s = None
    if steady and eps and eps[0][1] and eps[0][2] is not None:
        # the first call compiled the step: its time beyond what its steps take at the steady pace
        compile_s = max(0.0, eps[0][2] * (1.0 - eps[0][1] / examples_per_s))
    seconds, estimated = (float(train["seconds"]), False) if is_num(train.get("seconds")) else (None, False)
    if seconds is None and batch and rows:
        total, prev = 0.0, 0.0
        for i, (m, e, t) in enumerate(eps):
            span = float(m["step"]) - prev
            prev = float(m["step"])
            rate = e if i else (examples_per_s or e)
            if i == 0 and t is not None and e:
                n_first = e * t / batch  # the steps of the (compiling) call the line timed
                total += t + max(span - n_first, 0.0) * batch / (rate or e)
            elif rate:
                total += span * batch / rate
        seconds, estimated = (total, True) if total > 0 else (None, False)
    peak = [v for m in rows if (v := _num(m, "peak_memory_gb")) is not None]
    lr = [v for m in rows if (v := _num(m, "lr")) is not None]
    warnings = [w for w in [overfitting(metrics, key)] if w]
    for w in train.get("warnings") or []:
        if isinstance(w, str) and w.strip():
            warnings.append(w.strip().removeprefix("WARNING:").strip())
    return TrainingFacts(
        steps_logged=len(rows), last_step=int(rows[-1]["step"]) if rows else None,
        planned_steps=tspec.get("steps") if isinstance(tspec.get("steps"), int) else None,
        batch_size=batch, seconds=seconds, seconds_estimated=estimated,
        compile_seconds=compile_s, examples_per_s=examples_per_s, loss_key=key, loss=loss,
        val=val, lr=lr[-1] if lr else None, peak_memory_gb=max(peak) if peak else None,
        stopped_early=train.get("stopped_early") if isinstance(train.get("stopped_early"), bool) else None,
        best_step=train.get("best_step") if isinstance(train.get("best_step"), int) else None,
        skipped_steps=train.get("skipped_steps") if isinstance(train.get("skipped_steps"), int) else None,
        warnings=warnings,
    )


def overfitting(metrics: list[dict[str, Any]], key: str = "loss_mean") -> str | None:
    """A warning when validation loss rose (by 5% or more) from its best while the training
    loss fell over the same steps."""
    pts = [(m["step"], m["val_loss"], m.get(key)) for m in metrics
           if is_num(m.get("val_loss")) and is_num(m.get("step"))]
    if len(pts) < 2:
        return None
    best = min(pts, key=lambda p: p[1])
    step, val, train = pts[-1]
    if val <= best[1] * RISE or not (is_num(train) and is_num(best[2]) and train < best[2]):
        return None
    return (f"validation loss rose {fmt(best[1])} → {fmt(val)} (steps {best[0]} → {step}) while "
            f"training loss fell {fmt(best[2])} → {fmt(train)}: the model is overfitting")


def _curve(points: list[tuple[float, float]]) -> str:
    first, last = points[0][1], points[-1][1]
    low = min(points, key=lambda p: p[1])
    return f"{fmt(first)} → {fmt(last)} (lowest {fmt(low[1])} at step {int(low[0])})"


def training_grid(metrics: list[dict[str, Any]], train: dict[str, Any] | None = None,
                  spec: dict[str, Any] | None = None) -> Grid | None:
    """The training table (None without a metrics log)."""
    if not metrics:
        return None
    f = training_facts(metrics, train, spec)
    rows: list[list] = []

    def add(label: str, value: str, tone: str | None = None):
        rows.append([_c(label), (value, tone)])

    steps = fmt(f.last_step) + (f" of {f.planned_steps}" if f.planned_steps else "")
    if f.stopped_early:
        steps += " (stopped early" + (f"; the best model, at step {f.best_step}, is kept)"
                                      if f.best_step is not None else ")")
    add("Steps", f"{steps}; {f.steps_logged} log points")
    if f.seconds is not None:
        add("Training time (≈, from the logged throughput)" if f.seconds_estimated
            else "Training time (train stage, wall clock)", fmt_duration(f.seconds))
    if f.compile_seconds is not None:
        add("Of which compiling the training step (≈, first call)", fmt_duration(f.compile_seconds))
    if f.examples_per_s is not None:
        rate = f"{fmt(f.examples_per_s)} examples/s"
        if f.steps_per_s is not None:
            rate += f" ({fmt(f.steps_per_s)} steps/s at batch {f.batch_size})"
        add(f"Throughput (compile excluded: median of {f.steps_logged - 1} log points)", rate)
    elif f.steps_logged == 1:
        add("Throughput", "one log point, which includes compiling: not shown")
    if f.loss:
        add("Training loss (mean over each log interval)" if f.loss_key == "loss_mean"
            else "Training loss (last batch of each log interval)", _curve(f.loss))
    if f.val:
        add("Validation loss", _curve(f.val))
    if f.lr is not None:
        add("Learning rate (last)", fmt(f.lr))
    if f.skipped_steps:
        add("Skipped updates (non-finite)", fmt(f.skipped_steps), "bad")
    if f.peak_memory_gb is not None:
        add("Peak device memory", f"{fmt(f.peak_memory_gb)} GB")
    for w in f.warnings:
        add("Warning", w, "bad")
    caption = None if train else ("the train stage's record is not in this registry: times are "
                                  "estimated from the metrics log")
    return Grid("Training", ["Quantity", "Value"], rows, caption=caption)
