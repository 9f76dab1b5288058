"""Data parallelism with `jax.sharding`: one 1-D mesh over every device, batch axis split.

Parameters and optimizer state are replicated; the batch is sharded on its leading axis, and
XLA's SPMD partitioner inserts the gradient all-reduce. The same code runs on 1 CPU, 8 GPUs or
several hosts (`jax.distributed`): there every process runs the same programs, feeds only its
own rows of each batch (engine.train.sources.DemoStream), and only the lead process writes
files, after which all meet at a barrier (`sync`).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


_initialized = False


def init_distributed() -> bool:
    """Join a multi-host run when the environment describes one; True if it did.

    Reads JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID. Idempotent, and called
    by `select_devices`, which `plan` and `apply` reach before any JAX computation (initialize
    must precede the first one).
    """
    global _initialized
    if _initialized:
        return True
    if os.environ.get("JAX_COORDINATOR_ADDRESS") and os.environ.get("JAX_NUM_PROCESSES"):
        # CPU processes need a collectives library for their all-reduce (GPUs have NCCL)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ.get("JAX_PROCESS_ID", "0")),
        )
        _initialized = True
    return _initialized


def select_devices(devices: str | int) -> list:
    """The devices [hardware] asks for: "all" (over every host in a multi-host run) or the first n."""
    init_distributed()
    available = jax.devices()
    if devices == "all":
        return available
    if devices > len(available):
        raise ValueError(f"hardware.devices = {devices} but only {len(available)} are available")
    return available[:devices]


def make_mesh(devices: list) -> Mesh:
    return Mesh(np.array(devices), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def fed_sharding(mesh: Mesh) -> NamedSharding:
    """Host-fed rows [steps, batch, ...]: the batch axis split, as in every step."""
    return NamedSharding(mesh, P(None, "data"))


def multihost() -> bool:
    """Whether this process is one of several in a `jax.distributed` run."""
    return jax.process_count() > 1


def is_lead() -> bool:
    """Whether this process writes the run's files (process 0; the only one when alone)."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Every process waits here for all the others (a no-op when alone)."""
    if multihost():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def local_tree(tree):
    """`tree` with each replicated array spanning several processes replaced by this
    process's copy (a NumPy reader such as a checkpoint writer can read that one)."""
    def local(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return a.addressable_data(0)
        return a

    return jax.tree.map(local, tree)


def local_value(a) -> np.ndarray:
    """A replicated array's value as NumPy, in any process."""
    return np.asarray(local_tree(a))
