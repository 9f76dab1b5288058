"""The expert loop on SCMs drawn by acbo's simulator, through the path `acbo apply` takes
(engine.stages.expert -> engine.expert.runner.run_graphs -> per-graph artifacts)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from engine.expert.runner import load_trajectory, run_graphs
from engine.scm import simulate
from engine.spec.expert import OracleExpert, ParentScaleExpert
from engine.spec.scm import ScmSpec

SPEC = ScmSpec.model_validate(
    {
        "graphs": [{"kind": "erdos_renyi", "edges_per_node": 1.0}],
        "n_nodes": {"low": 4, "high": 6},
        "mechanism": {"kind": "linear"},
        "noise": {"kind": "gaussian", "scale": {"dist": "uniform", "low": 0.5, "high": 1.5}},
        "interventions": {"kind": "hard", "value": {"dist": "uniform", "low": -5.0, "high": 5.0}, "rows_per_node": 2},
        "n_obs": 60,
    }
)
LOOP = dict(n_trials=3, outcome_samples=50, n_anchors=16, opt_steps=4)


@pytest.mark.slow  # compiles the acquisition (~10 s with a warm XLA cache, a minute cold)
def test_parent_scale_episode_on_simulator_scms(tmp_path):
    scms, data = simulate(SPEC, jax.random.key(3), 2)
    expert = ParentScaleExpert(kind="parent_scale", prior={"kind": "uniform", "max_parents": 2}, **LOOP).build()
    paths = run_graphs(expert, jax.random.PRNGKey(0), scms, data, tmp_path / "ps")
    n_int, d = data.int_values.shape[1:]
    for g, p in enumerate(paths):
        tr = load_trajectory(p)
        assert tr is not None
        var_mask = np.asarray(scms.var_mask[g], bool)
        target = int(scms.target[g])
        T = LOOP["n_trials"]
        assert tr.rows_values.shape == (n_int + T, d) and tr.marginals.shape == (n_int + T + 1, d)
        # every trial intervenes on a real non-target variable, at a value inside D_O's range
        tv, tx = np.asarray(tr.trial_var), np.asarray(tr.trial_value)
        assert np.all(var_mask[tv]) and np.all(tv != target)
        obs = np.asarray(data.obs[g])
        assert np.all(tx >= obs[:, tv].min(0) - 1e-4) and np.all(tx <= obs[:, tv].max(0) + 1e-4)
        # the fresh sample of each trial carries its intervention, and updates the posterior
        rows = np.asarray(tr.rows_values)[n_int:]
        np.testing.assert_allclose(rows[np.arange(T), tv], tx, atol=1e-5)
        assert np.all(np.asarray(tr.rows_mask)[n_int:][np.arange(T), tv])
        np.testing.assert_allclose(np.asarray(tr.set_probs).sum(1), 1.0, atol=1e-4)
        marg = np.asarray(tr.marginals)
        assert np.all(marg[:, target] == 0) and np.all(marg[:, ~var_mask] == 0)
        assert np.all(np.diff(np.asarray(tr.best_y)) <= 0)
        assert np.all(np.isfinite(np.asarray(tr.trial_y)))


@pytest.mark.slow
def test_oracle_on_simulator_scm_uses_true_parents(tmp_path):
    scms, data = simulate(SPEC, jax.random.key(4), 1)
    expert = OracleExpert(kind="oracle", **LOOP).build()
    (path,) = run_graphs(expert, jax.random.PRNGKey(1), scms, data, tmp_path / "oracle")
    tr = load_trajectory(path)
    target = int(scms.target[0])
    parents = (np.asarray(scms.adjacency[0])[:, target] != 0) & np.asarray(scms.var_mask[0], bool)
    np.testing.assert_allclose(np.asarray(tr.marginals)[-1], parents.astype(np.float32))
    if parents.any():  # CBO explores the true parents only
        assert np.all(parents[np.asarray(tr.trial_var)])
