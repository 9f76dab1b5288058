"""`acbo infer --exact` and engine.posterior.ExactPosterior: the exact posterior over all DAGs
for a user's data, through the same interface and errors as a model."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.evaluate.baselines import predict_graph
from engine.posterior import ExactPosterior
from engine.userfiles import InferError, Table

NAMES = ("a", "b", "c", "d")


def _chain(n: int, seed: int) -> np.ndarray:
    """a -> b -> c nonlinear (tanh, sin) with a -> c, d independent; in odd units."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = np.tanh(2 * a) + 0.3 * rng.normal(size=n)
    c = np.sin(2 * b) + 0.5 * a + 0.3 * rng.normal(size=n)
    return np.column_stack([a, b, c, rng.normal(size=n)]) * [1, 10, 0.1, 5] + 3


def test_orients_a_nonlinear_graph_and_equals_the_baseline():
    x = _chain(800, 0)
    g = ExactPosterior().graph(Table(NAMES, x))
    truth = np.zeros((4, 4), bool)
    truth[0, 1] = truth[1, 2] = truth[0, 2] = True
    assert g.probs[truth].min() > 0.95 and g.probs[~truth].max() < 0.05
    z = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(g.probs, predict_graph("exact_additive", z, seed=0).scores, atol=1e-12)
    assert g.names == NAMES and g.metadata["rows"] == 800


def test_interventional_rows_are_left_out_and_counted():
    x = _chain(800, 1)
    mask = np.zeros((850, 4))
    mask[800:, 1] = 1
    rows = np.concatenate([x, np.column_stack([x[:50, 0], np.full(50, 40.0), x[:50, 2:]])])
    g = ExactPosterior().graph(Table(NAMES, rows), Table(NAMES, mask))
    np.testing.assert_allclose(g.probs, ExactPosterior().graph(Table(NAMES, x)).probs)
    assert g.metadata["interventional_rows_left_out"] == 50
    p = ExactPosterior().parents(Table(NAMES, x), target="c")
    assert list(p) == ["a", "b", "d"] and p["b"] > 0.95 and p["d"] < 0.05


def test_more_than_20_variables_is_refused():
    x = np.random.default_rng(0).normal(size=(50, 21))
    with pytest.raises(InferError, match="at most 20 variables.*21: use a model"):
        ExactPosterior().graph(Table(tuple(f"v{i}" for i in range(21)), x))


def test_cli(tmp_path):
    data = tmp_path / "d.csv"
    np.savetxt(data, _chain(500, 2), delimiter=",", header=",".join(NAMES), comments="")
    res = CliRunner().invoke(app, ["infer", "--exact", str(data)])
    assert res.exit_code == 0, res.output
    rows = [line.split(",") for line in res.stdout.strip().splitlines()]
    assert rows[0] == ["parent \\ child", *NAMES] and float(rows[1][2]) > 0.95  # a -> b
    assert "exact Bayesian posterior" in res.stderr
    res = CliRunner().invoke(app, ["infer", "--exact", "--model", "general", str(data)])
    assert res.exit_code == 2 and "--exact answers without a model" in res.stderr
    res = CliRunner().invoke(app, ["infer", "--exact", "--counts", str(data)])
    assert res.exit_code == 2 and "--exact is for continuous data" in res.stderr
    wide = tmp_path / "wide.csv"
    np.savetxt(wide, np.random.default_rng(0).normal(size=(30, 21)), delimiter=",",
               header=",".join(f"v{i}" for i in range(21)), comments="")
    res = CliRunner().invoke(app, ["infer", "--exact", str(wide)])
    assert res.exit_code == 2 and "--exact takes at most 20 variables" in res.stderr
    assert "Traceback" not in res.output


def test_counts_are_refused_in_python_too():
    post = ExactPosterior()
    post.counts = True
    with pytest.raises(InferError, match="for continuous data"):
        post.graph(Table(NAMES, _chain(100, 3)))
