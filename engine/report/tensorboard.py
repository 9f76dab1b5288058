"""TensorBoard runs named by spec and run id, with the spec's hyper-parameters.

Training writes TensorBoard events inside its train stage's folder, which is shared by every run
that reuses the stage and named by its content hash. `acbo report` therefore writes, for every
run it reports, ``<reports>/tensorboard/<spec>/<run id>/`` from the run's own verified
``metrics.jsonl`` (the record of truth): every logged scalar by step, the spec's hyper-parameters
(``engine.train.logging.hparams_of``) and the run's results (final and best losses, the model's
F1 and AUROC on its first evaluation stage, training time) to compare them on in the HParams
dashboard:

    tensorboard --logdir reports/tensorboard
"""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.report.run import RunRecord, is_num
from engine.report.training import training_facts


def run_results(run: RunRecord) -> dict[str, float]:
    """The numbers HParams compares runs on (absent ones left out)."""
    f = training_facts(run.metrics, run.train, run.spec)
    out: dict[str, float] = {}
    if f.loss:
        out["result/train_loss_last"] = f.loss[-1][1]
    if f.val:
        out["result/val_loss_last"] = f.val[-1][1]
        out["result/val_loss_best"] = min(v for _, v in f.val)
    if is_num(f.seconds):
        out["result/train_seconds"] = float(f.seconds)
    if is_num(f.examples_per_s):
        out["result/examples_per_s"] = float(f.examples_per_s)
    ev = run.evaluation
    if ev is not None and ev.stages:
        summary = ev.stage().summary.get("model", {})
        for metric in ("f1", "auroc", "speedup"):
            e = summary.get(metric)
            if e is not None and is_num(e.value):
                out[f"result/model_{metric}"] = float(e.value)
    return out


def export_tensorboard(run: RunRecord, root: Path) -> Path | None:
    """Write the run's TensorBoard view under ``root/<spec>/<run id>/`` (replacing an older
    one); None for a run without a metrics log."""
    if not run.metrics:
        return None
    from tensorboardX import SummaryWriter

    from engine.train.logging import hparams_of, write_hparams

    logdir = Path(root) / run.spec_name / run.run_id
    if logdir.is_dir():
        shutil.rmtree(logdir)
    results = run_results(run)
    last = max((int(m["step"]) for m in run.metrics if is_num(m.get("step"))), default=0)
    writer = SummaryWriter(str(logdir), flush_secs=3600)
    try:
        for m in run.metrics:
            if not is_num(m.get("step")):
                continue
            for name, value in m.items():
                if name != "step" and is_num(value):
                    writer.add_scalar(name, float(value), int(m["step"]))
        for name, value in results.items():
            writer.add_scalar(name, value, last)
        hp = hparams_of(run.spec or {})
        hp["run_id"] = run.run_id
        write_hparams(writer, hp, results)
    finally:
        writer.close()
    return logdir
