"""Evaluation tables from the typed record: one per stage, the cross-stage (transfer) view, and
what each column means.

Every number is a summary Estimate the evaluation wrote (`StageResult.summary`: each metric at
its default aggregate, with its bootstrap 95% interval over graphs); nothing is recomputed here.
Metric names, directions and descriptions come from the catalog.
"""

from __future__ import annotations

from typing import Any

from engine.evaluate.baselines import BASELINES
from engine.evaluate.catalog import METRICS, SIDES
from engine.evaluate.record import Estimate, Evaluation, StageResult
from engine.report.run import fmt, is_num
from engine.report.tables import Cell, Grid, _c, estimate_text

KEY_METRICS = ("f1", "precision", "recall", "auroc", "auprc", "shd", "graph_f1", "graph_shd",
               "seconds", "speedup", "full_speedup",
               # [optimize] problems' episodes (a column shows only where a method has it)
               "simple_regret", "cumulative_regret", "gap_closure", "trials_to_95")
LABELS = {"f1": "F1", "precision": "Precision", "recall": "Recall", "auroc": "AUROC",
          "auprc": "AUPRC", "shd": "SHD", "graph_f1": "Graph F1", "graph_shd": "Graph SHD",
          "seconds": "Time", "speedup": "Speedup", "full_speedup": "Full speedup",
          "simple_regret": "Simple regret", "cumulative_regret": "Cumulative regret",
          "gap_closure": "Gap closed", "trials_to_95": "Trials to 95%"}
UNITS = {"seconds": "s", "speedup": "x", "full_speedup": "x"}
METHOD_LABELS = {b.name: b.label for b in BASELINES.values()}
MARKS = "¹²³⁴⁵⁶⁷⁸⁹"


def methods(stage: StageResult) -> list[str]:
    """The stage's methods in report order: model, extra models, expert, the baselines."""
    extra = [k for k in stage.sides if k not in SIDES]
    return [k for k in ["model", *extra, "expert", *BASELINES] if k in stage.sides]


def method_label(name: str) -> str:
    return METHOD_LABELS.get(name, name)


def header(metric: str) -> str:
    agg = METRICS[metric].default_aggregate
    return LABELS.get(metric, metric) if agg == "pooled" else f"{LABELS.get(metric, metric)} ({agg})"


def _get(stage: StageResult, side: str, metric: str) -> Estimate | None:
    return stage.summary.get(side, {}).get(metric)


def _columns(stage: StageResult, names: list[str], metrics=KEY_METRICS) -> list[str]:
    """Those of `metrics` that at least one method has a value of."""
    return [m for m in metrics if m in METRICS
            and any((e := _get(stage, s, m)) is not None and is_num(e.value) for s in names)]


def _best(stage: StageResult, names: list[str], metric: str) -> set[str]:
    vals = {s: e.value for s in names if (e := _get(stage, s, metric)) is not None and is_num(e.value)}
    if len(vals) < 2:
        return set()
    pick = max if METRICS[metric].higher_is_better else min
    top = pick(vals.values())
    return {s for s, v in vals.items() if v == top}


def stage_info(stage: StageResult) -> str:
    """What the stage evaluated: its graphs, sizes, data, expert settings, timing."""
    i, parts = stage.info, []
    if i.get("graphs") and i["graphs"] != stage.description:
        parts.append(str(i["graphs"]))
    parts.append(f"{stage.n_graphs} graphs")
    nodes = i.get("nodes")
    if isinstance(nodes, list) and len(nodes) == 2:
        parts.append(f"{nodes[0]} nodes" if nodes[0] == nodes[1] else f"{nodes[0]}–{nodes[1]} nodes")
    if is_num(i.get("mean_edges")):
        parts.append(f"{fmt(float(i['mean_edges']))} edges on average")
    if i.get("observational"):
        parts.append("observational rows only")
    elif is_num(i.get("interventional_rows")):
        parts.append(f"{fmt(float(i['interventional_rows']))} interventional rows per graph")
    expert = i.get("expert")
    if isinstance(expert, dict) and expert.get("kind"):
        extra = [f"prior {expert['prior']}" if expert.get("prior") else "",
                 f"{expert['n_trials']} trials" if expert.get("n_trials") is not None else ""]
        parts.append(f"expert {expert['kind']}" + "".join(f", {x}" for x in extra if x))
    if i.get("timed_graphs") is not None:
        r = i.get("repeats")
        repeats = "" if not r else " (one run each)" if r == 1 else f" (median of {r} runs each)"
        parts.append(f"{i['timed_graphs']} graphs timed{repeats}")
    return "; ".join(parts)


def stage_title(stage: StageResult) -> str:
    return f"Stage {stage.name}" + (f": {stage.description}" if stage.description else "")


def stage_grid(stage: StageResult, n_boot: int | None = None, metrics=KEY_METRICS) -> Grid:
    """Rows = methods, columns = key metrics, each cell "value [low, high]"; the best value per
    column has tone "good"; a method's note (how its edges count) is a footnote."""
    names = methods(stage)
    cols = _columns(stage, names, metrics)
    notes: list[str] = []
    for s in names:
        if stage.sides[s].note and stage.sides[s].note not in notes:
            notes.append(stage.sides[s].note)
    best = {m: _best(stage, names, m) for m in cols}
    rows: list[list[Cell]] = []
    for s in names:
        note = stage.sides[s].note
        mark = MARKS[notes.index(note) % len(MARKS)] if note else ""
        row = [_c(method_label(s) + mark)]
        for m in cols:
            row.append((estimate_text(_get(stage, s, m), UNITS.get(m, "")),
                        "good" if s in best[m] else None))
        rows.append(row)
    footnotes = [f"{MARKS[i % len(MARKS)]} {_named(stage, n)}" for i, n in enumerate(notes)]
    for b, why in (stage.info.get("skipped") or {}).items():
        footnotes.append(f"{method_label(b)} not run: {why}")
    # models and expert are timed on the first `timed_graphs`; baselines time every graph
    timed = _get(stage, "model", "seconds")
    timed_n = stage.info.get("timed_graphs", timed.n if timed is not None else None)
    base = " (baselines: all)" if any(s in stage.sides for s in BASELINES) else ""
    caption = ("value [95% bootstrap interval over graphs"
               + (f", {n_boot} resamples" if n_boot else "") + f"]; {stage.n_graphs} graphs"
               + (f", times over {timed_n} timed graphs{base}" if "seconds" in cols and timed_n else "")
               + "; best value per column in bold")
    return Grid(stage_title(stage), ["Method", *map(header, cols)], rows, caption=caption,
                notes=footnotes)


def _named(stage: StageResult, note: str) -> str:
    """The note, led by the method it is about unless it says so itself."""
    who = method_label(next(s for s in methods(stage) if stage.sides[s].note == note))
    return note if note.lower().startswith(who.lower()) else f"{who}: {note}"


def transfer_grid(evaluation: Evaluation) -> Grid | None:
    """Rows = stages, columns = F1 of every method and the model's AUROC: how the comparison
    holds up as the test distribution moves away from training. None with one stage."""
    if len(evaluation.stages) < 2:
        return None
    extra = list(dict.fromkeys(k for st in evaluation.stages.values() for k in st.sides if k not in SIDES))
    cols = [(s, "f1") for s in ["model", *extra, "expert", *BASELINES]] + [("model", "auroc")]
    cols = [(s, m) for s, m in cols if any(_get(st, s, m) is not None for st in evaluation.stages.values())]
    rows = []
    for st in evaluation.stages.values():
        rows.append([_c(st.name), _c(st.n_graphs),
                     *(_c(estimate_text(_get(st, s, m))) for s, m in cols)])
    headers = ["Stage", "Graphs", *(f"{method_label(s)} {LABELS[m]}" for s, m in cols)]
    return Grid("Across stages (transfer)", headers, rows,
                caption="pooled F1 of the target's parents and the model's AUROC, each "
                        "[95% bootstrap interval over the stage's graphs]; — : not run there")


def glossary_grid(evaluation: Evaluation) -> Grid:
    """What each column of the stage tables means (from the metric catalog)."""
    shown = {m for st in evaluation.stages.values() for m in _columns(st, methods(st))}
    rows = [[_c(header(m)), _c(METRICS[m].direction), _c(METRICS[m].default_aggregate),
             _c(METRICS[m].description)] for m in KEY_METRICS if m in shown]
    return Grid("Metrics", ["Column", "Direction", "Aggregate over graphs", "Meaning"], rows,
                caption="pooled: computed once over every graph's entries; median / mean: of "
                        "the per-graph values")


def _expert_text(expert: Any) -> str:
    if not isinstance(expert, dict) or not expert.get("kind"):
        return "—"
    extra = [f"prior {expert['prior']}" if expert.get("prior") else "",
             f"{expert['n_trials']} trials" if expert.get("n_trials") is not None else ""]
    return str(expert["kind"]) + "".join(f", {x}" for x in extra if x)


def stages_grid(evaluation: Evaluation) -> Grid:
    """What each evaluation stage drew: its graph distribution, sizes, data and the expert's
    settings there (from each stage's `info`)."""
    rows = []
    for st in evaluation.stages.values():
        i = st.info
        nodes = i.get("nodes")
        size = (f"{nodes[0]}" if nodes[0] == nodes[1] else f"{nodes[0]}–{nodes[1]}") \
            if isinstance(nodes, list) and len(nodes) == 2 else "—"
        if i.get("observational"):
            data = "observational rows only"
        elif is_num(i.get("interventional_rows")):
            data = f"{fmt(float(i['interventional_rows']))} interventional rows per graph"
        else:
            data = "—"
        rows.append([_c(st.name), _c(str(i.get("graphs") or st.description or "—")),
                     _c(st.n_graphs), _c(size),
                     _c(fmt(float(i["mean_edges"])) if is_num(i.get("mean_edges")) else "—"),
                     _c(data), _c(_expert_text(i.get("expert")))])
    return Grid("Evaluation stages", ["Stage", "Graph distribution", "Graphs", "Nodes",
                                      "Edges (mean)", "Data", "Expert"], rows)
