"""Where per-item work runs: worker processes on this machine, or tasks on a Ray cluster.

A backend's `map(fn, jobs, workers)` runs `fn(job)` for every job and yields each result as it
finishes (in completion order). `fn` writes its item's checksummed artifact itself, atomically,
so whatever finished survives an interrupted or partly failed map and a rerun computes only the
rest; results never depend on where a job ran (each job carries its own key).

- `LocalBackend`: in this process (workers <= 1) or spawned processes pinned to a core each; the
  first job that raises stops the map with its exception.
- `RayBackend`: one Ray task per job on the cluster `RAY_ADDRESS` names, or on a local Ray
  instance of `workers` CPUs started for the map and shut down after. A worker lost mid-task is
  retried (`max_retries`); a job that raises is not (its error would repeat): the other jobs run
  to the end, then `JobsFailed` names the failed ones. Tasks write where the driver reads, so a
  cluster's nodes must share the registry's filesystem. Ray is imported only here, lazily.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

# single-threaded BLAS for the surrogate's small float64 products (a threaded one busy-waits
# between them and starves the other workers)
SINGLE_THREAD = {var: "1" for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")}
RAY_INSTALL = 'pip install -e ".[ray]"'


class MissingExtra(RuntimeError):
    """An optional dependency the spec asks for is not installed (the message says how)."""


class JobsFailed(RuntimeError):
    """Some jobs raised; the others finished. `failed` holds (job index, error) pairs."""

    def __init__(self, failed: list[tuple[int, BaseException]], hint: str = ""):
        self.failed, self.hint = sorted(failed, key=lambda f: f[0]), hint
        i, exc = self.failed[0]
        super().__init__(f"{len(failed)} job(s) failed (job {i}: {type(exc).__name__}: {exc}){hint}")


class Backend(Protocol):
    name: str

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int) -> Iterator[Any]: ...


# --------------------------------------------------------------------------- local processes
def _pin_worker(cores) -> None:
    """Worker start: take one core of its own. XLA sizes its thread pool by the process's CPU
    affinity; with one worker per core, single-threaded XLA spends no time handing the prior's
    small matmuls between threads (~20% less CPU per graph than a pool as large as the machine)."""
    try:
        core = cores.get(timeout=10)
        if core is not None:
            os.sched_setaffinity(0, {core})
    except Exception:  # noqa: BLE001 - no affinity support: run unpinned
        pass


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Spawned worker processes, each pinned to a core of its own while there are enough."""
    import multiprocessing as mp

    for var, value in SINGLE_THREAD.items():  # spawned workers inherit the environment
        os.environ.setdefault(var, value)
    ctx = mp.get_context("spawn")
    cores = ctx.Queue()
    avail = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = workers <= len(avail)  # more workers than cores share them unpinned
    for i in range(workers):
        cores.put(avail[i] if pin else None)
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_pin_worker, initargs=(cores,))


class LocalBackend:
    name = "local"

    def map(self, fn, jobs, workers):
        if workers <= 1:
            yield from map(fn, jobs)
            return
        with worker_pool(workers) as pool:
            yield from pool.map(fn, jobs)


# --------------------------------------------------------------------------- Ray
def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise MissingExtra(f'[hardware] backend = "ray" needs Ray, which is not installed here: '
                           f"{RAY_INSTALL}") from exc
    return ray


def worker_env() -> dict[str, str]:
    """Environment of the Ray workers: single-threaded BLAS and XLA (one task per CPU Ray
    schedules, as the local pool's pinned workers), and this checkout importable wherever the
    worker starts (an editable install does it too; a plain checkout needs the path)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    xla = " ".join(f for f in (os.environ.get("XLA_FLAGS"), "--xla_cpu_multi_thread_eigen=false") if f)
    return {**SINGLE_THREAD, **{v: os.environ[v] for v in SINGLE_THREAD if v in os.environ},
            "PYTHONPATH": path, "XLA_FLAGS": xla}


class RayBackend:
    name = "ray"

    def __init__(self, max_retries: int = 3):
        import_ray()  # a missing Ray fails when the backend is built, not mid-run
        self.max_retries = max_retries

    def _connect(self, ray, workers: int) -> dict | None:
        """Join RAY_ADDRESS's cluster, or start a local instance of `workers` CPUs, with the
        workers' environment for the whole job (so the workers Ray starts ahead serve it).
        Returns the runtime_env each task must carry: only on a caller's own Ray session."""
        env = {"env_vars": worker_env()}
        if ray.is_initialized():  # the caller's own ray.init: theirs to shut down
            return env
        address = os.environ.get("RAY_ADDRESS")
        with warnings.catch_warnings():  # JAX warns of any fork; Ray's fork is straight into exec
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
            if address:
                ray.init(address=address, runtime_env=env, logging_level="WARNING", log_to_driver=False)
            else:  # its own instance: its notices (e.g. token auth) are not the user's concern
                ray.init(address="local", num_cpus=max(workers, 1), include_dashboard=False, runtime_env=env,
                         logging_level="ERROR", log_to_driver=False)
        return None

    def map(self, fn, jobs, workers):
        ray = import_ray()
        if not jobs:
            return
        task_env = self._connect(ray, workers)
        started = task_env is None
        pending, failed = [], []
        try:
            options = dict(num_cpus=1, max_retries=self.max_retries, retry_exceptions=False)
            task = ray.remote(fn).options(**options, **({"runtime_env": task_env} if task_env else {}))
            index = {task.remote(job): i for i, job in enumerate(jobs)}
            pending = list(index)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # raised, or lost past its retries
                        failed.append((index[ref], getattr(exc, "cause", None) or exc))
                        continue
                    yield result
        finally:
            if started:
                ray.shutdown()  # ends its tasks too
            else:
                for ref in pending:  # interrupted: stop what still runs (finished files stay)
                    ray.cancel(ref, force=True)
        if failed:
            disk = any(isinstance(e, OSError) for _, e in failed)
            raise JobsFailed(failed, "; tasks write their artifacts where this process reads them: on a "
                                     "cluster, every node must share the registry's filesystem" if disk else "")
