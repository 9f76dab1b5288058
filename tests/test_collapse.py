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
MODELS = {
    "stats": (['model={ kind = "stats", dim = 16, layers = 1, heads = 2 }'], 400),
    # Measured (2 CPU cores): avici ranks edges at AUROC 0.65-0.67 after 300 steps whatever the
    # learning rate (3e-4, 1e-3, 3e-3), edge-bias init (-3 or the density's logit), pos_weight or
    # full-graph loss, and 0.715 after 3000 steps: it needs far more steps than this budget.
    "avici": (['model={ kind = "avici", dim = 32, layers = 2, key_size = 8 }'], 200),
}


def _train_and_score(kind, tmp_path):
    overrides, steps = MODELS[kind]
    spec = load(SMOKE, DENSE + overrides + [f"train.steps={steps}", f"train.log_every={steps}",
                                            f"train.checkpoint_every={steps}"]).spec
    t = Trainer(spec, jax.devices()[:1])
    model = t.fit(build_phases(spec), None, tmp_path, warn=lambda m: None).eval_model
    held = simulated_batch(Simulator(spec.scm), jax.random.PRNGKey(2024), 128)  # unseen graphs
    probs = np.asarray(jax.nn.sigmoid(jax.vmap(model)(held.x, held.row_mask, held.var_mask, held.target)))
    d = probs.shape[1]
    mask = np.asarray(held.var_mask) & (np.arange(d)[None] != np.asarray(held.target)[:, None])
    p, y = probs[mask], np.asarray(held.parents)[mask]
    return auroc(p, y), int((p > 0.5).sum()), int(y.sum())


@pytest.mark.parametrize("kind", [
    "stats",
    # Known failure (issue 13's collapse): strict, so the suite says so once avici learns.
    pytest.param("avici", marks=[pytest.mark.slow, pytest.mark.xfail(strict=True, reason=(
        "avici does not learn structure within a sub-minute CPU budget (AUROC ~0.65 at 200 "
        "steps; 0.715 after 3000): it first learns only the edge base rate"))]),
])
def test_short_training_on_dense_graphs_learns_edges(kind, tmp_path):
    score, predicted, true = _train_and_score(kind, tmp_path)
    assert score >= 0.75, (kind, score)
    assert predicted > 0, (kind, "empty predicted graph")
    assert true / 3 <= predicted <= 3 * true, (kind, predicted, true)


def test_an_empty_predicted_graph_warns():
    collapsed = {"max_prob": 0.42, "predicted_edges": 0, "true_edges": 300, "demos": 116}
    message = empty_prediction_warning(collapsed, 0.5)
    assert message is not None and "empty graph" in message and "0.420" in message
    assert empty_prediction_warning({**collapsed, "max_prob": 0.9, "predicted_edges": 5}, 0.5) is None
    assert empty_prediction_warning(None, 0.5) is None
