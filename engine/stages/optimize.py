"""Stage optimize.<problem>: every [optimize] strategy runs one causal-BO episode per held-out
graph of the problem; the regret reference (optimum) and start (y0) per graph beside them.

One checksummed artifact per (strategy, graph) in the stage's work directory, so an interrupted
stage resumes with the episodes not yet on disk; episode g of every strategy has the key
fold_in(key, g) (the same outcome noise where two strategies choose alike). Episodes run in
worker processes or Ray tasks ([hardware] backend), the strategies of one graph interleaved,
each timed in its worker with its compile apart.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from engine.compiles import compile_seconds
from engine.expert.backends import JobsFailed
from engine.expert.loop import index_graph
from engine.expert.runner import load_arrays, save_arrays
from engine.plan import local_workers
from engine.registry import arrays_to_bytes, write_atomic
from engine.stages import simulate
from engine.stages.context import StageContext

EPISODE_FIELDS = ("trial_var", "trial_value", "trial_y", "best_y", "marginals", "entropy", "trial_seconds",
                  "init_seconds")


def _model_bytes(ctx: StageContext, name: str | None):
    """(bytes, model spec) of the trained model a strategy reads."""
    from engine.spec.loader import sibling
    from engine.stages.evaluate import trained_spec

    stage = "train" if name is None else f"train.{name}"
    owner = trained_spec(ctx.plan.spec_file if name is None else sibling(ctx.plan.spec_file, name)).spec
    return ctx.dir(stage).read_bytes("model.eqx"), owner.model


def _episode(args):
    """One (strategy, graph) episode in a worker; writes its artifact."""
    from engine.cbo.episode import run_episode
    from engine.train.host import load_model

    strategy, expert, model, policy, key, scm, data, n_trials, path = args
    model = load_model(model[0], model[1]) if model is not None else None
    if policy is not None:
        from engine.stages.policy import load_policy

        policy = load_policy(*policy)
    surrogate, acquisition = strategy.build(expert, model, policy)
    c0, t0 = compile_seconds(), time.perf_counter()
    ep = jax.block_until_ready(run_episode(key, scm, data, surrogate, acquisition, n_trials,
                                           expert.outcome_samples))
    seconds = time.perf_counter() - t0
    arrays = {f: np.asarray(getattr(ep, f)) for f in EPISODE_FIELDS}
    save_arrays(Path(path), {**arrays, "seconds": seconds, "compile_seconds": compile_seconds() - c0})
    return path


def run(ctx: StageContext, problem) -> dict:
    from engine.cbo.episode import problem_of
    from engine.cbo.regret import optimum

    spec, opt = ctx.spec, ctx.spec.optimize
    name = f"optimize.{problem.name}"
    scms, data = simulate.load(ctx, f"simulate.{problem.name}", problem.scm, problem.n_graphs)
    out = ctx.dir(name)
    work = out.work_dir()
    (work / "episodes").mkdir(parents=True, exist_ok=True)
    n = problem.n_graphs
    key = ctx.key("optimize", problem.seed)
    models = {m: _model_bytes(ctx, m) for m in opt.models()}
    policy = None
    if opt.uses_policy():
        policy = (ctx.dir("policy").read_bytes("policy.eqx"), spec.policy)
    path = lambda s, g: work / "episodes" / f"{s}_{g:06d}.npz"  # noqa: E731
    jobs = []
    for g in range(n):  # a graph's strategies side by side: they share the machine's state
        scm_g, data_g = jax.device_get(index_graph(scms, g)), jax.device_get(index_graph(data, g))
        for s in opt.strategies:
            if load_arrays(path(s.name, g)) is None:
                model = models[s.surrogate.model] if s.surrogate.kind == "model" else None
                use_policy = policy if s.acquisition.kind == "policy" else None
                jobs.append((s, spec.expert, model, use_policy, jax.random.fold_in(key, g), scm_g, data_g,
                             opt.n_trials, str(path(s.name, g))))
    total = n * len(opt.strategies)
    ctx.progress.start(f"optimize {problem.name}: {len(opt.strategies)} strategies x {n} graphs", total)
    done = total - len(jobs)
    started = time.perf_counter()
    workers = min(local_workers(), max(len(jobs), 1))
    try:
        for _ in spec.hardware.build_backend().map(_episode, jobs, workers):
            done += 1
            ctx.progress.advance(done, f"{done}/{total} episodes")
    except JobsFailed as exc:
        failed = [Path(jobs[i][-1]).stem for i, _ in exc.failed]
        raise RuntimeError(f"{name}: {len(failed)} episode(s) failed {failed[:5]} ({exc}); the others are "
                           "written, so a rerun computes only these") from exc

    merged: dict[str, np.ndarray] = {}
    for s in opt.strategies:
        eps = [load_arrays(path(s.name, g)) for g in range(n)]
        bad = [g for g, e in enumerate(eps) if e is None]
        if bad:
            raise ValueError(f"{name}: episodes of {s.name} missing or damaged: graphs {bad[:5]}")
        for f in EPISODE_FIELDS + ("seconds", "compile_seconds"):
            merged[f"{s.name}/{f}"] = np.stack([np.asarray(e[f]) for e in eps])
    best, exact, stderr, y0 = [], [], [], []
    for g in range(n):  # over the box the strategies search: each variable's observational range
        scm_g, data_g = index_graph(scms, g), index_graph(data, g)
        box = problem_of(scm_g, data_g, opt.n_trials)
        o = optimum(scm_g, box.low, box.high, jax.random.fold_in(key, n + g), opt.optimum.mc_samples,
                    opt.optimum.grid)
        best.append(float(o.value)), exact.append(bool(o.exact)), stderr.append(float(o.stderr))
        y0.append(float(np.asarray(data_g.obs)[:, int(scm_g.target)].mean()))
    merged["optimum"], merged["y0"] = np.asarray(best), np.asarray(y0)
    merged["optimum_exact"], merged["optimum_stderr"] = np.asarray(exact), np.asarray(stderr)
    graphs = ctx.dir(f"simulate.{problem.name}").read_arrays("graphs.npz")
    for k in ("adjacency", "var_mask", "target", "parents"):
        merged[k] = graphs[k]
    write_atomic(work / "episodes.npz", arrays_to_bytes(merged))
    meta = {"seconds": time.perf_counter() - started, "strategies": [s.name for s in opt.strategies],
            "n_graphs": n, "n_trials": opt.n_trials}
    out.commit(["episodes.npz"], meta)
    return meta
