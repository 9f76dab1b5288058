"""Report tables as plain data (text + tone per cell), rendered by console (rich), markdown and html.

One builder per table keeps the three renderings in agreement. A tone is ``"good"``, ``"bad"``,
``"dim"`` or None; renderers map it to a colour.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from engine.evaluate.metrics import accuracy_drop, timing_summary
from engine.report.run import (
    RunRecord,
    fmt,
    fmt_duration,
    fmt_time,
    is_num,
    short_hash,
    short_sha,
)

Cell = tuple[str, "str | None"]


@dataclass(frozen=True)
class Grid:
    """A titled table: headers, rows of (text, tone) cells, an optional caption (sample sizes)."""

    title: str
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str | None = None


def _c(text: Any, tone: str | None = None) -> Cell:
    return (text if isinstance(text, str) else fmt(text), tone)


def verdict_cell(verdict: str | None) -> Cell:
    if verdict == "GO":
        return ("GO", "good")
    if verdict == "NO-GO":
        return ("NO-GO", "bad")
    return ("—", "dim")


def _status_cell(status: str | None) -> Cell:
    tone = {"complete": "good", "failed": "bad", "died": "bad", "damaged": "bad",
            "running": "dim"}.get(status or "")
    return (status or "—", tone)


# --------------------------------------------------------------------------- runs overview


def run_summary(run: RunRecord) -> dict[str, Any]:
    """Headline numbers of one run (absent ones None)."""
    ev = run.evaluation or {}
    model, expert = ev.get("model") or {}, ev.get("expert") or {}
    timing = ev.get("timing") or {}
    speedup = timing.get("speedup_median")
    if speedup is None and timing.get("expert_s") and timing.get("model_s"):
        speedup = timing_summary(timing["expert_s"], timing["model_s"], n_boot=0)["speedup_median"]
    return {
        "model_f1": model.get("f1"),
        "model_auroc": model.get("auroc"),
        "expert_f1": expert.get("f1"),
        "speedup": speedup,
        "verdict": run.verdict,
    }


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
            _c(f"{fmt(s['speedup'])}×" if is_num(s["speedup"]) else "—"),
            verdict_cell(s["verdict"]),
        ])
    return Grid(
        "Runs",
        ["Spec", "Run", "Spec hash", "Started", "Duration", "Git", "Status",
         "Model F1 / AUROC", "Expert F1", "Speedup (median)", "Verdict"],
        rows,
        caption=f"{len(rows)} run(s), newest first",
    )


# --------------------------------------------------------------------------- evaluation

# (key, label, higher is better); value formatting adds intervals / chance where present
METRIC_ROWS: list[tuple[str, str, bool]] = [
    ("f1", "F1 (thresholded, pooled)", True),
    ("precision", "Precision", True),
    ("recall", "Recall", True),
    ("f1_per_graph_mean", "F1 (mean per graph)", True),
    ("map_f1", "F1 of MAP parent set", True),
    ("posterior_weighted_f1", "Posterior-weighted F1", True),
    ("auroc", "AUROC (pooled)", True),
    ("auroc_per_graph_median", "AUROC per graph: median [IQR]", True),
    ("auprc", "AUPRC (pooled)", True),
    ("auprc_per_graph_median", "AUPRC per graph: median [IQR]", True),
    ("skeleton_f1", "Skeleton F1", True),
    ("shd_mean", "SHD (mean per graph)", False),
    ("ece", "ECE (10 bins)", False),
    ("brier", "Brier score", False),
    ("loglik_mean", "Log-lik. of truth (mean per graph)", True),
]


def _metric_text(m: dict[str, Any], key: str) -> str:
    v = m.get(key)
    if v is None:
        return "—"
    text = fmt(v)
    base = key.removesuffix("_median")
    if key in ("f1", "auroc") and is_num(m.get(f"{key}_ci_low")):
        text += f" [{fmt(m[f'{key}_ci_low'])}, {fmt(m[f'{key}_ci_high'])}]"
    elif key.endswith("_median") and is_num(m.get(f"{base}_q25")):
        text += f" [{fmt(m[f'{base}_q25'])}, {fmt(m[f'{base}_q75'])}]"
    elif key == "auprc" and is_num(m.get("auprc_chance")):
        text += f" (chance {fmt(m['auprc_chance'])})"
    return text


def evaluation_grid(evaluation: dict[str, Any]) -> Grid:
    """Model vs expert, metric by metric; the last column is the accuracy drop 1 - model/expert
    for scores (higher is better) and the difference model - expert for errors. The better value
    has tone "good"; a model value worse than the expert's has tone "bad"."""
    model = evaluation.get("model") or {}
    expert = evaluation.get("expert") or {}
    rows = []
    for key, label, higher in METRIC_ROWS:
        if key not in model and key not in expert:
            continue
        mv, ev = model.get(key), expert.get(key)
        tone_m = tone_e = None
        cmp = "—"
        if is_num(mv) and is_num(ev):
            better = mv >= ev if higher else mv <= ev
            tone_m, tone_e = ("good", None) if better else ("bad", "good")
            if higher and key != "loglik_mean":
                drop = accuracy_drop(mv, ev)
                cmp = f"drop {fmt(drop)}" if is_num(drop) else "—"
            else:
                cmp = f"Δ {'+' if mv - ev >= 0 else ''}{fmt(mv - ev)}"
        rows.append([_c(label), (_metric_text(model, key), tone_m),
                     (_metric_text(expert, key), tone_e), _c(cmp)])
    n = evaluation.get("n_graphs", model.get("n_graphs"))
    parts = [f"N = {fmt(n)} {evaluation.get('split', '')} graphs".replace("  ", " ")]
    if "n_entries" in model:
        parts.append(f"{fmt(model['n_entries'])} candidate entries")
    parts.append(f"threshold {fmt(evaluation.get('threshold', model.get('threshold')))}")
    nb = model.get("n_boot")
    parts.append(f"[a, b] after F1/AUROC = bootstrap 95% over graphs ({fmt(nb)} resamples)"
                 if nb else "[a, b] = interval")
    return Grid("Model vs expert", ["Metric", "Model", "Expert", "Model vs expert"], rows,
                caption="; ".join(parts))


def timing_grid(evaluation: dict[str, Any]) -> Grid | None:
    t = dict(evaluation.get("timing") or {})
    if not t:
        return None
    if "speedup_median" not in t and t.get("expert_s") and t.get("model_s"):
        t.update(timing_summary(t["expert_s"], t["model_s"]))
    rows: list[list[Cell]] = []

    def add(label: str, text: str, tone: str | None = None):
        rows.append([_c(label), (text, tone)])

    if "speedup_median" in t:
        add("Speedup per graph: median [IQR]",
            f"{fmt(t.get('speedup_median'))}× [{fmt(t.get('speedup_q25'))}, {fmt(t.get('speedup_q75'))}]")
        add("Speedup: geometric mean [95% CI]",
            f"{fmt(t.get('speedup_geomean'))}× [{fmt(t.get('speedup_geomean_ci_low'))}, "
            f"{fmt(t.get('speedup_geomean_ci_high'))}]")
        add("Speedup: mean / of totals",
            f"{fmt(t.get('speedup_mean'))}× / {fmt(t.get('speedup_of_totals'))}×")
        add("Speedup: min / max", f"{fmt(t.get('speedup_min'))}× / {fmt(t.get('speedup_max'))}×")
        share = t.get("share_model_faster")
        add("Share of graphs where the model is faster",
            f"{fmt(100 * share, 3)}%" if is_num(share) else "—",
            None if not is_num(share) else ("good" if share >= 0.9 else "bad"))
    for key, label in (("expert_s_median", "Expert wall time per graph (median)"),
                       ("model_s_median", "Model wall time per graph (median)"),
                       ("expert_s_total", "Expert wall time (total)"),
                       ("model_s_total", "Model wall time (total)"),
                       ("expert_compile_s", "Expert one-off compile"),
                       ("model_compile_s", "Model one-off compile")):
        if key in t:
            add(label, f"{fmt(t[key])} s")
    n = t.get("n_timed", len(t.get("speedups") or t.get("model_s") or []))
    return Grid("Timing", ["Quantity", "Value"], rows,
                caption=f"N = {fmt(n)} timed graphs; speedup = expert time / model time, "
                        "same graphs, same machine, compile time excluded")


# --------------------------------------------------------------------------- gates, provenance


def gates_grid(gates: dict[str, Any]) -> Grid:
    rows = []
    for g in gates.get("gates") or []:
        passed = g.get("passed")
        ev = g.get("evidence")
        if ev is not None and not isinstance(ev, str):
            ev = json.dumps(ev, default=str, separators=(", ", ": "))
        rows.append([
            _c(g.get("name", "—")),
            _c(g.get("kind", "—")),
            _c(g.get("value")),
            _c(f"{g.get('op', '')} {_threshold(g.get('threshold'))}".strip()),
            ("PASS", "good") if passed is True else ("FAIL", "bad") if passed is False else _c("—"),
            _c(ev or "—"),
        ])
    v = gates.get("verdict")
    return Grid(f"Gates: {v or 'no verdict'}", ["Gate", "Kind", "Value", "Condition", "Result",
                                                "Evidence"], rows,
                caption=f"{sum(r[4][0] == 'PASS' for r in rows)}/{len(rows)} gates passed")


def _threshold(t: Any) -> str:
    """A gate's bound, or its [min, max] interval."""
    return f"[{fmt(t[0])}, {fmt(t[1])}]" if isinstance(t, list) and len(t) == 2 else fmt(t)


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
    if not metrics:
        return None
    rows: list[list[Cell]] = []
    last = metrics[-1]

    def col(key: str) -> list[float]:
        return [m[key] for m in metrics if is_num(m.get(key))]

    loss, val = col("loss"), col("val_loss")
    rows.append([_c("Steps logged / last step"), _c(f"{len(metrics)} / {fmt(last.get('step'))}")])
    if loss:
        rows.append([_c("Loss: first → last (min)"),
                     _c(f"{fmt(loss[0])} → {fmt(loss[-1])} ({fmt(min(loss))})")])
    if val:
        rows.append([_c("Validation loss: last (min)"), _c(f"{fmt(val[-1])} ({fmt(min(val))})")])
    eps = col("examples_per_s")
    if eps:
        rows.append([_c("Examples / s (mean)"), _c(sum(eps) / len(eps))])
    if is_num(last.get("time_s")):
        rows.append([_c("Training time"), _c(fmt_duration(last["time_s"]))])
    lr = col("lr")
    if lr:
        rows.append([_c("Learning rate: last"), _c(lr[-1])])
    return Grid("Training", ["Quantity", "Value"], rows)
