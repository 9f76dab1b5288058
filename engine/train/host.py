"""Host-side helpers of the training loop: model files, device placement, the learning rate
for the log, and the tests' fault injection."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import equinox as eqx
import jax

from engine.registry import write_atomic


def learning_rate(tspec, step: int) -> float:
    """The optimizer's learning rate at `step` (host side, for the log)."""
    lr = tspec.optimizer.lr
    return float(lr if isinstance(lr, (int, float)) else lr.build(tspec.steps)(step))


def _fault_injection(step: int) -> None:
    """Tests kill the process right after checkpoint `step` to prove that resume is exact."""
    if os.environ.get("ACBO_TEST_KILL_AFTER_CHECKPOINT") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def _put(tree, sharding):
    """device_put the arrays of a pytree that also holds functions and static fields."""
    arrays, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.device_put(arrays, sharding), static)


def save_model(path: Path, model) -> str:
    import io

    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, model)
    return write_atomic(path, buf.getvalue())


def load_model(source: Path | bytes, model_spec, name: Path | str | None = None):
    """The model in `source` (a path, or bytes the caller has checksum-verified) shaped as
    `model_spec` builds it; one that does not deserialise to that shape is CorruptArtifact."""
    import io

    from engine.registry import CorruptArtifact

    like = model_spec.build(jax.random.PRNGKey(0))
    try:
        return eqx.tree_deserialise_leaves(io.BytesIO(source) if isinstance(source, bytes) else source, like)
    except Exception as exc:  # noqa: BLE001 - equinox/numpy raise several types for bad files
        raise CorruptArtifact(
            f"{name or source}: does not hold a {model_spec.kind} model of its spec's shape "
            f"({type(exc).__name__}); retrain it (apply its spec with --force)"
        ) from None
