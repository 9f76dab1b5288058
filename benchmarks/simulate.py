"""Datasets per second: acbo's JAX simulator vs a plain NumPy per-graph ancestral-sampling loop.

    .venv/bin/python benchmarks/simulate.py [--d 10 20 50] [--mech linear rff grn] [--seconds 3]

Each dataset: one Erdos-Renyi DAG (1 edge per node on average) of d variables, fresh mechanism
parameters, n = 1000 observational rows (GRN: 1000 cells). The NumPy reference does the same work
one graph at a time, as AVICI's NumPy workers do (GRN: plain Euler-Maruyama over all cells, with
the same Hill algebra as acbo's: one response per regulator, then a product with the signed
strengths, so that the ratio compares implementations rather than algorithms).
Compile time is reported apart. The two run in alternating slices of equal wall time, so a noisy
shared machine loads both alike; the ratio is printed per wall second and per CPU second (the
latter is steadier when other processes load the machine). acbo simulates `graphs` datasets per
call, sized so that a call's working set stays in cache (graphs_per_call). Both share one process
whose malloc keeps freed memory, as acbo's CLI sets it (engine/hostmem.py; `--malloc default`
leaves glibc's own behaviour).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from pathlib import Path

# The reference is one single-threaded NumPy worker per graph stream, as AVICI's are. A threaded
# BLAS also busy-waits after each small product and starves the JAX slices it alternates with.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N = 1000


# ------------------------------------------------------------------------------ NumPy reference
def np_dag(rng: np.random.Generator, d: int) -> tuple[np.ndarray, np.ndarray]:
    p = min(1.0, 2.0 / (d - 1))
    U = np.triu(rng.random((d, d)) < p, 1)
    perm = rng.permutation(d)
    G = np.zeros((d, d), bool)
    G[np.ix_(perm, perm)] = U
    return G, perm


def np_linear(rng, d: int) -> np.ndarray:
    G, order = np_dag(rng, d)
    W = rng.uniform(0.5, 2.0, (d, d)) * rng.choice([-1.0, 1.0], (d, d)) * G
    x = np.zeros((N, d))
    eps = rng.standard_normal((N, d))
    for j in order:
        pa = np.flatnonzero(G[:, j])
        x[:, j] = x[:, pa] @ W[pa, j] + eps[:, j]
    return x


def np_rff(rng, d: int, features: int = 100) -> np.ndarray:
    G, order = np_dag(rng, d)
    x = np.zeros((N, d))
    eps = rng.standard_normal((N, d))
    for j in order:
        pa = np.flatnonzero(G[:, j])
        f = rng.uniform(-3, 3)
        if len(pa):
            ls, out = rng.uniform(7, 10), rng.uniform(10, 20)
            omega = rng.standard_normal((len(pa), features)) / ls
            phase = rng.uniform(0, 2 * np.pi, features)
            amp = out * np.sqrt(2.0 / features) * rng.standard_normal(features)
            f = f + np.cos(x[:, pa] @ omega + phase) @ amp
        x[:, j] = f + eps[:, j]
    return x


def np_grn(rng, d: int, t_end: float = 10.0, dt: float = 0.05) -> np.ndarray:
    G, _ = np_dag(rng, d)
    K = rng.uniform(1, 5, (d, d)) * rng.choice([-1.0, 1.0], (d, d)) * G
    basal = np.where(G.sum(0) == 0, rng.uniform(1, 3, d), 0.0)
    decay = np.full(d, 0.8)
    start = (basal + 0.5 * np.abs(K).sum(0)) / decay
    half = np.maximum(start, 1e-6) ** 2
    repressed = np.maximum(-K, 0.0).sum(0)
    x = np.tile(start, (N, 1))
    for _ in range(int(math.ceil(t_end / dt))):
        xc = np.maximum(x, 0.0)
        act = xc**2 / (half + xc**2 + 1e-12)  # one Hill value per regulator, as acbo's
        P = basal + repressed + act @ K
        g = np.sqrt(P + decay * xc)
        x = x + (P - decay * xc) * dt + g * np.sqrt(dt) * rng.standard_normal((N, d))
    return np.maximum(x, 0.0)


REFERENCE = {"linear": np_linear, "rff": np_rff, "grn": np_grn, "grn_path": np_grn}


# ------------------------------------------------------------------------------ acbo
def spec_for(mech: str, d: int):
    from engine.spec.scm import ScmSpec

    mechanism = {"kind": "grn", "brownian": "path"} if mech == "grn_path" else {"kind": mech}
    return ScmSpec.model_validate({
        "graphs": {"kind": "erdos_renyi", "edges_per_node": 1.0}, "n_nodes": d,
        "mechanism": mechanism, "n_obs": N,
        "interventions": {"kind": "hard", "rows_per_node": 0, "value": 0.0},
    })


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rates(mech: str, d: int, seconds: float, graphs: int) -> dict[str, float]:
    """acbo's and NumPy's datasets per wall second and per CPU second, and acbo's compile s.
    The two alternate in short slices of equal wall time, so both see the same machine load
    (these machines are shared); CPU seconds (of the whole process, all XLA threads) give a
    ratio that other processes' load disturbs less, and show how many cores acbo used."""
    import jax

    from engine.scm.simulator import Simulator

    sim = Simulator(spec_for(mech, d))
    key = jax.random.key(0)
    t0 = time.perf_counter()
    jax.block_until_ready(sim.with_diagnostics(key, graphs))
    compile_s = time.perf_counter() - t0
    for i in range(3):  # rff's parent bound may step up once or twice (then it stays)
        jax.block_until_ready(sim.with_diagnostics(jax.random.fold_in(key, 10**6 + i), graphs))
    rng, ref = np.random.default_rng(0), REFERENCE[mech]
    done, wall, cpu = [0, 0], [0.0, 0.0], [0.0, 0.0]
    while min(wall) < seconds / 2 or min(done) < 2:
        t0, c0 = time.perf_counter(), _cpu_s()
        jax.block_until_ready(sim.with_diagnostics(jax.random.fold_in(key, done[0]), graphs))
        slice_s = time.perf_counter() - t0
        done[0] += graphs
        wall[0] += slice_s
        cpu[0] += _cpu_s() - c0
        t0, c0 = time.perf_counter(), _cpu_s()
        while True:  # NumPy for the same wall time as acbo's call
            ref(rng, d)
            done[1] += 1
            if time.perf_counter() - t0 >= slice_s:
                break
        wall[1] += time.perf_counter() - t0
        cpu[1] += _cpu_s() - c0
    return {"acbo": done[0] / wall[0], "numpy": done[1] / wall[1],
            "acbo_cpu": done[0] / cpu[0], "numpy_cpu": done[1] / cpu[1],
            "cores": cpu[0] / wall[0], "compile": compile_s}


def graphs_per_call(mech: str, d: int, devices: int = 1) -> int:
    """Per device, a power of two near a working set that stays in cache: ~3M values of
    [graphs, n, d] for linear, ~1.6M of rff's per-node [graphs, features, n] features; GRN: 8."""
    work = {"linear": 3e6 / (d * N), "rff": 1.6e6 / (100 * N)}.get(mech, 8)
    return devices << max(round(math.log2(work)), 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, nargs="+", default=[10, 20, 50])
    ap.add_argument("--mech", nargs="+", default=["linear", "rff", "grn", "grn_path"],
                    help="grn: VirtualBrownianTree; grn_path: direct Brownian increments")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--graphs", type=int, default=0, help="graphs per call (0: by mechanism)")
    ap.add_argument("--devices", type=int, default=len(os.sched_getaffinity(0)),
                    help="CPU devices for acbo (default: one per core; the batch is split over "
                         "them, as acbo splits training batches)")
    ap.add_argument("--malloc", choices=["retain", "default"], default="retain",
                    help="retain: keep freed memory, as acbo's CLI does (engine/hostmem.py; "
                         "benchmarks/hostmem.py measures what it changes); default: glibc's")
    args = ap.parse_args()
    if args.malloc == "retain":
        from engine.hostmem import retain_freed_memory

        retain_freed_memory()
    if args.devices < 1:
        ap.error(f"--devices must be at least 1 (got {args.devices})")
    if args.devices > 1:  # JAX exposes one CPU device unless told otherwise before it starts
        os.environ["XLA_FLAGS"] = (f"{os.environ.get('XLA_FLAGS', '')} "
                                   f"--xla_force_host_platform_device_count={args.devices}")
    import jax

    print(f"acbo on {jax.device_count()} {jax.devices()[0].platform.upper()} device(s), NumPy on 1 "
          f"core; malloc: {args.malloc}; n = {N} rows; ratio: acbo / NumPy datasets per wall "
          "second (cpu ratio: per CPU second)")
    head = (f"{'mech':8}{'d':>4}{'graphs':>7}{'acbo ds/s':>11}{'numpy ds/s':>12}{'ratio':>8}"
            f"{'cpu ratio':>10}{'acbo cores':>11}{'compile s':>10}")
    print(head)
    print("-" * len(head))
    for mech in args.mech:
        for d in args.d:
            graphs = args.graphs or graphs_per_call(mech, d, jax.device_count())
            r = rates(mech, d, args.seconds, graphs)
            print(f"{mech:8}{d:>4}{graphs:>7}{r['acbo']:>11.1f}{r['numpy']:>12.1f}"
                  f"{r['acbo'] / r['numpy']:>7.1f}x{r['acbo_cpu'] / r['numpy_cpu']:>9.1f}x"
                  f"{r['cores']:>11.2f}{r['compile']:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
