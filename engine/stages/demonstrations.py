"""Stage 3, demonstrations: expert trajectories -> TrainingExamples, split by graph.

Each split is stored as one `.npy` file per field (`train.obs.npy`, ...), checksummed in the
stage's manifest: training memory-maps them and reads only the rows of each batch, so a set of
50K demonstrations (or far more) is never wholly in memory (engine.train.sources.DemoStream).
"""

from __future__ import annotations

import io

import numpy as np

from engine.data.demos import SPLITS, Demonstrations, build_split, split_graphs
from engine.registry import StageDir, write_atomic
from engine.stages.context import StageContext

FIELDS = list(Demonstrations.__dataclass_fields__)


def _file(split: str, field: str) -> str:
    return f"{split}.{field}.npy"


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def run(ctx: StageContext) -> dict:
    spec = ctx.spec
    graphs = ctx.dir("simulate").read_arrays("graphs.npz")
    trajectory = ctx.dir("expert").read_arrays("trajectories.npz")
    out = ctx.dir("demonstrations")
    work = out.work_dir()
    split = spec.data.split.model_dump()
    ids = split_graphs(len(graphs["target"]), split, spec.seed)
    ctx.progress.start("demonstrations", len(SPLITS))
    meta, files = {}, []
    for i, name in enumerate(SPLITS):
        demos = build_split(ids[name], graphs, trajectory, spec.data.demos_per_graph)
        arrays = demos.to_numpy()
        for field in FIELDS:
            write_atomic(work / _file(name, field), _npy(arrays[field]))
            files.append(_file(name, field))
        meta[name] = {"graphs": demos.n_graphs, "demos": demos.n_demos,
                      "bytes": int(sum(a.nbytes for a in arrays.values()))}
        ctx.progress.advance(i + 1, f"{name}: {demos.n_demos} demos")
    out.commit(files, meta)
    return meta


def load(stage_dir: StageDir, split: str) -> Demonstrations:
    """Split `split` as read-only memory maps (each file's checksum verified)."""
    return Demonstrations.on_host({f: stage_dir.memmap(_file(split, f)) for f in FIELDS})
