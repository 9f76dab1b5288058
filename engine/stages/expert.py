"""Stage 2, expert: run the expert on every simulated graph; its trajectories are the labels.

The expert writes one checksummed artifact per graph into the stage's work directory
(`engine.expert.runner.run_graphs`, in local processes or Ray tasks as [hardware] backend says),
so an interrupted stage resumes at the first graph not yet on disk; the stage then merges them
into one file, with each graph's `run_seconds` (wall seconds of its expert run) and
`compile_seconds` (the XLA compile inside it) [G] beside the trajectories' fields.
"""

from __future__ import annotations

import time

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from engine.expert.runner import merge_artifacts, run_graphs
from engine.plan import local_workers, stage_graphs
from engine.registry import arrays_to_bytes, write_atomic
from engine.stages import simulate
from engine.stages.context import StageContext


def run(ctx: StageContext, name: str = "expert", stage=None) -> dict:
    """The expert on the spec's graphs (or on evaluation stage `stage`'s, into stage `name`)."""
    spec = ctx.spec
    if stage is None:
        scms, data = simulate.load(ctx)
        expert_spec, n, seed = spec.expert, spec.data.n_graphs, None
    else:
        n = stage_graphs(spec, stage)
        scms, data = simulate.load(ctx, f"simulate.{stage.name}", stage.scm or spec.scm, n)
        expert_spec, seed = stage.expert, stage.seed
        if stage.observational:  # no interventional rows, and no trials (they would be some)
            data = eqx.tree_at(lambda d: d.int_row_mask, data, jnp.zeros_like(data.int_row_mask))
            if getattr(expert_spec, "n_trials", 0):
                expert_spec = expert_spec.model_copy(update={"n_trials": 0})
    expert = expert_spec.build()
    out = ctx.dir(name)
    work = out.work_dir()
    ctx.progress.start(f"expert ({expert_spec.kind}) on {n} graphs", n)
    started = time.perf_counter()
    paths = run_graphs(
        expert,
        ctx.key("expert", seed),
        scms,
        data,
        work / "graphs",
        progress=lambda done, total: ctx.progress.advance(done, f"{done}/{total} graphs"),
        workers=local_workers(),
        backend=spec.hardware.build_backend(),
        memory_bytes=spec.hardware.max_memory_gb * 1e9 / 2,  # the other half: the stage's own arrays
    )
    merged = merge_artifacts(paths)
    write_atomic(work / "trajectories.npz", arrays_to_bytes(merged))
    meta = {
        "seconds": time.perf_counter() - started,
        "rows_per_graph": float(merged["rows_valid"].sum(1).mean()),
        # None if every file predates the timing (a run resumed from an older acbo's files)
        "run_seconds_per_graph": (float(np.nanmean(merged["run_seconds"]))
                                  if np.isfinite(merged["run_seconds"]).any() else None),
    }
    out.commit(["trajectories.npz"], meta)
    return meta
