"""Stage 2, expert: run the expert on every simulated graph; its trajectories are the labels.

Graphs are processed in chunks, each chunk's trajectories written atomically as its own file,
so an interrupted stage resumes at the first chunk not yet on disk.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from engine.registry import arrays_from_bytes, arrays_to_bytes, write_atomic
from engine.stages import simulate
from engine.stages.context import StageContext

CHUNK = 32


def _take(tree, start: int, stop: int):
    return jax.tree.map(lambda a: a[start:stop], tree)


def run(ctx: StageContext) -> dict:
    spec = ctx.spec
    scms, data = simulate.load(ctx)
    expert = spec.expert.build()
    out = ctx.dir("expert")
    work = out.work_dir()
    n = spec.data.n_graphs
    chunks = [(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]
    ctx.progress.start(f"expert ({spec.expert.kind}) on {n} graphs", n)
    key = ctx.key("expert")
    started = time.perf_counter()
    for i, (a, b) in enumerate(chunks):
        part = work / f"part-{i:05d}.npz"
        if not part.exists():
            traj = expert.run_many(jax.random.fold_in(key, i), _take(scms, a, b), _take(data, a, b))
            arrays = {f: np.asarray(getattr(traj, f)) for f in traj.__dataclass_fields__}
            write_atomic(part, arrays_to_bytes(arrays))
        ctx.progress.advance(b, f"chunk {i + 1}/{len(chunks)}")
    parts = [arrays_from_bytes((work / f"part-{i:05d}.npz").read_bytes()) for i in range(len(chunks))]
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    write_atomic(work / "trajectories.npz", arrays_to_bytes(merged))
    for i in range(len(chunks)):
        (work / f"part-{i:05d}.npz").unlink()
    meta = {"seconds": time.perf_counter() - started, "rows_per_graph": float(merged["rows_valid"].sum(1).mean())}
    out.commit(["trajectories.npz"], meta)
    return meta
