"""PARENT_SCALE expert benchmark: prior time per bootstrap, per-trial time, optimisation quality.

For d in --dims: --graphs linear ER graphs (expected degree 1, weights N(2, 1), unit noise, the
last node is the target; graphs where it has no parent are redrawn), n_obs 200, D_I = 2 rows per
non-target variable with values U[-5, 5]. Prints the doubly-robust prior's time per bootstrap
(compile excluded), PARENT_SCALE's per-trial time, and the gap to the true optimum
(min over single-node interventions in D_O's range, exact for linear SCMs) after T trials for
PARENT_SCALE, the oracle and random, on the same graphs. Reference (original code, 2-core CPU):
~130 s/bootstrap at d=10, ~230 s at d=20; 6-45 s per trial.

    .venv/bin/python benchmarks/expert.py --dims 5 10 20 --graphs 3 --trials 10
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from engine.expert.toy import make_dataset, random_linear_scm
from engine.spec.expert import DoublyRobustPrior, OracleExpert, ParentScaleExpert, RandomExpert


def graphs(d: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        scm = random_linear_scm(rng, d)
        if np.asarray(scm.adjacency)[:, d - 1].sum() > 0:
            out.append((scm, make_dataset(scm, jax.random.PRNGKey(len(out) + 100 * d))))
    return out


def optimum(scm, data) -> float:
    lo, hi = np.asarray(data.obs).min(0), np.asarray(data.obs).max(0)
    d = lo.shape[0]
    return min(min(scm.do_mean(v, lo[v]), scm.do_mean(v, hi[v])) for v in range(d) if v != int(scm.target))


def prior_time(d: int, mode: str, n_boot: int) -> float:
    from engine.expert.prior_dr import doubly_robust_prior

    scm, data = graphs(d, 1, 7)[0]
    pr = DoublyRobustPrior(kind="doubly_robust", mode=mode, n_bootstrap=n_boot)
    f = jax.jit(lambda k, o: doubly_robust_prior(pr, k, o, scm.var_mask, scm.target))
    jax.block_until_ready(f(jax.random.PRNGKey(0), data.obs))  # compile
    t = time.perf_counter()
    jax.block_until_ready(f(jax.random.PRNGKey(1), data.obs))
    return (time.perf_counter() - t) / n_boot


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--graphs", type=int, default=3)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--max-parents", type=int, default=2)
    ap.add_argument("--bootstraps", type=int, default=2)
    ap.add_argument("--skip-prior", action="store_true")
    a = ap.parse_args()
    print(f"{'d':>3} {'prior s/boot':>13} {'PS s/trial':>11} {'gap PS':>8} {'gap oracle':>11} {'gap random':>11} {'PS<=1% oracle':>14}")
    for d in a.dims:
        pt = float("nan") if a.skip_prior else prior_time(d, "joint", a.bootstraps)
        ps = ParentScaleExpert(kind="parent_scale", n_trials=a.trials,
                               prior={"kind": "uniform", "max_parents": a.max_parents}).build()
        orc = OracleExpert(kind="oracle", n_trials=a.trials).build()
        rnd = RandomExpert(kind="random", n_trials=a.trials).build()
        gaps = {"ps": [], "oracle": [], "random": []}
        per_trial, close = [], 0
        for g, (scm, data) in enumerate(graphs(d, a.graphs + 1, d)):
            key = jax.random.PRNGKey(g)
            opt = optimum(scm, data)
            t = time.perf_counter()
            tr = ps.run(key, scm, data)
            el = time.perf_counter() - t
            best = {"ps": float(tr.best_y[-1]), "oracle": float(orc.run(key, scm, data).best_y[-1]),
                    "random": float(rnd.run(key, scm, data).best_y[-1])}
            if g == 0:
                continue  # warm-up graph: compiles
            per_trial.append(el / a.trials)
            for k, v in best.items():
                gaps[k].append(v - opt)
            close += best["ps"] <= best["oracle"] + 0.01 * abs(best["oracle"])
        print(f"{d:>3} {pt:>13.2f} {np.mean(per_trial):>11.2f} {np.mean(gaps['ps']):>8.3f} "
              f"{np.mean(gaps['oracle']):>11.3f} {np.mean(gaps['random']):>11.3f} {close:>11d}/{a.graphs}", flush=True)


if __name__ == "__main__":
    main()
