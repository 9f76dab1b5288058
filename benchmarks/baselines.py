"""Seconds per graph and skeleton F1 of the PC, GES and exact_dp baselines (no assertions).

  .venv/bin/python benchmarks/baselines.py [--graphs 3] [--limit 180]

Linear-Gaussian ER graphs with 2 edges per node in expectation, coefficients signed U(0.5, 2)
(the engine's default linear coef), unit noise, 1000 observational rows, nodes in random order,
at d = 10, 20, 50. A run over --limit seconds is stopped (predict_graph's limit) and the rest of that
(method, d) cell skipped: these numbers size how many graphs the evaluation can afford.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from engine.evaluate.baselines import BASELINES, BaselineNotRun, available, predict_graph  # noqa: E402


def er_linear_gaussian(d: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = min(1.0, 4.0 / (d - 1))  # 2 d edges expected among d (d - 1) / 2 pairs
    adj = np.triu(rng.random((d, d)) < p, 1)
    coef = rng.uniform(0.5, 2.0, (d, d)) * rng.choice([-1.0, 1.0], (d, d)) * adj
    x = np.zeros((n, d))
    for j in range(d):
        x[:, j] = x @ coef[:, j] + rng.normal(size=n)
    perm = rng.permutation(d)
    return x[:, perm], adj[np.ix_(perm, perm)]


def skeleton_f1(w: np.ndarray, adj: np.ndarray) -> float:
    iu = np.triu_indices(adj.shape[0], 1)
    p, t = ((w > 0) | (w.T > 0))[iu], (adj | adj.T)[iu]
    tp, fp, fn = (p & t).sum(), (p & ~t).sum(), (~p & t).sum()
    return 2 * tp / max(1, 2 * tp + fp + fn)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graphs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=180, help="seconds before one run is stopped")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 50])
    args = ap.parse_args()
    if (why := available("pc")) is not None:
        sys.exit(why)
    print(f"{'method':8} {'d':>3} {'edges':>6} {'s/graph':>16} {'skeleton F1':>16}")
    for d in args.sizes:
        data = [er_linear_gaussian(d, 1000, seed) for seed in range(args.graphs)]
        for name in [b for b in BASELINES if b != "random" and BASELINES[b].takes(d)]:
            secs, f1s = [], []
            for x, adj in data:
                try:
                    pred = predict_graph(name, x, seed=0, limit=args.limit)
                except BaselineNotRun:
                    print(f"{name:8} {d:>3}  stopped: one graph took over {args.limit} s")
                    break
                secs.append(pred.seconds)
                f1s.append(skeleton_f1(pred.weights, adj))
            else:
                edges = np.mean([adj.sum() for _, adj in data])
                print(f"{name:8} {d:>3} {edges:6.1f} {np.mean(secs):8.2f} (max {max(secs):6.2f})"
                      f" {np.mean(f1s):7.3f} (min {min(f1s):.2f})", flush=True)


if __name__ == "__main__":
    main()
