"""Stage 4, train: fit the amortized model on the training demonstrations (resumable)."""

from __future__ import annotations

import time

from engine.stages import demonstrations
from engine.stages.context import StageContext
from engine.train.parallel import select_devices
from engine.train.trainer import Trainer, save_model


def run(ctx: StageContext) -> dict:
    spec = ctx.spec
    demos_dir = ctx.dir("demonstrations")
    train = demonstrations.load(demos_dir, "train")
    validation = demonstrations.load(demos_dir, "validation")
    trainer = Trainer(spec, select_devices(spec.hardware.devices))
    out = ctx.dir("train")
    work = out.work_dir()
    ctx.progress.start(f"train {spec.model.kind} on {train.n_demos} demos", spec.train.steps)
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
        "train_demos": train.n_demos,
        "model": "best" if spec.train.early_stopping else ("ema" if spec.train.ema else "final"),
    }
    out.commit(["model.eqx", "metrics.jsonl"], meta)
    return meta
