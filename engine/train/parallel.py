"""Data parallelism with `jax.sharding`: one 1-D mesh over every device, batch axis split.

Parameters and optimizer state are replicated; the batch is sharded on its leading axis, and
XLA's SPMD partitioner inserts the gradient all-reduce. The same code runs on 1 CPU or 8 GPUs.
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
