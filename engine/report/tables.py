"""Report tables as plain data (text + tone per cell), rendered by console (rich), markdown and html.

One builder per table keeps the three renderings in agreement. A tone is ``"good"``, ``"bad"``,
``"dim"`` or None; renderers map it to a colour. Evaluation tables are in
:mod:`engine.report.stages`, gates in :mod:`engine.report.verdict`, training in
:mod:`engine.report.training`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from engine.report.run import (
    RunRecord,
    fmt,
    fmt_duration,
    fmt_pct,
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
    if unit == "%":
        text = f"{fmt_pct(value)}%"
        if is_num(low) and is_num(high):
            text += f" [{fmt_pct(low)}, {fmt_pct(high)}]"
        return text
    if unit == "s":
        scale, u = time_unit(value)
        suffix = f" {u}"
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


# --------------------------------------------------------------------------- provenance


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
