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
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.registry import MANIFEST, write_atomic
from engine.report.plots import FIGURE_TITLES, figure_title, figures, stage_figure
from engine.report.run import RunRecord, fmt, list_runs, load_run, training_run
from engine.report.stages import (
    glossary_grid,
    stage_grid,
    stage_info,
    stage_title,
    stages_grid,
    transfer_grid,
)
from engine.report.tables import Grid, provenance_grid, runs_grid
from engine.report.training import training_facts, training_grid
from engine.report.templates import render
from engine.report.tensorboard import export_tensorboard
from engine.report.verdict import gates_grid, verdict_line

Block = tuple[str, Any]
# ("h2" | "h3" | "p" | "missing" | "warn", text), ("table" | "rows", Grid), ("figure", name),
# ("diff", unified diff text); a "rows" table goes without its title (a heading above says it)
STAGE_FIGURES = ("roc_pr", "reliability", "speedup", "heatmaps", "graphs")  # for the first stage


def _missing(run: RunRecord) -> list[str]:
    names = {"lock.json": run.lock, "metrics.jsonl": run.metrics,
             # an evaluation in an older format is named by run.notes, not as missing
             "evaluation.json + evaluation.npz": run.evaluation or run.notes, "gates.json": run.gates}
    return [n for n, v in names.items() if not v]


def _settings(d: Any) -> str:
    """A spec section's settings as "a 1, b uniform (max_parents 2)"."""
    if not isinstance(d, dict):
        return str(d)
    parts = []
    for k, v in d.items():
        if k == "kind" or v is None or v == [] or v == {}:
            continue
        if isinstance(v, dict):
            inner = _settings(v)
            v = f"{v.get('kind', '')} ({inner})".strip() if inner else str(v.get("kind", ""))
        parts.append(f"{k} {v}")
    return ", ".join(parts)


def expert_text(spec: dict[str, Any]) -> str | None:
    expert = spec.get("expert")
    if not isinstance(expert, dict) or not expert.get("kind"):
        return None
    return f"Expert: `{expert['kind']}` ({_settings(expert)})."


def evaluated(run: RunRecord) -> list[str]:
    """What was evaluated: the spec's description, which model and which run trained it, the
    expert's settings, the evaluation's settings."""
    spec, ev, out = run.spec or {}, run.evaluation, []
    if spec.get("description"):
        out.append(str(spec["description"]).strip())
    uses = (spec.get("stage") or {}).get("uses")
    model = f"the model trained by spec `{uses}` (`uses`)" if uses else "the model trained in this run"
    trainer = training_run(run)
    if trainer == f"{run.spec_name}/{run.run_id}":
        model += " (this run trained it)" if not uses else ""
    elif trainer:
        model += f", trained by run `{trainer}`"
    elif (run.lock or {}).get("stage_hashes", {}).get("train"):
        model += (f", train stage `{run.lock['stage_hashes']['train']}` (the run that built it "
                  "is not in this registry)")
    extra = (spec.get("evaluation") or {}).get("models") or []
    if extra:
        model += "; also the models of " + ", ".join(f"`{m}`" for m in extra)
    out.append(f"Model under test: {model}.")
    if (text := expert_text(spec)):
        out.append(text)
    if ev is not None:
        graphs = ("the graph of highest expected F1 under its probabilities"
                  if ev.graph_decision == "expected_f1" else f"edges above {fmt(ev.threshold)}")
        out.append(f"{len(ev.stages)} evaluation stage(s): {', '.join(ev.stages)}; threshold "
                   f"{fmt(ev.threshold)} (a model's whole graph: {graphs}); intervals from {ev.n_boot} bootstrap resamples of the "
                   f"graphs (seed {ev.seed}), paired across methods.")
    return out


def blocks(run: RunRecord, figure_names: list[str] | tuple[str, ...] = ()) -> list[Block]:
    """The report's content in order: missing files, the gates, training warnings, what was
    evaluated, a table (and figures) per evaluation stage, optimization, training, provenance."""
    out: list[Block] = []
    missing = _missing(run)
    if missing:
        out.append(("missing", f"Not in this run folder: {', '.join(missing)}."))
    out += [("missing", note) for note in run.notes]
    if run.gates:
        out.append(("table", gates_grid(run.gates)))
    facts = training_facts(run.metrics, run.train, run.spec) if run.metrics else None
    if facts is not None:
        out += [("warn", f"Training warning (see Training): {w}") for w in facts.warnings]
    ev = run.evaluation
    if run.spec or ev is not None:
        out.append(("h2", "What was evaluated"))
        out += [("p", text) for text in evaluated(run)]
        if ev is not None and ev.stages:
            out.append(("rows", stages_grid(ev)))
    if ev is not None and ev.stages:
        out.append(("h2", "Evaluation"))
        t = transfer_grid(ev)
        if t is not None:
            out += [("table", t)] + [("figure", "transfer")] * ("transfer" in figure_names)
        for i, st in enumerate(ev.stages.values()):
            out += [("h3", stage_title(st)), ("p", stage_info(st)), ("rows", stage_grid(st, ev.n_boot))]
            if i == 0:
                out += [("figure", f) for f in STAGE_FIGURES if f in figure_names]
            else:
                out += [("figure", f) for f in (stage_figure("regret", st.name), stage_figure("roc_pr", st.name))
                        if f in figure_names]
        if "f1_by_size" in figure_names:
            out.append(("figure", "f1_by_size"))
        out.append(("table", glossary_grid(ev)))
    t = training_grid(run.metrics, run.train, run.spec)
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
        cells = [f"**{_md_cell(t)}**" if tone in ("good", "bad") else _md_cell(t) for t, tone in row]
        lines.append("| " + " | ".join(cells) + " |")
    if not grid.rows:
        lines.append("| " + " | ".join("—" for _ in grid.headers) + " |")
    if grid.caption:
        lines += ["", f"_{grid.caption}_"]
    if grid.notes:
        lines += [""] + [f"{n}  " for n in grid.notes]
    return "\n".join(lines) + "\n"


def blocks_markdown(items: list[Block], figure_dir: str) -> list[str]:
    out = []
    for kind, x in items:
        if kind in ("rows", "table"):
            out.append(grid_markdown(x, title=kind == "table"))
        elif kind == "figure":
            title = figure_title(x)
            out += [f"**{title}**", "", f"![{title}]({figure_dir}/{x}.png)", ""]
        elif kind in ("h2", "h3"):
            out += [f"{'#' * int(kind[1])} {x}", ""]
        elif kind == "diff":
            out += ["```diff", x.rstrip("\n"), "```", ""]
        elif kind == "warn":
            out += [f"> **{x}**", ""]
        else:
            out += [f"_{x}_" if kind == "missing" else x, ""]
    return out


def render_markdown(run: RunRecord, figure_names: list[str], figure_dir: str, stamp: str = "") -> str:
    """The markdown report; ``figure_dir`` is the PNG folder relative to the markdown file."""
    out = [f"<!-- acbo report {stamp} -->"] if stamp else []
    out += [f"# {run.spec_name} / {run.run_id}", "", f"**{verdict_line(run.gates)}**", ""]
    if run.status:
        out += [f"Run status: {run.status}", ""]
    out += blocks_markdown(blocks(run, figure_names), figure_dir)
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- html


def _b64(images: dict[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode("ascii") for k, v in images.items()}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def banner_class(verdict: str | None) -> str:
    return {"GO": "go", "NO-GO": "nogo", "INCONCLUSIVE": "inconclusive"}.get(verdict or "", "none")


def render_html(run: RunRecord, images: dict[str, bytes], stamp: str = "") -> str:
    """The self-contained HTML report (PNGs embedded as base64 data URIs)."""
    return render("run.html", title=f"{run.spec_name} / {run.run_id}", stamp=stamp, run=run,
                  banner=banner_class(run.verdict), verdict=verdict_line(run.gates),
                  items=blocks(run, list(images)), images=_b64(images),
                  titles={name: figure_title(name) for name in images},
                  when=_now())


# --------------------------------------------------------------------------- entry points


def _code_digest() -> bytes:
    h = hashlib.sha256()
    for src in sorted(Path(__file__).parent.glob("*.py")):
        h.update(src.read_bytes())
    return h.digest()


def _stamp(run: RunRecord) -> str:
    """What a report is drawn from: the run's manifest (every file's checksum), the train
    stage's record and this code."""
    h = hashlib.sha256()
    for path in (run.path / MANIFEST, _train_manifest(run)):
        h.update(path.read_bytes() if path is not None and path.is_file() else b"")
    h.update(_code_digest())
    return h.hexdigest()[:16]


def _train_manifest(run: RunRecord) -> Path | None:
    h = ((run.lock or {}).get("stage_hashes") or {}).get("train")
    return run.path.parents[1] / "_stages" / "train" / str(h) / MANIFEST if h else None


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


def write_figures(images: dict[str, bytes], fig_dir: Path) -> None:
    """The PNGs, and no stale ones from an earlier drawing."""
    for name, data in images.items():
        write_atomic(fig_dir / f"{name}.png", data)
    if fig_dir.is_dir():
        for old in fig_dir.glob("*.png"):
            if old.stem not in images:
                old.unlink(missing_ok=True)


def write_report(run_dir: Path, reports_dir: Path, force: bool = False) -> tuple[Path, Path]:
    """Write ``<reports_dir>/<spec>-<run>.md`` (+ PNGs in ``<spec>-<run>/``) and ``.html``.

    Also writes the run's TensorBoard view, ``<reports_dir>/tensorboard/<spec>/<run id>/``.
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
    write_figures(images, reports_dir / run.slug)
    export_tensorboard(run, reports_dir / "tensorboard")
    write_atomic(md, render_markdown(run, list(images), run.slug, stamp))
    write_atomic(page, render_html(run, images, stamp))
    return md, page


def _write_one(args) -> tuple[Path, Path]:
    run_dir, reports_dir, force = args
    return write_report(run_dir, reports_dir, force)


def stale(run_dir: Path, reports_dir: Path) -> bool:
    """Whether the run's report is missing or was drawn from other files or code."""
    run = load_run(Path(run_dir))
    md, page = Path(reports_dir) / f"{run.slug}.md", Path(reports_dir) / f"{run.slug}.html"
    return not _current(md, page, _stamp(run))


def write_reports(run_dirs: list[Path], reports_dir: Path, force: bool = False,
                  workers: int | None = None) -> dict[Path, tuple[Path, Path]]:
    """`write_report` for every run; the ones to (re)draw are drawn in `workers` processes (by
    default one per CPU): drawing figures is CPU-bound matplotlib work, one run per process."""
    import os

    run_dirs = [Path(p) for p in run_dirs]
    todo = [p for p in run_dirs if force or stale(p, reports_dir)]
    workers = min(workers or os.cpu_count() or 1, len(todo))
    out: dict[Path, tuple[Path, Path]] = {}
    if workers > 1:
        import multiprocessing as mp
        import sys
        from concurrent.futures import ProcessPoolExecutor

        # fork is cheap (no re-import), but not once JAX's threads run in this process
        ctx = mp.get_context("spawn" if "jax" in sys.modules else "fork")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for p, result in zip(todo, pool.map(_write_one, [(p, reports_dir, force) for p in todo])):
                out[p] = result
    for p in run_dirs:
        if p not in out:
            out[p] = write_report(p, reports_dir, force)
    return out


INDEX_FIGURE = "index-runs.png"


def _index_figure(runs: list[RunRecord], reports_dir: Path) -> bytes | None:
    """The across-runs figure, redrawn only when a run's record changed (its stamp is in the
    PNG's name's sidecar: ``index-runs.png`` + ``index-runs.stamp``)."""
    from engine.report.plots import runs_figure

    shown = [r for r in runs if not r.problem and r.evaluation is not None]
    if not shown:
        return None
    h = hashlib.sha256(_code_digest())
    for r in shown:
        h.update(str(r.path).encode())
        manifest = r.path / MANIFEST
        h.update(manifest.read_bytes() if manifest.is_file() else b"")
    stamp = h.hexdigest()[:16]
    png_path, stamp_path = reports_dir / INDEX_FIGURE, reports_dir / "index-runs.stamp"
    try:
        if stamp_path.read_text() == stamp and png_path.is_file():
            return png_path.read_bytes()
    except OSError:
        pass
    try:
        data = runs_figure(shown)
    except ValueError:
        return None
    write_atomic(png_path, data)
    write_atomic(stamp_path, stamp)
    return data


def write_index(registry_root: Path, reports_dir: Path) -> Path:
    """Write ``<reports_dir>/index.html``: the key metrics of every run plotted across runs,
    and every run (newest first) linked to its report."""
    from markupsafe import Markup, escape

    reports_dir = Path(reports_dir)
    runs = list_runs(Path(registry_root))
    links = []
    for run in runs:
        name = f"{run.slug}.html"
        if (reports_dir / name).is_file():
            links.append(Markup(f"<a href=\"{escape(name)}\">report</a>"
                                f" · <a href=\"{escape(run.slug)}.md\">md</a>"))
        else:
            links.append(Markup("<span class=\"dim\">not generated</span>"))
    fig = _index_figure(runs, reports_dir)
    index = reports_dir / "index.html"
    write_atomic(index, render("index.html", title="acbo runs", stamp="", registry=str(registry_root),
                               table=runs_grid(runs), links=links, titles=FIGURE_TITLES,
                               runs_png=base64.b64encode(fig).decode("ascii") if fig else None))
    return index
