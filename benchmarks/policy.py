"""The GRPO-trained acquisition policy against random interventions (and EI) on held-out graphs.

Trains the policy (engine.cbo.grpo, through the model's trainer: resumable in --workdir) for at
most --steps updates or --minutes of wall time on 10-node linear-Gaussian ER graphs (expected
in-degree 1, coefficients +-U[0.5, 2], unit noise, standardised; n_obs 100; D_I one row on each
of 3 random nodes; the target a random node with parents), then runs --trials-trial episodes on
--graphs held-out graphs (another seed) with

- the policy, greedy (its most probable action) and sampled,
- random interventions (a uniform candidate at a uniform value of its observational range),
- "corr": a one-line heuristic, the candidate most correlated with the target in D_O at the
  end of its range that lowers the target by that correlation's sign (always the same action),

all in the same jitted episode loop (the surrogate: PARENT_SCALE's exact linear set posterior
under a uniform prior over sets of at most 2 parents, recomputed from the buffer), and, with
--ei-graphs > 0, PARENT_SCALE's expected improvement, the policy and random through the episode
runner (engine.cbo.episode, ExpertSurrogate with the same prior) on the first --ei-graphs graphs.

Scored on the exact objective f(v, x) = E[Y | do(X_v = x)] (closed form for linear SCMs,
engine.cbo.regret) in the target's observational standard units: simple regret after T trials
(best exact value among the T interventions minus the optimum over single-node interventions in
the observational box) and cumulative regret (sum over trials of f - f*), as means over graphs
with percentile-bootstrap 95% intervals; the paired differences to random are bootstrapped on
the same graphs. Also the GRPO reward per trial (improvement + info gain + parent hits, the
training weights) and the parent-hit rate.

    .venv/bin/python benchmarks/policy.py --minutes 10 --graphs 200 --ei-graphs 20
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path.home() / ".cache" / "acbo" / "jax"))

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from engine.cbo import environment, grpo, regret  # noqa: E402
from engine.cbo.strategy import Problem  # noqa: E402
from engine.spec.scm import ScmSpec  # noqa: E402
from engine.train.trainer import TrainingStopped  # noqa: E402


def scm_spec(nodes: int) -> ScmSpec:
    return ScmSpec.model_validate({
        "n_nodes": nodes, "n_obs": 100, "standardize": True,
        "graphs": [{"kind": "erdos_renyi", "edges_per_node": 1.0}],
        "mechanism": [{"kind": "linear", "coef": {"dist": "signed_uniform", "low": 0.5, "high": 2.0}}],
        "interventions": {"kind": "hard", "value": {"dist": "uniform", "low": -2.0, "high": 2.0},
                          "rows_per_node": 1, "count": 3},
    })


class CorrHeuristic(eqx.Module):
    """argmax_j |corr(X_j, Y)| in D_O, at the end of X_j's range that lowers Y if the
    correlation were causal (low for a positive correlation)."""

    def __call__(self, key, feats, problem: Problem):
        corr = feats[:, 2]  # FEATURE_NAMES: obs_corr
        var = jnp.argmax(jnp.where(problem.candidates, jnp.abs(corr), -1.0)).astype(jnp.int32)
        return var, jnp.where(corr[var] > 0, problem.low[var], problem.high[var])


def bootstrap(x: np.ndarray, n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """(mean, 2.5%, 97.5%) of the mean over graphs by the percentile bootstrap."""
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(1)
    return float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def fmt(stat) -> str:
    m, lo, hi = stat
    return f"{m:7.3f} [{lo:6.3f}, {hi:6.3f}]"


def pick(tree, g):
    return jax.tree.map(lambda a: a[g] if eqx.is_array(a) else a, tree)


def regrets(scms, datas, var, value) -> dict[str, np.ndarray]:
    """Per-graph simple regret after T and cumulative regret, exact, in the target's obs std."""
    simple, cumulative = [], []
    for g in range(var.shape[0]):
        scm, data = pick(scms, g), pick(datas, g)
        obs = np.asarray(data.obs)
        real = np.asarray(scm.var_mask)
        low, high = np.where(real, obs.min(0), 0.0), np.where(real, obs.max(0), 0.0)
        f_star = float(regret.optimum(scm, low, high).value)
        f = np.asarray(regret.exact_values(scm, var[g], value[g]))
        sd = float(obs[:, int(scm.target)].std())
        simple.append((f.min() - f_star) / sd)
        cumulative.append((f - f_star).sum() / sd)
    return {"simple": np.asarray(simple), "cumulative": np.asarray(cumulative)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--minutes", type=float, default=10.0, help="training wall budget")
    ap.add_argument("--graphs", type=int, default=200, help="held-out graphs")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--ei-graphs", type=int, default=0, help="graphs for EI through the episode runner (slow)")
    ap.add_argument("--outcome-samples", type=int, default=16)
    ap.add_argument("--workdir", default="/tmp/acbo_policy_bench")
    ap.add_argument("--boot", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    spec = scm_spec(args.nodes)
    cfg = grpo.GRPOConfig(steps=args.steps, graphs_per_step=16, group_size=8, episode_length=args.trials,
                          epochs=2, outcome_samples=args.outcome_samples, log_every=50, checkpoint_every=250,
                          seed=args.seed)
    print(f"GRPO on {args.nodes}-node linear ER graphs: {cfg}", flush=True)
    started = time.perf_counter()
    stopped = None
    try:
        policy, _ = grpo.train(cfg, spec, Path(args.workdir), deadline=time.time() + 60 * args.minutes,
                               warn=lambda m: None)
    except TrainingStopped as exc:  # the budget: evaluate the checkpoint it saved
        stopped = str(exc)
        trainer = grpo.make_trainer(cfg)
        from engine.train import checkpoint

        like = trainer.init(jax.random.split(jax.random.PRNGKey(cfg.seed))[0], grpo.make_phases(cfg, spec)[0].source)
        policy = checkpoint.latest(Path(args.workdir) / "checkpoints", like)[1].model
    wall = time.perf_counter() - started
    log = [json.loads(line) for line in (Path(args.workdir) / "metrics.jsonl").read_text().splitlines()]
    print(f"training: {log[-1]['step']} steps in {wall:.0f} s this call{' (' + stopped + ')' if stopped else ''}")
    print("  step   reward  improve   info    hit  entropy clip_frac")
    for r in [log[i] for i in sorted(set(np.linspace(0, len(log) - 1, min(12, len(log))).astype(int)))]:
        print(f"  {r['step']:5d} {r['reward']:7.3f} {r['improve']:7.3f} {r['info']:7.3f} {r['hit']:6.3f} "
              f"{r['entropy']:7.3f} {r['clip_frac']:7.3f}")

    from engine.scm.simulator import Simulator

    scms, datas = Simulator(spec, devices=jax.devices()[:1])(jax.random.PRNGKey(10_000 + args.seed), args.graphs)
    key = jax.random.PRNGKey(7)
    methods = {"policy (greedy)": environment.Choice(policy, True), "policy (sampled)": environment.Choice(policy, False),
               "random": environment.Choice(None), "corr heuristic": CorrHeuristic()}
    results = {}
    for name, choice in methods.items():
        ep = environment.evaluate(choice, scms, datas, key, cfg)
        res = regrets(scms, datas, np.asarray(ep.var), np.asarray(ep.value))
        res["reward"] = environment.mean_reward(ep)
        res["hit"] = np.asarray(ep.hit).mean(-1)
        results[name] = res
    n = args.graphs
    print(f"\nheld-out: {n} graphs x {args.trials} trials (jitted loop, linear-Bayes set posterior); "
          "means over graphs [95% bootstrap]")
    print(f"  {'method':18s} {'simple regret':>26s} {'cumulative regret':>26s} {'reward/trial':>26s} {'hit':>6s}")
    for name, r in results.items():
        print(f"  {name:18s} {fmt(bootstrap(r['simple'], args.boot))} {fmt(bootstrap(r['cumulative'], args.boot))} "
              f"{fmt(bootstrap(r['reward'], args.boot))} {r['hit'].mean():6.3f}")
    base = results["random"]
    print("  paired difference to random (negative regret = better):")
    for name, r in results.items():
        if name != "random":
            print(f"  {name:18s} {fmt(bootstrap(r['simple'] - base['simple'], args.boot))} "
                  f"{fmt(bootstrap(r['cumulative'] - base['cumulative'], args.boot))} "
                  f"{fmt(bootstrap(r['reward'] - base['reward'], args.boot))}")

    if args.ei_graphs > 0:
        runner(args, cfg, policy, scms, datas)


def runner(args, cfg, policy, scms, datas):
    """EI, the policy and random through engine.cbo.episode on the first --ei-graphs graphs."""
    try:
        from engine.cbo.acquisitions import ExpectedImprovement, RandomAcquisition
        from engine.cbo.episode import run_episodes
        from engine.cbo.surrogates import ExpertSurrogate
    except ImportError as exc:
        print(f"\nEI skipped: {exc}")
        return
    from engine.cbo.learned import LearnedPolicy
    from engine.spec.expert import ParentScaleExpert

    n = min(args.ei_graphs, args.graphs)
    ps = ParentScaleExpert(kind="parent_scale", n_trials=args.trials, outcome_samples=args.outcome_samples,
                           prior={"kind": "uniform", "max_parents": cfg.max_parents})
    sub = pick(scms, slice(0, n)), pick(datas, slice(0, n))
    out = {}
    for name, acq in [("EI (PARENT_SCALE)", ExpectedImprovement(ps)), ("policy (greedy)", LearnedPolicy(policy, True)),
                      ("random", RandomAcquisition())]:
        t = time.perf_counter()
        eps = run_episodes(jax.random.PRNGKey(11), *sub, ExpertSurrogate(ps), acq, args.trials, args.outcome_samples)
        var = np.stack([np.asarray(e.trial_var) for e in eps])
        value = np.stack([np.asarray(e.trial_value) for e in eps])
        out[name] = regrets(*sub, var, value)
        out[name]["seconds"] = (time.perf_counter() - t) / (n * args.trials)
    print(f"\nepisode runner: {n} graphs x {args.trials} trials, ExpertSurrogate (uniform prior, <= {cfg.max_parents} "
          "parents); means [95% bootstrap]")
    print(f"  {'method':18s} {'simple regret':>26s} {'cumulative regret':>26s} {'s/trial':>8s}")
    for name, r in out.items():
        print(f"  {name:18s} {fmt(bootstrap(r['simple'], args.boot))} {fmt(bootstrap(r['cumulative'], args.boot))} "
              f"{r['seconds']:8.3f}")
    base = out["EI (PARENT_SCALE)"]
    for name, r in out.items():
        if name != "EI (PARENT_SCALE)":
            print(f"  {name} - EI (paired): simple {fmt(bootstrap(r['simple'] - base['simple'], args.boot))}, "
                  f"cumulative {fmt(bootstrap(r['cumulative'] - base['cumulative'], args.boot))}")


if __name__ == "__main__":
    main()
