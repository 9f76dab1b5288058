"""Inference cost: wall time and peak memory of a shipped model's forward pass against PC and GES
on the same data (linear ER-2 from benchmarks/external.py), at d = 10, 50, 100 and n = 1000,
10,000 rows.

  .venv/bin/python benchmarks/inference_cost.py [--model general] [--sizes 10 50 100]
      [--rows 1000 10000] [--limit 300]

Every (method, d, n) runs in a fresh process, so peak memory is that method's alone: the rise
of the process's peak RSS over its level once libraries and data are loaded. The model's time is
a warm call of `engine.load(model).graph(...)` (the user's path, standardisation included); its
first call, which compiles for the shape, is reported apart, and the model's peak memory includes
that compile (a process's peak RSS cannot tell the two apart). A run over --limit seconds is
stopped and reported as such.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def one(method: str, d: int, n: int, model: str) -> dict:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import external

    ds = external.continuous("linear", d, n, seed=d * 7 + n)
    names = [f"x{i}" for i in range(d)]
    if method == "model":
        import engine

        predictor = engine.load(model)
        base = _peak_mb()
        t0 = time.perf_counter()
        predictor.graph((ds.obs, names))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        predictor.graph((ds.obs, names))
        return {"seconds": time.perf_counter() - t0, "first_call_seconds": first, "peak_mb": _peak_mb() - base}
    from engine.evaluate.baselines import available, predict_graph

    available(method)  # imports causal-learn: its import is not the algorithm's memory
    base = _peak_mb()
    t0 = time.perf_counter()
    predict_graph(method, ds.obs, seed=0)
    return {"seconds": time.perf_counter() - t0, "peak_mb": _peak_mb() - base}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="general")
    ap.add_argument("--methods", nargs="+", default=["model", "pc", "ges"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    ap.add_argument("--rows", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--one", nargs=3, metavar=("METHOD", "D", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        m, d, n = args.one
        print(json.dumps(one(m, int(d), int(n), args.model)))
        return
    print(f"model: {args.model}; peak MB: rise of peak RSS over the loaded process\n")
    print("| d | n | method | seconds | first call s | peak MB |")
    print("|---|---|---|---|---|---|")
    over: set[tuple[str, int, int]] = set()  # (method, d, n) over the limit: larger ones are skipped
    for d in args.sizes:
        for n in args.rows:
            for m in args.methods:
                if any(m == m2 and d >= d2 and n >= n2 for m2, d2, n2 in over):
                    print(f"| {d} | {n} | {m} | > {args.limit} (not run: a smaller size was over) | | |", flush=True)
                    continue
                cmd = [sys.executable, __file__, "--model", args.model, "--one", m, str(d), str(n)]
                try:
                    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.limit + 60)
                    r = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
                except subprocess.TimeoutExpired:
                    r = "timeout"
                if r == "timeout" or (isinstance(r, dict) and r["seconds"] > args.limit):
                    over.add((m, d, n))
                    print(f"| {d} | {n} | {m} | > {args.limit} | | |", flush=True)
                elif r is None:
                    print(f"| {d} | {n} | {m} | failed: {done.stderr.strip().splitlines()[-1][:80]} | | |", flush=True)
                else:
                    first = f"{r['first_call_seconds']:.2f}" if "first_call_seconds" in r else ""
                    print(f"| {d} | {n} | {m} | {r['seconds']:.3g} | {first} | {r['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
