"""Stage 3, demonstrations: expert trajectories -> TrainingExamples, split by graph."""

from __future__ import annotations

from engine.data.demos import SPLITS, Demonstrations, build_split, split_graphs
from engine.registry import StageDir, arrays_to_bytes, write_atomic
from engine.stages.context import StageContext


def run(ctx: StageContext) -> dict:
    spec = ctx.spec
    graphs = ctx.dir("simulate").read_arrays("graphs.npz")
    trajectory = ctx.dir("expert").read_arrays("trajectories.npz")
    out = ctx.dir("demonstrations")
    work = out.work_dir()
    split = spec.data.split.model_dump()
    ids = split_graphs(len(graphs["target"]), split, spec.seed)
    ctx.progress.start("demonstrations", len(SPLITS))
    meta = {}
    for i, name in enumerate(SPLITS):
        demos = build_split(ids[name], graphs, trajectory, spec.data.demos_per_graph)
        write_atomic(work / f"{name}.npz", arrays_to_bytes(demos.to_numpy()))
        meta[name] = {"graphs": demos.n_graphs, "demos": demos.n_demos}
        ctx.progress.advance(i + 1, f"{name}: {demos.n_demos} demos")
    out.commit([f"{s}.npz" for s in SPLITS], meta)
    return meta


def load(stage_dir: StageDir, split: str) -> Demonstrations:
    return Demonstrations.from_numpy(stage_dir.read_arrays(f"{split}.npz"))
