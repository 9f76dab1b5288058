"""Save and re-load simulated SCMs with their datasets (so the expert can intervene on them later).

The file holds the array leaves only (`eqx.tree_serialise_leaves`); the structure comes back from
the spec: `load` rebuilds a skeleton with `eqx.filter_eval_shape` (no simulation is run).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import equinox as eqx
import jax

from engine.scm.model import SCM
from engine.scm.types import Dataset


def save(path: str | Path, scm: SCM, data: Dataset) -> None:
    """Write a batch of SCMs and their datasets (as returned by simulate) to `path`."""
    eqx.tree_serialise_leaves(path, (scm, data))


def load(path: str | Path | BinaryIO, spec, n_graphs: int, base_dir: str | Path | None = None
         ) -> tuple[SCM, Dataset]:
    """Read what `save` wrote for `n_graphs` graphs of `spec` (an ScmSpec)."""
    from engine.scm.simulator import _simulator

    sim = _simulator(spec, base_dir)
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), n_graphs))
    scm, data, _ = eqx.filter_eval_shape(jax.vmap(sim.one), keys)
    return eqx.tree_deserialise_leaves(path, (scm, data))
