"""The plan's training estimate beside measured step times, per architecture and size.

    .venv/bin/python benchmarks/plan.py [--steps 5]

For each configuration, a spec (specs/smoke.toml with the sizes set) gives the estimate
(engine.train.cost.step_seconds, what `acbo plan` uses) and a Trainer times the same step on
synthetic demonstrations of the same padded shape (the scanned chunk's second call: compile
apart). The ratio measured / estimated should stay within 0.5-2.

    .venv/bin/python benchmarks/plan.py --storage specs/phase2a.toml [--registry registry]

instead sets the plan's storage estimate (engine.storage.storage_estimates) beside the bytes of the
spec's stages found on disk in the registry (apply the spec first; stages not there are skipped).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# kind, d, observational rows, dim, layers, batch
GRID = [
    ("stats", 8, 200, 64, 2, 32),
    ("stats", 20, 100, 64, 2, 16),
    ("stats", 50, 200, 32, 2, 8),
    ("stats", 8, 1000, 64, 2, 16),
    ("avici", 8, 200, 64, 2, 16),
    ("avici", 20, 100, 64, 4, 16),
    ("avici", 20, 400, 64, 4, 8),
    ("avici", 10, 1000, 32, 2, 4),
    ("avici", 50, 100, 32, 2, 4),
]


def measure(kind, d, rows, dim, layers, batch, steps):
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
            "scm.interventions.rows_per_node=1"]
    spec = load(ROOT / "specs" / "smoke.toml", sets).spec
    k = spec.scm.n_int  # interventional rows, as the demonstrations pad them
    trainer = Trainer(spec, jax.devices()[:1])
    demos = synthetic_demos(n_graphs=8, d=d, n_obs=rows, k=k)
    compile_s, measured = time_steps(trainer, demos, steps)
    return step_seconds(spec, 1), measured, compile_s


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
    args = parser.parse_args()
    if args.storage:
        return storage(args.storage, args.registry)
    print(f"{'model':<8}{'d':>4}{'rows':>6}{'dim':>5}{'L':>3}{'batch':>6}"
          f"{'estimate s':>12}{'measured s':>12}{'ratio':>7}{'compile s':>11}")
    ratios = []
    for kind, d, rows, dim, layers, batch in GRID:
        if kind not in args.kinds:
            continue
        est, got, comp = measure(kind, d, rows, dim, layers, batch, args.steps)
        ratios.append(got / est)
        print(f"{kind:<8}{d:>4}{rows:>6}{dim:>5}{layers:>3}{batch:>6}{est:>12.4f}{got:>12.4f}"
              f"{got / est:>7.2f}{comp:>11.1f}", flush=True)
    print(f"measured / estimated: {min(ratios):.2f} to {max(ratios):.2f}")


if __name__ == "__main__":
    main()
