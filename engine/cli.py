"""The `acbo` command line: validate, schema, plan, apply, gate, report.

Exit codes: 0 success / GO, 1 internal failure, 2 invalid spec, usage or input, or a damaged file
(named), 3 NO-GO (or a required spec not GO), 4 INCONCLUSIVE (`acbo gate`).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from engine.spec.loader import SpecError, load

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="acbo: a declarative engine for amortized causal Bayesian optimization.",
)
out = Console()
err = Console(stderr=True, soft_wrap=True)


def _say(message: str) -> None:
    """One status line on stdout, never wrapped: it carries paths that users copy (tables, printed
    with `out.print`, still fit the terminal)."""
    out.print(message, soft_wrap=True)

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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print acbo's version and exit."),
) -> None:
    """Persist compiled XLA programs across runs (a rerun or a resume skips most compile time)
    and keep freed host memory for reuse (engine/hostmem.py)."""
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "acbo" / "jax"
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    from engine.hostmem import retain_freed_memory

    retain_freed_memory()  # XLA's CPU buffers reuse freed pages instead of faulting in new ones


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
        from engine.registry import CorruptArtifact
        from engine.train.trainer import TrainingStopped

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
        _say(f"[green]ok[/] {spec}: spec '{loaded.spec.name}' is valid")


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


@app.command()
def plan(spec: Path = SpecArg, set_: Optional[List[str]] = SetOpt, registry: Optional[Path] = RegistryOpt):
    """Stages with hashes and cache state, devices, batch math, time and memory estimates."""
    with _errors():
        from engine.plan import make_plan

        p = make_plan(load(spec, set_ or []))
        out.print(_plan_table(p, _root(registry)))


def _plan_table(p, root: Path):
    from rich.table import Table

    spec = p.spec
    table = Table(title=f"plan: {spec.name}", caption=(
        f"{len(p.devices)} device(s): {', '.join(p.devices)}; "
        + (f"global batch {p.global_batch} = {p.per_device_batch} per device; " if p.global_batch else "")
        + f"estimate {p.total_estimate_s / 60:.1f} min of {spec.hardware.max_wall_minutes:g} min budget, "
        f"{p.estimate_memory_gb:.2f} GB of {spec.hardware.max_memory_gb:g} GB"
    ))
    for col in ("stage", "hash", "from spec", "state", "estimate"):
        table.add_column(col)
    for name, stage in p.stages.items():
        d = stage.dir(root)
        state = "[green]cached[/]" if d.done else ("[yellow]partial (resumes)[/]" if d.partial.exists() else "to run")
        est = p.estimate_s.get(name)
        table.add_row(name, stage.hash, stage.owner, state, f"{est:.0f} s" if est is not None else "-")
    return table


def _run_apply(spec: Path, set_, registry, force: bool, command: str):
    from engine.apply import apply
    from engine.progress import RichProgress

    loaded = load(spec, set_ or [])
    if command == "gate" and not loaded.spec.gates:  # before any work, not after it
        raise UsageError(f"{spec}: the spec declares no [[gates]]; `acbo gate` needs at least one "
                         "(`acbo apply` runs a spec without them)")
    with RichProgress(err) as progress:
        return apply(loaded, _root(registry, create=True), progress, force=force, command=command)


@app.command("apply")
def apply_cmd(
    spec: Path = SpecArg,
    set_: Optional[List[str]] = SetOpt,
    force: bool = typer.Option(False, "--force", help="Recompute this spec's stages, cached or not."),
    registry: Optional[Path] = RegistryOpt,
):
    """Simulate SCMs, run the expert, build demonstrations, train, evaluate (cached, resumable)."""
    with _errors():
        from engine.report.console import print_run

        outcome = _run_apply(spec, set_, registry, force, "apply")
        print_run(outcome.run_dir, out)
        _say(f"run recorded in {outcome.run_dir}")


@app.command()
def gate(
    spec: Path = SpecArg,
    set_: Optional[List[str]] = SetOpt,
    force: bool = typer.Option(False, "--force", help="Recompute this spec's stages, cached or not."),
    registry: Optional[Path] = RegistryOpt,
):
    """Staged evaluation, then every gate with its interval and evidence: GO (exit 0), NO-GO
    (exit 3) or INCONCLUSIVE (exit 4: an interval straddles a bound or lies in a middle zone)."""
    with _errors():
        from engine.report.console import gates_table

        outcome = _run_apply(spec, set_, registry, force, "gate")
        out.print(gates_table(outcome.gates))
        verdict = outcome.gates.verdict
        colour = {"GO": "green", "INCONCLUSIVE": "yellow"}.get(verdict, "red")
        _say(f"[bold {colour}]{verdict}[/]  ({outcome.run_dir})")
        raise typer.Exit(GATE_EXIT.get(verdict, 3))


@app.command()
def report(
    registry: Optional[Path] = RegistryOpt,
    reports: Path = typer.Option(Path("reports"), "--reports", help="Where to write reports."),
):
    """A table of every run, and reports/<run>.md and .html for each."""
    with _errors():
        from engine.report import list_runs, runs_table, write_index, write_report

        root = _root(registry)
        _folder(reports, "reports folder")
        runs = list_runs(root)
        if not runs:
            err.print(f"no runs in {root}; run `acbo apply specs/phase2a.toml` first")
            raise typer.Exit(0)
        out.print(runs_table(root))
        damaged = [run for run in runs if run.problem]
        for run in runs:
            if not run.problem:
                write_report(run.path, reports)
        index = write_index(root, reports)
        _say(f"wrote {len(runs) - len(damaged)} reports; index: {index}")
        for run in damaged:  # never reported from: named, with how to recompute
            err.print(f"damaged file: {run.problem}", markup=False, highlight=False, soft_wrap=True)
        if damaged:
            raise typer.Exit(2)


@app.command()
def infer(
    run: str = typer.Argument(..., help="A run folder (registry/<spec>/<run id>) or a spec name (its latest run)."),
    data: Path = typer.Argument(..., help="CSV of observations; header = variable names."),
    interventions: Optional[Path] = typer.Option(None, "--interventions", help="0/1 CSV of the same shape: which cells were intervened on."),
    target: Optional[str] = typer.Option(None, "--target", help="Predict this variable's parents (default: the whole graph)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the probabilities as CSV (default: print them)."),
    graphml: Optional[Path] = typer.Option(None, "--graphml", help="Write the edge probabilities as GraphML."),
    max_memory_gb: Optional[float] = typer.Option(
        None, "--max-memory-gb", min=0.001,
        help="Working memory the model may use (default: half of what is available); models that "
             "attend over rows then take them in chunks."),
    registry: Optional[Path] = RegistryOpt,
):
    """Parent probabilities of --target, or the whole edge-probability matrix, for a CSV of data."""
    import csv
    import io

    from engine.userfiles import InferError, check_output, inputs, read_csv, target_index, write_output

    with _errors():
        try:
            # Every check on the user's files comes before the (slow) model load.
            given = {"the data file": data, "the interventions file": interventions}
            if output:
                check_output(output, {**given, "the --graphml file": graphml})
            if graphml:
                check_output(graphml, given)
            table = read_csv(data, "data")
            mask = read_csv(interventions, "interventions") if interventions else None
            inputs(table, mask)
            if target is not None:
                target_index(table, target)
            import engine

            predictor = engine.load(run, _root(registry))
            predictor.max_memory_gb = max_memory_gb
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
            err.print(f"model: {predictor.model_spec.kind} of run {predictor.run_dir}",
                      markup=False, highlight=False, soft_wrap=True)
            if predictor.row_chunk:
                err.print(f"rows attended in chunks of {predictor.row_chunk} (of {len(table.values)}) "
                          "to fit the memory budget", markup=False, highlight=False)
            if graphml:
                graph = graph or predictor.graph(table, mask)
                graph.to_graphml(graphml)
                err.print(f"wrote {graphml}", markup=False, highlight=False, soft_wrap=True)
            if output:
                write_output(output, buf.getvalue().encode())
                err.print(f"wrote {output}", markup=False, highlight=False, soft_wrap=True)
            else:
                sys.stdout.write(buf.getvalue())
        except InferError as exc:
            err.print(f"infer: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2)


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
