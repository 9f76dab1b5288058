"""Stage 4, train: fit the amortized model (resumable).

`data.mode = "fixed"`: on the training demonstrations, validated on the validation ones.
`data.mode = "online"`: on graphs simulated inside every step, validated on the simulate
stage's validation graphs with their true parents as labels (no expert needed to train).
"""

from __future__ import annotations

import time

from engine.data.demos import split_graphs
from engine.data.online import truth_split
from engine.stages import demonstrations, simulate
from engine.stages.context import StageContext
from engine.train.parallel import select_devices
from engine.train.sources import build_phases
from engine.train.trainer import Trainer, save_model


def _online_data(ctx: StageContext):
    """(phases, validation demonstrations, description) for online training."""
    spec = ctx.spec
    graphs = ctx.dir("simulate").read_arrays("graphs.npz")
    _, data = simulate.load(ctx)
    ids = split_graphs(len(graphs["target"]), spec.data.split.model_dump(), spec.seed)
    validation = truth_split(ids["validation"], graphs, data, spec.data.demos_per_graph)
    phases = build_phases(spec)
    return phases, validation, f"{spec.train.batch_size} fresh simulated graphs per step"


def run(ctx: StageContext) -> dict:
    spec = ctx.spec
    if spec.data.mode == "online":
        train, validation, what = _online_data(ctx)
        examples = {"online": True}
    else:
        demos_dir = ctx.dir("demonstrations")
        train = demonstrations.load(demos_dir, "train")
        validation = demonstrations.load(demos_dir, "validation")
        what = f"{train.n_demos} demos"
        examples = {"train_demos": train.n_demos}
    trainer = Trainer(spec, select_devices(spec.hardware.devices))
    out = ctx.dir("train")
    work = out.work_dir()
    ctx.progress.start(f"train {spec.model.kind} on {what}", spec.train.steps)
    started = time.perf_counter()
    state = trainer.fit(
        train,
        validation,
        work,
        deadline=ctx.deadline,
        on_chunk=lambda step, loss: ctx.progress.advance(step, f"loss {loss:.4f}"),
        warn=ctx.progress.log,
    )
    # The shipped model: the best one under early stopping, else the EMA or final parameters.
    save_model(work / "model.eqx", trainer.final_model(state, work))
    meta = {
        **trainer.summary,
        "seconds": time.perf_counter() - started,
        "devices": len(trainer.devices),
        **examples,
        "model": "best" if spec.train.early_stopping else ("ema" if spec.train.ema else "final"),
    }
    out.commit(["model.eqx", "metrics.jsonl"], meta)
    return meta
