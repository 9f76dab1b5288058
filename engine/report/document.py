"""Markdown and self-contained HTML reports for one run, and an index over all runs.

``reports/<spec>-<run>.md`` links its PNGs in ``reports/<spec>-<run>/``; the ``.html`` embeds them
(base64) so it can be mailed or archived alone. Every file is written atomically (temporary name in
the same folder, then ``os.replace``) so a reader never sees half a report.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

from engine.registry import write_atomic
from engine.report.plots import figures
from engine.report.run import RunRecord, list_runs, load_run
from engine.report.tables import (
    Grid,
    evaluation_grid,
    gates_grid,
    provenance_grid,
    runs_grid,
    timing_grid,
    training_grid,
)

FIGURE_TITLES = {
    "loss": "Training loss",
    "metrics": "Model vs expert",
    "speedup": "Per-graph speedup",
    "f1_by_size": "F1 by graph size",
    "heatmaps": "Parent probabilities on held-out graphs",
}


def _grids(run: RunRecord) -> list[Grid]:
    grids = []
    if run.evaluation:
        grids.append(evaluation_grid(run.evaluation))
        t = timing_grid(run.evaluation)
        if t is not None:
            grids.append(t)
    if run.gates:
        grids.append(gates_grid(run.gates))
    t = training_grid(run.metrics)
    if t is not None:
        grids.append(t)
    grids.append(provenance_grid(run))
    return grids


def _missing(run: RunRecord) -> list[str]:
    names = {"lock.json": run.lock, "metrics.jsonl": run.metrics,
             "evaluation.json": run.evaluation, "gates.json": run.gates}
    return [n for n, v in names.items() if not v]


# --------------------------------------------------------------------------- markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def grid_markdown(grid: Grid) -> str:
    lines = [f"### {grid.title}", "", "| " + " | ".join(map(_md_cell, grid.headers)) + " |",
             "|" + "---|" * len(grid.headers)]
    for row in grid.rows:
        # markdown has no colour: the "good" cell (better value, PASS, GO) is bold
        cells = [f"**{_md_cell(t)}**" if tone == "good" else _md_cell(t) for t, tone in row]
        lines.append("| " + " | ".join(cells) + " |")
    if not grid.rows:
        lines.append("| " + " | ".join("—" for _ in grid.headers) + " |")
    if grid.caption:
        lines += ["", f"_{grid.caption}_"]
    return "\n".join(lines) + "\n"


def render_markdown(run: RunRecord, figure_names: list[str], figure_dir: str) -> str:
    """The markdown report; ``figure_dir`` is the PNG folder relative to the markdown file."""
    verdict = run.verdict or "no gate verdict"
    out = [f"# {run.spec_name} / {run.run_id}", "", f"**Verdict: {verdict}**", ""]
    status = run.status
    if status:
        out += [f"Run status: {status}", ""]
    missing = _missing(run)
    if missing:
        out += [f"_Not in this run folder: {', '.join(missing)}._", ""]
    for grid in _grids(run):
        out.append(grid_markdown(grid))
    if figure_names:
        out.append("## Figures\n")
        for name in figure_names:
            out += [f"### {FIGURE_TITLES.get(name, name)}", "",
                    f"![{FIGURE_TITLES.get(name, name)}]({figure_dir}/{name}.png)", ""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- html

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em}h3{margin:1.4em 0 .4em}
table{border-collapse:collapse;margin:.4em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}tr:nth-child(even) td{background:#fafafa}
.caption{color:#666;font-size:.85em;font-style:italic;margin-bottom:1em}
.good{color:#17803d;font-weight:600}.bad{color:#c0262d;font-weight:600}.dim{color:#888}
.banner{padding:.8em 1.2em;border-radius:6px;font-size:1.3em;font-weight:700;color:#fff;margin:1em 0}
.banner.go{background:#1f9d55}.banner.nogo{background:#d0343a}.banner.none{background:#888}
.missing{color:#8a6d3b;background:#fcf8e3;padding:.4em .8em;border-radius:4px}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}
td.mono,code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em}
"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")


def grid_html(grid: Grid, extra_header: str | None = None, extra_cells: list[str] | None = None) -> str:
    """A grid as an HTML table; ``extra_cells`` are already-escaped HTML for one more column."""
    heads = "".join(f"<th>{html.escape(h)}</th>" for h in grid.headers)
    if extra_header:
        heads += f"<th>{html.escape(extra_header)}</th>"
    rows = []
    for i, row in enumerate(grid.rows):
        cells = "".join(f"<td class=\"{tone}\">{html.escape(t)}</td>" if tone else
                        f"<td>{html.escape(t)}</td>" for t, tone in row)
        if extra_cells is not None:
            cells += f"<td>{extra_cells[i]}</td>"
        rows.append(f"<tr>{cells}</tr>")
    cap = f"<div class=\"caption\">{html.escape(grid.caption)}</div>" if grid.caption else ""
    return (f"<h3>{html.escape(grid.title)}</h3>\n<table><thead><tr>{heads}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>\n{cap}\n")


def _banner(verdict: str | None) -> str:
    cls = {"GO": "go", "NO-GO": "nogo"}.get(verdict or "", "none")
    text = f"Verdict: {verdict}" if verdict else "No gate verdict"
    return f"<div class=\"banner {cls}\">{html.escape(text)}</div>"


def render_html(run: RunRecord, images: dict[str, bytes]) -> str:
    """The self-contained HTML report (PNGs embedded as base64 data URIs)."""
    parts = [f"<h1>{html.escape(run.spec_name)} / {html.escape(run.run_id)}</h1>",
             _banner(run.verdict)]
    missing = _missing(run)
    if missing:
        parts.append(f"<p class=\"missing\">Not in this run folder: "
                     f"{html.escape(', '.join(missing))}.</p>")
    for grid in _grids(run):
        parts.append(grid_html(grid))
    if images:
        parts.append("<h2>Figures</h2>")
        for name, png in images.items():
            title = FIGURE_TITLES.get(name, name)
            b64 = base64.b64encode(png).decode("ascii")
            parts.append(f"<figure><figcaption><b>{html.escape(title)}</b></figcaption>"
                         f"<img alt=\"{html.escape(title)}\" src=\"data:image/png;base64,{b64}\">"
                         f"</figure>")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p class=\"caption\">Generated by acbo from {html.escape(str(run.path))} "
                 f"at {stamp}.</p>")
    return _page(f"{run.spec_name} / {run.run_id}", "\n".join(parts))


# --------------------------------------------------------------------------- entry points


def write_report(run_dir: Path, reports_dir: Path) -> tuple[Path, Path]:
    """Write ``<reports_dir>/<spec>-<run>.md`` (+ PNGs in ``<spec>-<run>/``) and ``.html``.

    Returns (markdown path, html path). Works on partial run folders (missing evaluation, gates,
    metrics or lock): absent sections are left out and named at the top of the report.
    """
    run = load_run(Path(run_dir))
    reports_dir = Path(reports_dir)
    images = figures(run)
    fig_dir = reports_dir / run.slug
    for name, png in images.items():
        write_atomic(fig_dir / f"{name}.png", png)
    if fig_dir.is_dir():  # drop figures from an earlier report of this run that no longer apply
        for old in fig_dir.glob("*.png"):
            if old.stem not in images:
                old.unlink(missing_ok=True)
    md, page = reports_dir / f"{run.slug}.md", reports_dir / f"{run.slug}.html"
    write_atomic(md, render_markdown(run, list(images), run.slug))
    write_atomic(page, render_html(run, images))
    return md, page


def write_index(registry_root: Path, reports_dir: Path) -> Path:
    """Write ``<reports_dir>/index.html``: every run (newest first) linked to its report."""
    reports_dir = Path(reports_dir)
    runs = list_runs(Path(registry_root))
    links = []
    for run in runs:
        name = f"{run.slug}.html"
        if (reports_dir / name).is_file():
            links.append(f"<a href=\"{html.escape(name, quote=True)}\">report</a>"
                         f" · <a href=\"{html.escape(run.slug, quote=True)}.md\">md</a>")
        else:
            links.append("<span class=\"dim\">not generated</span>")
    body = ["<h1>acbo runs</h1>",
            f"<p class=\"caption\">Registry: {html.escape(str(registry_root))}</p>",
            grid_html(runs_grid(runs), "Report", links)]
    index = reports_dir / "index.html"
    write_atomic(index, _page("acbo runs", "\n".join(body)))
    return index
