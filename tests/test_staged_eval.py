"""Staged evaluation end to end on a tiny spec: every declared stage, every method, one record."""

import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.evaluate import procedure
from engine.evaluate.baselines import available
from engine.runs import RunFolder

REPO = Path(__file__).resolve().parents[1]
ECOLI = REPO.parent / "shared" / "data" / "bnlearn" / "ecoli70_lgbn.npz"

STAGED = """
version = 1
name = "staged"
seed = 3

[stage]
uses = "smoke"

[scm]
n_nodes = {{ low = 3, high = 5 }}
n_obs = 60
graphs = [{{ kind = "erdos_renyi", edges_per_node = 1.0 }}]
interventions = {{ kind = "hard", value = {{ dist = "uniform", low = -5.0, high = 5.0 }}, rows_per_node = 2 }}

[expert]
kind = "parent_scale"
prior = {{ kind = "uniform", max_parents = 2 }}

[data]
n_graphs = 8
split = {{ train = 0.0, validation = 0.0, heldout = 1.0 }}

[evaluation]
timing_repeats = 1
timed_graphs = 3
n_boot = 200
models = ["smoke_kl"]

[[evaluation.stages]]
name = "held_out"

[[evaluation.stages]]
name = "rff"
n_graphs = 6
scm = {{ mechanism = [{{ kind = "rff" }}] }}

[[evaluation.stages]]
name = "observational"
n_graphs = 6
observational = true

[[evaluation.stages]]
name = "larger"
n_graphs = 4
scm = {{ n_nodes = 10 }}
baselines = ["pc", "random"]

{ecoli}

[[gates]]
metric = "f1"
stage = "rff"
vs = "expert"
max = 0.9

[[gates]]
metric = "auroc"
stage = "larger"
side = "smoke_kl"
min = 0.5
"""

ECOLI_STAGE = f"""
[[evaluation.stages]]
name = "ecoli70"
n_graphs = 2
scm = {{ graphs = [{{ kind = "from_file", path = "{ECOLI}" }}], n_obs = 200 }}
expert = {{ prior = {{ kind = "uniform_singletons" }} }}
baselines = ["pc"]
"""


@pytest.fixture(scope="module")
def staged(smoke_registry, tmp_path_factory):
    specs = tmp_path_factory.mktemp("specs")
    shutil.copy(REPO / "specs" / "smoke.toml", specs / "smoke.toml")
    kl = (REPO / "specs" / "smoke.toml").read_text().replace('name = "smoke"', 'name = "smoke_kl"')
    (specs / "smoke_kl.toml").write_text(kl.replace('kind = "bce"', 'kind = "kl_expert"'))
    ecoli = ECOLI_STAGE if ECOLI.exists() else ""
    (specs / "staged.toml").write_text(STAGED.format(ecoli=ecoli).replace("{{", "{").replace("}}", "}"))
    result = CliRunner().invoke(app, ["gate", str(specs / "staged.toml"), "--registry", str(smoke_registry)])
    assert result.exit_code in (0, 3, 4), result.output
    run = sorted((smoke_registry / "staged").iterdir())[-1]
    return RunFolder(run), result, specs, smoke_registry


def test_every_stage_and_method_is_in_the_record(staged):
    run, result, _, _ = staged
    evaluation = run.evaluation()
    names = ["held_out", "rff", "observational", "larger"] + (["ecoli70"] if ECOLI.exists() else [])
    assert list(evaluation.stages) == names
    for name, stage in evaluation.stages.items():
        expected = {"model", "smoke_kl", "expert", "random"} | ({"pc"} if available("pc") is None else set())
        if name not in ("larger", "ecoli70"):
            expected |= {"ges"} if available("ges") is None else set()
        if name == "ecoli70":
            expected -= {"random"}
        assert set(stage.sides) == expected, name
        n, d = stage.truth.shape
        for side_name, side in stage.sides.items():
            assert side.probs.shape == (n, d) and np.isfinite(side.probs).all(), (name, side_name)
        # the models and the expert are timed on the first timed_graphs graphs only
        for side_name in ("model", "smoke_kl", "expert"):
            s = stage.sides[side_name].seconds
            assert np.isfinite(s[:3]).all() and np.isnan(s[3:]).all()
        model = stage.summary["model"]
        assert model["auroc"].low <= model["auroc"].value <= model["auroc"].high
        assert model["f1"].n == n
    assert evaluation.stage("larger").truth.shape[1] == 10
    if ECOLI.exists():
        assert evaluation.stage("ecoli70").truth.shape[1] == 46
    # observational: nobody saw an interventional row
    assert evaluation.stage("observational").info["interventional_rows"] == 0
    assert evaluation.stage("held_out").info["interventional_rows"] > 0


def test_gates_read_the_record_and_name_their_stage(staged):
    run, result, _, _ = staged
    gates = run.read_json("gates.json")
    assert [g["stage"] for g in gates["gates"]] == ["rff", "larger"]
    assert gates["gates"][1]["side"] == "smoke_kl"
    assert all(g["verdict"] in ("GO", "NO-GO", "INCONCLUSIVE") for g in gates["gates"])
    assert gates["verdict"] in result.output


def test_a_second_gate_reuses_every_stage(staged):
    """...and the run that recorded them: no duplicate run folder."""
    run, _, specs, root = staged
    before = sorted((root / "staged").iterdir())
    result = CliRunner().invoke(app, ["gate", str(specs / "staged.toml"), "--registry", str(root), "--json"])
    assert result.exit_code in (0, 3, 4), result.output
    doc = json.loads(result.stdout)
    assert doc["new_run"] is False and doc["computed"] == []
    assert sorted((root / "staged").iterdir()) == before
    assert {"simulate.rff", "expert.rff", "evaluate"} <= set(doc["reused"])


def test_a_missing_baseline_is_skipped_with_the_install_command(monkeypatch):
    reason = 'causal-learn is not installed; install it with: pip install -e ".[baselines]"'
    monkeypatch.setattr(procedure, "available", lambda name: None if name == "random" else reason)
    rng = np.random.default_rng(0)
    n, d, rows = 3, 4, 2
    adjacency = np.triu(rng.random((n, d, d)) < 0.5, 1)
    inputs = procedure.StageInputs(
        obs=rng.normal(size=(n, 20, d)).astype(np.float32), rows_values=np.zeros((n, rows, d), np.float32),
        rows_mask=np.zeros((n, rows, d), bool), rows_valid=np.zeros((n, rows), bool),
        var_mask=np.ones((n, d), bool), target=np.full(n, d - 1), adjacency=adjacency,
        marginals=np.full((n, d), 0.3), set_probs=np.ones((n, 1)), sets=np.zeros((n, 1, 1), int),
        run_seconds=np.ones(n),
    )
    record, _ = procedure.evaluate_stage("s", "", inputs, {}, object(), ("pc", "ges", "random"), 0.5,
                                         timed_graphs=0, repeats=1, key=None, seed=0)
    assert set(record.sides) == {"expert", "random"}
    assert record.info["skipped"] == {"pc": reason, "ges": reason}


def test_an_evaluated_model_must_be_a_spec_beside_this_one(tmp_path):
    shutil.copy(REPO / "specs" / "smoke.toml", tmp_path / "smoke.toml")
    text = (REPO / "specs" / "smoke.toml").read_text().replace(
        "timing_repeats = 1", 'timing_repeats = 1\nmodels = ["smok"]')
    (tmp_path / "other.toml").write_text(text.replace('name = "smoke"', 'name = "other"'))
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "other.toml")])
    assert result.exit_code == 2
    line = text.splitlines().index('models = ["smok"]') + 1
    assert f"other.toml:{line}: evaluation.models.0: no spec named 'smok'" in result.output
    assert "did you mean 'smoke'" in result.output


class _Unsure:
    """A stand-in model that gives every edge probability 0.4 (its parent head the same)."""

    def __call__(self, x, r, v, t):
        return jnp.full(v.shape, np.log(0.4 / 0.6))

    def graph(self, x, r, v):
        d = v.shape[0]
        return jnp.where(jnp.eye(d, dtype=bool), -1e9, np.log(0.4 / 0.6))


@pytest.mark.parametrize("decision", ["threshold", "expected_f1"])
def test_the_graph_decision_makes_the_models_graph_and_is_recorded(decision):
    from engine.evaluate.decision import ExpectedF1, Threshold
    from engine.evaluate.record import Evaluation

    rng = np.random.default_rng(0)
    n, d = 2, 5
    inputs = procedure.StageInputs(
        obs=rng.normal(size=(n, 20, d)).astype(np.float32), rows_values=np.zeros((n, 1, d), np.float32),
        rows_mask=np.zeros((n, 1, d), bool), rows_valid=np.zeros((n, 1), bool),
        var_mask=np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool), target=np.zeros(n, int),
        adjacency=np.triu(np.ones((n, d, d), bool), 1), marginals=np.full((n, d), 0.3),
        set_probs=np.ones((n, 1)), sets=np.zeros((n, 1, 1), int), run_seconds=np.ones(n),
    )
    rule = ExpectedF1() if decision == "expected_f1" else Threshold(0.5)
    record, _ = procedure.evaluate_stage(
        "s", "", inputs, {"model": procedure.ModelUnderTest(_Unsure(), True)}, object(), (), 0.5,
        timed_graphs=0, repeats=1, key=None, seed=0, graph_decision=rule)
    graph = record.sides["model"].graph_pred
    if decision == "threshold":
        assert not graph.any()  # nothing reaches 0.5: the empty graph
    else:  # every pair is adjacent with q = 0.8: all of them, each one way, none on padding
        assert graph[0].sum() == 10 and graph[1].sum() == 3 and not graph[1][3:].any()
        assert not (graph * graph.transpose(0, 2, 1)).any()
    assert (record.sides["model"].pred == 0).all()  # parent sets stay the cut at `threshold`
    ev = Evaluation({"s": record}, 0.5, 10, 0, {}, decision)
    assert Evaluation.from_parts(ev.to_arrays(), ev.to_json()).graph_decision == decision


def test_the_spec_builds_its_graph_decision():
    from engine.evaluate.decision import ExpectedF1, Threshold
    from engine.spec.evaluation import EvaluationSpec

    assert EvaluationSpec().build_decision() == ExpectedF1()
    assert EvaluationSpec(graph_decision="threshold", threshold=0.3).build_decision() == Threshold(0.3)
