"""The training loop: one jitted, scanned chunk of steps at a time, checkpointed, resumable.

Batch t is drawn from `fold_in(data_key, t)`, so the data of a step depends only on the seed and
the step: a run resumed from a checkpoint replays exactly the steps an uninterrupted run takes
(chunks start at multiples of gcd(log_every, checkpoint_every) in both), bit for bit on CPU.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from engine.data.demos import Batch, Demonstrations, gather
from engine.registry import append_jsonl, read_jsonl, write_atomic
from engine.train import checkpoint
from engine.train.losses import build_loss
from engine.train.parallel import batch_sharding, make_mesh, replicated, select_devices


class TrainingStopped(Exception):
    """Training stopped early on purpose (budget) or by a failure (non-finite loss)."""


class TrainState(eqx.Module):
    model: eqx.Module
    opt_state: tuple
    step: jax.Array


@dataclass
class Trainer:
    """Compiles the step for one (model, loss, train) spec on a device mesh."""

    spec: object  # engine.spec.root.Spec
    devices: list

    def __post_init__(self):
        train = self.spec.train
        n_dev = len(self.devices)
        if train.batch_size % n_dev:
            raise ValueError(f"train.batch_size {train.batch_size} does not divide over {n_dev} devices")
        self.mesh = make_mesh(self.devices)
        self.optimizer = train.build_optimizer()
        self.loss_fn = build_loss(self.spec.loss)
        self.chunk = math.gcd(train.log_every, train.checkpoint_every)
        self._chunk_fn = eqx.filter_jit(self._chunk)
        self._eval_fn = eqx.filter_jit(self._eval_loss)

    def init(self, key) -> TrainState:
        model = self.spec.model.build(key)
        opt_state = self.optimizer.init(eqx.filter(model, eqx.is_array))
        state = TrainState(model, opt_state, jnp.zeros((), jnp.int32))
        return _put(state, replicated(self.mesh))

    def _loss(self, model, batch):
        logits = jax.vmap(model)(batch.x, batch.row_mask, batch.var_mask, batch.target)
        return self.loss_fn(logits, batch)

    def _chunk(self, state: TrainState, demos: Demonstrations, key, n: int):
        arrays, static = eqx.partition(state, eqx.is_array)
        sharding = batch_sharding(self.mesh)
        batch_size = self.spec.train.batch_size

        def one_step(arrays, _):
            state = eqx.combine(arrays, static)
            idx = jax.random.randint(
                jax.random.fold_in(key, state.step), (batch_size,), 0, demos.demo_graph.shape[0]
            )
            batch = gather(demos, idx)
            if self.spec.train.augment:
                batch = augment(batch, jax.random.fold_in(jax.random.fold_in(key, state.step), 1))
            batch = jax.lax.with_sharding_constraint(batch, sharding)
            loss, grads = eqx.filter_value_and_grad(self._loss)(state.model, batch)
            updates, opt_state = self.optimizer.update(
                grads, state.opt_state, eqx.filter(state.model, eqx.is_array)
            )
            model = eqx.apply_updates(state.model, updates)
            new = TrainState(model, opt_state, state.step + 1)
            return eqx.filter(new, eqx.is_array), loss

        arrays, losses = jax.lax.scan(one_step, arrays, None, length=n)
        return eqx.combine(arrays, static), losses

    def _eval_loss(self, model, demos: Demonstrations):
        return self._loss(model, gather(demos, jnp.arange(demos.demo_graph.shape[0])))

    def fit(
        self,
        train: Demonstrations,
        validation: Demonstrations | None,
        workdir: Path,
        deadline: float | None = None,
        on_chunk: Callable[[int, float], None] = lambda step, loss: None,
        warn: Callable[[str], None] = print,
    ) -> TrainState:
        """Train to `spec.train.steps`, resuming from `workdir`'s newest intact checkpoint."""
        tspec = self.spec.train
        model_key, data_key = jax.random.split(jax.random.PRNGKey(self.spec.seed))
        state = self.init(model_key)
        ckpt_dir = Path(workdir) / "checkpoints"
        log_path = Path(workdir) / "metrics.jsonl"
        found = checkpoint.latest(ckpt_dir, state, warn=warn)
        if found is not None:
            state = _put(found[1], replicated(self.mesh))
        step = int(state.step)
        # Drop log lines past the checkpoint: those steps are replayed identically.
        kept = [r for r in read_jsonl(log_path) if r.get("step", 0) <= step]
        write_atomic(log_path, "".join(json.dumps(r) + "\n" for r in kept))

        rep = replicated(self.mesh)
        train = _put(train, rep)
        val = None
        if validation is not None and validation.n_demos:
            val = _put(_head(validation, 512), rep)
        on_chunk(step, float("nan"))
        while step < tspec.steps:
            n = min(self.chunk - step % self.chunk, tspec.steps - step)
            started = time.perf_counter()
            new_state, losses = self._chunk_fn(state, train, data_key, n)
            losses = np.asarray(losses)
            elapsed = time.perf_counter() - started
            bad = np.flatnonzero(~np.isfinite(losses))
            if bad.size:
                raise TrainingStopped(
                    f"loss became {losses[bad[0]]} at step {step + int(bad[0]) + 1}; training "
                    f"stopped, the last checkpoint (step {step}) is kept. Lower "
                    "train.optimizer.lr or set train.clip_norm."
                )
            state, step = new_state, step + n
            if step % tspec.log_every == 0 or step == tspec.steps:
                record = {
                    "step": step,
                    "loss": float(losses[-1]),
                    "loss_mean": float(losses.mean()),
                    "time_s": elapsed,
                    "examples_per_s": n * tspec.batch_size / max(elapsed, 1e-9),
                }
                if val is not None:
                    record["val_loss"] = float(self._eval_fn(state.model, val))
                append_jsonl(log_path, record)
            on_chunk(step, float(losses[-1]))
            out_of_time = deadline is not None and time.time() > deadline
            if step % tspec.checkpoint_every == 0 or step == tspec.steps or out_of_time:
                checkpoint.save(ckpt_dir, step, state)
                _fault_injection(step)
            if out_of_time and step < tspec.steps:
                raise TrainingStopped(
                    f"wall-time budget (hardware.max_wall_minutes) reached at step {step} of "
                    f"{tspec.steps}; a checkpoint is saved: run apply again to continue"
                )
        return state


def _fault_injection(step: int) -> None:
    """Tests kill the process right after checkpoint `step` to prove that resume is exact."""
    if os.environ.get("ACBO_TEST_KILL_AFTER_CHECKPOINT") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def augment(batch: Batch, key) -> Batch:
    """Label-preserving noise against memorising 100 graphs: flip each variable's sign (parents
    do not depend on it) and drop a fifth of the observational rows (a bootstrap-like resample)."""
    k1, k2 = jax.random.split(key)
    b, n, d, _ = batch.x.shape
    sign = jnp.where(jax.random.bernoulli(k1, 0.5, (b, 1, d)), -1.0, 1.0)
    x = batch.x.at[..., 0].multiply(sign)
    observational = batch.x[..., 1].max(-1) == 0
    keep = jax.random.bernoulli(k2, 0.8, (b, n)) | ~observational
    return eqx.tree_at(lambda t: (t.x, t.row_mask), batch, (x, batch.row_mask & keep))


def _put(tree, sharding):
    """device_put the arrays of a pytree that also holds functions and static fields."""
    arrays, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.device_put(arrays, sharding), static)


def _head(demos: Demonstrations, n: int) -> Demonstrations:
    """The first `n` demonstrations (a fixed validation subset)."""
    return eqx.tree_at(
        lambda d: (d.demo_graph, d.demo_k, d.expert),
        demos,
        (demos.demo_graph[:n], demos.demo_k[:n], demos.expert[:n]),
    )


def predict_fn(model):
    """Jitted parent probabilities for one example: (x, row_mask, var_mask, target) -> [d]."""
    return eqx.filter_jit(lambda x, r, v, t: jax.nn.sigmoid(model(x, r, v, t)))


def save_model(path: Path, model) -> str:
    import io

    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, model)
    return write_atomic(path, buf.getvalue())


def load_model(path: Path, model_spec):
    like = model_spec.build(jax.random.PRNGKey(0))
    return eqx.tree_deserialise_leaves(path, like)


__all__ = ["Trainer", "TrainState", "TrainingStopped", "predict_fn", "save_model", "load_model", "select_devices"]
