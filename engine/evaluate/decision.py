"""From edge probabilities to one graph: the decision a whole-graph answer is scored (F1, SHD) and
drawn by.

Cutting every probability at 0.5 keeps only the edges a model is sure of. A model trained over many
graph sizes and densities spreads its belief over plausible edges (an edge it cannot orient is
0.4 each way), so at 0.5 it drops true edges it ranks well: on data from outside its training
distribution the general model kept 0.2-0.7x the true number of edges while its probabilities summed
to 0.6-1.4x of it.

`ExpectedF1` picks the graph with the highest expected F1 under the model's own edge marginals,
by the plug-in rule of Ye et al. (2012, "Optimizing F-measures: a tale of two approaches"): rank
the candidates by probability and keep the k that maximises 2 * (sum of the top k) / (k + sum of
all), the ratio of expected true positives to expected size. It decides adjacencies first, with
q = min(1, p_ij + p_ji) (in a DAG the two directions of a pair exclude each other), and orients
each kept pair by its likelier direction, so it never answers both directions. It reads nothing
but the probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Bool, Float


def expected_f1_graph(
    probs: Float[np.ndarray, "d d"], var_mask: Bool[np.ndarray, " d"] | None = None
) -> Float[np.ndarray, "d d"]:
    """The 0/1 graph [i, j] (i -> j) of highest expected F1 under independent edge marginals."""
    d = probs.shape[0]
    keep = np.ones(d, bool) if var_mask is None else np.asarray(var_mask, bool)
    p = np.where(keep[:, None] & keep[None, :], np.nan_to_num(np.asarray(probs, np.float64)), 0.0)
    np.fill_diagonal(p, 0.0)
    i, j = np.triu_indices(d, 1)
    forward, backward = p[i, j], p[j, i]
    q = np.minimum(forward + backward, 1.0)
    order = np.argsort(-q, kind="stable")
    expected = 2.0 * np.cumsum(q[order]) / (np.arange(1, q.size + 1) + q.sum())
    graph = np.zeros((d, d))
    if q.size == 0 or expected.max() <= 0.0:
        return graph
    chosen = order[: int(np.argmax(expected)) + 1]
    fwd = forward[chosen] >= backward[chosen]
    graph[i[chosen][fwd], j[chosen][fwd]] = 1.0
    graph[j[chosen][~fwd], i[chosen][~fwd]] = 1.0
    return graph


@dataclass(frozen=True)
class Threshold:
    """The edges with probability above `at`."""

    at: float
    name = "threshold"

    def __call__(self, scores: Float[np.ndarray, "N d d"], var_mask: Bool[np.ndarray, "N d"]):
        return (scores > self.at).astype(np.float64)


@dataclass(frozen=True)
class ExpectedF1:
    """Per graph, the graph of highest expected F1 under its edge probabilities (see the module)."""

    name = "expected_f1"

    def __call__(self, scores: Float[np.ndarray, "N d d"], var_mask: Bool[np.ndarray, "N d"]):
        graphs = [expected_f1_graph(s, m) for s, m in zip(scores, var_mask)]
        return np.array(graphs, np.float64).reshape(np.shape(scores))
