"""The evaluation procedure for one stage: every method on the same graphs and the same data.

Each graph is one task: its observational rows plus every interventional row the expert
consumed (its initial data and the interventions it chose), the target, and the truth. The
expert's answer is its posterior after those rows; the models see the same rows; PC and GES
see the observational rows (they assume i.i.d. data). Speed is measured on the first
`timed_graphs` graphs, the expert's posterior computation (its prior included) and each model
interleaved in this process, the median of `repeats` runs, compile times apart.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from engine.evaluate.baselines import BASELINES, BaselineNotRun, BaselineTooLarge, available, predict_graph
from engine.evaluate.decision import Threshold
from engine.evaluate.record import Side, StageResult
from engine.scm.types import Dataset


@dataclass(frozen=True)
class StageInputs:
    """N graphs padded to d variables and K interventional rows, with the expert's final answer.

    obs [N, n_obs, d]; rows_values, rows_mask [N, K, d]; rows_valid [N, K]; var_mask [N, d];
    target [N]; adjacency [N, d, d]; marginals [N, d] and set_probs [N, S] (the expert's
    posterior after every row), sets [N, S, k] (-1 padded); run_seconds [N] (its whole run)."""

    obs: np.ndarray
    rows_values: np.ndarray
    rows_mask: np.ndarray
    rows_valid: np.ndarray
    var_mask: np.ndarray
    target: np.ndarray
    adjacency: np.ndarray
    marginals: np.ndarray
    set_probs: np.ndarray
    sets: np.ndarray
    run_seconds: np.ndarray

    @property
    def n(self) -> int:
        return int(self.target.shape[0])

    def model_input(self, i):
        """(x [n, d, 2], row_mask [n], var_mask [d], target) of graph i, as the models take it."""
        obs, rows = self.obs[i], self.rows_values[i]
        x = np.concatenate([np.stack([obs, np.zeros_like(obs)], -1),
                            np.stack([rows, self.rows_mask[i].astype(obs.dtype)], -1)])
        row_mask = np.concatenate([np.ones(obs.shape[0], bool), self.rows_valid[i]])
        return jnp.asarray(x), jnp.asarray(row_mask), jnp.asarray(self.var_mask[i]), jnp.asarray(self.target[i])

    def dataset(self, i) -> Dataset:
        """Graph i as the expert takes it."""
        return Dataset(obs=jnp.asarray(self.obs[i]), int_values=jnp.asarray(self.rows_values[i]),
                       int_mask=jnp.asarray(self.rows_mask[i]), int_row_mask=jnp.asarray(self.rows_valid[i]))


@dataclass(frozen=True)
class ModelUnderTest:
    """A trained model; `graph_head` when its loss trained the whole-graph head."""

    model: object
    graph_head: bool


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - started


def predict_fn(model):
    """Parent probabilities for one graph, compiled with the trained parameters as constants
    (a deployed model is fixed; plain `jax.jit` dispatches faster than `eqx.filter_jit`)."""
    return jax.jit(lambda x, r, v, t: jax.nn.sigmoid(model(x, r, v, t)))


def _model_side(m: ModelUnderTest, inputs: StageInputs, threshold: float, decide, chunk: int = 16) -> Side:
    """Probabilities on every graph, batched (chunks bound the memory of large graphs)."""
    parents = jax.jit(jax.vmap(lambda x, r, v, t: jax.nn.sigmoid(m.model(x, r, v, t))))
    graph = jax.jit(jax.vmap(lambda x, r, v: jax.nn.sigmoid(m.model.graph(x, r, v))))
    probs, edges = [], []
    for start in range(0, inputs.n, chunk):
        batch = [inputs.model_input(i) for i in range(start, min(start + chunk, inputs.n))]
        x, r, v, t = (jnp.stack(a) for a in zip(*batch))
        probs.append(np.asarray(parents(x, r, v, t), np.float64))
        if m.graph_head:
            edges.append(np.asarray(graph(x, r, v), np.float64))
    probs = np.concatenate(probs)
    graph_scores = np.concatenate(edges) if m.graph_head else None
    return Side(
        probs=probs, pred=(probs > threshold).astype(np.float64), seconds=np.full(inputs.n, np.nan),
        graph_scores=graph_scores,
        graph_pred=None if graph_scores is None else decide(graph_scores, inputs.var_mask),
    )


def _expert_side(inputs: StageInputs, threshold: float) -> Side:
    d = inputs.var_mask.shape[1]
    best = inputs.sets[np.arange(inputs.n), np.argmax(inputs.set_probs, 1)]  # [N, k]
    map_pred = np.zeros((inputs.n, d))
    for i, s in enumerate(best):
        map_pred[i, s[s >= 0]] = 1.0
    probs = inputs.marginals.astype(np.float64)
    return Side(probs=probs, pred=(probs > threshold).astype(np.float64),
                seconds=np.full(inputs.n, np.nan), map_pred=map_pred)


def _baseline_side(name: str, inputs: StageInputs, seed: int, limit: float | None = None) -> Side:
    """The baseline on every graph; a graph it runs past `limit` seconds on is NaN (not run)."""
    n, d = inputs.var_mask.shape
    pairs = inputs.var_mask[:, :, None] & inputs.var_mask[:, None, :] & ~np.eye(d, dtype=bool)
    density = float(inputs.adjacency[pairs].mean()) if pairs.any() else 0.0
    weights, scores = np.zeros((n, d, d)), np.zeros((n, d, d))
    seconds = np.zeros(n)
    stopped = too_large = 0
    for i in range(n):
        idx = np.flatnonzero(inputs.var_mask[i])
        try:
            p = predict_graph(name, np.asarray(inputs.obs[i][:, idx], np.float64), seed=seed + i,
                              density=density, limit=limit)
        except BaselineNotRun as e:
            weights[i], scores[i], seconds[i] = np.nan, np.nan, np.nan
            too_large += isinstance(e, BaselineTooLarge)
            stopped += not isinstance(e, BaselineTooLarge)
            continue
        weights[i][np.ix_(idx, idx)] = p.weights
        scores[i][np.ix_(idx, idx)] = p.scores
        seconds[i] = p.seconds
    col = lambda a: a[np.arange(n), :, inputs.target]  # noqa: E731 - the target's column: its parents
    note = BASELINES[name].note
    if stopped:
        note += f"; stopped past {limit:g} s (not run) on {stopped} of {n} graphs"
    if too_large:
        note += (f"; not run on {too_large} of {n} graphs (over its {BASELINES[name].max_variables} "
                 "variables)")
    return Side(probs=col(scores), pred=col(weights), seconds=seconds, graph_scores=scores,
                graph_pred=weights, note=note)


def evaluate_stage(
    name: str,
    description: str,
    inputs: StageInputs,
    models: dict[str, ModelUnderTest],
    expert,
    baselines: tuple[str, ...],
    threshold: float,
    timed_graphs: int,
    repeats: int,
    key,
    seed: int,
    info: dict | None = None,
    progress: Callable[[str], None] = lambda note: None,
    baseline_seconds: float | None = None,
    graph_decision=None,
) -> tuple[StageResult, dict[str, float]]:
    """(the stage's record without its summary, compile seconds per method). `graph_decision`
    (engine.evaluate.decision) makes a model's edge probabilities one graph; default: the
    edges above `threshold`."""
    decide = graph_decision or Threshold(threshold)
    sides: dict[str, Side] = {}
    for side_name, m in models.items():
        progress(f"{name}: {side_name} on {inputs.n} graphs")
        sides[side_name] = _model_side(m, inputs, threshold, decide)
    sides["expert"] = _expert_side(inputs, threshold)
    skipped = {}
    for b in baselines:
        reason = available(b)
        if reason is not None:  # an optional extra: the evaluation goes on without it, and says so
            skipped[b] = reason
            progress(f"{name}: {b} skipped: {reason}")
            continue
        progress(f"{name}: {b} on {inputs.n} graphs")
        sides[b] = _baseline_side(b, inputs, seed, baseline_seconds)

    # Speed: the expert's posterior (prior included) and each model, interleaved per graph.
    compile_s: dict[str, float] = {}
    timed = min(timed_graphs, inputs.n)
    if timed:
        predict = {k: predict_fn(m.model) for k, m in models.items()}
        posterior = getattr(expert, "posterior", None)  # experts without one have no posterior to time
        if posterior is not None:
            compile_s["expert"] = _timed(posterior, key, jnp.asarray(inputs.var_mask[0]), jnp.asarray(inputs.target[0]), inputs.dataset(0))
        for k, fn in predict.items():
            compile_s[k] = _timed(fn, *inputs.model_input(0))
        for i in range(timed):
            progress(f"{name}: timing graph {i + 1}/{timed}")
            args, data = inputs.model_input(i), inputs.dataset(i)
            runs: dict[str, list[float]] = {k: [] for k in [*predict, "expert"]}
            for _ in range(repeats):
                if posterior is not None:
                    runs["expert"].append(_timed(posterior, key, args[2], args[3], data))
                for k, fn in predict.items():
                    runs[k].append(_timed(fn, *args))
            for k, r in runs.items():
                if r:
                    sides[k].seconds[i] = statistics.median(r)

    record = StageResult(
        name=name, description=description, truth=_truth(inputs), mask=_candidates(inputs),
        adjacency=inputs.adjacency.astype(bool), var_mask=inputs.var_mask.astype(bool),
        target=inputs.target.astype(np.int64), expert_run_seconds=inputs.run_seconds.astype(np.float64),
        sides=sides, info=dict(info or {}, n_graphs=inputs.n, timed_graphs=timed, repeats=repeats,
                                 skipped=skipped),
    )
    return record, compile_s


def _truth(inputs: StageInputs) -> np.ndarray:
    return inputs.adjacency[np.arange(inputs.n), :, inputs.target].astype(bool)


def _candidates(inputs: StageInputs) -> np.ndarray:
    d = inputs.var_mask.shape[1]
    return inputs.var_mask.astype(bool) & (np.arange(d)[None, :] != inputs.target[:, None])
