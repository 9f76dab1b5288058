"""Expert throughput, local processes vs Ray tasks, on the same graphs in one run.

Draws --graphs graphs from the spec's [scm] (default specs/phase2c.toml: linear ER, 3-8 nodes)
and runs its [expert] (the real PARENT_SCALE: doubly-robust prior, 10 trials) on all of them
through `run_graphs` once per backend, each with --workers workers and a fresh output folder:
the local backend's pinned spawn pool, then Ray tasks on a local Ray instance started for the
run (or RAY_ADDRESS's cluster). Wall time counts everything a stage waits for: starting the
pool or Ray, the workers' imports and XLA compiles, the runs. Without a persistent compile cache
(unset here) every worker compiles, as on a first run. Core-seconds (this process and its
descendants: the pool's workers, Ray's daemons and workers) measure the overhead where other jobs
share the machine and wall time does not. Both backends must write the same trajectories
(checked bit for bit).

    .venv/bin/python benchmarks/expert_backend.py --graphs 10 --workers 2
"""

from __future__ import annotations

import argparse
import os
import threading
import tempfile
import time
from pathlib import Path

os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)  # each backend compiles for itself

import jax  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

from engine.expert.backends import LocalBackend, RayBackend  # noqa: E402
from engine.expert.runner import FIELDS, merge_artifacts, run_graphs  # noqa: E402
from engine.scm import simulate  # noqa: E402
from engine.spec.loader import load  # noqa: E402


class TreeCPU:
    """Core-seconds of this process and every descendant (the pool's workers; Ray's daemons and
    workers), sampled every `every` s (a process that exits loses at most its last interval):
    robust to a machine shared with other jobs, where wall time is not."""

    def __init__(self, every: float = 0.25):
        self.every, self.seen, self.stop = every, {}, threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stop.wait(self.every):
            for p in psutil.Process().children(recursive=True):
                try:
                    t = p.cpu_times()
                    self.seen[(p.pid, p.create_time())] = t.user + t.system
                except psutil.Error:  # exited between the listing and the read
                    pass

    def __enter__(self):
        self.self0 = time.process_time()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.total = time.process_time() - self.self0 + sum(self.seen.values())


def timed(backend, expert, scms, datas, out: Path, workers: int) -> dict:
    t0 = time.perf_counter()
    with TreeCPU() as cpu:
        paths = run_graphs(expert, jax.random.PRNGKey(1), scms, datas, out, workers=workers, backend=backend)
    wall, cpu = time.perf_counter() - t0, cpu.total
    merged = merge_artifacts(paths)
    return {"wall": wall, "cpu": cpu, "merged": merged, "run": float(merged["run_seconds"].sum()),
            "compile": float(merged["compile_seconds"].sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="specs/phase2c.toml")
    ap.add_argument("--graphs", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ray-first", action="store_true", help="run Ray first (the order's effect on a shared machine)")
    args = ap.parse_args()

    spec = load(args.spec, []).spec
    scms, datas = simulate(spec.scm, jax.random.key(args.seed), args.graphs)
    nodes = np.asarray(scms.var_mask).sum(1)
    print(f"{args.graphs} graphs from {args.spec} [scm], nodes {nodes.tolist()}; expert "
          f"{spec.expert.kind}, prior {spec.expert.prior.kind}, n_trials {spec.expert.n_trials}; "
          f"{args.workers} workers each")
    expert = spec.expert.build()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        backends = [LocalBackend(), RayBackend()]
        for backend in backends[::-1] if args.ray_first else backends:
            r = timed(backend, expert, scms, datas, Path(tmp) / backend.name, args.workers)
            results[backend.name] = r
            print(f"  {backend.name:5s}: {r['wall']:6.1f} s wall, {60 * args.graphs / r['wall']:5.2f} graphs/min; "
                  f"in the workers {r['run'] / args.graphs:.2f} s/graph (of which compile "
                  f"{r['compile'] / args.graphs:.2f}), outside them {r['wall'] - r['run'] / args.workers:.1f} s "
                  f"(start-up, imports, scheduling); {r['cpu'] / args.graphs:.1f} core-s/graph in all", flush=True)
    local, ray = results["local"], results["ray"]
    same = all(local["merged"][f].tobytes() == ray["merged"][f].tobytes() for f in FIELDS)
    print(f"ray / local throughput: {local['wall'] / ray['wall']:.2f}x (wall), {local['cpu'] / ray['cpu']:.2f}x "
          f"(core-s); trajectories identical: {same}")


if __name__ == "__main__":
    main()
