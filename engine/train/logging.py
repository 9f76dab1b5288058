"""Training metrics: JSON lines (the record of truth) and TensorBoard event files (for looking).

On a resume from step s, lines past s are dropped and TensorBoard events past s are purged
(`purge_step`): those steps are replayed identically, so neither log holds duplicates.

TensorBoard runs are named by spec and run id where the caller knows them (`name`, e.g.
``phase2a/20261206-075316-f38f54``: a folder under ``tensorboard/``) and carry the spec's
hyper-parameters (`hparams`, from :func:`hparams_of`) in the HParams dashboard. `acbo report`
writes the same view of every run under ``reports/tensorboard/<spec>/<run id>/`` from the run's
metrics.jsonl (engine.report.tensorboard), so ``tensorboard --logdir reports/tensorboard``
lists every run by name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax

from engine.registry import CorruptArtifact, append_jsonl, read_jsonl, sha256_bytes, sha256_file, write_atomic


def device_memory(devices) -> dict[str, float]:
    """In-use and peak bytes summed over `devices` as GB, where the backend reports them (GPU, TPU;
    CPU reports nothing and gets an empty dict)."""
    in_use = peak = 0
    reported = False
    for dev in devices:
        try:
            stats = dev.memory_stats()
        except Exception:  # noqa: BLE001 - backends without the query raise various errors
            stats = None
        if stats:
            reported = True
            in_use += stats.get("bytes_in_use", 0)
            peak += stats.get("peak_bytes_in_use", 0)
    if not reported:
        return {}
    return {"memory_gb": in_use / 1e9, "peak_memory_gb": peak / 1e9}


HPARAM_SECTIONS = ("model", "loss", "train", "data", "expert")


def hparams_of(spec: Any, sections: tuple[str, ...] = HPARAM_SECTIONS) -> dict[str, Any]:
    """The spec's hyper-parameters as TensorBoard HParams take them: dotted names
    (``train.optimizer.lr``) to a number, a bool or a string (lists and schedules as text),
    plus ``spec`` and ``seed``. `spec`: a Spec or its JSON dump (resolved.json)."""
    data = spec.model_dump(mode="json") if hasattr(spec, "model_dump") else dict(spec or {})
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(value, (bool, int, float, str)):
            out[prefix] = value
        elif value is not None:
            out[prefix] = json.dumps(value, sort_keys=True)

    if data.get("name") is not None:
        out["spec"] = str(data["name"])
    if isinstance(data.get("seed"), int):
        out["seed"] = data["seed"]
    for section in sections:
        if data.get(section) is not None:
            walk(section, data[section])
    return out


def write_hparams(writer, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
    """Record `hparams` (and the names of the `metrics` scalars they are compared on) in a
    tensorboardX writer's own event file: the run shows in the HParams dashboard under its name."""
    from tensorboardX.summary import hparams as hparams_summary

    for summary in hparams_summary(hparams, metrics):
        writer.file_writer.add_summary(summary)


def _prefix(data: bytes, step: int) -> bytes:
    """The lines of a log up to `step`: what it held when checkpoint `step` was written (lines
    past it, or one torn by a kill, come after)."""
    kept = []
    for line in data.splitlines(keepends=True):
        try:
            record = json.loads(line)
        except ValueError:
            break
        if not line.endswith(b"\n") or record.get("step", 0) > step:
            break
        kept.append(line)
    return b"".join(kept)


class MetricsLog:
    """`metrics.jsonl` plus, with `tensorboard`, event files under `tensorboard/` beside it
    (under `tensorboard/<name>/` with a `name`, e.g. "<spec>/<run id>"; with `hparams`, the
    spec's hyper-parameters in the HParams dashboard, compared on loss_mean and val_loss).

    `digest()` goes into each checkpoint; resuming from it checks that the log's lines up to its
    step are still the ones written then."""

    def __init__(self, workdir: Path, resume_step: int, tensorboard: bool = True,
                 expect_sha256: str | None = None, name: str | None = None,
                 hparams: dict[str, Any] | None = None):
        self.path = Path(workdir) / "metrics.jsonl"
        kept = _prefix(self.path.read_bytes() if self.path.exists() else b"", resume_step)
        if expect_sha256 is not None and sha256_bytes(kept) != expect_sha256:
            raise CorruptArtifact(
                f"{self.path}: its lines up to step {resume_step} changed after checkpoint "
                f"{resume_step} was written; rerun with --force to recompute the train stage"
            )
        write_atomic(self.path, kept)
        self.records = read_jsonl(self.path)
        self._writer = None
        if tensorboard and jax.process_index() == 0:
            from tensorboardX import SummaryWriter

            logdir = Path(workdir) / "tensorboard"
            self._writer = SummaryWriter(
                str(logdir / name if name else logdir), purge_step=resume_step + 1, flush_secs=30
            )
            if hparams:
                write_hparams(self._writer, hparams, {"loss_mean": float("nan"), "val_loss": float("nan")})

    def write(self, record: dict) -> None:
        if jax.process_index() == 0:
            append_jsonl(self.path, record)
        self.records.append(record)
        if self._writer is not None:
            step = record["step"]
            for name, value in record.items():
                if name != "step" and isinstance(value, (int, float)):
                    self._writer.add_scalar(name, value, step)

    def digest(self) -> str:
        return sha256_file(self.path)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
