"""The training loop: one jitted, scanned chunk of steps at a time, checkpointed, resumable.

Batch t is drawn from `fold_in(data_key, t)`, so the data of a step depends only on the seed and
the step: a run resumed from a checkpoint replays exactly the steps an uninterrupted run takes
(chunks start at multiples of gcd(log_every, checkpoint_every) and at curriculum phase
boundaries in both), bit for bit on CPU. The batch comes from a source (engine.train.sources):
fixed demonstrations, or graphs simulated inside the step (`data.mode = "online"`).
Everything a step changes (parameters, optimizer state, EMA parameters, the acyclicity dual, the
count of skipped updates) lives in `TrainState`; the early-stopping record (host-side, changed
only at log points) travels in the checkpoint header.

What is trained is the spec's model on its loss, or an `Objective` (Trainer(..., objective=)):
any `build(key) -> model` and `loss(model, batch, dual) -> (total, aux)`, fed by phases whose
sources may read the current parameters and carry state (`ModelSource`; the GRPO policy of
engine.cbo.grpo trains this way, on its own rollouts). Such a run logs its aux terms' chunk means
beside the loss.

Gradient accumulation is a `lax.scan` over micro-batches inside the step rather than
`optax.MultiSteps`: the step counter, the schedule, EMA, dual ascent and the non-finite check
then all count real updates, and no checkpoint can fall in the middle of an accumulation.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from engine.data.demos import Batch, Demonstrations, assemble, select
from engine.train.sources import DemoStream, FedRows, ModelSource, Phase, build_phases, phase_at  # noqa: F401
from engine.train import checkpoint
from engine.train.host import _fault_injection, _put, learning_rate, load_model, save_model  # noqa: F401
from engine.train.cost import step_seconds
from engine.train.logging import MetricsLog, device_memory, hparams_of
from engine.train.losses import build_loss
from engine.train.parallel import (batch_sharding, fed_sharding, local_tree, local_value, is_lead, make_mesh,
                                   replicated, select_devices, sync)


@dataclass
class Pace:
    """How many steps the next scanned call takes: the whole log/checkpoint chunk while that
    fits in `target_s` seconds, else a power of two (few compiled programs) that does, and
    never past the deadline, which is so enforced between calls, not only between chunks.
    `step_s` starts from the plan's estimate and follows the measured time of calls whose
    program was already compiled."""

    step_s: float
    target_s: float = 30.0
    compiled: set = field(default_factory=set)

    def steps(self, room: int, deadline: float | None) -> int:
        limit = self.target_s
        if deadline is not None:
            limit = min(limit, deadline - time.time())
        if self.step_s <= 0 or limit / self.step_s >= room:
            return room
        fits = int(limit / self.step_s)
        return max(1, 2 ** int(math.log2(max(fits, 1))))

    def record(self, n: int, elapsed: float) -> None:
        if n in self.compiled:
            self.step_s = elapsed / n
        self.compiled.add(n)


class TrainingStopped(Exception):
    """Training stopped early on purpose (budget) or by a failure (non-finite loss)."""


class TrainState(eqx.Module):
    """model; opt_state; step []; ema (model-shaped, or None without `train.ema`); dual [] (the
    acyclicity multiplier); skipped [] (updates discarded as non-finite); carry (a ModelSource's
    state between steps, None for other sources)."""

    model: eqx.Module
    opt_state: tuple
    step: jax.Array
    ema: eqx.Module | None
    dual: jax.Array
    skipped: jax.Array
    carry: Any = None

    @property
    def eval_model(self):
        """The parameters to validate and ship: the EMA ones when kept."""
        return self.model if self.ema is None else self.ema


@dataclass
class EarlyStop:
    """Host-side early-stopping record, saved in every checkpoint header."""

    best: float = math.inf
    best_step: int = -1
    since: int = 0
    stopped: bool = False


class Objective(Protocol):
    """What a Trainer trains instead of the spec's model and loss. `build(key)` gives the initial
    model; `loss(model, batch, dual) -> (total, aux)` as engine.train.losses.Loss (aux: a dict
    of scalars, logged as chunk means); `step_seconds`: a first estimate of one step's time,
    which the wall budget uses until steps are measured. Its phases (sources) are given to
    `fit`; the spec then needs only `train` (a TrainSpec) and `seed`."""

    step_seconds: float

    def build(self, key) -> eqx.Module: ...

    def loss(self, model, batch, dual) -> tuple[jax.Array, dict]: ...


@dataclass
class Trainer:
    """Compiles the step for one (model, loss, train) spec on a device mesh; with `objective`,
    for that objective under the spec's `train` section and seed."""

    spec: object  # engine.spec.root.Spec (with an objective: anything with .train and .seed)
    devices: list
    summary: dict = field(default_factory=dict)
    objective: Objective | None = None

    def __post_init__(self):
        train = self.spec.train
        n_dev = len(self.devices)
        micro = train.batch_size // train.accumulate
        if micro % n_dev:
            raise ValueError(
                f"train.batch_size / train.accumulate = {micro} examples per micro-batch do not "
                f"divide over {n_dev} devices"
            )
        self.mesh = make_mesh(self.devices)
        self.optimizer = train.build_optimizer()
        self.loss_fn = build_loss(self.spec.loss) if self.objective is None else self.objective.loss
        self.chunk = math.gcd(train.log_every, train.checkpoint_every)
        self.call_seconds = 30.0  # the longest a scanned call should run (see Pace)
        self.bf16 = train.precision == "bf16"
        self.cast_inputs = self.bf16 and self.objective is None and _bf16_inputs_supported(self.spec.model)
        self._chunk_fn = eqx.filter_jit(self._chunk)
        self._eval_fn = eqx.filter_jit(self._eval_loss)
        self._sample_fn = eqx.filter_jit(self._sample)

    def init(self, key, source=None) -> TrainState:
        """The state before step 0; a ModelSource `source` gives the carry."""
        # Strong dtypes: a weakly typed leaf (e.g. from jnp.full) comes back strong from the
        # first step or a checkpoint, and the changed input type would compile the step twice.
        strong = lambda tree: jax.tree.map(  # noqa: E731
            lambda a: jnp.array(a, dtype=a.dtype) if eqx.is_array(a) else a, tree)
        build = self.spec.model.build if self.objective is None else self.objective.build
        model = strong(build(key))
        opt_state = self.optimizer.init(eqx.filter(model, eqx.is_array))
        ema = model if self.spec.train.ema is not None else None
        zero = jnp.zeros((), jnp.float32)
        carry = None
        if isinstance(source, ModelSource):
            carry = strong(source.init_carry(model, jax.random.fold_in(key, 1), self.spec.train.batch_size))
        state = TrainState(model, opt_state, jnp.zeros((), jnp.int32), ema, zero, jnp.zeros((), jnp.int32), carry)
        return _put(state, replicated(self.mesh))

    # ------------------------------------------------------------------ the jitted step
    def _loss(self, model, batch: Batch, dual):
        """(total, aux) in float32; with bf16 the forward pass runs on bfloat16 copies."""
        if self.bf16:
            model = _cast_floats(model, jnp.bfloat16)
            if self.cast_inputs:
                batch = eqx.tree_at(lambda b: b.x, batch, batch.x.astype(jnp.bfloat16))
        total, aux = self.loss_fn(model, batch, dual)
        return total.astype(jnp.float32), aux

    def _source(self, data):
        """A batch source: demonstrations are streamed from the host, drawn uniformly (the
        default phase's source)."""
        if isinstance(data, Demonstrations):
            host = Demonstrations.on_host({f: np.asarray(a) for f, a in data.to_numpy().items()})
            return DemoStream(host, None, self.spec.train.augment)
        return data

    def _feed(self, stream: DemoStream, key, start: int, n: int) -> Demonstrations:
        return stream.feed(key, start, n, self.spec.train.batch_size, fed_sharding(self.mesh))

    def run_steps(self, state: TrainState, data, key, n: int, with_aux: bool = False, step: int | None = None):
        """`n` updates from `state` drawing from `data` (demonstrations or a source): one
        compiled call, (state, losses [n], finite [n]) and with `with_aux` the aux terms.
        `step`: state's step when the caller knows it (saves a device read)."""
        source = self._source(data)
        if isinstance(source, DemoStream):
            start = int(local_value(state.step)) if step is None else step
            fed = self._feed(source, key, start, n)
            return self._chunk_fn(state, source.in_step, key, n, with_aux, fed)
        return self._chunk_fn(state, source, key, n, with_aux)

    def sample_batch(self, data, key, step: int) -> Batch:
        """Batch `step` of `data` (demonstrations or a source): a pure function of (key, step)."""
        source = self._source(data)
        if isinstance(source, DemoStream):
            rows = jax.tree.map(lambda a: a[0], self._feed(source, key, step, 1))
            return self._sample_fn(source.in_step, key, jnp.int32(step), rows)
        return self._sample_fn(source, key, step)

    def _sample(self, source, key, step, rows=None) -> Batch:
        batch = source(key, step, rows) if isinstance(source, FedRows) else source(key, step, self.spec.train.batch_size)
        return jax.lax.with_sharding_constraint(batch, batch_sharding(self.mesh))

    def _draw(self, source, key, state: TrainState, rows=None):
        """(batch, carry) of step `state.step`: a ModelSource reads the model and the carry;
        FedRows assemble the rows the host fed for the step."""
        if not isinstance(source, ModelSource):
            return self._sample(source, key, state.step, rows), state.carry
        batch, carry = source(key, state.step, self.spec.train.batch_size, state.model, state.carry)
        return jax.lax.with_sharding_constraint(batch, batch_sharding(self.mesh)), carry

    def _grads(self, model, batch: Batch, dual):
        """Mean loss, aux and gradient over the batch, in `accumulate` micro-batches."""
        k = self.spec.train.accumulate
        value_and_grad = eqx.filter_value_and_grad(self._loss, has_aux=True)
        if k == 1:
            return value_and_grad(model, batch, dual)
        sharding = batch_sharding(self.mesh)
        # Strided split (micro j = rows j, j+k, ...): each device's contiguous block holds an
        # equal share of every micro-batch, so no data moves between devices.
        micro = jax.tree.map(lambda a: jnp.swapaxes(a.reshape(-1, k, *a.shape[1:]), 0, 1), batch)

        def body(acc, mb):
            mb = jax.lax.with_sharding_constraint(mb, sharding)
            (loss, aux), grads = value_and_grad(model, mb, dual)
            return jax.tree.map(jnp.add, acc, ((loss, aux), grads)), None

        (loss, aux), grads = value_and_grad(model, jax.tree.map(lambda a: a[0], micro), dual)
        rest = jax.tree.map(lambda a: a[1:], micro)
        total, _ = jax.lax.scan(body, ((loss, aux), grads), rest)
        return jax.tree.map(lambda a: a / k, total)

    def _update(self, state: TrainState, batch: Batch, with_aux: bool = False):
        """(state, loss, finite) after one update on `batch`, and the loss's aux with `with_aux`."""
        tspec = self.spec.train
        (loss, aux), grads = self._grads(state.model, batch, state.dual)
        params = eqx.filter(state.model, eqx.is_array)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, params)
        model = eqx.apply_updates(state.model, updates)
        step = state.step + 1
        ema = state.ema
        if ema is not None:
            # Warmed-up decay (as TF's ExponentialMovingAverage): early EMA is not stuck at init.
            decay = jnp.minimum(tspec.ema, (1.0 + step) / (10.0 + step))
            ema = jax.tree.map(
                lambda e, p: decay * e + (1 - decay) * p,
                eqx.filter(ema, eqx.is_inexact_array),
                eqx.filter(model, eqx.is_inexact_array),
            )
            ema = eqx.combine(ema, state.ema)
        acyc = aux.get("acyclicity", jnp.zeros(())).astype(jnp.float32)
        dual = jnp.where(step % tspec.dual_every == 0, state.dual + tspec.dual_rate * acyc, state.dual)
        finite = jnp.isfinite(loss) & _all_finite(grads)
        new = TrainState(model, opt_state, step, ema, dual, state.skipped, state.carry)
        if tspec.on_nonfinite == "skip":
            # Discard the whole update (parameters, moments, EMA, dual) but advance the step.
            old = eqx.filter(state, eqx.is_array)
            kept = jax.tree.map(lambda n, o: jnp.where(finite, n, o), eqx.filter(new, eqx.is_array), old)
            new = eqx.combine(kept, new)
            new = eqx.tree_at(lambda s: (s.step, s.skipped), new, (step, state.skipped + (~finite).astype(jnp.int32)))
        return (new, loss, finite, aux) if with_aux else (new, loss, finite)

    def _chunk(self, state: TrainState, source, key, n: int, with_aux: bool = False, fed=None):
        """`n` steps drawing from `source` (in the step, or FedRows with the host's rows `fed`
        [n, batch, ...]), one scanned program: (state, losses [n], finite [n]), and with
        `with_aux` the aux terms [n] per name."""
        arrays, static = eqx.partition(state, eqx.is_array)

        def one_step(arrays, rows):
            state = eqx.combine(arrays, static)
            batch, carry = self._draw(source, key, state, rows)
            # the carry is data for the next step, not part of the update: it moves on even
            # when a non-finite update is skipped
            state = _with_carry(state, carry)
            new, loss, finite, aux = self._update(state, batch, with_aux=True)
            aux = {k: jnp.asarray(v, jnp.float32) for k, v in aux.items()} if with_aux else {}
            return eqx.filter(new, eqx.is_array), (loss, finite, aux)

        # (a sharding constraint on these outputs deadlocked XLA's CPU runtime on scans of more
        # than one step at d = 30; the losses come out of the all-reduce replicated anyway)
        arrays, (losses, finite, aux) = jax.lax.scan(one_step, arrays, fed, length=n)
        if with_aux:
            return eqx.combine(arrays, static), losses, finite, aux
        return eqx.combine(arrays, static), losses, finite

    def _eval_loss(self, model, rows: Demonstrations, dual):
        return self.loss_fn(model, assemble(rows), dual)[0]

    # ------------------------------------------------------------------ the host loop
    def fit(
        self,
        train: Demonstrations | list[Phase],
        validation: Demonstrations | None,
        workdir: Path,
        deadline: float | None = None,
        on_chunk: Callable[[int, float], None] = lambda step, loss: None,
        warn: Callable[[str], None] = print,
    ) -> TrainState:
        """Train to `spec.train.steps` (or an early stop), resuming from `workdir`'s newest
        intact checkpoint. `train` is the training demonstrations (phases built from the spec's
        curriculum) or the phases themselves (online mode). `self.summary` then says how it
        ended; `final_model` gives the model."""
        tspec = self.spec.train
        model_key, data_key = jax.random.split(jax.random.PRNGKey(self.spec.seed))
        phases = train if isinstance(train, list) else build_phases(self.spec, train)
        state = self.init(model_key, phases[0].source)
        ckpt_dir = Path(workdir) / "checkpoints"
        early = EarlyStop()
        found = checkpoint.latest(ckpt_dir, local_tree(state), warn=warn, code=checkpoint.code_fingerprint())
        if found is not None:
            state = _put(found[1], replicated(self.mesh))
            early = EarlyStop(**found[0].get("early", {}))
        step = int(state.step)
        # TensorBoard: one run per spec and train stage (its folder), with the spec's hyper-parameters
        named = hasattr(self.spec, "model_dump")
        # one writer of logs and checkpoints: the lead process of a multi-host run
        log = MetricsLog(workdir, step, tensorboard=tspec.tensorboard,
                         expect_sha256=found[0].get("metrics_sha256") if found else None,
                         name=f"{self.spec.name}/{Path(workdir).name.split('.')[0]}" if named else None,
                         hparams=hparams_of(self.spec) if named else None) if is_lead() else None

        rep = replicated(self.mesh)
        phases = [dataclasses.replace(p, source=self._source(p.source)) for p in phases]
        phases = [p if isinstance(p.source, DemoStream) else dataclasses.replace(p, source=_put(p.source, rep))
                  for p in phases]
        phase = None
        val = None
        if validation is not None and validation.n_demos:
            val = _put(select(validation, np.arange(min(validation.n_demos, 512))), rep)  # a fixed subset
        if tspec.early_stopping is not None and val is None:
            raise ValueError("train.early_stopping needs validation graphs: raise data.split.validation")
        on_chunk(step, float("nan"))
        # Processes of a multi-host run must run the same programs: timing-driven call lengths
        # could differ between them, so they keep whole chunks.
        alone = jax.process_count() == 1
        estimate = step_seconds(self.spec, len(self.devices)) if self.objective is None else self.objective.step_seconds
        pace = Pace(estimate, self.call_seconds if alone else float("inf"))
        with_aux = self.objective is not None
        try:
            while step < tspec.steps and not early.stopped:
                if phase is None or step >= phase.stop:
                    phase = phase_at(phases, step)
                    if len(phases) > 1:
                        warn(f"curriculum stage {phase.index + 1}/{len(phases)} from step {step}: {phase.description}")
                room = min(self.chunk - step % self.chunk, tspec.steps - step, phase.stop - step)
                stream = phase.source if isinstance(phase.source, DemoStream) else None
                if stream is not None:
                    room = min(room, stream.max_steps(tspec.batch_size))
                n = pace.steps(room, deadline if alone else None)
                started = time.perf_counter()
                new_state, losses, finite, *aux = self.run_steps(state, phase.source, data_key, n, with_aux, step)
                losses, finite = local_value(losses), local_value(finite)
                aux = {k: local_value(v) for k, v in aux[0].items()} if aux else {}
                elapsed = time.perf_counter() - started
                pace.record(n, elapsed)
                bad = [step + 1 + int(i) for i in np.flatnonzero(~finite)]
                if bad and tspec.on_nonfinite == "stop":
                    raise TrainingStopped(
                        f"loss or gradient became non-finite ({losses[bad[0] - step - 1]}) at step "
                        f"{bad[0]}; training stopped, the last checkpoint (step {step}) is kept. Lower "
                        "train.optimizer.lr, set train.clip_norm, or set train.on_nonfinite = \"skip\"."
                    )
                if bad:
                    warn(
                        f"skipped the update of non-finite step(s) {', '.join(map(str, bad))} "
                        f"({int(local_value(new_state.skipped))} skipped so far)"
                    )
                state, step = new_state, step + n
                if step % tspec.log_every == 0 or step == tspec.steps:
                    extra = {"phase": phase.index} if len(phases) > 1 else {}
                    extra.update({k: float(v[finite].mean()) if finite.any() else float("nan") for k, v in aux.items()})
                    self._log(log, state, step, n, losses, finite, elapsed, val, early, ckpt_dir, extra)
                on_chunk(step, float(losses[-1]))
                out_of_time = deadline is not None and time.time() > deadline
                if step % tspec.checkpoint_every == 0 or step == tspec.steps or out_of_time or early.stopped:
                    if log is not None:
                        meta = {"early": vars(early), "metrics_sha256": log.digest(), "code": checkpoint.code_fingerprint()}
                        checkpoint.save(ckpt_dir, step, local_tree(state), meta, keep=tspec.keep)
                    sync(f"checkpoint {step}")  # none resumes from a checkpoint not yet written
                    _fault_injection(step)
                if early.stopped:
                    warn(
                        f"early stopping at step {step}: validation loss has not improved for "
                        f"{tspec.early_stopping.patience} log points; best {early.best:.5g} at step "
                        f"{early.best_step}"
                    )
                if out_of_time and step < tspec.steps and not early.stopped:
                    raise TrainingStopped(
                        f"wall-time budget (hardware.max_wall_minutes) reached at step {step} of "
                        f"{tspec.steps}; a checkpoint is saved: run apply again to continue"
                    )
        finally:
            if log is not None:
                log.close()
        self.summary = {
            "steps": step,
            "skipped_steps": int(local_value(state.skipped)),
            "stopped_early": early.stopped,
            "dual": float(local_value(state.dual)),
        }
        if tspec.early_stopping is not None:
            self.summary.update(best_step=early.best_step, best_val_loss=early.best)
        return state

    def _log(self, log, state, step, n, losses, finite, elapsed, val, early, ckpt_dir, extra) -> None:
        tspec = self.spec.train
        good = losses[finite]
        record = {
            "step": step,
            "loss": float(losses[-1]),
            "loss_mean": float(good.mean()) if good.size else float("nan"),
            "time_s": elapsed,
            "examples_per_s": n * tspec.batch_size / max(elapsed, 1e-9),
            "lr": learning_rate(tspec, step),
            **extra,
        }
        if tspec.on_nonfinite == "skip":
            record["skipped"] = int(local_value(state.skipped))
        if float(local_value(state.dual)):
            record["dual"] = float(local_value(state.dual))
        if val is not None:
            # every process evaluates (one program), so all take the same early-stopping decision
            record["val_loss"] = float(local_value(self._eval_fn(state.eval_model, val, state.dual)))
            stop = tspec.early_stopping
            if stop is not None:
                if record["val_loss"] < early.best - stop.min_delta:
                    early.best, early.best_step, early.since = record["val_loss"], step, 0
                    if log is not None:
                        checkpoint.save_best(ckpt_dir, step, local_tree(state.eval_model), {"val_loss": early.best})
                else:
                    early.since += 1
                    early.stopped = early.since >= stop.patience
        record.update(device_memory(self.devices))
        if log is not None:
            log.write(record)

    def final_model(self, state: TrainState, workdir: Path):
        """The model to ship, on the host: the best one under early stopping, else the (EMA)
        final one."""
        model = local_tree(state.eval_model)
        if self.spec.train.early_stopping is not None:
            sync("best model")
            path = Path(workdir) / "checkpoints" / checkpoint.BEST
            if path.exists():
                return checkpoint.read(path, model)[1]
        return model


def _with_carry(state: TrainState, carry) -> TrainState:
    return TrainState(state.model, state.opt_state, state.step, state.ema, state.dual, state.skipped, carry)


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.isfinite(x).all() for x in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))]
    return jnp.stack(leaves).all() if leaves else jnp.array(True)


def _cast_floats(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


def _bf16_inputs_supported(model_spec) -> bool:
    """Whether the model's forward pass lowers with bfloat16 inputs. Models that invert data
    covariances (`stats`) need LAPACK, which has no bfloat16: their inputs stay float32 and only
    their parameters (so their learned layers) run in bfloat16."""
    model = _cast_floats(model_spec.build(jax.random.PRNGKey(0)), jnp.bfloat16)
    x = jnp.zeros((4, 3, 2), jnp.bfloat16)
    try:
        eqx.filter_jit(model).lower(x, jnp.ones(4, bool), jnp.ones(3, bool), jnp.int32(0))
    except NotImplementedError:
        return False
    return True


__all__ = ["Objective", "Trainer", "TrainState", "TrainingStopped", "save_model", "load_model", "select_devices"]
