"""Training-step throughput: examples/s per model kind at d = 8 and 20, on 1 vs 4 devices.

    .venv/bin/python benchmarks/train.py [--steps 10] [--batch 16] [--rows 100] [--kinds stats avici]

Each device count runs in its own subprocess (XLA_FLAGS=--xla_force_host_platform_device_count=4
for the 4-device one, no flag for 1); the parent prints both side by side with their ratio.
Compile time is excluded: the scanned chunk of `--steps` steps is timed on its second call.
On CPU the "4 devices" are slices of the same cores, so the ratio measures the partitioning
overhead, not a speedup; on a multi-GPU host it is the real scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def time_steps(trainer, demos, steps: int) -> tuple[float, float]:
    """(seconds of the first call of a scanned chunk of `steps` steps, compile included;
    seconds per step of the second call)."""
    import jax

    state = trainer.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    started = time.perf_counter()
    state, losses, _ = trainer.run_steps(state, demos, key, steps)
    losses.block_until_ready()
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    state, losses, _ = trainer.run_steps(state, demos, key, steps)
    losses.block_until_ready()
    return compile_s, (time.perf_counter() - started) / steps


def measure(kinds, dims, steps: int, batch: int, rows: int, n_devices: int) -> dict:
    import jax

    sys.path.insert(0, str(ROOT / "tests"))
    from test_train import synthetic_demos

    from engine.spec.loader import load
    from engine.train.logging import device_memory
    from engine.train.trainer import Trainer

    out = {}
    for kind in kinds:
        model = {"stats": ['model={ kind = "stats", dim = 64, layers = 2, heads = 4 }'],
                 "avici": ['model={ kind = "avici", dim = 64, layers = 2, heads = 4 }']}[kind]
        spec = load(ROOT / "specs" / "smoke.toml", model + [f"train.batch_size={batch}"]).spec
        for d in dims:
            trainer = Trainer(spec, jax.devices()[:n_devices])
            demos = synthetic_demos(n_graphs=16, d=d, n_obs=rows, k=d)
            compile_s, step_s = time_steps(trainer, demos, steps)
            out[f"{kind}/d={d}"] = {
                "step_s": step_s,
                "examples_per_s": batch / step_s,
                "compile_s": compile_s,
                **device_memory(trainer.devices),
            }
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rows", type=int, default=100, help="observational rows per example")
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 20])
    parser.add_argument("--kinds", nargs="+", default=None, help="default: stats, and avici if present")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    kinds = args.kinds or ["stats"] + (["avici"] if (ROOT / "engine" / "models" / "avici.py").exists() else [])
    if args.child is not None:
        print(json.dumps(measure(kinds, args.dims, args.steps, args.batch, args.rows, args.child)))
        return
    results = {}
    for n in (1, 4):
        env = dict(os.environ)
        if n > 1:
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()
        cmd = [sys.executable, __file__, "--child", str(n), "--steps", str(args.steps), "--batch",
               str(args.batch), "--rows", str(args.rows), "--dims", *map(str, args.dims), "--kinds", *kinds]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if res.returncode:
            sys.exit(f"{n}-device run failed:\n{res.stderr[-3000:]}")
        results[n] = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"batch {args.batch}, {args.rows} obs rows + d interventional rows, {args.steps} steps timed after compile")
    print(f"{'model':<14}{'ex/s 1 dev':>12}{'ex/s 4 dev':>12}{'4/1':>7}{'compile 1':>11}{'compile 4':>11}")
    for name, one in results[1].items():
        four = results[4][name]
        print(f"{name:<14}{one['examples_per_s']:>12.1f}{four['examples_per_s']:>12.1f}"
              f"{four['examples_per_s'] / one['examples_per_s']:>7.2f}{one['compile_s']:>10.1f}s{four['compile_s']:>10.1f}s")
    first = results[1]
    names = list(first)
    if len(names) > 1:
        base = names[0]
        print("throughput relative to " + base + ": " + ", ".join(
            f"{n} {first[n]['examples_per_s'] / first[base]['examples_per_s']:.2f}x" for n in names[1:]))


if __name__ == "__main__":
    main()
