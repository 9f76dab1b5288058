"""Rich console tables over run folders and their evaluation / gate records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from engine.evaluate.record import StageResult
from engine.report.run import list_runs, load_run
from engine.report.stages import stage_grid, stage_info, stage_title, transfer_grid
from engine.report.tables import Grid, provenance_grid, runs_grid
from engine.report.training import training_facts, training_grid
from engine.report.verdict import gates_grid, verdict_line

TONE_STYLE = {"good": "bold green", "bad": "bold red", "warn": "bold yellow", "dim": "dim"}
VERDICT_STYLE = {"GO": "bold green", "NO-GO": "bold red", "INCONCLUSIVE": "bold yellow"}


def to_rich(grid: Grid, title: str | None = None, stacked: bool = False) -> Table:
    """Render a :class:`Grid` as a rich Table (tones become colours, footnotes join the caption);
    `stacked` puts each interval under its value, so more columns fit a terminal."""
    # Text, not str: titles and captions hold '[a, b]' that rich would read as markup
    caption = "\n".join(filter(None, [grid.caption, *grid.notes]))
    table = Table(title=Text(title or grid.title, style="bold"),
                  caption=Text(caption, style="dim") if caption else None,
                  header_style="bold", caption_justify="left")
    for h in grid.headers:
        table.add_column(Text(h), overflow="fold")
    for row in grid.rows:
        table.add_row(*(Text(text.replace(" [", "\n[") if stacked else text,
                             style=TONE_STYLE.get(tone or "", "")) for text, tone in row))
    return table


def runs_table(registry_root: Path) -> Table:
    """One row per run under ``registry_root/<spec>/<run>/``, newest first."""
    return to_rich(runs_grid(list_runs(Path(registry_root))))


CONSOLE_METRICS = ("f1", "auroc", "seconds", "speedup", "full_speedup")  # ~100 columns


def evaluation_table(stage: StageResult, n_boot: int | None = None) -> Table:
    """One evaluation stage: every method's headline metrics with their 95% intervals (the
    report has every key metric; a terminal has less room)."""
    return to_rich(stage_grid(stage, n_boot, CONSOLE_METRICS),
                   title=f"{stage_title(stage)}\n({stage_info(stage)})", stacked=True)


def gates_table(gates) -> Table:
    """Each gate's verdict, value with its 95% interval, condition and evidence, and each
    group's verdict. Takes an `engine.gates.Verdict` or its JSON (``gates.json``); a record
    from before verdicts had groups (PASS / FAIL gates) is shown as it was written."""
    from engine.gates import Verdict

    if isinstance(gates, dict):
        if "groups" not in gates:
            return to_rich(gates_grid(gates))
        gates = Verdict.from_json(gates)
    style = {"GO": "bold green", "NO-GO": "bold red", "INCONCLUSIVE": "bold yellow"}
    num = lambda x: "—" if x is None or x != x else f"{x:.3g}"  # noqa: E731

    def condition(g) -> str:
        lo, hi, no_lo, no_hi = g.bounds
        parts = []
        if lo is not None:
            parts.append(f">= {num(lo)}" + ("" if no_lo is None else f" (NO-GO < {num(no_lo)})"))
        if hi is not None:
            parts.append(f"<= {num(hi)}" + ("" if no_hi is None else f" (NO-GO > {num(no_hi)})"))
        return ", ".join(parts)

    groups = "; ".join(f"{k} ({g.policy}): {g.verdict}" for k, g in gates.groups.items())
    table = Table(title=Text(f"Gates: {gates.verdict}", style=style.get(gates.verdict, "bold")),
                  caption=Text(f"groups: {groups}" if groups else "no gates", style="dim"),
                  header_style="bold")
    for h in ("Gate", "Group", "Verdict", "Value [95% CI]", "n", "Condition", "Evidence"):
        table.add_column(Text(h), overflow="fold")
    for g in gates.gates:
        e = g.estimate
        table.add_row(Text(g.name), Text(g.group), Text(g.verdict, style=style.get(g.verdict, "")),
                      Text(f"{num(e.value)} [{num(e.low)}, {num(e.high)}]"), Text(str(e.n)),
                      Text(condition(g)), Text(g.evidence))
    return table


def training_table(metrics: list[dict[str, Any]], train: dict[str, Any] | None = None,
                   spec: dict[str, Any] | None = None) -> Table | None:
    """Summary of ``metrics.jsonl`` lines (with the train stage's record and the spec: true
    totals); None when there are none."""
    grid = training_grid(metrics, train, spec)
    return None if grid is None else to_rich(grid)


def print_run(run_dir: Path, console=None) -> None:
    """Print a run: the verdict and why, its gates, each evaluation stage's table, the stages
    side by side, training, provenance."""
    from rich.console import Console

    console = console or Console()
    run = load_run(Path(run_dir))
    items: list = []
    if run.gates:
        items.append(Text(verdict_line(run.gates), style=VERDICT_STYLE.get(run.verdict or "", "bold")))
        items.append(gates_table(run.gates))
    for note in run.notes:
        items.append(Text(note, style="yellow"))
    for warning in training_facts(run.metrics, run.train, run.spec).warnings:
        items.append(Text(f"Training warning: {warning}", style="bold red"))
    ev = run.evaluation
    if ev is not None:
        items += [evaluation_table(st, ev.n_boot) for st in ev.stages.values()]
        transfer = transfer_grid(ev)
        if transfer is not None:
            items.append(to_rich(transfer))
    items += [training_table(run.metrics, run.train, run.spec), to_rich(provenance_grid(run))]
    for item in items:
        if item is not None:
            console.print(item)
