"""Markdown and self-contained HTML reports for one run, and an index over all runs.

``reports/<spec>-<run>.md`` links its PNGs in ``reports/<spec>-<run>/``; the ``.html`` embeds them
(base64) so it can be mailed or archived alone. Both are rendered from one list of blocks
(:func:`blocks`), so they show the same things in the same order: the verdict and why, the gates,
what was evaluated, a table per evaluation stage, figures, training, provenance. Every file is
written atomically, and a report that is current (same run files, same report code) is not
redrawn.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.registry import MANIFEST, write_atomic
from engine.report.plots import FIGURE_TITLES, figures
from engine.report.run import RunRecord, fmt, list_runs, load_run
from engine.report.stages import glossary_grid, stage_grid, stage_info, stage_title, transfer_grid
from engine.report.tables import Grid, provenance_grid, runs_grid, training_grid
from engine.report.verdict import gates_grid, verdict_line

Block = tuple[str, Any]  # ("h2" | "h3" | "p" | "missing", text), ("table" | "rows", Grid), ("figure", name)
# a "rows" table goes without its title (a heading above it says what it is)
STAGE_FIGURES = ("roc_pr", "reliability", "speedup", "heatmaps")  # drawn for the first stage


def _missing(run: RunRecord) -> list[str]:
    names = {"lock.json": run.lock, "metrics.jsonl": run.metrics,
             # an evaluation in an older format is named by run.notes, not as missing
             "evaluation.json + evaluation.npz": run.evaluation or run.notes, "gates.json": run.gates}
    return [n for n, v in names.items() if not v]


def evaluated(run: RunRecord) -> list[str]:
    """What was evaluated: the spec's description, which model, the evaluation's settings."""
    spec, ev, out = run.spec or {}, run.evaluation, []
    if spec.get("description"):
        out.append(str(spec["description"]).strip())
    uses = (spec.get("stage") or {}).get("uses")
    model = f"the model trained by spec `{uses}` (`uses`)" if uses else "the model trained in this run"
    extra = (spec.get("evaluation") or {}).get("models") or []
    if extra:
        model += "; also the models of " + ", ".join(f"`{m}`" for m in extra)
    out.append(f"Model under test: {model}.")
    if ev is not None:
        out.append(f"{len(ev.stages)} evaluation stage(s): {', '.join(ev.stages)}; threshold "
                   f"{fmt(ev.threshold)}; intervals from {ev.n_boot} bootstrap resamples of the "
                   f"graphs (seed {ev.seed}), paired across methods.")
    return out


def blocks(run: RunRecord, figure_names: list[str] | tuple[str, ...] = ()) -> list[Block]:
    out: list[Block] = []
    missing = _missing(run)
    if missing:
        out.append(("missing", f"Not in this run folder: {', '.join(missing)}."))
    out += [("missing", note) for note in run.notes]
    if run.gates:
        out.append(("table", gates_grid(run.gates)))
    ev = run.evaluation
    if run.spec or ev is not None:
        out.append(("h2", "What was evaluated"))
        out += [("p", text) for text in evaluated(run)]
    if ev is not None and ev.stages:
        out.append(("h2", "Evaluation"))
        t = transfer_grid(ev)
        if t is not None:
            out += [("table", t)] + [("figure", "transfer")] * ("transfer" in figure_names)
        for i, st in enumerate(ev.stages.values()):
            out += [("h3", stage_title(st)), ("p", stage_info(st)), ("rows", stage_grid(st, ev.n_boot))]
            if i == 0:
                out += [("figure", f) for f in STAGE_FIGURES if f in figure_names]
        if "f1_by_size" in figure_names:
            out.append(("figure", "f1_by_size"))
        out.append(("table", glossary_grid(ev)))
    t = training_grid(run.metrics)
    if t is not None or "loss" in figure_names:
        out.append(("h2", "Training"))
        out += [("rows", t)] * (t is not None) + [("figure", "loss")] * ("loss" in figure_names)
    out += [("h2", "Provenance"), ("rows", provenance_grid(run))]
    return out


# --------------------------------------------------------------------------- markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def grid_markdown(grid: Grid, title: bool = True) -> str:
    lines = ([f"### {grid.title}", ""] if title else []) + [
        "| " + " | ".join(map(_md_cell, grid.headers)) + " |", "|" + "---|" * len(grid.headers)]
    for row in grid.rows:
        # markdown has no colour: the "good" cell (best value, GO) is bold
        cells = [f"**{_md_cell(t)}**" if tone == "good" else _md_cell(t) for t, tone in row]
        lines.append("| " + " | ".join(cells) + " |")
    if not grid.rows:
        lines.append("| " + " | ".join("—" for _ in grid.headers) + " |")
    if grid.caption:
        lines += ["", f"_{grid.caption}_"]
    if grid.notes:
        lines += [""] + [f"{n}  " for n in grid.notes]
    return "\n".join(lines) + "\n"


def render_markdown(run: RunRecord, figure_names: list[str], figure_dir: str, stamp: str = "") -> str:
    """The markdown report; ``figure_dir`` is the PNG folder relative to the markdown file."""
    out = [f"<!-- acbo report {stamp} -->"] if stamp else []
    out += [f"# {run.spec_name} / {run.run_id}", "", f"**{verdict_line(run.gates)}**", ""]
    if run.status:
        out += [f"Run status: {run.status}", ""]
    for kind, x in blocks(run, figure_names):
        if kind in ("rows", "table"):
            out.append(grid_markdown(x, title=kind == "table"))
        elif kind == "figure":
            title = FIGURE_TITLES.get(x, x)
            out += [f"**{title}**", "", f"![{title}]({figure_dir}/{x}.png)", ""]
        elif kind in ("h2", "h3"):
            out += [f"{'#' * int(kind[1])} {x}", ""]
        else:
            out += [f"_{x}_" if kind == "missing" else x, ""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- html

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
h3{margin:1.4em 0 .4em}
table{border-collapse:collapse;margin:.4em 0;font-size:.88em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}tr:nth-child(even) td{background:#fafafa}
.caption{color:#666;font-size:.85em;font-style:italic;margin-bottom:.4em}
.notes{color:#555;font-size:.82em;margin:0 0 1em 0}
.good{color:#17803d;font-weight:600}.bad{color:#c0262d;font-weight:600}.warn{color:#a66a00;font-weight:600}
.dim{color:#888}
.banner{padding:.8em 1.2em;border-radius:6px;font-size:1.2em;font-weight:700;color:#fff;margin:1em 0}
.banner.go{background:#1f9d55}.banner.nogo{background:#d0343a}.banner.inconclusive{background:#c98a00}
.banner.none{background:#888}
.missing{color:#8a6d3b;background:#fcf8e3;padding:.4em .8em;border-radius:4px}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}
"""


def _page(title: str, body: str, stamp: str = "") -> str:
    meta = f"<meta name=\"acbo-report\" content=\"{stamp}\">" if stamp else ""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{meta}"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")


def grid_html(grid: Grid, extra_header: str | None = None, extra_cells: list[str] | None = None,
              title: bool = True) -> str:
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
    notes = ("<div class=\"notes\">" + "<br>".join(map(html.escape, grid.notes)) + "</div>"
             if grid.notes else "")
    head = f"<h3>{html.escape(grid.title)}</h3>\n" if title else ""
    return (f"{head}<table><thead><tr>{heads}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>\n{cap}{notes}\n")


def _banner(run: RunRecord) -> str:
    cls = {"GO": "go", "NO-GO": "nogo", "INCONCLUSIVE": "inconclusive"}.get(run.verdict or "", "none")
    return f"<div class=\"banner {cls}\">{html.escape(verdict_line(run.gates))}</div>"


def render_html(run: RunRecord, images: dict[str, bytes], stamp: str = "") -> str:
    """The self-contained HTML report (PNGs embedded as base64 data URIs)."""
    parts = [f"<h1>{html.escape(run.spec_name)} / {html.escape(run.run_id)}</h1>", _banner(run)]
    if run.status:
        parts.append(f"<p>Run status: {html.escape(run.status)}</p>")
    for kind, x in blocks(run, list(images)):
        if kind in ("rows", "table"):
            parts.append(grid_html(x, title=kind == "table"))
        elif kind == "figure":
            title = FIGURE_TITLES.get(x, x)
            b64 = base64.b64encode(images[x]).decode("ascii")
            parts.append(f"<figure><figcaption><b>{html.escape(title)}</b></figcaption>"
                         f"<img alt=\"{html.escape(title)}\" src=\"data:image/png;base64,{b64}\">"
                         f"</figure>")
        elif kind in ("h2", "h3"):
            parts.append(f"<{kind}>{html.escape(x)}</{kind}>")
        else:
            text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(x))  # markdown's code spans
            parts.append(f"<p class=\"{'missing' if kind == 'missing' else 'text'}\">{text}</p>")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p class=\"caption\">Generated by acbo from {html.escape(str(run.path))} "
                 f"at {when}.</p>")
    return _page(f"{run.spec_name} / {run.run_id}", "\n".join(parts), stamp)


# --------------------------------------------------------------------------- entry points


def _stamp(run: RunRecord) -> str:
    """What a report is drawn from: the run's manifest (every file's checksum) and this code."""
    h = hashlib.sha256()
    manifest = run.path / MANIFEST
    h.update(manifest.read_bytes() if manifest.is_file() else b"")
    for src in sorted(Path(__file__).parent.glob("*.py")):
        h.update(src.read_bytes())
    return h.hexdigest()[:16]


def _current(md: Path, page: Path, stamp: str) -> bool:
    """Both files drawn with `stamp`, and every figure the markdown links still there."""
    try:
        text, page_head = md.read_text(encoding="utf-8"), page.read_text(encoding="utf-8")[:1000]
    except OSError:
        return False
    linked = re.findall(r"\]\(([^()]+\.png)\)", text)
    return (text.startswith(f"<!-- acbo report {stamp} -->")
            and f"<meta name=\"acbo-report\" content=\"{stamp}\">" in page_head
            and all((md.parent / f).is_file() for f in linked))


def write_report(run_dir: Path, reports_dir: Path, force: bool = False) -> tuple[Path, Path]:
    """Write ``<reports_dir>/<spec>-<run>.md`` (+ PNGs in ``<spec>-<run>/``) and ``.html``.

    Returns (markdown path, html path). Works on partial run folders (missing evaluation, gates,
    metrics or lock): absent sections are left out and named at the top of the report. A report
    already drawn from the same run files by the same code is left as it is (unless `force`).
    """
    run = load_run(Path(run_dir))
    reports_dir = Path(reports_dir)
    md, page = reports_dir / f"{run.slug}.md", reports_dir / f"{run.slug}.html"
    stamp = _stamp(run)
    if not force and _current(md, page, stamp):
        return md, page
    images = figures(run)
    fig_dir = reports_dir / run.slug
    for name, data in images.items():
        write_atomic(fig_dir / f"{name}.png", data)
    if fig_dir.is_dir():  # drop figures from an earlier report of this run that no longer apply
        for old in fig_dir.glob("*.png"):
            if old.stem not in images:
                old.unlink(missing_ok=True)
    write_atomic(md, render_markdown(run, list(images), run.slug, stamp))
    write_atomic(page, render_html(run, images, stamp))
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
