"""Models trained briefly on a dense graph distribution must learn structure, not collapse to
"no edge" (an issue: an avici run predicted an empty graph everywhere and said "complete"), and
a collapsed run must say so when training ends."""

from pathlib import Path

import jax
import numpy as np
import pytest

from engine.data.online import simulated_batch
from engine.scm.simulator import Simulator
from engine.spec.loader import load
from engine.stages.train import empty_prediction_warning
from engine.train.sources import build_phases
from engine.train.trainer import Trainer


def auroc(scores, labels) -> float:
    """Share of (positive, negative) pairs ranked right, ties 1/2 (Mann-Whitney)."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    diff = s[y][:, None] - s[~y][None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


SMOKE = Path(__file__).resolve().parents[1] / "specs" / "smoke.toml"
DENSE = [
    "data.mode=online", "data.split={ train = 0.0, validation = 0.5, heldout = 0.5 }",
    "scm.n_nodes={ low = 6, high = 10 }", "scm.n_obs=50",
    'scm.graphs=[{ kind = "erdos_renyi", edges_per_node = 2.0 }]', 'scm.mechanism=[{ kind = "linear" }]',
    "train.tensorboard=false", "train.batch_size=32",  # default optimizer (adam 1e-3), clipping
]
MODELS = {  # spec overrides, steps, minimum parent AUROC
    "stats": (['model={ kind = "stats", dim = 16, layers = 1, heads = 2 }'], 400, 0.75),
    "avici": (['model={ kind = "avici", dim = 32, layers = 2, key_size = 8 }'], 300, 0.72),
}


def _train_and_score(kind, tmp_path):
    overrides, steps, _ = MODELS[kind]
    spec = load(SMOKE, DENSE + overrides + [f"train.steps={steps}", f"train.log_every={steps}",
                                            f"train.checkpoint_every={steps}"]).spec
    t = Trainer(spec, jax.devices()[:1])
    model = t.fit(build_phases(spec), None, tmp_path, warn=lambda m: None).eval_model
    held = simulated_batch(Simulator(spec.scm), jax.random.PRNGKey(2024), 128)  # unseen graphs
    graph = np.asarray(jax.vmap(model.graph)(held.x, held.row_mask, held.var_mask))  # [B, d, d]
    target = np.asarray(held.target)
    d = graph.shape[1]
    probs = np.asarray(jax.nn.sigmoid(graph[np.arange(len(target)), :, target]))  # its column
    mask = np.asarray(held.var_mask) & (np.arange(d)[None] != target[:, None])
    p, y = probs[mask], np.asarray(held.parents)[mask]
    # Skeleton: is i - j an edge either way, scored by the larger logit. A model that learns only
    # per-variable propensities (source-like, sink-like) ranks parents above chance but not this.
    adj = np.asarray(held.adjacency)
    vm = np.asarray(held.var_mask)
    upper = vm[:, :, None] & vm[:, None, :] & np.triu(np.ones((d, d), bool), 1)
    either = np.maximum(graph, graph.transpose(0, 2, 1))
    skeleton = auroc(either[upper], (adj | adj.transpose(0, 2, 1))[upper])
    return auroc(p, y), skeleton, int((p > 0.5).sum()), int(y.sum())


@pytest.mark.parametrize("kind", ["stats", pytest.param("avici", marks=pytest.mark.slow)])
def test_short_training_on_dense_graphs_learns_edges(kind, tmp_path):
    """Parents of a target on unseen ER-2 graphs of 6-10 nodes, 50 observational rows plus a
    few interventional ones. The parent rate is 0.37, and per-pair statistics saturate near
    AUROC 0.76 here: gradient boosting on all 17 of the stats model's pair features, fitted on
    2048 graphs, gets 0.758; the stats model 0.765 (skeleton 0.729) at this budget.

    avici, issue 13's collapse (measured with this test's code, 2 shared CPU cores). Before,
    AVICI's head alone (cos(U h_i, V h_j) of the rows' max-pooled states) learned per-variable
    propensities and no pairwise dependence: parent AUROC 0.655 at 200 steps, 0.662 at 300,
    skeleton 0.512 (0.52-0.55 with 4 blocks or the full-graph loss), 41-149 predicted parents
    for 335; learning rate, edge-bias init, pos_weight and the full-graph loss did not change
    that. The cause (a relation between two variables has to be built as matching per-variable
    fingerprints; the pooled vectors share one dominant component) is in engine/models/avici.py.
    After, with its pairwise-moment head on the same trunk: parent AUROC 0.752, skeleton 0.765,
    274 predicted, in 57-90 s. Its bar is 0.72 rather than the stats model's 0.75, which sits at
    this setting's ceiling; the skeleton check is what a collapsed model fails."""
    _, _, minimum = MODELS[kind]
    score, skeleton, predicted, true = _train_and_score(kind, tmp_path)
    assert score >= minimum, (kind, score, skeleton)
    assert skeleton >= 0.68, (kind, "no pairwise dependence learned", score, skeleton)
    assert predicted > 0, (kind, "empty predicted graph")
    assert true / 3 <= predicted <= 3 * true, (kind, predicted, true)


def test_an_empty_predicted_graph_warns():
    collapsed = {"max_prob": 0.42, "predicted_edges": 0, "true_edges": 300, "demos": 116}
    message = empty_prediction_warning(collapsed, 0.5)
    assert message is not None and "empty graph" in message and "0.420" in message
    assert empty_prediction_warning({**collapsed, "max_prob": 0.9, "predicted_edges": 5}, 0.5) is None
    assert empty_prediction_warning(None, 0.5) is None
