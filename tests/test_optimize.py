"""[optimize] end to end on a tiny spec: every strategy on the same held-out graphs, the
episodes in the record with regret metrics, gates on them, and an interrupted stage that resumes
to the very same episodes."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.runs import RunFolder

REPO = Path(__file__).resolve().parents[1]

OPT = """
version = 1
name = "opt"
seed = 5

[stage]
uses = "smoke"

[scm]
n_nodes = { low = 3, high = 5 }
n_obs = 60
graphs = [{ kind = "erdos_renyi", edges_per_node = 1.0 }]
interventions = { kind = "hard", value = { dist = "uniform", low = -5.0, high = 5.0 }, rows_per_node = 2 }
target = { kind = "random_with_parents" }

[expert]
kind = "parent_scale"
prior = { kind = "uniform", max_parents = 2 }
outcome_samples = 200
n_anchors = 20
opt_steps = 5

[data]
n_graphs = 4
split = { train = 0.0, validation = 0.0, heldout = 1.0 }

[evaluation]
timing_repeats = 1
timed_graphs = 2
n_boot = 200
baselines = []

[optimize]
n_trials = 4

[[optimize.problems]]
name = "linear"
n_graphs = 4
scm = { n_nodes = 5 }

[[optimize.strategies]]
name = "parent_scale"
surrogate = { kind = "expert" }
acquisition = { kind = "ei" }

[[optimize.strategies]]
name = "amortized_ei"
surrogate = { kind = "model", max_parents = 2, n_sets = 8 }
acquisition = { kind = "ei" }

[[optimize.strategies]]
name = "oracle"
surrogate = { kind = "oracle" }
acquisition = { kind = "ei" }

[[optimize.strategies]]
name = "random"
surrogate = { kind = "none" }
acquisition = { kind = "random" }
POLICY_STRATEGY

[[gates]]
name = "oracle closes most of the gap"
metric = "gap_closure"
stage = "linear"
side = "oracle"
min = 0.5

[[gates]]
name = "amortized EI within 10x of PARENT_SCALE's time"
metric = "seconds"
stage = "linear"
side = "amortized_ei"
vs = "parent_scale"
relative = "ratio"
max = 10.0
"""

POLICY = """
[[optimize.strategies]]
name = "policy"
surrogate = { kind = "model", max_parents = 2, n_sets = 8 }
acquisition = { kind = "policy" }

[policy]
steps = 4
batch_graphs = 4
group_size = 4
checkpoint_every = 2
log_every = 2
"""


def _spec(specs: Path, name: str = "opt") -> Path:
    shutil.copy(REPO / "specs" / "smoke.toml", specs / "smoke.toml")
    text = OPT.replace("POLICY_STRATEGY", POLICY).replace('name = "opt"', f'name = "{name}"')
    (specs / f"{name}.toml").write_text(text)
    return specs / f"{name}.toml"


@pytest.fixture(scope="module")
def optimized(smoke_registry, tmp_path_factory):
    spec = _spec(tmp_path_factory.mktemp("specs"))
    result = CliRunner().invoke(app, ["gate", str(spec), "--registry", str(smoke_registry)])
    assert result.exit_code in (0, 3, 4), result.output
    return RunFolder(sorted((smoke_registry / "opt").iterdir())[-1]), result, spec, smoke_registry


def test_every_strategy_runs_on_the_same_graphs(optimized):
    run, _, _, _ = optimized
    stage = run.evaluation().stages["linear"]
    assert stage.is_optimization
    assert set(stage.sides) == {"parent_scale", "amortized_ei", "oracle", "random", "policy"}
    n, d = stage.truth.shape
    assert n == 4 and d == 5
    for name, side in stage.sides.items():
        assert side.trial_y.shape == (n, 4) and side.best_y.shape == (n, 4), name
        assert np.all(np.diff(side.best_y, axis=1) <= 0), name  # best so far never worsens
        np.testing.assert_allclose(side.best_y, np.minimum.accumulate(side.trial_y, axis=1))
        assert np.isfinite(side.seconds).all() and (side.seconds > 0).all(), name
    # regret is measured against the true optimum of the box the strategies search: no strategy
    # finds anything (much) better than the optimum (outcomes are means of 200 noisy draws)
    for side in stage.sides.values():
        assert (side.best_y[:, -1] >= stage.optimum - 0.3).all()
    oracle = stage.summary["oracle"]
    assert np.isfinite(oracle["simple_regret"].value) and oracle["gap_closure"].n == n
    assert "cumulative_regret" in stage.summary["random"]
    # the random strategy has no belief; the oracle's is the truth
    assert stage.summary["oracle"]["f1"].value == pytest.approx(1.0)


def test_gates_on_episodes_have_intervals(optimized):
    run, result, _, _ = optimized
    gates = run.read_json("gates.json")["gates"]
    assert [g["stage"] for g in gates] == ["linear", "linear"]
    for g in gates:
        assert g["verdict"] in ("GO", "NO-GO", "INCONCLUSIVE") and g["n"] == 4
        assert g["low"] is not None and g["low"] <= g["value"] <= g["high"]


def test_an_interrupted_optimize_stage_resumes_to_the_same_episodes(optimized, tmp_path):
    """Kill the stage after a few episodes (an exception in the progress callback stands in for
    the kill: finished episodes are on disk, the stage is not committed), then apply again: the
    episodes equal an uninterrupted run's bit for bit."""
    from engine.apply import apply
    from engine.plan import make_plan
    from engine.spec.loader import load as load_spec
    from engine.stages.context import Progress

    run, _, spec_path, root = optimized
    reference = run.evaluation().stages["linear"]
    plan = make_plan(load_spec(spec_path))
    stage = plan.stages["optimize.linear"].dir(root)
    stage.remove()
    plan.stages["evaluate"].dir(root).remove()

    class Kill(Progress):
        def advance(self, completed, note=""):
            if "episodes" in note and completed >= 7:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        apply(load_spec(spec_path), root, Kill())
    assert not stage.done and len(list(stage.work_dir().glob("episodes/*.npz"))) >= 7
    apply(load_spec(spec_path), root)
    resumed = RunFolder(sorted((root / "opt").iterdir())[-1]).evaluation().stages["linear"]
    for name, side in reference.sides.items():
        for f in ("trial_y", "best_y", "probs"):
            np.testing.assert_array_equal(getattr(side, f), getattr(resumed.sides[name], f), err_msg=(name, f))
    np.testing.assert_array_equal(reference.optimum, resumed.optimum)


def test_optimize_spec_errors_name_the_key(tmp_path):
    spec = _spec(tmp_path)
    text = spec.read_text()
    cases = [
        (text.replace('side = "oracle"', 'side = "orcale"'), "gates.0.side", "did you mean 'oracle'"),
        (text.replace('metric = "gap_closure"\nstage = "linear"', 'metric = "gap_closure"'),
         "gates.0.metric", "give stage = the name of an optimize problem"),
        (text.replace("[policy]", "[policy_typo]"), "policy_typo", "did you mean 'policy'"),
        (text.replace('acquisition = { kind = "random" }', 'acquisition = { kind = "randm" }'),
         "optimize.strategies.3.acquisition", "randm"),
    ]
    for i, (bad, path, message) in enumerate(cases):
        f = tmp_path / f"bad{i}.toml"
        f.write_text(bad)
        result = CliRunner().invoke(app, ["validate", str(f)])
        assert result.exit_code == 2, (i, result.output)
        assert path in result.stderr and message in result.stderr, (i, result.stderr)
