"""Save and re-load simulated SCMs with their datasets (so the expert can intervene on them later).

The file holds the array leaves only (`eqx.tree_serialise_leaves`); the structure comes back from
the spec: `load` rebuilds a skeleton with `eqx.filter_eval_shape` (no simulation is run).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import BinaryIO

import equinox as eqx
import jax

from engine.scm.model import SCM
from engine.scm.types import Dataset


FORMAT = "acbo-scm/1"


def _parent_bound(scm: SCM) -> int | None:
    """The in-degree bound K of sparse-form mechanisms (rff with parent lists), or None."""
    from engine.scm.mechanisms import RffMech

    for mech in scm.mechanisms:
        if isinstance(mech, RffMech) and mech.inputs is not None:
            return int(mech.inputs.shape[-1])
    return None


def save(path: str | Path, scm: SCM, data: Dataset) -> None:
    """Write a batch of SCMs and their datasets (as returned by simulate) to `path`: a JSON
    header line (the format, and the sparse parent bound the simulator chose, which sets the
    leaves' shapes), then the array leaves."""
    from engine.registry import write_atomic

    header = {"format": FORMAT, "max_parents": _parent_bound(scm)}
    buf = io.BytesIO()
    buf.write(json.dumps(header).encode() + b"\n")
    eqx.tree_serialise_leaves(buf, (scm, data))
    write_atomic(Path(path), buf.getvalue())


def load(path: str | Path | BinaryIO, spec, n_graphs: int, base_dir: str | Path | None = None
         ) -> tuple[SCM, Dataset]:
    """Read what `save` wrote for `n_graphs` graphs of `spec` (an ScmSpec)."""
    from engine.scm.simulator import _simulator

    f = open(path, "rb") if isinstance(path, (str, Path)) else path
    try:
        try:
            header = json.loads(f.readline())
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError(f"not an {FORMAT} file (written by an older acbo, or damaged)")
        sim = _simulator(spec, base_dir)
        keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), n_graphs))
        one = lambda k: sim.one(k, header["max_parents"])  # noqa: E731 - the saved shapes
        scm, data, _ = eqx.filter_eval_shape(jax.vmap(one), keys)
        return eqx.tree_deserialise_leaves(f, (scm, data))
    finally:
        if f is not path:
            f.close()
