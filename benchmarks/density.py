"""How a shipped model's accuracy depends on graph density, the one knob that separates the
suites it wins from linear-10, where it trails exact inference most.

  .venv/bin/python benchmarks/density.py [--model general] [--graphs 20] [--out benchmarks/results/density.md]

Linear ER graphs from benchmarks/external.py (weights +-U(0.5, 2), per-variable noise scales;
1000 observational rows) at d = 10, 20 and 30, each at about 1 edge per node and at a pair
density of 0.44 (the share of pairs joined in linear-10's ER-2 graphs at d = 10: 2 x 2 / 9).
Beside the model: exact_additive (the exact posterior, `acbo infer --exact`) where it runs (d = 10).
AUROC and F1 (the graph of highest expected F1) with 95% bootstrap intervals over datasets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import external  # noqa: E402
from general import _fmt, model_answer, stage  # noqa: E402

from engine.evaluate.baselines import predict_graph  # noqa: E402
from engine.userfiles import InferError  # noqa: E402
from engine.evaluate.estimate import estimate  # noqa: E402

DENSE = 0.44  # linear-10's pair density


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="general")
    ap.add_argument("--graphs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "density.md")
    args = ap.parse_args()
    import engine

    try:
        predictor = engine.load(args.model)
    except InferError as exc:
        sys.exit(f"density.py: {exc}")
    lines = [f"# `{args.model}` against graph density: linear ER, 1000 observational rows", "",
             "Written by `benchmarks/density.py`; 95% bootstrap intervals over datasets.", "",
             "| d | edges per node | pair density | max in-degree (mean) | method | AUROC | F1 |", "|---|---|---|---|---|---|---|"]
    for d in (10, 20, 30):
        for epn in (1.0, round(DENSE * (d - 1) / 2, 1)):
            sets = [external.continuous("linear", d, 1000, 50_000 + 100 * d + s, 0, epn) for s in range(args.graphs)]
            answers = {args.model: [model_answer(predictor, ds) for ds in sets]}
            if d <= 10:
                answers["exact_additive"] = []
                for ds in sets:
                    p = predict_graph("exact_additive", ds.obs, seed=0)
                    answers["exact_additive"].append((p.weights, p.scores, p.seconds))
            st = stage(f"d{d}", sets, answers)
            top = np.mean([ds.adjacency.sum(0).max() for ds in sets])
            for side in answers:
                au, f1 = (estimate(st, k, side, n_boot=1000, seed=0) for k in ("graph_auroc", "graph_f1"))
                lines.append(f"| {d} | {epn:g} | {2 * epn / (d - 1):.2f} | {top:.1f} | {side} | {_fmt(au)} | {_fmt(f1)} |")
                print(lines[-1], flush=True)
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
