"""Where each training step's batch comes from: fixed demonstrations or fresh simulations, per
curriculum phase.

A source is an Equinox module called inside the jitted step as `source(key, step, batch_size)`;
its batch is a pure function of (key, step), which is what makes a resume exact. A
`ModelSource` also reads the parameters being trained and a carry (a policy's own rollouts,
engine.cbo.grpo): its batch is a pure function of (key, step, parameters, carry), all of which a
checkpoint holds. A `Phase` is a
curriculum stage resolved for the run: its [start, stop) steps and its source. Phases have
differently shaped data (graph sizes pad to each stage's largest), so the trainer compiles one
chunk function per phase and never lets a chunk cross a phase boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


from engine.data.demos import Batch, Demonstrations, assemble, select
from engine.data.online import simulated_batch


class FedRows(eqx.Module):
    """The in-step half of a DemoStream: the step's demonstrations, fed from the host, as the
    batch (augmented with the step's key)."""

    augment: bool = eqx.field(static=True, default=True)

    def __call__(self, key, step, rows: Demonstrations) -> Batch:
        batch = assemble(rows)
        key = jax.random.fold_in(key, step)
        return augment_batch(batch, jax.random.fold_in(key, 1)) if self.augment else batch


@dataclass(frozen=True)
class DemoStream:
    """Uniform draws (with replacement) from demonstrations kept on the host, as NumPy arrays
    or memory maps (the demonstrations stage's files): the set is never on a device and never
    wholly in memory. Step t's indices are drawn from `fold_in(key, t)`, as a pure function of
    (key, t); each process reads only its own rows of the global batch, and the step's program
    assembles them (`in_step`). `pool` restricts the draws (a curriculum stage's graph sizes)."""

    demos: Demonstrations
    pool: np.ndarray | None = None
    augment: bool = True
    max_fed_bytes: int = 256 << 20  # host rows one scanned call may take

    @property
    def in_step(self) -> FedRows:
        return FedRows(self.augment)

    @property
    def size(self) -> int:
        return int(self.demos.demo_graph.shape[0] if self.pool is None else self.pool.shape[0])

    def step_bytes(self, batch_size: int) -> int:
        """Bytes of one step's rows."""
        per_demo = sum(a[0].nbytes if a.ndim else a.itemsize for a in jax.tree.leaves(self.demos))
        return batch_size * per_demo

    def max_steps(self, batch_size: int) -> int:
        """The most steps one call may take within `max_fed_bytes` (a power of two: few programs)."""
        fits = max(1, self.max_fed_bytes // max(1, self.step_bytes(batch_size)))
        return 2 ** int(math.log2(fits))

    def indices(self, key, start: int, n: int, batch_size: int) -> np.ndarray:
        """Indices [n, batch_size] into the demonstrations of steps start .. start + n - 1."""
        idx = np.asarray(_draws(key, jnp.arange(start, start + n), batch_size, self.size))
        return idx if self.pool is None else np.asarray(self.pool)[idx]

    def feed(self, key, start: int, n: int, batch_size: int, sharding) -> Demonstrations:
        """The rows of steps start .. start + n - 1 as global arrays [n, batch_size, ...] laid out
        by `sharding` (over the batch axis); this process reads and sends only its own rows."""
        index = self.indices(key, start, n, batch_size)
        lo, hi = _local_rows(sharding, (n, batch_size))
        rows = select(self.demos, index[:, lo:hi])
        return jax.tree.map(
            lambda a: jax.make_array_from_process_local_data(sharding, np.ascontiguousarray(a), (n, batch_size, *a.shape[2:])),
            rows,
        )


@partial(jax.jit, static_argnums=(2, 3))
def _draws(key, steps, batch_size: int, size: int):
    return jax.vmap(lambda t: jax.random.randint(jax.random.fold_in(key, t), (batch_size,), 0, size))(steps)


def _local_rows(sharding, shape: tuple[int, int]) -> tuple[int, int]:
    """[lo, hi): the rows of the batch axis (axis 1) this process's devices hold."""
    spans = {(s[1].start or 0, shape[1] if s[1].stop is None else s[1].stop)
             for s in sharding.addressable_devices_indices_map(shape).values()}
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    if sum(b - a for a, b in spans) != hi - lo:
        raise ValueError("this process's devices do not hold one contiguous block of the batch")
    return lo, hi


class ModelSource(eqx.Module):
    """A source whose batch depends on the model being trained (on-policy rollouts) and that may
    keep state between steps: called inside the step as
    `source(key, step, batch_size, model, carry) -> (batch, carry)`. The carry lives in
    `TrainState.carry` and is checkpointed with it, so a resume replays the same batches;
    `init_carry(model, key, batch_size)` gives it before step 0 (the shapes every call returns).
    No gradient flows through the batch: the loss sees it as data."""

    def __call__(self, key, step, batch_size: int, model, carry):
        raise NotImplementedError

    def init_carry(self, model, key, batch_size: int):
        return None


class OnlineSource(eqx.Module):
    """`batch_size` fresh graphs per step from a Simulator, simulated inside the step."""

    simulator: object = eqx.field(static=True)

    def __call__(self, key, step, batch_size: int) -> Batch:
        return simulated_batch(self.simulator, jax.random.fold_in(key, step), batch_size)


@dataclass(frozen=True)
class Phase:
    """Curriculum stage `index` over steps [start, stop), drawing from `source`."""

    index: int
    start: int
    stop: int
    source: eqx.Module
    description: str


def augment_batch(batch: Batch, key) -> Batch:
    """Label-preserving noise against memorising 100 graphs: flip each variable's sign (parents
    do not depend on it) and drop a fifth of the observational rows (a bootstrap-like resample)."""
    k1, k2 = jax.random.split(key)
    b, n, d, _ = batch.x.shape
    sign = jnp.where(jax.random.bernoulli(k1, 0.5, (b, 1, d)), -1.0, 1.0)
    x = batch.x.at[..., 0].multiply(sign)
    observational = batch.x[..., 1].max(-1) == 0
    keep = jax.random.bernoulli(k2, 0.8, (b, n)) | ~observational
    return eqx.tree_at(lambda t: (t.x, t.row_mask), batch, (x, batch.row_mask & keep))


def _describe(scm_spec) -> str:
    sizes = scm_spec.sizes
    size = f"{min(sizes)}-{max(sizes)}" if len(sizes) > 1 else str(sizes[0])
    mechs = "+".join(m.kind for m in scm_spec.mechanism)
    return f"{size} nodes, {mechs}"


def build_phases(spec, train: Demonstrations | None = None) -> list[Phase]:
    """The run's phases: one per `[[train.curriculum]]` stage (one for the whole run without).

    Online mode simulates each stage's [scm]; fixed mode draws from `train`, restricted to the
    demonstrations whose graphs have the stage's sizes when the stage sets `n_nodes`.
    """
    tspec = spec.train
    stages = tspec.curriculum or [None]
    out = []
    for i, ((start, stop), stage) in enumerate(zip(tspec.phase_bounds(), stages)):
        scm_spec = spec.scm if stage is None else stage.scm(spec.scm)
        if spec.data.mode == "online":
            from engine.scm.simulator import Simulator

            source = OnlineSource(Simulator(scm_spec))
            out.append(Phase(i, start, stop, source, "online: " + _describe(scm_spec)))
            continue
        if train is None:
            raise ValueError("data.mode = \"fixed\" trains on demonstrations: none were given")
        pool = None
        if stage is not None and stage.n_nodes is not None:
            n_vars = np.asarray(train.var_mask).sum(1)[np.asarray(train.demo_graph)]
            pool = np.flatnonzero(np.isin(n_vars, scm_spec.sizes)).astype(np.int32)
            if pool.size == 0:
                raise ValueError(
                    f"train.curriculum[{i}]: no training demonstrations of graphs with "
                    f"{scm_spec.sizes} nodes (the training split has sizes "
                    f"{sorted(set(n_vars.tolist()))})"
                )
        source = DemoStream(train, pool, tspec.augment)
        n = train.n_demos if pool is None else int(pool.shape[0])
        out.append(Phase(i, start, stop, source, f"{n} demonstrations, {_describe(scm_spec)}"))
    return out


def phase_at(phases: list[Phase], step: int) -> Phase:
    """The phase that step `step` (0-based, the update about to be made) belongs to."""
    for phase in phases:
        if phase.start <= step < phase.stop:
            return phase
    return phases[-1]
