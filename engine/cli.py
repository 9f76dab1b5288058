"""The `acbo` command line: validate, schema, plan, apply, gate, report, infer.

Exit codes: 0 success / GO, 1 internal failure, 2 invalid spec, usage or input, or a damaged file
(named), 3 NO-GO (or a required spec not GO), 4 INCONCLUSIVE (`acbo gate`).

Output: results on stdout (`--json` on plan, apply, gate and report: one JSON document there and
nothing else), progress and messages on stderr (`--quiet`: errors and warnings only). Nothing
is read as rich markup. Off a terminal (CI logs, pipes) tables are 100 columns wide ($COLUMNS
overrides) and progress is plain lines with an ETA.

Importing this module loads no JAX: each command imports what it uses.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional, Tuple

import typer
from rich.console import Console
from rich.text import Text

from engine.spec.loader import SpecError, load

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="acbo: a declarative engine for amortized causal Bayesian optimization.",
)
out = Console(log_path=False)
err = Console(stderr=True, soft_wrap=True, log_path=False)
PLAIN_WIDTH = 100  # tables off a terminal, where rich would assume 80 columns


def _say(message: str, style: str = "", console: Console | None = None, head: str = "") -> None:
    """One status line, never wrapped (it carries paths that users copy) and never read as
    markup (`[[gates]]` stays as written); `head`, in `style`, leads it."""
    text = Text.assemble((head, style), message) if head else Text(message, style=style)
    (console or out).print(text, soft_wrap=True, highlight=False)


def _fit_consoles() -> None:
    """Off a terminal rich assumes 80 columns and wraps tables narrowly: give them 100."""
    for console in (out, err):
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console.width = PLAIN_WIDTH


def _print_json(obj) -> None:
    from engine.registry import _json_default

    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default, allow_nan=False) + "\n")


def _fit_table(table, console: Console, drop: tuple[str, ...] = (), keep_whole: tuple[str, ...] = ()):
    """`table` with its `keep_whole` columns never wrapped and, while it is wider than the
    console, its `drop` columns removed in that order (they are in the written reports)."""
    from rich.measure import Measurement

    for column in table.columns:
        if str(column.header) in keep_whole:
            column.no_wrap, column.overflow = True, "ellipsis"
    for name in drop:
        if Measurement.get(console, console.options.update_width(10**4), table).maximum <= console.width:
            break
        table.columns[:] = [c for c in table.columns if str(c.header) != name]
    return table

SpecArg = typer.Argument(..., help="Path to a spec file, e.g. specs/phase2a.toml.")
SetOpt = typer.Option(None, "--set", help="Override a spec value: dotted.path=value (repeatable).")
GATE_EXIT = {"GO": 0, "NO-GO": 3, "INCONCLUSIVE": 4}
RegistryOpt = typer.Option(None, "--registry", help="Registry folder (default: $ACBO_REGISTRY or ./registry).")


def _version(value: bool) -> None:
    if value:
        from engine import __version__

        sys.stdout.write(f"acbo {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _setup(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print acbo's version and exit."),
) -> None:
    """Persist compiled XLA programs across runs (a rerun or a resume skips most compile time)
    and keep freed host memory for reuse (engine/hostmem.py)."""
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "acbo" / "jax"
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache)
    # infer's forward pass compiles in under 0.5 s, most of a warm `acbo infer`: cache it too
    # (training's many tiny eager ops would only fill the cache)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                          "0" if ctx.invoked_subcommand == "infer" else "0.5")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    _fit_consoles()
    from engine.hostmem import retain_freed_memory

    retain_freed_memory()  # XLA's CPU buffers reuse freed pages instead of faulting in new ones
    if ctx.invoked_subcommand in ("apply", "gate", "plan"):
        from engine.train.parallel import init_distributed

        init_distributed()  # a multi-host run joins before any JAX call (validation makes some)


class UsageError(Exception):
    """A folder or file given on the command line that cannot be used (exit 2)."""


def _folder(path: Path, what: str) -> Path:
    """`path` as a folder acbo may write in, created if absent; else UsageError, before any work."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{what} {path}: not a folder") from None
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot create it ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: not writable")
    return path


def _root(registry: Optional[Path], create: bool = False) -> Path:
    """The registry folder; `create` for commands that write runs (readers never create it)."""
    from engine.registry import registry_root

    root = Path(registry) if registry else registry_root()
    if create:
        return _folder(root, "registry")
    if root.exists() and not root.is_dir():
        raise UsageError(f"registry {root}: not a folder")
    return root


@contextmanager
def _errors():
    """Map every expected failure to a clear message and its exit code; never a traceback."""
    from engine.plan import PlanError

    try:
        yield
    except SpecError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    except PlanError as exc:
        err.print(f"plan: {exc}", markup=False)
        raise typer.Exit(2)
    except UsageError as exc:
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    except KeyboardInterrupt:
        err.print("interrupted: completed stages are kept; the same command resumes", markup=False)
        raise typer.Exit(130)
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        from engine.apply import Refused
        from engine.expert.backends import MissingExtra
        from engine.registry import CorruptArtifact
        from engine.train.trainer import TrainingStopped

        if isinstance(exc, MissingExtra):
            err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        if isinstance(exc, Refused):
            err.print(f"refused: {exc}", markup=False)
            raise typer.Exit(3)
        if isinstance(exc, CorruptArtifact):
            err.print(f"damaged file: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        if isinstance(exc, TrainingStopped):
            err.print(f"training stopped: {exc}", markup=False)
            raise typer.Exit(1)
        if isinstance(exc, OSError) and exc.filename and not os.environ.get("ACBO_DEBUG"):
            # the machine, not acbo: a full disk, a folder taken away, permissions
            err.print(f"{exc.filename}: {exc.strerror or exc}", markup=False, highlight=False)
            raise typer.Exit(1)
        if os.environ.get("ACBO_DEBUG"):
            traceback.print_exc()
        err.print(f"internal error: {type(exc).__name__}: {exc} (set ACBO_DEBUG=1 for the traceback)", markup=False)
        raise typer.Exit(1)


@app.command()
def validate(spec: Path = SpecArg, set_: Optional[List[str]] = SetOpt):
    """Check a spec: every problem as file:line: dotted.path: message."""
    with _errors():
        loaded = load(spec, set_ or [])
        _say(f" {spec}: spec '{loaded.spec.name}' is valid", "green", head="ok")


@app.command()
def schema(output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to a file.")):
    """The JSON Schema of spec files (for editors: Taplo / Even Better TOML)."""
    from engine.spec.schema import spec_schema

    from engine.userfiles import InferError, check_output, write_output

    text = json.dumps(spec_schema(), indent=2)
    if output:
        try:
            write_output(check_output(output), (text + "\n").encode())
        except InferError as exc:
            err.print(f"schema: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        err.print(f"wrote {output}", markup=False, highlight=False)
    else:
        sys.stdout.write(text + "\n")


JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout (for scripts and CI) instead of tables.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress or status lines; errors and warnings only.")


@app.command()
def plan(
    spec: Path = SpecArg,
    set_: Optional[List[str]] = SetOpt,
    registry: Optional[Path] = RegistryOpt,
    as_json: bool = JsonOpt,
    ray_cpus: Optional[int] = typer.Option(
        None, "--ray-cpus", min=1,
        help='With [hardware] backend = "ray": price the per-graph stages on this many Ray CPUs '
             "(default: $ACBO_RAY_CPUS, else the cluster at $RAY_ADDRESS, else 100 assumed)."),
):
    """Stages with hashes and cache state, devices, batch math, and the price: wall time, the
    expert's CPU-hours and the storage each stage writes, against the [hardware] budgets."""
    with _errors():
        from engine.plan import PlanError, make_plan

        p = make_plan(load(spec, set_ or []), ray_cpus=ray_cpus, pricing=True, check_budget=False)
        refused = p.over_budget()
        if as_json:
            _print_json({**_plan_json(p, _root(registry)), "refused": "; ".join(refused) or None})
        else:
            out.print(_plan_table(p, _root(registry)), width=None if out.is_terminal else max(out.width, 100))
        if refused:  # priced above, refused here: `apply` would not start it
            raise PlanError("; ".join(refused))


def _stage_state(stage, root: Path) -> str:
    d = stage.dir(root)
    return "cached" if d.done else ("partial" if d.partial.exists() else "to run")


def _plan_json(p, root: Path) -> dict:
    spec = p.spec
    w = p.workers
    return {
        "spec": spec.name,
        "spec_path": str(p.spec_file.path),
        "registry": str(root),
        "devices": list(p.devices),
        "global_batch": p.global_batch,
        "per_device_batch": p.per_device_batch,
        "estimate_s": p.total_estimate_s,
        "budget_s": spec.hardware.max_wall_minutes * 60,
        "estimate_memory_gb": p.estimate_memory_gb,
        "budget_memory_gb": spec.hardware.max_memory_gb,
        "workers": {"backend": w.backend, "n": w.n, "assumed": w.assumed, "note": w.note},
        "cpu_hours": p.total_cpu_hours,
        "storage_bytes": p.total_storage_bytes,
        "storage_gb": p.total_storage_bytes / 1e9,
        "stages": [{"name": name, "hash": stage.hash, "owner": stage.owner, "state": _stage_state(stage, root),
                    "estimate_s": p.estimate_s.get(name), "cpu_hours": p.cpu_hours.get(name),
                    "storage_bytes": p.storage_bytes.get(name)}
                   for name, stage in p.stages.items()],
    }


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else (f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h")


def _bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.{1 if n < 10 * scale else 0}f} {unit}"
    return f"{n} B"


def _plan_table(p, root: Path):
    from rich.table import Table

    spec, w = p.spec, p.workers
    table = Table(title=f"plan: {spec.name}", caption_justify="left", caption=Text(
        f"{len(p.devices)} device(s): {', '.join(p.devices)}"
        + (f"; global batch {p.global_batch} = {p.per_device_batch} per device" if p.global_batch else "")
        + f"; memory {p.estimate_memory_gb:.2f} GB of {spec.hardware.max_memory_gb:g} GB"
        + f"\nper-graph stages (CPU-h: graphs x core-seconds a graph) on {w.note}"
        + f"\nprice: {_seconds(p.total_estimate_s)} wall of a {spec.hardware.max_wall_minutes:g} min "
        f"budget, {p.total_cpu_hours:.2f} CPU-hours, {p.total_storage_bytes / 1e9:.3g} GB written"
        + ("; a partial stage resumes where it stopped"
           if any(_stage_state(s, root) == "partial" for s in p.stages.values()) else "")
    ))
    for col in ("stage", "hash", "from spec", "state", "wall", "CPU-h", "storage"):
        table.add_column(col, no_wrap=col in ("stage", "hash"),
                         justify="right" if col in ("wall", "CPU-h", "storage") else "left")
    styles = {"cached": "green", "partial": "yellow"}
    for name, stage in p.stages.items():
        state = _stage_state(stage, root)
        est, hours, size = p.estimate_s.get(name), p.cpu_hours.get(name), p.storage_bytes.get(name)
        table.add_row(name, stage.hash, stage.owner, Text(state, style=styles.get(state, "")),
                      _seconds(est) if est is not None else "-",
                      f"{hours:.2f}" if hours is not None else "",
                      _bytes(size) if size is not None else "-")
    table.add_section()
    table.add_row("total", "", "", "", _seconds(p.total_estimate_s), f"{p.total_cpu_hours:.2f}",
                  _bytes(p.total_storage_bytes))
    return table


def _run_apply(spec: Path, set_, registry, force: bool, command: str, quiet: bool):
    from engine.apply import apply
    from engine.progress import RichProgress

    loaded = load(spec, set_ or [])
    if command == "gate" and not loaded.spec.gates:  # before any work, not after it
        raise UsageError(f"{spec}: the spec declares no [[gates]]; `acbo gate` needs at least one "
                         "(`acbo apply` runs a spec without them)")
    with RichProgress(err, quiet=quiet) as progress:
        return apply(loaded, _root(registry, create=True), progress, force=force, command=command)


def _outcome_json(outcome, spec: Path) -> dict:
    doc = {
        "spec_path": str(spec),
        "run": str(outcome.run_dir),
        "run_id": outcome.run_dir.name,
        "new_run": getattr(outcome, "new_run", True),
        "why_new_run": getattr(outcome, "why", "") or None,
        "reused": list(getattr(outcome, "reused", [])),
        "computed": list(getattr(outcome, "computed", [])),
    }
    if outcome.gates is not None:
        doc["verdict"] = outcome.gates.verdict
        doc["exit_code"] = GATE_EXIT.get(outcome.gates.verdict, 3)
        doc["gates"] = outcome.gates.to_json()
    return doc


def _recorded(outcome) -> str:
    return (f"run recorded in {outcome.run_dir}" if getattr(outcome, "new_run", True)
            else f"every stage cached: reused run {outcome.run_dir} (no new run folder; --force recomputes)")


@app.command("apply")
def apply_cmd(
    spec: Path = SpecArg,
    set_: Optional[List[str]] = SetOpt,
    force: bool = typer.Option(False, "--force", help="Recompute this spec's stages, cached or not."),
    registry: Optional[Path] = RegistryOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Simulate SCMs, run the expert, build demonstrations, train, evaluate (cached, resumable).

    When every stage is cached, the run that recorded them is reused rather than copied."""
    with _errors():
        outcome = _run_apply(spec, set_, registry, force, "apply", quiet or as_json)
        if as_json:
            _print_json(_outcome_json(outcome, spec))
            return
        if not quiet:
            from engine.report.console import print_run

            print_run(outcome.run_dir, out)
        _say(_recorded(outcome))


@app.command()
def gate(
    spec: Path = SpecArg,
    set_: Optional[List[str]] = SetOpt,
    force: bool = typer.Option(False, "--force", help="Recompute this spec's stages, cached or not."),
    registry: Optional[Path] = RegistryOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Staged evaluation, then every gate with its interval and evidence: GO (exit 0), NO-GO
    (exit 3) or INCONCLUSIVE (exit 4: an interval straddles a bound or lies in a middle zone)."""
    with _errors():
        outcome = _run_apply(spec, set_, registry, force, "gate", quiet or as_json)
        verdict = outcome.gates.verdict
        if as_json:
            _print_json(_outcome_json(outcome, spec))
            raise typer.Exit(GATE_EXIT.get(verdict, 3))
        if not quiet:
            from engine.report.console import gates_table

            out.print(gates_table(outcome.gates))
            if not getattr(outcome, "new_run", True):
                _say(_recorded(outcome), console=err)
        colour = {"GO": "green", "INCONCLUSIVE": "yellow"}.get(verdict, "red")
        _say(f"  ({outcome.run_dir})", f"bold {colour}", head=verdict)
        raise typer.Exit(GATE_EXIT.get(verdict, 3))


@app.command()
def report(
    registry: Optional[Path] = RegistryOpt,
    reports: Path = typer.Option(Path("reports"), "--reports", help="Where to write reports."),
    compare: Optional[Tuple[str, str]] = typer.Option(
        None, "--compare", metavar="RUN_A RUN_B",
        help="Compare two runs (run folders, or run ids in the registry) instead."),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """A table of every run, and reports/<run>.md and .html for each.

    `--compare RUN_A RUN_B`: two runs side by side."""
    with _errors():
        if compare and all(compare):
            try:
                from engine.report.compare import compare_runs
            except ImportError:
                raise UsageError("--compare: this acbo has no run comparison (engine.report.compare)") from None
            raise typer.Exit(compare_runs(_root(registry), compare[0], compare[1],
                                          _folder(reports, "reports folder"), as_json))
        from engine.report import list_runs, runs_table, write_index, write_reports

        root = _root(registry)
        _folder(reports, "reports folder")
        runs = list_runs(root)
        if not runs:
            if as_json:
                _print_json({"registry": str(root), "reports": str(reports), "index": None, "runs": []})
            else:
                _say(f"no runs in {root}; run `acbo apply specs/phase2a.toml` first", console=err)
            raise typer.Exit(0)
        if not as_json and not quiet:
            # the run id already holds its start time and the spec hash's head
            out.print(_fit_table(runs_table(root), out,
                                 keep_whole=("Spec", "Run", "Spec hash", "Git", "Started", "Duration", "Status"),
                                 drop=("Spec hash", "Started", "Git", "Expert F1", "Duration")))
        damaged = [run for run in runs if run.problem]
        # stale reports are drawn in parallel processes (matplotlib is CPU-bound), current ones skipped
        written = write_reports([run.path for run in runs if not run.problem], reports)
        index = write_index(root, reports)
        if as_json:
            _print_json({
                "registry": str(root), "reports": str(reports), "index": str(index),
                "runs": [{"spec": run.spec_name, "run_id": run.run_id, "path": str(run.path),
                          "status": run.status, "verdict": run.verdict,
                          "report_md": str(written[run.path][0]) if run.path in written else None,
                          "report_html": str(written[run.path][1]) if run.path in written else None,
                          "problem": run.problem} for run in runs],
            })
        elif not quiet:
            _say(f"wrote {len(runs) - len(damaged)} reports; index: {index}")
        for run in damaged:  # never reported from: named, with how to recompute
            err.print(f"damaged file: {run.problem}", markup=False, highlight=False, soft_wrap=True)
        if damaged:
            raise typer.Exit(2)


@app.command()
def infer(
    args: List[str] = typer.Argument(..., metavar="[RUN] DATA",
                                     help="DATA: a CSV of observations (header = variable names). RUN: a run folder "
                                          "(registry/<spec>/<run id>), its model.eqx, a spec name (its latest run with "
                                          "a model) or a shipped model; default: --model."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="The model to use, as RUN (default: the shipped 'general' model; 'general_grn' with --counts; 'general_int' with --interventions otherwise)."),
    interventions: Optional[Path] = typer.Option(None, "--interventions", help="0/1 CSV of the same shape: which cells were intervened on."),
    target: Optional[str] = typer.Option(None, "--target", help="Predict this variable's parents (default: the whole graph)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the probabilities as CSV (default: print them)."),
    graphml: Optional[Path] = typer.Option(None, "--graphml", help="Write the edges as GraphML (probability as attribute 'prob', the run's metadata as graph attributes)."),
    threshold: float = typer.Option(0.0, "--threshold", min=0.0, max=1.0,
                                    help="GraphML: only edges with probability above this (default 0: every edge)."),
    decide: bool = typer.Option(False, "--decide",
                                help="GraphML: only the edges of the one graph of highest expected F1 under the "
                                     "probabilities (each pair's likelier direction; instead of --threshold)."),
    max_memory_gb: Optional[float] = typer.Option(
        None, "--max-memory-gb", min=0.001,
        help="Working memory the model may use (default: half of what is available); models that "
             "attend over rows then take them in chunks."),
    exact: bool = typer.Option(
        False, "--exact",
        help="No model: the exact Bayesian posterior over all DAGs (linear or additive nonlinear "
             "scores), from the observational rows; up to 20 variables, under a second at 10 and "
             "about 20 s at 20. Far more accurate than the models on small graphs of continuous "
             "data; not for counts."),
    counts: Optional[bool] = typer.Option(
        None, "--counts/--no-counts",
        help="The data are counts (single-cell UMIs): standardise them as log2 counts per million "
             "(default: as the model's training data were, by its scm.standardize)."),
    registry: Optional[Path] = RegistryOpt,
    quiet: bool = QuietOpt,
):
    """Parent probabilities of --target, or the whole edge-probability matrix, for a CSV of data.

    Names the run and model it used (on stderr); an evaluation-only run answers with the model
    it evaluated."""
    import csv
    import io

    from engine.userfiles import (InferError, check_output, count_zero_fraction, inputs, read_csv, target_index,
                                  write_output)

    def note(message: str) -> None:
        if not quiet:
            err.print(message, markup=False, highlight=False, soft_wrap=True)

    with _errors():
        try:
            if len(args) > 2 or (len(args) == 2 and model is not None):
                raise UsageError("give the data file and at most one model (RUN or --model), not "
                                 + " ".join(args))
            if exact and (len(args) == 2 or model is not None):
                raise UsageError("--exact answers without a model: give the data file only")
            if exact and counts:
                raise UsageError("--exact is for continuous data: on single-cell counts its scores rank edges "
                                 "below chance (grn-10 AUROC 0.32, benchmarks/results/general_eval.md); "
                                 "leave out --exact to use the general_grn model")
            if decide and not graphml:
                raise UsageError("--decide picks the edges of the GraphML file: give --graphml too")
            if decide and threshold:
                raise UsageError("--decide and --threshold both pick the GraphML's edges: give one")
            from engine.pretrained import default, path as pretrained_path

            shipped = default(interventional=interventions is not None, counts=bool(counts))
            run = args[0] if len(args) == 2 else (model or shipped)
            if len(args) == 1 and model is None and not exact and pretrained_path(shipped) is None and not (_root(registry) / shipped).is_dir():
                raise UsageError(f"no model named, and this acbo ships no '{shipped}' model yet: give a run folder "
                                 "or spec name before the data file, or --model NAME")
            data = Path(args[-1])
            # Every check on the user's files comes before the (slow) model load.
            given = {"the data file": data, "the interventions file": interventions}
            if output:
                check_output(output, {**given, "the --graphml file": graphml})
            if graphml:
                check_output(graphml, given)
            table = read_csv(data, "data")
            mask = read_csv(interventions, "interventions") if interventions else None
            _, intervened = inputs(table, mask)
            if target is not None:
                target_index(table, target)
            if exact:
                from engine.posterior import ExactPosterior

                if len(table.names) > ExactPosterior.max_variables:
                    raise InferError(f"--exact takes at most {ExactPosterior.max_variables} variables; "
                                     f"{data} has {len(table.names)}: leave out --exact to use a model")
                predictor = ExactPosterior()
            else:
                from engine.infer import load as load_predictor

                predictor = load_predictor(run, _root(registry))
            predictor.max_memory_gb = max_memory_gb
            if counts is not None:
                predictor.counts = counts
            zeros = count_zero_fraction(table.values) if counts is None and not predictor.counts else None
            if zeros is not None:
                # read as plain values, counts mislead the continuous models: general ranks grn-10's
                # edges below chance (AUROC 0.43), general_grn at 0.72 (benchmarks/results/general_eval.md)
                note(f"{data} looks like counts (non-negative integers, {zeros:.0%} zeros): give --counts "
                     "to read them as counts (the general_grn model), where the continuous models rank "
                     "edges near or below chance; --no-counts if they are not counts")
            from engine.posterior import ExactPosterior

            small = len(table.names) <= ExactPosterior.max_variables
            if len(args) == 1 and model is None and not exact and not predictor.counts and zeros is None \
                    and not intervened.any() and small:
                # the amortized models trail it most on small dense linear graphs (general_eval.md)
                note(f"{len(table.names)} continuous variables and no interventions: --exact (the posterior "
                     "summed over every DAG, no model) ranked edges better than the shipped models on every "
                     "external continuous suite of 10 and 20 variables (linear-10 AUROC 0.99 against 0.87)")
            if target is not None:
                probs = predictor.parents(table, mask, target=target)
                buf = io.StringIO()
                w = csv.writer(buf, lineterminator="\n")  # quotes names with commas
                w.writerow(["parent", "probability"])
                w.writerows([n, f"{p:.6f}"] for n, p in probs.items())
                graph = None
            else:
                graph = predictor.graph(table, mask)
                buf = io.StringIO()
                graph.to_csv(buf)
            # Which model answered (a spec name resolves to its newest run with a model).
            note(predictor.describe())
            if predictor.observational_only and intervened.any():
                k = int(intervened.any(1).sum())
                note(f"{k} interventional row{'' if k == 1 else 's'} left out: " + (
                    "the exact posterior reads observational rows only" if exact else
                    "this model was trained on observational rows only (given them, general ranked "
                    "linear data's edges below chance)" + ("" if predictor.counts else
                                                           "; --model general_int reads them")))
            if predictor.row_chunk:
                note(f"rows attended in chunks of {predictor.row_chunk} (of {len(table.values)}) "
                     "to fit the memory budget")
            if graphml:
                graph = graph or predictor.graph(table, mask)
                graph.to_graphml(graphml, threshold="expected_f1" if decide else threshold)
                note(f"wrote {graphml} (" + ("the graph of highest expected F1" if decide
                                             else f"edges with probability > {threshold:g}") + ")")
            if output:
                write_output(output, buf.getvalue().encode())
                note(f"wrote {output}")
            else:
                sys.stdout.write(buf.getvalue())
        except InferError as exc:
            err.print(f"infer: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2)


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
