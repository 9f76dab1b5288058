"""Rich console tables over run folders and their evaluation / gate records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from engine.report.run import list_runs
from engine.report.tables import (
    Grid,
    evaluation_grid,
    gates_grid,
    runs_grid,
    timing_grid,
    training_grid,
)

TONE_STYLE = {"good": "bold green", "bad": "bold red", "dim": "dim"}


def to_rich(grid: Grid) -> Table:
    """Render a :class:`Grid` as a rich Table (tones become colours)."""
    # Text, not str: titles and captions hold '[a, b]' that rich would read as markup
    table = Table(title=Text(grid.title, style="bold"),
                  caption=Text(grid.caption, style="dim") if grid.caption else None,
                  header_style="bold")
    for h in grid.headers:
        table.add_column(Text(h), overflow="fold")
    for row in grid.rows:
        table.add_row(*(Text(text, style=TONE_STYLE.get(tone or "", "")) for text, tone in row))
    return table


def runs_table(registry_root: Path) -> Table:
    """One row per run under ``registry_root/<spec>/<run>/``, newest first."""
    return to_rich(runs_grid(list_runs(Path(registry_root))))


def evaluation_table(evaluation: dict[str, Any]) -> Table:
    """Model vs expert metric by metric (from an ``evaluation.json`` record)."""
    return to_rich(evaluation_grid(evaluation))


def timing_table(evaluation: dict[str, Any]) -> Table | None:
    """Speedup distribution and wall times; None when the evaluation has no timing."""
    grid = timing_grid(evaluation)
    return None if grid is None else to_rich(grid)


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


def training_table(metrics: list[dict[str, Any]]) -> Table | None:
    """Summary of ``metrics.jsonl`` lines; None when there are none."""
    grid = training_grid(metrics)
    return None if grid is None else to_rich(grid)


def print_run(run_dir: Path, console=None) -> None:
    """Print every table a run folder supports (evaluation, timing, gates, training, provenance)."""
    from rich.console import Console

    from engine.report.run import load_run
    from engine.report.tables import provenance_grid

    console = console or Console()
    run = load_run(Path(run_dir))
    grids = []
    if run.evaluation:
        grids += [evaluation_grid(run.evaluation), timing_grid(run.evaluation)]
    if run.gates:
        grids.append(gates_grid(run.gates))
    grids += [training_grid(run.metrics), provenance_grid(run)]
    for grid in grids:
        if grid is not None:
            console.print(to_rich(grid))
