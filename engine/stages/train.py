"""Stage 4, train: fit the amortized model (resumable).

`data.mode = "fixed"`: on the training demonstrations, validated on the validation ones.
`data.mode = "online"`: on graphs simulated inside every step, validated on the simulate
stage's validation graphs with their true parents as labels (no expert needed to train).
"""

from __future__ import annotations

import time

import equinox as eqx
import jax
import numpy as np

from engine.data.demos import assemble, select, split_graphs
from engine.data.online import truth_split
from engine.stages import demonstrations, simulate
from engine.stages.context import StageContext
from engine.train.parallel import is_lead, select_devices, sync
from engine.train.sources import build_phases
from engine.train.losses import candidates
from engine.train.trainer import Trainer, save_model


def prediction_check(model, validation, threshold: float, limit: int = 512, chunk: int = 64) -> dict | None:
    """The trained model's parent probabilities on (the first `limit`) validation
    demonstrations: the largest, how many reach `threshold` and how many true parents there
    are. None without validation demonstrations."""
    if validation is None or not validation.n_demos:
        return None
    probs_of = eqx.filter_jit(lambda m, b: jax.nn.sigmoid(jax.vmap(m)(b.x, b.row_mask, b.var_mask, b.target)))
    top, predicted, parents = 0.0, 0, 0
    n = min(validation.n_demos, limit)
    for start in range(0, n, chunk):
        batch = assemble(select(validation, np.arange(start, min(start + chunk, n))))
        mask = np.asarray(candidates(batch))
        p = np.asarray(probs_of(model, batch))[mask]
        top = max(top, float(p.max()) if p.size else 0.0)
        predicted += int((p >= threshold).sum())
        parents += int(np.asarray(batch.parents)[mask].sum())
    return {"max_prob": top, "predicted_edges": predicted, "true_edges": parents, "demos": n}


def empty_prediction_warning(check: dict | None, threshold: float) -> str | None:
    """A warning when the model predicts no edge at all on validation data (a collapsed run)."""
    if check is None or check["max_prob"] >= threshold or check["true_edges"] == 0:
        return None
    return (
        f"WARNING: the trained model predicts an empty graph: its highest parent probability on "
        f"{check['demos']} validation demonstrations is {check['max_prob']:.3f} < threshold "
        f"{threshold:g} ({check['true_edges']} true parents). It has not learned structure: train "
        "longer, or check the learning rate and the loss."
    )


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
    final = trainer.final_model(state, work)
    threshold = spec.evaluation.threshold
    check = prediction_check(final, validation, threshold)
    warning = empty_prediction_warning(check, threshold)
    if warning is not None:
        ctx.progress.log(warning)
    meta = {
        **trainer.summary,
        "seconds": time.perf_counter() - started,
        "devices": len(trainer.devices),
        **examples,
        "model": "best" if spec.train.early_stopping else ("ema" if spec.train.ema else "final"),
    }
    if check is not None:
        meta["validation_predictions"] = check
    meta["warnings"] = [warning] if warning is not None else []
    if is_lead():  # one writer in a multi-host run; the others wait for the stage to exist
        save_model(work / "model.eqx", final)
        out.commit(["model.eqx", "metrics.jsonl"], meta)
    sync("train stage committed")
    return meta
