"""Stage 1, simulate: draw the spec's SCMs and their observational and interventional data."""

from __future__ import annotations

import io
import math

import numpy as np

from engine.registry import arrays_to_bytes, write_atomic
from engine.spec.base import FLOAT32_MAX
from engine.stages.context import StageContext


def run(ctx: StageContext, name: str = "simulate", scm=None, n_graphs: int | None = None,
        seed: int | None = None) -> dict:
    """Simulate the spec's [scm] (or, for an evaluation stage `name`, its own `scm`, number of
    graphs and seed)."""
    from engine import scm as scm_lib

    spec = ctx.spec
    scm = scm or spec.scm
    n_graphs = n_graphs or spec.data.n_graphs
    out = ctx.dir(name)
    work = out.work_dir()
    ctx.progress.start(f"simulate {n_graphs} SCMs", None)
    try:
        scms, data = scm_lib.simulate(scm, ctx.key("simulate", seed), n_graphs)
    except scm_lib.SimulationError as exc:
        raise _spec_error(ctx, str(exc)) from None
    # Finite is not enough: every later stage (standardising, correlations, the expert's
    # regressions) sums squares over the rows in float32.
    rows = scm.n_obs + scm.n_int
    limit = math.sqrt(FLOAT32_MAX / max(rows, 1))
    largest = max(float(np.abs(np.asarray(data.obs)).max(initial=0.0)),
                  float(np.abs(np.asarray(data.int_values)).max(initial=0.0)))
    if largest > limit:
        raise _spec_error(ctx, (
            f"simulated values reach {largest:.3g}, beyond {limit:.3g}: their squares summed over "
            f"{rows} rows overflow float32 (training would stop at a NaN loss); narrow the spec's "
            "noise scale, coefficient or intervention value ranges"))
    scm_lib.save(work / "scm.eqx", scms, data)
    adjacency = np.asarray(scms.adjacency)
    target = np.asarray(scms.target)
    parents = adjacency[np.arange(len(target)), :, target].astype(bool)
    summary = {
        "adjacency": adjacency,
        "var_mask": np.asarray(scms.var_mask),
        "target": target,
        "parents": parents,
        "obs": np.asarray(data.obs),
    }
    write_atomic(work / "graphs.npz", arrays_to_bytes(summary))
    n_vars = summary["var_mask"].sum(1)
    meta = {
        "n_graphs": int(len(target)),
        "mean_nodes": float(n_vars.mean()),
        "mean_edges": float(adjacency.sum((1, 2)).mean()),
        "mean_parents": float(parents.sum(1).mean()),
    }
    out.commit(["scm.eqx", "graphs.npz"], meta)
    ctx.progress.advance(1, f"{meta['n_graphs']} graphs, {meta['mean_edges']:.1f} edges on average")
    return meta


def _spec_error(ctx: StageContext, message: str):
    """A spec that validates but whose [scm] cannot be simulated (values overflow float32): a
    spec problem at [scm] (exit 2), like a validation error, not an internal failure."""
    from engine.spec.loader import Problem, SpecError, _display
    from engine.spec.locate import line_of, locate_lines

    spec_file = ctx.plan.spec_file
    line = line_of(locate_lines(spec_file.text), ("scm",))
    return SpecError([Problem(_display(spec_file.path), line, "scm", message)])


def load(ctx: StageContext, name: str = "simulate", scm=None, n_graphs: int | None = None):
    """(scms, data) batched over graphs, read back with checksums verified."""
    from engine import scm as scm_lib

    from engine.registry import CorruptArtifact

    stage = ctx.dir(name)
    data = io.BytesIO(stage.read_bytes("scm.eqx"))
    try:
        return scm_lib.load(data, scm or ctx.spec.scm, n_graphs or ctx.spec.data.n_graphs)
    except Exception as exc:  # noqa: BLE001 - a checksummed file that is not what this acbo reads
        raise CorruptArtifact(f"{stage.final / 'scm.eqx'}: cannot be read back ({exc}); {stage.hint}") from None
