"""The plan's training estimate beside measured step times, per architecture and size.

    .venv/bin/python benchmarks/plan.py [--steps 5]

For each configuration, a spec (specs/smoke.toml with the sizes set) gives the estimate
(engine.train.cost.step_seconds, what `acbo plan` uses) and a Trainer times the same step on
synthetic demonstrations of the same padded shape (the scanned chunk's second call: compile
apart). The ratio measured / estimated should stay within 0.5-2.

    .venv/bin/python benchmarks/plan.py --online [SPEC ...]

instead sets the estimate of simulating one online training batch beside its measured time.

    .venv/bin/python benchmarks/plan.py --storage specs/phase2a.toml [--registry registry]

instead sets the plan's storage estimate (engine.storage.storage_estimates) beside the bytes of the
spec's stages found on disk in the registry (apply the spec first; stages not there are skipped).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# kind, d, observational rows, dim, layers, batch, whole-graph head (loss.graph_weight > 0)
GRID = [
    ("stats", 8, 200, 64, 2, 32, False),
    ("stats", 20, 100, 64, 2, 16, False),
    ("stats", 50, 200, 32, 2, 8, False),
    ("stats", 8, 1000, 64, 2, 16, False),
    ("stats", 30, 500, 64, 2, 16, True),  # specs/general.toml's padded step
    ("stats", 12, 200, 64, 2, 16, True),
    ("avici", 8, 200, 64, 2, 16, False),
    ("avici", 20, 100, 64, 4, 16, False),
    ("avici", 20, 400, 64, 4, 8, False),
    ("avici", 10, 1000, 32, 2, 4, False),
    ("avici", 50, 100, 32, 2, 4, False),
]


def measure(kind, d, rows, dim, layers, batch, graph, steps):
    import jax

    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from test_train import synthetic_demos
    from train import time_steps

    from engine.spec.loader import load
    from engine.train.cost import step_seconds
    from engine.train.trainer import Trainer

    sets = [f'model={{ kind = "{kind}", dim = {dim}, layers = {layers}, heads = 4 }}',
            f"train.batch_size={batch}", f"scm.n_obs={rows}", f"scm.n_nodes={d}",
            "scm.interventions.rows_per_node=1"] + (["loss.graph_weight=1.0"] if graph else [])
    spec = load(ROOT / "specs" / "smoke.toml", sets).spec
    k = spec.scm.n_int  # interventional rows, as the demonstrations pad them
    trainer = Trainer(spec, jax.devices()[:1])
    demos = synthetic_demos(n_graphs=8, d=d, n_obs=rows, k=k)
    compile_s, measured = time_steps(trainer, demos, steps)
    return step_seconds(spec, 1), measured, compile_s


def online(spec_paths: list[Path], repeats: int = 10) -> None:
    """The plan's estimate of simulating one online batch (engine.train.cost.simulate_seconds)
    beside the jitted simulation's measured time, per spec."""
    import time

    import jax

    from engine.data.online import simulated_batch
    from engine.scm.simulator import Simulator
    from engine.spec.loader import load
    from engine.train.cost import simulate_seconds

    print(f"{'online spec':<28}{'estimate s':>12}{'measured s':>12}{'ratio':>7}")
    for path in spec_paths:
        spec = load(path).spec
        sim = Simulator(spec.scm)
        batch = jax.jit(lambda k: simulated_batch(sim, k, spec.train.batch_size))
        jax.block_until_ready(batch(jax.random.PRNGKey(0)))
        started = time.perf_counter()
        for i in range(repeats):
            jax.block_until_ready(batch(jax.random.PRNGKey(i + 1)))
        got = (time.perf_counter() - started) / repeats
        est = simulate_seconds(spec.scm, spec.train.batch_size)
        print(f"{path.name:<28}{est:>12.4f}{got:>12.4f}{got / est:>7.2f}", flush=True)


def storage(spec_path: Path, registry: Path) -> None:
    from engine.plan import make_plan
    from engine.spec.loader import load

    plan = make_plan(load(spec_path), pricing=True, check_budget=False)
    print(f"{'stage':<28}{'estimate B':>14}{'on disk B':>14}{'ratio':>7}")
    for name, est in plan.storage_bytes.items():
        d = registry / "_stages" / name / plan.stages[name].hash
        if d.is_dir():
            real = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
            print(f"{name:<28}{est:>14,}{real:>14,}{est / max(real, 1):>7.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--kinds", nargs="+", default=["stats", "avici"])
    parser.add_argument("--storage", type=Path, help="a spec: its storage estimate vs the registry")
    parser.add_argument("--registry", type=Path, default=ROOT / "registry")
    parser.add_argument("--online", type=Path, nargs="*", metavar="SPEC",
                        help="online specs: their batch simulation's estimate vs measured "
                             "(no SPEC: the shipped general models' and phase2a_online)")
    args = parser.parse_args()
    if args.storage:
        return storage(args.storage, args.registry)
    if args.online is not None:
        return online(args.online or [ROOT / "specs" / f"{n}.toml" for n in
                                      ("general", "general_int", "general_grn", "phase2a_online")])
    print(f"{'model':<8}{'d':>4}{'rows':>6}{'dim':>5}{'L':>3}{'batch':>6}{'graph':>6}"
          f"{'estimate s':>12}{'measured s':>12}{'ratio':>7}{'compile s':>11}")
    ratios = []
    measure(*GRID[0], args.steps)  # the process's first timed call runs 2-3x slow: not a sample
    for kind, d, rows, dim, layers, batch, graph in GRID:
        if kind not in args.kinds:
            continue
        est, got, comp = measure(kind, d, rows, dim, layers, batch, graph, args.steps)
        ratios.append(got / est)
        print(f"{kind:<8}{d:>4}{rows:>6}{dim:>5}{layers:>3}{batch:>6}{'yes' if graph else 'no':>6}{est:>12.4f}{got:>12.4f}"
              f"{got / est:>7.2f}{comp:>11.1f}", flush=True)
    print(f"measured / estimated: {min(ratios):.2f} to {max(ratios):.2f}")


if __name__ == "__main__":
    main()
