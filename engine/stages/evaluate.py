"""Stage 5, evaluate: every evaluation stage's graphs, every method, one typed record.

The stages are the spec's `[[evaluation.stages]]` (default: this spec's held-out split). A stage
with graphs of its own reads them from its `simulate.<name>` and `expert.<name>` stages. The
procedure is `engine.evaluate.procedure`; the record (`engine.evaluate.record`) keeps every
prediction, so gates and reports never recompute anything but through the metric catalog.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.data.demos import split_graphs
from engine.evaluate.estimate import summarise
from engine.evaluate.procedure import ModelUnderTest, StageInputs, evaluate_stage
from engine.evaluate.record import Evaluation, StageResult
from engine.plan import own_split
from engine.registry import StageDir, arrays_to_bytes, write_atomic, write_json
from engine.stages.context import StageContext
from engine.train.host import load_model


def _trains_graph_head(loss) -> bool:
    return loss is not None and loss.graph_weight > 0


def _model(stage: StageDir, spec) -> ModelUnderTest:
    model = load_model(stage.read_bytes("model.eqx"), spec.model, stage.final / "model.eqx")
    return ModelUnderTest(model, _trains_graph_head(spec.loss))


def _inputs(ctx: StageContext, st) -> StageInputs:
    spec = ctx.spec
    if own_split(spec, st):
        graphs = ctx.dir("simulate").read_arrays("graphs.npz")
        traj = ctx.dir("expert").read_arrays("trajectories.npz")
        ids = split_graphs(len(graphs["target"]), spec.data.split.model_dump(), spec.seed)["heldout"]
    else:
        graphs = ctx.dir(f"simulate.{st.name}").read_arrays("graphs.npz")
        traj = ctx.dir(f"expert.{st.name}").read_arrays("trajectories.npz")
        ids = np.arange(len(graphs["target"]))
    sets = traj["sets"] if traj["sets"].ndim == 3 else np.broadcast_to(traj["sets"], (len(graphs["target"]),) + traj["sets"].shape)
    # The expert's whole run per graph, its worker's one-off compile apart.
    run_seconds = traj["run_seconds"] if "run_seconds" in traj else np.full(len(graphs["target"]), np.nan)
    if "compile_seconds" in traj:
        run_seconds = run_seconds - np.nan_to_num(traj["compile_seconds"])
    return StageInputs(
        obs=graphs["obs"][ids], rows_values=traj["rows_values"][ids], rows_mask=traj["rows_mask"][ids],
        rows_valid=traj["rows_valid"][ids], var_mask=graphs["var_mask"][ids].astype(bool),
        target=graphs["target"][ids], adjacency=graphs["adjacency"][ids].astype(bool),
        marginals=traj["marginals"][ids, -1], set_probs=traj["set_probs"][ids, -1], sets=sets[ids],
        run_seconds=run_seconds[ids],
    )


def _info(spec, st, inputs: StageInputs) -> dict:
    expert = st.expert
    prior = getattr(getattr(expert, "prior", None), "kind", None)
    return {
        "graphs": "this spec's held-out split" if own_split(spec, st) else "simulated for this stage",
        "observational": st.observational,
        "nodes": [int(inputs.var_mask.sum(1).min()), int(inputs.var_mask.sum(1).max())],
        "mean_edges": float(inputs.adjacency.sum((1, 2)).mean()),
        "interventional_rows": float(inputs.rows_valid.sum(1).mean()),
        "expert": {"kind": expert.kind, "prior": prior, "n_trials": getattr(expert, "n_trials", None)},
        "baselines": list(st.baselines),
    }


def run(ctx: StageContext, model_spec, model_owner_spec) -> Evaluation:
    """Evaluate the trained model(s) on every evaluation stage; write and return the record."""
    from engine.spec.loader import sibling

    spec, ev = ctx.spec, ctx.spec.evaluation
    models = {"model": _model(ctx.dir("train"), model_owner_spec)}
    for name in ev.models:
        models[name] = _model(ctx.dir(f"train.{name}"), trained_spec(sibling(ctx.plan.spec_file, name)).spec)
    stages, compile_s = {}, {}
    declared = spec.evaluation_stages()
    ctx.progress.start(f"evaluate on {len(declared)} stage(s)", len(declared))
    for i, st in enumerate(declared):
        inputs = _inputs(ctx, st)
        if inputs.n == 0:
            raise ValueError(f"evaluation stage {st.name} has no graphs: raise data.split.heldout "
                             "or data.n_graphs, or give the stage n_graphs")
        record, seconds = evaluate_stage(
            st.name, st.description, inputs, models, st.expert.build(), st.baselines, ev.threshold,
            st.timed_graphs, ev.timing_repeats, ctx.key("evaluate", st.seed), st.seed,
            info=_info(spec, st, inputs), progress=lambda note: ctx.progress.advance(i, note),
            baseline_seconds=ev.baseline_seconds, graph_decision=ev.build_decision(),
        )
        for b, reason in record.info["skipped"].items():
            ctx.progress.log(f"evaluation stage {st.name}: {b} not run: {reason}")
        stages[st.name] = dataclasses.replace(record, summary=summarise(record, ev.n_boot, spec.seed))
        compile_s.update({f"{st.name}/{k}": v for k, v in seconds.items()})
        ctx.progress.advance(i + 1, f"{st.name} done")
    for problem in spec.optimize_problems():
        record = optimization_stage(ctx.dir(f"optimize.{problem.name}").read_arrays("episodes.npz"),
                                    problem, spec.optimize, ev.threshold)
        stages[problem.name] = dataclasses.replace(record, summary=summarise(record, ev.n_boot, spec.seed))
    evaluation = Evaluation(stages, ev.threshold, ev.n_boot, spec.seed, compile_s, ev.graph_decision)
    out = ctx.dir("evaluate")
    write_atomic(out.work_dir() / "evaluation.npz", arrays_to_bytes(evaluation.to_arrays(), compress=True))
    write_json(out.work_dir() / "evaluation.json", evaluation.to_json())
    out.commit(["evaluation.npz", "evaluation.json"], {"stages": list(stages)})
    return evaluation


def optimization_stage(arrays: dict, problem, opt, threshold: float) -> StageResult:
    """An [optimize] problem as a record stage: each strategy a side (its belief after the last
    trial as the parent probabilities, its episode's wall time, compile apart, as seconds)."""
    from engine.evaluate.record import Side

    var_mask, target = arrays["var_mask"].astype(bool), arrays["target"]
    n, d = var_mask.shape
    mask = var_mask & (np.arange(d)[None, :] != target[:, None])
    sides = {}
    for s in opt.strategies:
        probs = np.where(mask, arrays[f"{s.name}/marginals"][:, -1], 0.0)
        seconds = arrays[f"{s.name}/seconds"] - np.nan_to_num(arrays[f"{s.name}/compile_seconds"])
        sides[s.name] = Side(probs=probs, pred=(probs > threshold).astype(np.float64), seconds=seconds,
                             trial_y=arrays[f"{s.name}/trial_y"], best_y=arrays[f"{s.name}/best_y"],
                             note=f"{s.surrogate.kind} surrogate + {s.acquisition.kind}")
    exact = arrays["optimum_exact"]
    info = {"graphs": "simulated for this problem", "optimize": True, "n_trials": opt.n_trials,
            "optimum": ("exact (linear SCMs)" if exact.all() else
                        f"Monte-Carlo estimate ({opt.optimum.grid} values x {opt.optimum.mc_samples} draws per "
                        f"variable; mean standard error {float(arrays['optimum_stderr'][~exact].mean()):.3g})"),
            "nodes": [int(var_mask.sum(1).min()), int(var_mask.sum(1).max())],
            "mean_edges": float(arrays["adjacency"].sum((1, 2)).mean()),
            "strategies": {s.name: {"surrogate": s.surrogate.kind, "acquisition": s.acquisition.kind}
                           for s in opt.strategies}}
    return StageResult(
        name=problem.name, description=problem.description, truth=arrays["parents"].astype(bool),
        mask=mask, adjacency=arrays["adjacency"].astype(bool), var_mask=var_mask, target=target,
        expert_run_seconds=np.full(n, np.nan), sides=sides, info=info,
        optimum=arrays["optimum"], y0=arrays["y0"])


def trained_spec(spec_file):
    """The spec file whose train stage `spec_file` reads (itself, or what its `uses` chain
    trains)."""
    from engine.spec.loader import sibling

    while not spec_file.spec.trains:
        spec_file = sibling(spec_file, spec_file.spec.stage.uses)
    return spec_file


def load(stage: StageDir) -> Evaluation:
    return Evaluation.from_parts(stage.read_arrays("evaluation.npz"), stage.read_json("evaluation.json"))
