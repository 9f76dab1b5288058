"""Simulator calls with glibc's default malloc vs engine.hostmem.retain_freed_memory().

    .venv/bin/python benchmarks/hostmem.py [--d 10 20 50] [--mech linear] [--rounds 3]

malloc settings hold for a whole process, so each measurement is a fresh process; the two kinds
alternate, round after round, so that a noisy shared machine loads both alike. Each child
simulates the same batches as benchmarks/simulate.py (on one device per core) for `--seconds`
and reports its mean ms per call (as simulate.py's rates) and the minor page faults per call
(pages the kernel had to map and zero). With the default, glibc adapts its mmap threshold only
as blocks are freed, so the faults come in the first seconds of a process (a few hundred
calls) and stop later, at a time that varies. The ratio is default / retain: above 1, keeping
freed memory is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(malloc: str, mech: str, d: int, seconds: float) -> None:
    if malloc == "retain":
        from engine.hostmem import retain_freed_memory

        if not retain_freed_memory():
            raise SystemExit("mallopt is not available here (not glibc)")
    import jax

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from simulate import graphs_per_call, spec_for

    from engine.scm.simulator import Simulator

    graphs = graphs_per_call(mech, d, jax.device_count())
    sim, key = Simulator(spec_for(mech, d)), jax.random.key(0)
    for i in range(3):  # compile, and rff's parent bound settles
        jax.block_until_ready(sim.with_diagnostics(jax.random.fold_in(key, 10**6 + i), graphs))
    times, faults0 = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        jax.block_until_ready(sim.with_diagnostics(jax.random.fold_in(key, len(times)), graphs))
        times.append(time.perf_counter() - t0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    print(json.dumps({"ms": 1e3 * statistics.fmean(times), "faults": faults / len(times),
                      "graphs": graphs}))


def measure(malloc: str, mech: str, d: int, seconds: float, devices: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    flags = f"--xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}"
    argv = [sys.executable, __file__, "--child", malloc, "--mech", mech, "--d", str(d),
            "--seconds", str(seconds)]
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, nargs="+", default=[10, 20, 50])
    ap.add_argument("--mech", nargs="+", default=["linear"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--child", choices=["default", "retain"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.mech[0], args.d[0], args.seconds)
    devices = len(os.sched_getaffinity(0))
    print(f"acbo's simulator on {devices} CPU device(s); each cell: median over {args.rounds} "
          f"alternating processes of the mean ms per call over {args.seconds:g} s from the start")
    head = (f"{'mech':8}{'d':>4}{'graphs':>7}{'default ms':>12}{'faults':>8}{'retain ms':>11}"
            f"{'faults':>8}{'ratio':>8}")
    print(head)
    print("-" * len(head))
    for mech in args.mech:
        for d in args.d:
            runs = {"default": [], "retain": []}
            for _ in range(args.rounds):
                for kind in runs:
                    runs[kind].append(measure(kind, mech, d, args.seconds, devices))
            ms = {k: statistics.median(r["ms"] for r in v) for k, v in runs.items()}
            faults = {k: statistics.median(r["faults"] for r in v) for k, v in runs.items()}
            print(f"{mech:8}{d:>4}{runs['retain'][0]['graphs']:>7}{ms['default']:>12.2f}"
                  f"{faults['default']:>8.0f}{ms['retain']:>11.2f}{faults['retain']:>8.0f}"
                  f"{ms['default'] / ms['retain']:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
