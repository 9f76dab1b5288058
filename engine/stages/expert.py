"""Stage 2, expert: run the expert on every simulated graph; its trajectories are the labels.

The expert writes one checksummed artifact per graph into the stage's work directory
(`engine.expert.runner.run_graphs`), so an interrupted stage resumes at the first graph not yet
on disk; the stage then merges them into one file.
"""

from __future__ import annotations

import os
import time

import numpy as np

from engine.expert.runner import load_trajectory, run_graphs
from engine.registry import arrays_to_bytes, write_atomic
from engine.stages import simulate
from engine.stages.context import StageContext


def run(ctx: StageContext) -> dict:
    spec = ctx.spec
    scms, data = simulate.load(ctx)
    expert = spec.expert.build()
    out = ctx.dir("expert")
    work = out.work_dir()
    n = spec.data.n_graphs
    ctx.progress.start(f"expert ({spec.expert.kind}) on {n} graphs", n)
    started = time.perf_counter()
    paths = run_graphs(
        expert,
        ctx.key("expert"),
        scms,
        data,
        work / "graphs",
        progress=lambda done, total: ctx.progress.advance(done, f"{done}/{total} graphs"),
        workers=min(os.cpu_count() or 1, 8),
    )
    trajectories = [load_trajectory(p) for p in paths]
    merged = {
        f: np.stack([np.asarray(getattr(t, f)) for t in trajectories])
        for f in trajectories[0].__dataclass_fields__
    }
    write_atomic(work / "trajectories.npz", arrays_to_bytes(merged))
    meta = {
        "seconds": time.perf_counter() - started,
        "rows_per_graph": float(merged["rows_valid"].sum(1).mean()),
    }
    out.commit(["trajectories.npz"], meta)
    return meta
