"""What each stage writes, in bytes, from the shapes of its arrays (the plan's storage price).

The trajectories and demonstrations are sized exactly, the evaluation record and training logs
approximately; stages read from other specs are theirs and absent.
"""

from __future__ import annotations

import math

from engine.plan import PlannedStage, stage_graphs
from engine.spec.loader import SpecFile

# Bytes each stage writes, from the shapes of its arrays (dtype sizes below), plus the formats'
# own overhead: an .npy header is 128 bytes; an .npz member ~224 bytes of zip headers and its
# .npy header plus twice its name, 22 per archive; equinox's leaf files an .npy header per leaf.
_NPY = 128
_F4, _I4, _B1, _F8 = 4, 4, 1, 8


def _npz(members: dict[str, int]) -> int:
    """An uncompressed .npz of arrays of these byte sizes (names without .npy)."""
    return 22 + sum(224 + 2 * (len(name) + 4) + nbytes for name, nbytes in members.items())


def _manifest(n_files: int) -> int:
    return 300 + 90 * n_files


_TRACED: dict[str, tuple[int, int]] = {}


def _leaf_bytes(tree) -> tuple[int, int]:
    import jax

    leaves = [a for a in jax.tree_util.tree_leaves(tree) if hasattr(a, "shape") and hasattr(a, "dtype")]
    return sum(math.prod(a.shape) * a.dtype.itemsize for a in leaves), len(leaves)


def _scm_leaves(scm) -> tuple[int, int]:
    """(bytes, leaves) of one graph's SCM and dataset as the simulate stage saves them: traced
    (jax.eval_shape, nothing simulated) from the simulator as engine.scm.io.load does."""
    ident = "scm:" + scm.model_dump_json()
    if ident not in _TRACED:
        import equinox as eqx
        import jax

        from engine.scm.simulator import _simulator

        sim = _simulator(scm, None)
        key = jax.eval_shape(lambda: jax.random.key(0))
        scm_, data, _ = eqx.filter_eval_shape(lambda k: sim.one(k, None), key)
        _TRACED[ident] = _leaf_bytes((scm_, data))
    return _TRACED[ident]


def _simulate_bytes(scm, n: int) -> int:
    d, n_obs, n_int = scm.max_nodes, scm.n_obs, scm.n_int
    try:
        per_graph, leaves = _scm_leaves(scm)
    except Exception:  # noqa: BLE001 - a simulator that cannot trace here: the linear SCM's leaves
        per_graph = (n_obs + n_int) * d * _F4 + n_int * (d + 1) * _B1 + 2 * d * d * _F4 + 8 * d * _F4
        leaves = 15
    eqx_file = 80 + n * per_graph + leaves * _NPY
    graphs = _npz({"adjacency": n * d * d * _I4, "var_mask": n * d * _B1, "target": n * _I4,
                   "parents": n * d * _B1, "obs": n * n_obs * d * _F4})
    return eqx_file + graphs + _manifest(2)


def _parent_sets(expert, d: int) -> tuple[int, int]:
    """(S, k) of the expert's candidate parent sets at d variables (engine.expert.sets and the
    doubly-robust prior's [n_bootstrap + d, min(max_parents, d)]); the oracle's and random's
    beliefs hold one set."""
    prior = getattr(expert, "prior", None)
    if prior is None:
        return 1, max(1, d)
    if prior.kind == "doubly_robust":
        return prior.n_bootstrap + d, min(prior.max_parents, d)
    if prior.kind == "uniform_singletons":
        return d, 1
    m = max(1, min(prior.max_parents, d))
    return sum(math.comb(d, j) for j in range(m + 1)), m


def trajectory_rows(scm, expert, observational: bool = False) -> int:
    """K, the expert's trajectory rows: D_I's interventional rows (kept, masked, when the stage is
    observational) and one per trial."""
    return scm.n_int + (0 if observational else getattr(expert, "n_trials", 0))


def trajectory_fields(scm, expert, observational: bool = False) -> dict[str, int]:
    """Bytes of each array of one graph's expert trajectory (engine.expert.types.Trajectory, and
    the runner's per-graph times)."""
    d, T = scm.max_nodes, (0 if observational else getattr(expert, "n_trials", 0))
    K = trajectory_rows(scm, expert, observational)
    S, k = _parent_sets(expert, d)
    return {"rows_values": K * d * _F4, "rows_mask": K * d * _B1, "rows_valid": K * _B1,
            "marginals": (K + 1) * d * _F4, "set_probs": (K + 1) * S * _F4, "sets": S * k * _I4,
            "n_init": _I4, **{f: T * 4 for f in ("trial_var", "trial_value", "trial_y", "best_y", "cost")},
            "run_seconds": _F8, "compile_seconds": _F8}


def _expert_bytes(scm, expert, n: int, observational: bool = False) -> int:
    """One checksummed file per graph (graphs/graph_000000.npz, kept for resume) and their merge
    (trajectories.npz)."""
    fields = trajectory_fields(scm, expert, observational)
    per_graph = _npz({**fields, "__sha256__": 256})
    merged = _npz({name: n * nbytes for name, nbytes in fields.items()})
    return n * per_graph + merged + _manifest(1)


def _demonstrations_bytes(spec) -> int:
    """One .npy per field and split (engine.data.demos.Demonstrations' shapes)."""
    from engine.spec.data import split_counts

    scm, d = spec.scm, spec.scm.max_nodes
    K = trajectory_rows(scm, spec.expert)
    total, files = 0, 0
    for G in split_counts(spec.data.n_graphs, spec.data.split.model_dump()).values():
        N = G * spec.data.demos_per_graph
        fields = [G * scm.n_obs * d * _F4, G * K * d * _F4, G * K * d * _B1, G * K * _B1,
                  G * d * _B1, G * _I4, G * d * _B1, G * _I4, N * _I4, N * _I4, N * d * _F4,
                  G * d * d * _B1]  # obs, rows_values, rows_mask, rows_valid, var_mask, target,
        # parents, graph_id, demo_graph, demo_k, expert, adjacency
        total += sum(fields) + _NPY * len(fields)
        files += len(fields)
    return total + _manifest(files)


def _model_leaves(model) -> tuple[int, int]:
    """(bytes, leaves) of a model's parameters, traced from its constructor (no arrays made)."""
    ident = "model:" + model.model_dump_json()
    if ident not in _TRACED:
        import equinox as eqx
        import jax

        _TRACED[ident] = _leaf_bytes(eqx.filter_eval_shape(model.build, jax.random.key(0)))
    return _TRACED[ident]


def _train_bytes(spec) -> int:
    """model.eqx, the newest `keep` checkpoints (parameters, Adam's two moments, EMA ones), the
    best model with early stopping, metrics.jsonl (~190 bytes a line) and TensorBoard events."""
    train, model = spec.train, spec.model
    try:
        params, leaves = _model_leaves(model)
    except Exception:  # noqa: BLE001 - a model that cannot trace here: its blocks' dim x dim weights
        params, leaves = 4 * (12 * model.dim**2 * max(model.layers, 1) + 64 * model.dim), 10
    weights = params + leaves * _NPY
    copies = 3 + (1 if train.ema is not None else 0)  # parameters, Adam's mu and nu, EMA
    n_ckpt = max(1, min(train.keep, train.steps // train.checkpoint_every))
    best = weights if train.early_stopping is not None else 0
    lines = train.steps // train.log_every + 1
    logs = 190 * lines + 2500 + 200 * lines  # metrics.jsonl, TensorBoard's events
    return weights + n_ckpt * (copies * weights + 400) + best + logs + _manifest(2)


def _evaluate_bytes(spec) -> int:
    """evaluation.npz (per stage the truth, and per side parent probabilities, predictions and
    seconds; whole-graph scores for the baselines) and evaluation.json (~2.2 KB of summaries a
    side, each metric with its interval)."""
    models = 1 + len(spec.evaluation.models)
    arrays, json_bytes = {}, 1500
    for st in spec.evaluation_stages():
        n, d = stage_graphs(spec, st), (st.scm or spec.scm).max_nodes
        sides = {**{f"model{i}": 0 for i in range(models)}, "expert": 0, **{b: 1 for b in st.baselines}}
        arrays.update({f"{st.name}/{f}": n * d * _B1 for f in ("truth", "mask", "var_mask")})
        arrays.update({f"{st.name}/adjacency": n * d * d * _B1, f"{st.name}/target": n * 8,
                       f"{st.name}/expert_run_seconds": n * _F8, f"{st.name}/expert/map_pred": n * d * _F8})
        for side, graphs in sides.items():
            arrays.update({f"{st.name}/{side}/probs": n * d * _F8, f"{st.name}/{side}/pred": n * d * _F8,
                           f"{st.name}/{side}/seconds": n * _F8})
            if graphs:
                arrays.update({f"{st.name}/{side}/graph_scores": n * d * d * _F8,
                               f"{st.name}/{side}/graph_pred": n * d * d * _F8})
        json_bytes += 800 + 2200 * len(sides)
    for p in spec.optimize_problems():  # each problem joins the record as a stage
        json_bytes += 800 + 2200 * len(spec.optimize.strategies)
    return _npz(arrays) + json_bytes + _manifest(2)


def _episode_fields(T: int, d: int) -> dict[str, int]:
    return {**{f: T * 4 for f in ("trial_var", "trial_value", "trial_y", "best_y", "trial_seconds")},
            "marginals": (T + 1) * d * _F4, "entropy": (T + 1) * _F4, "init_seconds": _F4,
            "seconds": _F8, "compile_seconds": _F8}


def _optimize_bytes(spec, problem) -> int:
    """One checksummed file per (strategy, graph) episode, kept for resume, and their merge."""
    T, d, n = spec.optimize.n_trials, problem.scm.max_nodes, problem.n_graphs
    fields = _episode_fields(T, d)
    per_episode = _npz({**fields, "__sha256__": 256})
    merged = {f"{s.name}/{f}": n * b for s in spec.optimize.strategies for f, b in fields.items()}
    merged.update({f"optimum{i}": n * _F8 for i in range(8)})  # the reference optima, per graph
    return len(spec.optimize.strategies) * n * per_episode + _npz(merged) + _manifest(1)


def _policy_bytes(pol) -> int:
    """Rough: policy.eqx (~12 dim^2 weights a layer) and its checkpoints (~15 copies measured on
    phase4_integration's), metrics.jsonl."""
    weights = 4 * (12 * pol.dim**2 * pol.layers + 64 * pol.dim)
    return 15 * weights + 200 * pol.steps // 10 + _manifest(2)


def storage_estimates(spec_file: SpecFile, stages: dict[str, PlannedStage]) -> dict[str, int]:
    """Bytes each stage owned by this spec writes into the registry (stages read from other specs
    are theirs: absent). Shapes from the spec; the trajectories and demonstrations exactly, the
    evaluation record and the training logs approximately."""
    spec = spec_file.spec
    out: dict[str, int] = {}
    by_stage = {st.name: st for st in spec.evaluation_stages()}
    problems = {p.name: p for p in spec.optimize_problems()}
    for name, stage in stages.items():
        if stage.owner != spec.name:
            continue
        base, _, sub = name.partition(".")
        if name == "simulate":
            out[name] = _simulate_bytes(spec.scm, spec.data.n_graphs)
        elif name == "expert":
            out[name] = _expert_bytes(spec.scm, spec.expert, spec.data.n_graphs)
        elif name == "demonstrations":
            out[name] = _demonstrations_bytes(spec)
        elif name == "train" and spec.trains:
            out[name] = _train_bytes(spec)
        elif name == "evaluate":
            out[name] = _evaluate_bytes(spec)
        elif name == "policy" and spec.policy is not None:
            out[name] = _policy_bytes(spec.policy)
        elif base == "simulate" and sub in by_stage:
            st = by_stage[sub]
            out[name] = _simulate_bytes(st.scm or spec.scm, stage_graphs(spec, st))
        elif base == "simulate" and sub in problems:
            out[name] = _simulate_bytes(problems[sub].scm, problems[sub].n_graphs)
        elif base == "expert" and sub in by_stage:
            st = by_stage[sub]
            out[name] = _expert_bytes(st.scm or spec.scm, st.expert, stage_graphs(spec, st), st.observational)
        elif base == "optimize" and sub in problems:
            out[name] = _optimize_bytes(spec, problems[sub])
    return out
