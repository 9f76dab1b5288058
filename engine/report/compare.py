"""Two runs side by side (`acbo report --compare RUN_A RUN_B`): every metric's change with its
95% interval, per evaluation stage and method, the gates of both, the spec's differences and
both training curves on one plot.

A change is B - A. When both runs evaluated the same graphs (same truth on a stage), its
interval is a paired bootstrap (the same graph resamples for both runs); otherwise the two
stages are resampled independently (`estimate(..., vs_stage=)`). It is worded from the metric's
direction: "better" / "worse" when the interval excludes no change, else "no clear change".

Writes ``<reports>/compare_<A>_<B>.md`` (PNG in ``compare_<A>_<B>/``) and ``.html``, where A and
B are the runs' report names (``<spec>-<run id>``).
"""

from __future__ import annotations

import difflib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.evaluate.catalog import METRICS, has
from engine.evaluate.estimate import _values, estimate, resample_weights
from engine.evaluate.record import Estimate, StageResult
from engine.registry import MANIFEST, CorruptArtifact, write_atomic
from engine.report.run import RunRecord, fmt, fmt_duration, is_num, load_run, time_unit
from engine.report.stages import KEY_METRICS, UNITS, header, method_label, methods
from engine.report.tables import Grid, _c, estimate_text
from engine.report.training import training_facts
from engine.report.verdict import gate_verdict, verdict_line

MAX_BOOT = 1000


@dataclass(frozen=True)
class Delta:
    stage: str
    side: str
    metric: str
    a: Estimate
    b: Estimate
    change: Estimate  # b - a with its 95% interval
    paired: bool

    @property
    def word(self) -> str:
        c = self.change
        if not (is_num(c.low) and is_num(c.high)):
            return "—"
        if c.value == c.low == c.high == 0:
            return "no change"
        if c.low <= 0 <= c.high:
            return "no clear change"
        return "better" if (c.value > 0) == METRICS[self.metric].higher_is_better else "worse"

    def to_json(self) -> dict:
        return {"stage": self.stage, "side": self.side, "metric": self.metric,
                "a": self.a.to_json(), "b": self.b.to_json(), "change": self.change.to_json(),
                "paired": self.paired, "word": self.word}


# --------------------------------------------------------------------------- finding runs


def resolve(registry: Path, name: str) -> Path | None:
    """A run folder from a path, `<spec>/<run id>`, a run id, or a spec name (its newest run)."""
    registry = Path(registry)
    candidates = [Path(name), registry / name]
    for p in candidates:
        if p.is_dir() and (p / MANIFEST).is_file():
            return p
    if registry.is_dir() and "/" not in name:
        found = [p for p in registry.glob(f"*/{name}") if p.is_dir() and not p.parent.name.startswith("_")]
        if len(found) == 1:
            return found[0]
        spec_dir = registry / name
        if spec_dir.is_dir() and not name.startswith("_"):
            runs = sorted(p for p in spec_dir.iterdir() if (p / MANIFEST).is_file())
            if runs:
                return runs[-1]
    return None


# --------------------------------------------------------------------------- deltas


def same_graphs(a: StageResult, b: StageResult) -> bool:
    return (a.adjacency.shape == b.adjacency.shape and np.array_equal(a.adjacency, b.adjacency)
            and np.array_equal(a.target, b.target) and np.array_equal(a.var_mask, b.var_mask))


def change(a: StageResult, b: StageResult, side: str, metric: str, n_boot: int, seed: int) -> tuple[Estimate, bool]:
    """B - A of `metric` for `side`, with a paired (same graphs) or independent interval."""
    m = METRICS[metric]
    if same_graphs(a, b):
        w = resample_weights(b.n_graphs, n_boot, seed) * (a.sides[side].ran & b.sides[side].ran)
        agg = m.default_aggregate
        with np.errstate(invalid="ignore"):
            vals = _values(b, m, side, w, agg, 0.5, None) - _values(a, m, side, w, agg, 0.5, None)
        boot = vals[1:][np.isfinite(vals[1:])]
        low, high = np.percentile(boot, [2.5, 97.5]) if boot.size else (math.nan, math.nan)
        n = int(((w[0] > 0)).sum())
        return Estimate(float(vals[0]), float(low), float(high), n), True
    return estimate(b, metric, side, relative="difference", vs_stage=a, n_boot=n_boot, seed=seed), False


def deltas(run_a: RunRecord, run_b: RunRecord) -> list[Delta]:
    """Every key metric of every method on every stage both runs evaluated."""
    ea, eb = run_a.evaluation, run_b.evaluation
    if ea is None or eb is None:
        return []
    n_boot, seed = min(ea.n_boot, eb.n_boot, MAX_BOOT), eb.seed
    out = []
    for name, sb in eb.stages.items():
        sa = ea.stages.get(name)
        if sa is None:
            continue
        for side in methods(sb):
            if side not in sa.sides:
                continue
            for metric in KEY_METRICS:
                if metric not in METRICS:
                    continue
                ma, mb = sa.summary.get(side, {}).get(metric), sb.summary.get(side, {}).get(metric)
                if ma is None or mb is None or not (is_num(ma.value) and is_num(mb.value)):
                    continue
                if not (has(METRICS[metric], side, sa.sides[side]) and has(METRICS[metric], side, sb.sides[side])):
                    continue
                c, paired = change(sa, sb, side, metric, n_boot, seed)
                out.append(Delta(name, side, metric, ma, mb, c, paired))
    return out


def _signed(x: float, unit: str, scale: float = 1.0, suffix: str = "") -> str:
    if not is_num(x):
        return "n/a"
    if x == 0:
        return "0" + suffix
    return ("+" if x > 0 else "-") + fmt(abs(float(x)) * scale) + suffix


def change_text(d: Delta) -> str:
    """ "+0.012 [-0.004, +0.030]", "-0.35 ms [-0.5, -0.2]", "+1.2x [+0.3, +2]"."""
    unit = UNITS.get(d.metric, "")
    c = d.change
    scale, suffix = 1.0, unit
    if unit == "s":
        scale, u = time_unit(max(abs(c.value), abs(d.a.value)) if is_num(c.value) else None)
        suffix = f" {u}"
    text = _signed(c.value, unit, scale, suffix)
    if is_num(c.low) and is_num(c.high):
        text += f" [{_signed(c.low, unit, scale)}, {_signed(c.high, unit, scale)}]"
    return text


def deltas_grid(rows: list[Delta], a: RunRecord, b: RunRecord) -> Grid:
    tone = {"better": "good", "worse": "bad", "no clear change": "dim", "no change": "dim"}
    cells = [[_c(d.stage), _c(method_label(d.side)), _c(header(d.metric)),
              _c(estimate_text(d.a, UNITS.get(d.metric, ""))), _c(estimate_text(d.b, UNITS.get(d.metric, ""))),
              _c(change_text(d)), (d.word, tone.get(d.word))] for d in rows]
    paired = {d.stage for d in rows if d.paired}
    caption = (f"A = {a.slug}, B = {b.slug}; change = B - A [95% bootstrap interval]; "
               + (f"paired over the same graphs on {', '.join(sorted(paired))}" if paired else
                  "the runs evaluated different graphs: intervals resample each run's graphs "
                  "independently"))
    return Grid("Metric changes (B - A)", ["Stage", "Method", "Metric", "A", "B", "B - A [95% CI]", "Change"],
                cells, caption=caption)


def gates_compare_grid(a: RunRecord, b: RunRecord) -> Grid | None:
    from engine.report.verdict import _value  # the gate's value as the gates table shows it

    ga = {g.get("name"): g for g in (a.gates or {}).get("gates") or [] if isinstance(g, dict)}
    gb = {g.get("name"): g for g in (b.gates or {}).get("gates") or [] if isinstance(g, dict)}
    names = list(dict.fromkeys([*ga, *gb]))
    if not names:
        return None
    tone = {"GO": "good", "NO-GO": "bad", "INCONCLUSIVE": "warn"}

    def cell(g):
        if g is None:
            return ("—", "dim")
        v = gate_verdict(g)
        return (f"{v}: {_value(g)}", tone.get(v))

    rows = [[_c(str(n)), cell(ga.get(n)), cell(gb.get(n))] for n in names]
    return Grid("Gates", ["Gate", f"A: {(a.gates or {}).get('verdict') or '—'}",
                          f"B: {(b.gates or {}).get('verdict') or '—'}"], rows)


# --------------------------------------------------------------------------- spec and training


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    if isinstance(d, list) and any(isinstance(x, (dict, list)) for x in d):
        out = {}
        for i, v in enumerate(d):
            out.update(_flat(v, f"{prefix}.{i}"))
        return out or {prefix: []}
    return {prefix: d}


def spec_changes(a: RunRecord, b: RunRecord) -> list[tuple[str, Any, Any]]:
    """(dotted path, A's value, B's value) of every resolved setting that differs."""
    fa, fb = _flat(a.spec or {}), _flat(b.spec or {})
    out = []
    for k in sorted(set(fa) | set(fb)):
        va, vb = fa.get(k), fb.get(k)  # a section one spec lacks reads as unset (None)
        if va != vb:
            out.append((k, va, vb))
    return out


def spec_grid(changes: list[tuple[str, Any, Any]]) -> Grid:
    show = lambda v: "—" if v is None else json.dumps(v) if not isinstance(v, str) else v  # noqa: E731
    return Grid("Spec differences (resolved)", ["Setting", "A", "B"],
                [[_c(k), _c(show(va)), _c(show(vb))] for k, va, vb in changes],
                caption=f"{len(changes)} setting(s) differ" if changes else "the resolved specs are the same")


def spec_text_diff(a: RunRecord, b: RunRecord) -> str | None:
    """A unified diff of the two specs as written (spec.toml, verified)."""
    from engine.runs import RunFolder

    texts = []
    for run in (a, b):
        folder = RunFolder(run.path)
        if not folder.has("spec.toml"):
            return None
        texts.append(folder.read_bytes("spec.toml").decode("utf-8", "replace"))
    diff = list(difflib.unified_diff(texts[0].splitlines(), texts[1].splitlines(),
                                     f"A {a.slug}/spec.toml", f"B {b.slug}/spec.toml", lineterm=""))
    return "\n".join(diff) if diff else None


def training_compare_grid(a: RunRecord, b: RunRecord) -> Grid | None:
    if not (a.metrics or b.metrics):
        return None
    fa, fb = (training_facts(r.metrics, r.train, r.spec) for r in (a, b))

    def last(points):
        return fmt(points[-1][1]) if points else "—"

    def low(points):
        return fmt(min(p[1] for p in points)) if points else "—"

    rows = [
        ["Steps", fmt(fa.last_step), fmt(fb.last_step)],
        ["Training time", fmt_duration(fa.seconds) + (" (≈)" if fa.seconds_estimated else ""),
         fmt_duration(fb.seconds) + (" (≈)" if fb.seconds_estimated else "")],
        ["Throughput (examples/s, compile excluded)", fmt(fa.examples_per_s), fmt(fb.examples_per_s)],
        ["Training loss (last / lowest)", f"{last(fa.loss)} / {low(fa.loss)}", f"{last(fb.loss)} / {low(fb.loss)}"],
        ["Validation loss (last / lowest)", f"{last(fa.val)} / {low(fa.val)}", f"{last(fb.val)} / {low(fb.val)}"],
        ["Warnings", str(len(fa.warnings)), str(len(fb.warnings))],
    ]
    return Grid("Training", ["Quantity", "A", "B"], [[_c(x) for x in r] for r in rows])


# --------------------------------------------------------------------------- documents


def compare_blocks(a: RunRecord, b: RunRecord, rows: list[Delta], figures: list[str]) -> list:
    out: list = [("p", f"A: `{a.slug}` — {verdict_line(a.gates)}"),
                 ("p", f"B: `{b.slug}` — {verdict_line(b.gates)}")]
    g = gates_compare_grid(a, b)
    if g is not None:
        out.append(("table", g))
    out.append(("h2", "Metrics"))
    if rows:
        out.append(("rows", deltas_grid(rows, a, b)))
    else:
        out.append(("missing", "No evaluation stage in common: no metric to compare."))
    out.append(("h2", "Spec"))
    out.append(("rows", spec_grid(spec_changes(a, b))))
    diff = spec_text_diff(a, b)
    if diff:
        out.append(("diff", diff))
    t = training_compare_grid(a, b)
    if t is not None or "loss" in figures:
        out.append(("h2", "Training"))
        out += [("rows", t)] * (t is not None) + [("figure", "loss")] * ("loss" in figures)
    return out


def _err(message: str) -> int:
    print(f"compare: {message}", file=sys.stderr)
    return 2


def compare_runs(registry: Path, run_a: str, run_b: str, reports_dir: Path, as_json: bool) -> int:
    """Print the metric changes of run B against run A (a rich table, or JSON with `as_json`),
    write ``compare_<A>_<B>.md`` / ``.html`` into `reports_dir`; 0, or 2 with a one-line error
    for a run that is not there or is damaged."""
    from engine.report.console import to_rich
    from engine.report.document import blocks_markdown, write_figures
    from engine.report.plots import FIGURE_TITLES, loss_curves
    from engine.report.templates import render

    paths = []
    for name in (run_a, run_b):
        p = resolve(registry, name)
        if p is None:
            return _err(f"unknown run '{name}': not a run folder, <spec>/<run id>, run id or spec "
                        f"name in {registry}")
        paths.append(p)
    try:
        a, b = (load_run(p) for p in paths)
    except CorruptArtifact as exc:
        return _err(f"damaged file: {exc}")
    rows = deltas(a, b)
    images = {}
    if a.metrics or b.metrics:
        try:
            images["loss"] = loss_curves({f"A {a.slug}": a.metrics, f"B {b.slug}": b.metrics},
                                         "Training (solid) and validation (dashed) loss of both runs")
        except ValueError:
            pass
    stem = f"compare_{a.slug}_{b.slug}"
    reports_dir = Path(reports_dir)
    items = compare_blocks(a, b, rows, list(images))
    write_figures(images, reports_dir / stem)
    md = reports_dir / f"{stem}.md"
    page = reports_dir / f"{stem}.html"
    heading = f"{a.slug} vs {b.slug}"
    write_atomic(md, "\n".join([f"# {heading}", "", *blocks_markdown(items, stem)]).rstrip() + "\n")
    import base64
    from datetime import datetime, timezone

    write_atomic(page, render("compare.html", title=heading, stamp="", heading=heading, items=items,
                              images={k: base64.b64encode(v).decode("ascii") for k, v in images.items()},
                              titles={**FIGURE_TITLES, "loss": "Training and validation loss of both runs"},
                              when=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))
    if as_json:
        print(json.dumps({
            "a": {"spec": a.spec_name, "run_id": a.run_id, "path": str(a.path), "verdict": a.verdict},
            "b": {"spec": b.spec_name, "run_id": b.run_id, "path": str(b.path), "verdict": b.verdict},
            "deltas": [d.to_json() for d in rows],
            "spec_diff": [{"setting": k, "a": va, "b": vb} for k, va, vb in spec_changes(a, b)],
            "report_md": str(md), "report_html": str(page),
        }, indent=2, default=str))
        return 0
    from rich.console import Console

    from engine.report.console import CONSOLE_METRICS

    console = Console()
    shown = [d for d in rows if d.metric in CONSOLE_METRICS]
    if shown:
        grid = deltas_grid(shown, a, b)
        grid = Grid(grid.title, grid.headers, grid.rows, caption=f"{grid.caption}; every metric: {md}")
        console.print(to_rich(grid))
    else:
        console.print("no evaluation stage in common: no metric to compare")
    changes = spec_changes(a, b)
    if changes:
        console.print(to_rich(spec_grid(changes)))
    console.print(f"wrote {md} and {page}", markup=False, highlight=False)
    return 0
