"""The real PARENT_SCALE on a phase spec's graph distribution: seconds per graph, projected stage time.

Draws --graphs graphs from the spec's [scm] (default specs/phase2a.toml: linear ER, 3-8 nodes,
n_obs 200, 2 hard interventional rows per node) with acbo's simulator, then per graph:

- the doubly-robust prior alone (`compute_prior`, jitted);
- the whole run (`expert.run`: prior, posterior over D_I, set GPs, the trials), as the expert
  stage's workers run it.
Both first run graph 0 once untimed (the compile, reported apart), then time every graph warm.

Times are process CPU seconds (core-seconds; pin with `taskset -c 0` so that this is also the
wall time of one worker) and wall seconds. "trials" is the whole run minus the prior. The
projection for --project graphs on --workers worker processes is
  compile (paid once per worker) + graphs * run core-s / workers.

The expert defaults to the spec's [expert]; --bootstrap, --trials, --outcome-samples,
--anchors, --opt-steps override its settings (a spec without the DR prior gets it with --dr);
--set overrides any spec key (e.g. --set scm.n_nodes=20 for larger graphs).

    taskset -c 0 .venv/bin/python benchmarks/expert_phase.py --graphs 8
"""

from __future__ import annotations

import argparse
import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from engine.compiles import compile_seconds  # noqa: E402
from engine.expert.loop import index_graph  # noqa: E402
from engine.expert.parent_scale import compute_prior  # noqa: E402
from engine.scm import simulate  # noqa: E402
from engine.spec.loader import load  # noqa: E402



def _clock():
    return time.process_time(), time.perf_counter()


def _since(t0):
    c, w = _clock()
    return c - t0[0], w - t0[1]


def expert_spec(args):
    spec = load(args.spec, args.set).spec
    ex = spec.expert
    upd = {}
    if args.dr or ex.prior.kind != "doubly_robust":
        prior = {"kind": "doubly_robust", "mode": "joint"}
    else:
        prior = ex.prior.model_dump()
    if args.bootstrap:
        prior["n_bootstrap"] = args.bootstrap
    upd["prior"] = type(ex).model_validate({**ex.model_dump(), "prior": prior}).prior
    for name, val in (("n_trials", args.trials), ("outcome_samples", args.outcome_samples),
                      ("n_anchors", args.anchors), ("opt_steps", args.opt_steps)):
        if val is not None:
            upd[name] = val
    return spec, ex.model_copy(update=upd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="specs/phase2a.toml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="spec override, as `acbo --set` (e.g. scm.n_nodes=20)")
    ap.add_argument("--graphs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dr", action="store_true", help="use the DR prior (joint) even if the spec has another")
    ap.add_argument("--bootstrap", type=int)
    ap.add_argument("--trials", type=int)
    ap.add_argument("--outcome-samples", type=int)
    ap.add_argument("--anchors", type=int)
    ap.add_argument("--opt-steps", type=int)
    ap.add_argument("--skip-prior", action="store_true", help="time only the whole run")
    ap.add_argument("--project", type=int, default=100, help="graphs in the projection")
    ap.add_argument("--workers", type=int, default=2, help="worker processes in the projection")
    args = ap.parse_args()

    spec, ex = expert_spec(args)
    print(f"expert: prior {ex.prior.model_dump()}")
    print(f"        n_trials {ex.n_trials}, outcome_samples {ex.outcome_samples}, n_anchors {ex.n_anchors}, "
          f"opt_steps {ex.opt_steps}")
    scms, datas = simulate(spec.scm, jax.random.key(args.seed), args.graphs)
    nodes = np.asarray(scms.var_mask).sum(1)
    print(f"{args.graphs} graphs from {args.spec} [scm], nodes {nodes.tolist()}, padded d = {scms.var_mask.shape[1]}, "
          f"{datas.int_values.shape[1]} D_I rows (padded)")
    expert = ex.build()
    keys = [jax.random.fold_in(jax.random.PRNGKey(1), g) for g in range(args.graphs)]

    # graph 0 once untimed first: it compiles, and the compile is reported apart in core-s (the
    # compile events' durations are wall seconds, inflated on a shared machine)
    prior_s, prior_compile = [], 0.0
    if not args.skip_prior and ex.prior.kind == "doubly_robust":
        fn = jax.jit(lambda k, o, m, t: compute_prior(ex, k, o, m, t))
        args0 = (keys[0], datas.obs[0], scms.var_mask[0], scms.target[0])
        t0 = _clock()
        jax.block_until_ready(fn(*args0))
        prior_compile = _since(t0)[0]
        for g in range(args.graphs):
            t0 = _clock()
            jax.block_until_ready(fn(keys[g], datas.obs[g], scms.var_mask[g], scms.target[g]))
            cpu, wall = _since(t0)
            prior_s.append((cpu, wall))
            print(f"  prior  graph {g} (d={nodes[g]}): {cpu:6.2f} core-s {wall:6.2f} wall-s")

    t0 = _clock()
    jax.block_until_ready(expert.run(keys[0], index_graph(scms, 0), index_graph(datas, 0)))
    first = _since(t0)[0]
    run_s = []
    for g in range(args.graphs):
        c0 = compile_seconds()
        t0 = _clock()
        tr = jax.block_until_ready(expert.run(keys[g], index_graph(scms, g), index_graph(datas, g)))
        cpu, wall = _since(t0)
        run_s.append((cpu, wall))
        alive = int((np.asarray(tr.set_probs)[-1] > 0).sum())
        comp = compile_seconds() - c0
        print(f"  run    graph {g} (d={nodes[g]}): {cpu:6.2f} core-s {wall:6.2f} wall-s, {alive} sets alive at the end"
              + (f" (compiled {comp:.1f} s: a new shape)" if comp > 0.05 else ""))
    run_compile = max(first - run_s[0][0], 0.0)  # the warm-up's extra core-s: compile and tracing

    run = np.asarray(run_s)
    print()
    print(f"whole run: {run[:, 0].mean():.2f} core-s/graph (median {np.median(run[:, 0]):.2f}, max {run[:, 0].max():.2f}), "
          f"{run[:, 1].mean():.2f} wall-s/graph; first graph's compile {run_compile:.1f} core-s")
    total = run[:, 0].mean()
    if prior_s:
        pr = np.asarray(prior_s)
        print(f"prior:     {pr[:, 0].mean():.2f} core-s/graph (median {np.median(pr[:, 0]):.2f}, max {pr[:, 0].max():.2f}); "
              f"first call {prior_compile:.1f} core-s (compile included)")
        print(f"trials:    {total - pr[:, 0].mean():.2f} core-s/graph (whole run minus prior: D_I posterior, set GPs, "
              f"{ex.n_trials} trials)")
    proj = run_compile + args.project * total / args.workers
    print(f"projected: {args.project} graphs on {args.workers} workers: {proj / 60:.1f} min "
          f"({run_compile:.0f} s compile per worker + {args.project} x {total:.2f} / {args.workers})")


if __name__ == "__main__":
    main()
