"""Stage 5, evaluate: model and expert on the same held-out graphs, scored and timed alike.

Accuracy is measured on every held-out demonstration (each a data prefix with the expert's
posterior after it). Speed is measured per held-out graph on the full task: from the graph's
data to parent probabilities, expert and model interleaved in this process, the median of
`timing_repeats` runs, with each one's one-off compile time reported apart.
"""

from __future__ import annotations

import statistics
import time

import jax
import numpy as np

from engine.data.demos import gather
from engine.expert.sets import membership
from engine.evaluate.metrics import map_f1, score_parents, timing_summary
from engine.registry import write_json
from engine.stages import demonstrations, simulate
from engine.stages.context import StageContext
from engine.train.trainer import load_model


def predict_fn(model):
    """Parent probabilities for one example, compiled with the trained parameters as constants
    (a deployed model is fixed; plain `jax.jit` dispatches in about half the time that
    `eqx.filter_jit` needs for its pytree flattening, which dominates at these sizes)."""
    return jax.jit(lambda x, r, v, t: jax.nn.sigmoid(model(x, r, v, t)))


def _block(tree):
    return jax.tree.map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, tree)


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    _block(fn(*args))
    return time.perf_counter() - started


def run(ctx: StageContext, model_spec) -> dict:
    spec, ev = ctx.spec, ctx.spec.evaluation
    heldout = demonstrations.load(ctx.dir("demonstrations"), "heldout")
    if heldout.n_demos == 0:
        raise ValueError("no held-out graphs to evaluate: raise data.split.heldout or data.n_graphs")
    train = ctx.dir("train")
    model = load_model(train.read_bytes("model.eqx"), model_spec, train.final / "model.eqx")
    trajectories = ctx.dir("expert").read_arrays("trajectories.npz")
    ctx.progress.start(f"evaluate on {heldout.n_graphs} held-out graphs", heldout.n_graphs)

    # Accuracy on every held-out demonstration.
    batch = gather(heldout, np.arange(heldout.n_demos))
    forward = jax.jit(jax.vmap(lambda x, r, v, t: jax.nn.sigmoid(model(x, r, v, t))))
    model_probs = np.asarray(forward(batch.x, batch.row_mask, batch.var_mask, batch.target))
    d = model_probs.shape[1]
    mask = np.asarray(batch.var_mask) & (np.arange(d)[None, :] != np.asarray(batch.target)[:, None])
    truth = np.asarray(batch.parents)
    expert_probs = np.asarray(heldout.expert)
    model_scores = score_parents(model_probs, truth, mask, threshold=ev.threshold)
    expert_scores = score_parents(expert_probs, truth, mask, threshold=ev.threshold)
    gid = np.asarray(heldout.graph_id)[np.asarray(heldout.demo_graph)]
    set_probs = trajectories["set_probs"][gid, np.asarray(heldout.demo_k)]
    sets = trajectories["sets"]  # [G, S, k] variable indices, -1 padded ([S, k] if shared)
    sets = sets[gid] if sets.ndim == 3 else np.broadcast_to(sets, (len(gid),) + sets.shape)
    members = np.asarray(jax.vmap(lambda s: membership(s, d))(sets)) > 0.5
    expert_scores["map_f1"] = map_f1(set_probs, members, truth, mask)

    # Speed per graph on the full task.
    scms, data = simulate.load(ctx)
    expert = spec.expert.build()
    predict = predict_fn(model)
    demo_graph, demo_k = np.asarray(heldout.demo_graph), np.asarray(heldout.demo_k)
    # One task per graph: its final demonstration (all rows the expert consumed).
    final = [int(np.flatnonzero(demo_graph == i)[np.argmax(demo_k[demo_graph == i])]) for i in range(heldout.n_graphs)]
    if ev.max_graphs is not None:
        final = final[: ev.max_graphs]
    tasks = gather(heldout, np.array(final))
    graphs = np.asarray(heldout.graph_id)[: len(final)]
    inputs = lambda i: (tasks.x[i], tasks.row_mask[i], tasks.var_mask[i], tasks.target[i])
    key = ctx.key("evaluate")
    take = lambda tree, g: jax.tree.map(lambda a: a[g], tree)
    expert_compile = _timed(expert.run, key, take(scms, int(graphs[0])), take(data, int(graphs[0])))
    model_compile = _timed(predict, *inputs(0))
    expert_s, model_s = [], []
    for i, g in enumerate(graphs):
        scm_g, data_g = take(scms, int(g)), take(data, int(g))
        args = inputs(i)
        e_runs, m_runs = [], []
        for _ in range(ev.timing_repeats):
            e_runs.append(_timed(expert.run, key, scm_g, data_g))
            m_runs.append(_timed(predict, *args))
        expert_s.append(statistics.median(e_runs))
        model_s.append(statistics.median(m_runs))
        ctx.progress.advance(i + 1, f"speedup so far {np.median(np.array(expert_s) / np.array(model_s)):.1f}x")

    timing = timing_summary(np.array(expert_s), np.array(model_s))
    timing.update(expert_s=expert_s, model_s=model_s, expert_compile_s=expert_compile, model_compile_s=model_compile)
    n_vars = np.asarray(heldout.var_mask).sum(1)
    per_demo_f1 = lambda p: [
        _f1(p[j] >= ev.threshold, truth[j], mask[j]) for j in range(len(truth))
    ]
    result = {
        "split": "heldout",
        "n_graphs": heldout.n_graphs,
        "n_demos": heldout.n_demos,
        "threshold": ev.threshold,
        "model": model_scores,
        "expert": expert_scores,
        "timing": timing,
        "per_graph": {
            "n_vars": n_vars[np.asarray(heldout.demo_graph)].tolist(),
            "model_f1": per_demo_f1(model_probs),
            "expert_f1": per_demo_f1(expert_probs),
        },
        "examples": [
            {
                "n_vars": int(n_vars[heldout.demo_graph[j]]),
                "target": int(batch.target[j]),
                "truth": truth[j].astype(int).tolist(),
                "model": model_probs[j].round(4).tolist(),
                "expert": expert_probs[j].round(4).tolist(),
            }
            for j in final[: ev.n_examples]
        ],
    }
    out = ctx.dir("evaluate")
    write_json(out.work_dir() / "evaluation.json", result)
    out.commit(["evaluation.json"], {"n_graphs": heldout.n_graphs})
    return result


def _f1(pred, truth, mask) -> float:
    pred, truth = pred[mask], truth[mask]
    tp = float((pred & truth).sum())
    denom = float(pred.sum() + truth.sum())
    return 1.0 if denom == 0 else 2 * tp / denom
