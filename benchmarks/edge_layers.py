"""Do edge blocks (`[model] edge_layers`) help on data acbo did not generate? An A/B at equal
training: specs/general.toml cut to one stage of 1500 steps on 5-20 variables, once as it is
(edge_layers = 0) and once with edge_layers = 2, both trained here, then scored on the external
continuous suites (benchmarks/general.py's datasets) and, with --bnlearn, the four networks.

  .venv/bin/python benchmarks/edge_layers.py [--steps 1500] [--registry .cache/edge_layers] [--bnlearn]

About 10 minutes of training per arm on 2 cores. Prints AUROC, F1 and skeleton F1 with 95%
bootstrap intervals, and the paired difference edges - plain on the same datasets.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import tomli_w  # noqa: E402
from general import _fmt, datasets, model_answer, stage  # noqa: E402

from engine.evaluate.estimate import estimate  # noqa: E402

SUITES = ["linear-10", "rff-10", "linear-20", "rff-20"]
NETWORKS = ["bnlearn-ecoli70", "bnlearn-magic-niab", "bnlearn-magic-irri", "bnlearn-arth150"]


def arm_spec(folder: Path, name: str, edge_layers: int, steps: int) -> Path:
    spec = tomllib.loads((ROOT / "specs" / "general.toml").read_text())
    spec["name"] = name
    spec["scm"]["n_nodes"] = {"low": 5, "high": 20}
    spec["train"].update(steps=steps, curriculum=[], checkpoint_every=500)
    spec["data"]["n_graphs"] = 12  # the run's own evaluation is not what this compares
    spec["evaluation"]["baselines"] = ["random"]
    spec["evaluation"].pop("baseline_seconds", None)
    if edge_layers:
        spec["model"]["edge_layers"] = edge_layers
    path = folder / f"{name}.toml"
    path.write_bytes(tomli_w.dumps(spec).encode())
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--registry", type=Path, default=ROOT / ".cache" / "edge_layers")
    ap.add_argument("--bnlearn", action="store_true", help="also the four bnlearn networks (3 datasets each)")
    args = ap.parse_args()
    import engine

    args.registry.mkdir(parents=True, exist_ok=True)
    runs = {}
    for name, layers in (("ab_plain", 0), ("ab_edges", 2)):
        spec = arm_spec(args.registry, name, layers, args.steps)
        acbo = Path(sys.executable).with_name("acbo")
        subprocess.run([str(acbo), "apply", str(spec), "--registry", str(args.registry / "runs")], check=True)
        runs[name] = engine.load(name, registry=args.registry / "runs")
    print("| suite | arm | AUROC | F1 | skeleton F1 |\n|---|---|---|---|---|")
    for suite in SUITES + (NETWORKS if args.bnlearn else []):
        sets = datasets(suite, 20, 3)
        answers = {name: [model_answer(p, ds) for ds in sets] for name, p in runs.items()}
        st = stage(suite, sets, answers)
        for name in runs:
            cells = [_fmt(estimate(st, k, name, n_boot=1000, seed=0)) for k in ("graph_auroc", "graph_f1", "skeleton_f1")]
            print(f"| {suite} | {name} | {' | '.join(cells)} |", flush=True)
        diff = [_fmt(estimate(st, k, "ab_edges", vs="ab_plain", relative="difference", n_boot=1000, seed=0))
                for k in ("graph_auroc", "graph_f1", "skeleton_f1")]
        print(f"| {suite} | edges - plain | {' | '.join(diff)} |", flush=True)


if __name__ == "__main__":
    main()
