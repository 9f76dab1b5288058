"""Demonstrations at scale: one checksummed artifact per graph, resumable, batched or in processes.

`run_graphs(expert, key, scms, datas, out_dir)` writes `graph_{g:06d}.npz` for every graph g
(the Trajectory's fields plus a sha256 of their bytes), through a temporary name and
`os.replace`, and skips graphs whose file exists with a valid checksum, so an interrupted run
resumes where it stopped. Beside the trajectory each file holds the graph's `run_seconds` (wall
seconds of its `expert.run` in the worker) and the XLA `compile_seconds` inside that call (a
worker compiles on its first graphs), both under the checksum. Graph g's key is
`fold_in(key, g)`: results do not depend on which graphs were already done or on how the work
was split. Posterior-only experts (n_trials = 0) with a static prior run in vmapped chunks;
the others graph by graph through a backend (`backends.py`: local processes, each pinned to a
core of its own, or Ray tasks), which only decides where each graph's `_worker` runs.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from engine.compiles import compile_seconds
from engine.expert.backends import Backend, JobsFailed, LocalBackend
from engine.expert.loop import index_graph
from engine.expert.types import Trajectory

FIELDS = list(Trajectory.__dataclass_fields__)


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


TIMES = ("run_seconds", "compile_seconds")  # per-graph scalars stored beside the trajectory


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic write of one work item's arrays with their checksum (a graph's expert run, an
    episode)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.savez(fh, __sha256__=np.asarray(_digest(arrays)), **arrays)
    os.replace(tmp, path)


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays `save_arrays` wrote, or None if missing, unreadable or failing the checksum."""
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files if k != "__sha256__"}
            ok = str(z["__sha256__"]) == _digest(arrays)
    except Exception:  # noqa: BLE001 - any damage means "recompute"
        return None
    return arrays if ok else None


def save_trajectory(traj: Trajectory, path: Path, **extra) -> None:
    """Atomic write of one trajectory (and `extra` arrays, e.g. TIMES) with their checksum."""
    arrays = {f: np.asarray(getattr(traj, f)) for f in FIELDS}
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    save_arrays(path, arrays)


def load_artifact(path: Path) -> tuple[Trajectory, dict[str, np.ndarray]] | None:
    """(trajectory, extra arrays) in `path`, or None if missing, unreadable or failing its
    checksum. Files written before TIMES existed load with NaN times (their checksum covers
    what they hold), so a resumed run keeps them."""
    arrays = load_arrays(path)
    if arrays is None or not all(f in arrays for f in FIELDS):
        return None
    extra = {k: v for k, v in arrays.items() if k not in FIELDS}
    for k in TIMES:
        extra.setdefault(k, np.asarray(np.nan))
    return Trajectory(**{k: jnp.asarray(arrays[k]) for k in FIELDS}), extra


def load_trajectory(path: Path) -> Trajectory | None:
    """The trajectory in `path`, or None if missing, unreadable or failing its checksum."""
    art = load_artifact(path)
    return None if art is None else art[0]


def merge_artifacts(paths: list[Path]) -> dict[str, np.ndarray]:
    """The per-graph files as one dict of arrays with a leading graph axis (TIMES as [G])."""
    artifacts = [load_artifact(p) for p in paths]
    bad = [str(p) for p, a in zip(paths, artifacts) if a is None]
    if bad:
        raise ValueError(f"expert artifacts missing or damaged: {bad[:3]}")
    merged = {f: np.stack([np.asarray(getattr(t, f)) for t, _ in artifacts]) for f in FIELDS}
    for k in TIMES:
        merged[k] = np.asarray([float(extra[k]) for _, extra in artifacts], np.float64)
    return merged


def _graph_path(out_dir: Path, g: int) -> Path:
    return out_dir / f"graph_{g:06d}.npz"


def _worker(args):
    spec, key, scm, data, path = args
    expert = spec.build()
    c0, t0 = compile_seconds(), time.perf_counter()
    traj = jax.block_until_ready(expert.run(key, scm, data))
    seconds = time.perf_counter() - t0
    save_trajectory(traj, Path(path), run_seconds=seconds, compile_seconds=compile_seconds() - c0)
    return str(path)


def posterior_bytes(expert, args) -> int:
    """Bytes one vmapped posterior call over these graphs holds at its peak (arguments, outputs
    and XLA's temporaries, from the compiled program), about linear in the graphs. At 50
    variables with 500 interventional rows a graph needs ~0.5 GB (the per-row set posteriors and
    the per-set Gram terms), so a fixed chunk of 64 asked for 32 GB."""
    m = expert._posterior_many.lower(*args).compile().memory_analysis()
    return max(1, m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)


def run_graphs(
    expert: Any,
    key,
    scms,
    datas,
    out_dir: str | os.PathLike,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
    chunk: int = 64,
    backend: Backend | None = None,
    memory_bytes: float = 4e9,
) -> list[Path]:
    """Run `expert` on every graph of the batch (leading axis), one artifact per graph.

    Graph by graph, the runs go through `backend` (default: local processes) with `workers`
    workers; the vmapped posterior-only chunks always run here (seconds for thousands of graphs),
    at most `chunk` graphs at a time and as many as XLA says fit in `memory_bytes`.
    progress(done, total) is called after each finished graph (and once for the skipped ones).
    Returns the artifact paths in graph order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = datas.obs.shape[0]
    paths = [_graph_path(out, g) for g in range(n)]
    todo = [g for g in range(n) if load_trajectory(paths[g]) is None]
    done = n - len(todo)
    if progress:
        progress(done, n)
    keys = [jax.random.fold_in(key, g) for g in range(n)]
    spec = expert.spec

    # Vmapped chunks suit the static priors; a data-dependent (doubly-robust) prior trains its
    # nets until the slowest graph's stops, 2.3x the core-s of one graph at a time (3-8 nodes).
    static_prior = getattr(getattr(spec, "prior", None), "kind", None) != "doubly_robust"
    if getattr(spec, "n_trials", 0) == 0 and spec.kind == "parent_scale" and static_prior:
        def args(gs):
            gs = np.asarray(gs)
            return (jnp.stack([keys[g] for g in gs]), scms.var_mask[gs], scms.target[gs],
                    jax.tree.map(lambda a: a[gs], datas))

        if len(todo) > 1:  # measured on two graphs: XLA lays out a batch of one differently
            per_graph = posterior_bytes(expert, args(todo[:2])) / 2
            chunk = min(chunk, max(1, int(memory_bytes // per_graph)))
        for start in range(0, len(todo), chunk):
            gs = np.asarray(todo[start : start + chunk])
            c0, t0 = compile_seconds(), time.perf_counter()
            batch = jax.block_until_ready(expert._posterior_many(*args(gs)))
            # one vmapped call for the chunk: no per-graph time exists, each graph gets an even share
            seconds, compile_s = (time.perf_counter() - t0) / len(gs), (compile_seconds() - c0) / len(gs)
            for i, g in enumerate(gs):
                save_trajectory(index_graph(batch, i), paths[g], run_seconds=seconds, compile_seconds=compile_s)
                done += 1
                if progress:
                    progress(done, n)
        return paths

    jobs = [(spec, keys[g], jax.device_get(index_graph(scms, g)), jax.device_get(index_graph(datas, g)), str(paths[g])) for g in todo]
    try:
        for _ in (backend or LocalBackend()).map(_worker, jobs, workers):
            done += 1
            if progress:
                progress(done, n)
    except JobsFailed as exc:
        graphs = [todo[i] for i, _ in exc.failed]
        first = exc.failed[0][1]
        raise RuntimeError(f"the expert failed on {len(graphs)} graph(s) {graphs[:10]} (graph {graphs[0]}: "
                           f"{type(first).__name__}: {first}){exc.hint}; the other graphs' artifacts "
                           "are written, so a rerun computes only these") from exc
    return paths
