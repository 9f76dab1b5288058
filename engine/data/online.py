"""Online training data: fresh simulated graphs every step, labelled with their true structure.

`simulated_batch` runs inside the jitted training step (the simulator's per-graph function,
vmapped), so training never waits for data and step t's batch is a pure function of its key.
An example has the same layout as an expert demonstration (engine.data.demos.Batch): the
observational rows, then a prefix of the interventional rows (k of them, k uniform in
1..n_valid, as the demonstrations' snapshots spread over the expert's trajectory); the labels
are the target's true parents (the `expert` field holds them too, as 0/1 marginals).

`truth_split` builds validation demonstrations from the fixed simulated graphs the same way,
without the expert.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from engine.data.demos import Batch, Demonstrations, build_split
from engine.scm.model import SCM
from engine.scm.types import Dataset


def to_batch(scm: SCM, data: Dataset, key) -> Batch:
    """Examples from a batch of simulated graphs (leading graph axis), each with a random
    prefix of its interventional rows."""
    b, n_obs, d = data.obs.shape
    n_int = data.int_values.shape[1]
    n_valid = data.int_row_mask.sum(-1)
    k = jax.random.randint(key, (b,), 1, jnp.maximum(n_valid, 1) + 1)
    used = data.int_row_mask & (jnp.arange(n_int)[None, :] < k[:, None])
    x = jnp.concatenate(
        [
            jnp.stack([data.obs, jnp.zeros_like(data.obs)], axis=-1),
            jnp.stack([data.int_values, data.int_mask.astype(data.obs.dtype)], axis=-1),
        ],
        axis=1,
    )
    adjacency = scm.adjacency > 0
    parents = jnp.take_along_axis(adjacency, scm.target[:, None, None], axis=2)[..., 0]
    return Batch(
        x=x,
        row_mask=jnp.concatenate([jnp.ones((b, n_obs), bool), used], axis=1),
        var_mask=scm.var_mask,
        target=scm.target.astype(jnp.int32),
        parents=parents,
        expert=parents.astype(jnp.float32),
        adjacency=adjacency,
    )


def simulated_batch(simulator, key, batch_size: int) -> Batch:
    """`batch_size` fresh graphs from `simulator` (engine.scm.simulator.Simulator), jit-able."""
    k_graphs, k_rows = jax.random.split(key)
    scm, data, _ = jax.vmap(simulator.one)(jax.random.split(k_graphs, batch_size))
    return to_batch(scm, data, k_rows)


def truth_trajectory(graphs: dict[str, np.ndarray], data: Dataset) -> dict[str, np.ndarray]:
    """A stand-in for the expert's trajectories that consumes the simulated interventional rows
    in order and whose "posterior" is the true parent set at every step."""
    parents = np.asarray(graphs["parents"], np.float32)
    n_int = np.asarray(data.int_values).shape[1]
    return {
        "rows_values": np.asarray(data.int_values),
        "rows_mask": np.asarray(data.int_mask),
        "rows_valid": np.asarray(data.int_row_mask),
        "marginals": np.repeat(parents[:, None, :], n_int + 1, axis=1),
    }


def truth_split(ids: np.ndarray, graphs: dict[str, np.ndarray], data: Dataset,
                demos_per_graph: int) -> Demonstrations:
    """Demonstrations of graphs `ids` labelled with their true parents (no expert run)."""
    return build_split(ids, graphs, truth_trajectory(graphs, data), demos_per_graph)
