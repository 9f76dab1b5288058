"""Shipped models (engine/pretrained): a run folder shipped under a name answers `acbo infer
DATA` / `--model NAME` / `engine.load(NAME)` with no training, verified like any run, and each
shipped model is still what its spec in specs/ trains."""

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import engine
from engine import pretrained
from engine.cli import app
from engine.plan import stage_hashes
from engine.runs import RunFolder
from engine.spec.loader import load

from conftest import SPECS as SPECS_DIR
from test_infer import files, run_dir  # noqa: F401 - the shared fixture


@pytest.fixture
def shipped_smoke(smoke_registry, tmp_path, monkeypatch):
    """The smoke run shipped as 'general' into an empty pretrained folder."""
    monkeypatch.setattr(pretrained, "HERE", tmp_path / "pretrained")
    (tmp_path / "pretrained").mkdir()
    return pretrained.ship(run_dir(smoke_registry), "general")


def test_a_shipped_model_answers_with_no_model_named(shipped_smoke, smoke_registry, files, tmp_path):  # noqa: F811
    empty = tmp_path / "empty-registry"
    empty.mkdir()
    expected = engine.load(run_dir(smoke_registry)).graph(files["data"]).probs
    assert pretrained.names() == ["general"]
    np.testing.assert_array_equal(engine.load("general", registry=empty).graph(files["data"]).probs, expected)
    for args in (["infer", str(files["data"])], ["infer", "--model", "general", str(files["data"])],
                 ["infer", "general", str(files["data"])]):
        out = tmp_path / "graph.csv"
        res = CliRunner().invoke(app, [*args, "--registry", str(empty), "--output", str(out)])
        assert res.exit_code == 0, res.output
        assert str(shipped_smoke) in res.output  # names the model it used
        got = np.loadtxt(out, delimiter=",", skiprows=1, usecols=range(1, 5))
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_interventions_and_counts_get_their_own_model_where_it_ships(shipped_smoke, smoke_registry, files, tmp_path):  # noqa: F811
    empty = tmp_path / "empty-registry"
    empty.mkdir()
    args = ["infer", str(files["data"]), "--interventions", str(files["mask"]), "--registry", str(empty)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and str(shipped_smoke) in res.output  # general_int not shipped: general
    interventional = pretrained.ship(run_dir(smoke_registry), "general_int")
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and str(interventional) in res.output, res.output
    res = CliRunner().invoke(app, ["infer", str(files["data"]), "--registry", str(empty)])
    assert res.exit_code == 0 and str(shipped_smoke) in res.output  # observational data: general
    counts = pretrained.ship(run_dir(smoke_registry), "general_grn")
    lines = files["data"].read_text().splitlines()
    umis = tmp_path / "umis.csv"
    rows = [",".join(str(int(abs(float(v)))) for v in line.split(",")) for line in lines[1:]]
    umis.write_text("\n".join([lines[0], *rows]) + "\n")
    res = CliRunner().invoke(app, ["infer", str(umis), "--counts", "--registry", str(empty)])
    assert res.exit_code == 0 and str(counts) in res.output, res.output  # counts: general_grn
    res = CliRunner().invoke(app, ["infer", str(umis), "--counts", "--interventions", str(files["mask"]),
                                   "--registry", str(empty)])
    assert res.exit_code == 0 and str(counts) in res.output, res.output  # knock-outs: general_grn


def test_a_damaged_shipped_model_is_named_not_used(shipped_smoke, files, tmp_path):  # noqa: F811
    model = shipped_smoke / "model.eqx"
    model.write_bytes(model.read_bytes()[:-8] + b"damaged!")
    res = CliRunner().invoke(app, ["infer", str(files["data"]), "--registry", str(tmp_path)])
    assert res.exit_code == 2 and "model.eqx" in res.output and "checksum mismatch" in res.output
    assert "Traceback" not in res.output


def test_unknown_model_and_too_many_arguments_are_usage_errors(shipped_smoke, files, tmp_path):  # noqa: F811
    res = CliRunner().invoke(app, ["infer", "--model", "generl", str(files["data"]), "--registry", str(tmp_path)])
    assert res.exit_code == 2 and "did you mean" in res.output and "general" in res.output
    res = CliRunner().invoke(app, ["infer", "general", "--model", "general", str(files["data"])])
    assert res.exit_code == 2 and "at most one model" in res.output


@pytest.mark.parametrize("name", pretrained.names())
def test_each_shipped_model_is_what_its_spec_trains(name):
    """Its files verify, and its train stage's hash is the one its spec in specs/ gives today:
    `acbo apply specs/<spec>.toml` trains this model again."""
    folder = RunFolder(pretrained.path(name))
    folder.verify()
    lock = folder.read_json("lock.json")
    spec_file = load(SPECS_DIR / f"{lock['spec_name']}.toml")
    assert stage_hashes(spec_file)["train"].hash == lock["stage_hashes"]["train"]
    assert folder.path.stat().st_size < 50e6 and (folder.path / "model.eqx").stat().st_size < 10e6


def test_no_model_named_and_none_shipped_says_what_to_give(files, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(pretrained, "HERE", tmp_path)
    res = CliRunner().invoke(app, ["infer", str(files["data"]), "--registry", str(tmp_path)])
    assert res.exit_code == 2 and "ships no 'general' model" in res.output and "--model" in res.output


def _linear_er2(d, n, seed):
    """Linear-Gaussian ER-2 data written here (not acbo's simulator): weights +-U(0.5, 2), noise
    scales U(0.5, 1.5), variables in a random order."""
    rng = np.random.default_rng(seed)
    adj = np.triu(rng.random((d, d)) < 4 / (d - 1), 1)
    w = rng.uniform(0.5, 2.0, (d, d)) * rng.choice([-1.0, 1.0], (d, d)) * adj
    scale = rng.uniform(0.5, 1.5, d)
    x = np.zeros((n, d))
    for j in range(d):
        x[:, j] = x @ w[:, j] + scale[j] * rng.normal(size=n)
    perm = rng.permutation(d)
    return x[:, perm], adj[np.ix_(perm, perm)]


@pytest.mark.parametrize("name", pretrained.names())
def test_each_shipped_model_finds_graphs_in_data_it_never_saw(name):
    """On linear ER-2 data sampled here, the shipped weights rank true edges far above chance and
    predict a non-empty graph of about the right size (no collapse); rescaling a variable (new
    units) changes nothing."""
    predictor = engine.load(name)
    if predictor.counts:
        pytest.skip(f"{name} reads UMI counts; benchmarks/general.py scores it on GRN counts")
    scores, labels, predicted, true = [], [], 0, 0
    for seed in range(4):
        x, adj = _linear_er2(12, 1000, seed)
        names = [f"v{i}" for i in range(12)]
        probs = predictor.graph((x, names)).probs
        off = ~np.eye(12, dtype=bool)
        scores.append(probs[off])
        labels.append(adj[off])
        predicted, true = predicted + int((probs > 0.5).sum()), true + int(adj.sum())
        rescaled = predictor.graph((x * np.geomspace(1e-3, 1e3, 12), names)).probs
        np.testing.assert_allclose(rescaled, probs, atol=1e-4)
    s, y = np.concatenate(scores), np.concatenate(labels)
    auroc = (s[y][:, None] > s[~y][None, :]).mean() + 0.5 * (s[y][:, None] == s[~y][None, :]).mean()
    assert auroc > 0.85, auroc
    assert 0.3 * true < predicted < 2 * true, (predicted, true)


@pytest.mark.slow
@pytest.mark.parametrize("name", pretrained.names())
def test_training_again_from_the_spec_reproduces_the_shipped_run(name):
    """The first 100 steps trained again from specs/<name>.toml (the same keys as `acbo apply`)
    end at the loss the shipped run logged at step 100, to the last bit."""
    import json

    import jax

    from engine.train.sources import build_phases
    from engine.train.trainer import Trainer

    folder = RunFolder(pretrained.path(name))
    logged = json.loads(folder.read_bytes("metrics.jsonl").decode().splitlines()[0])
    assert logged["step"] == 100
    spec = load(SPECS_DIR / f"{folder.read_json('lock.json')['spec_name']}.toml").spec
    trainer = Trainer(spec, jax.devices()[:1])
    model_key, data_key = jax.random.split(jax.random.PRNGKey(spec.seed))
    phases = build_phases(spec)
    state = trainer.init(model_key, phases[0].source)
    _, losses, _ = trainer.run_steps(state, phases[0].source, data_key, 100)
    assert float(losses[-1]) == logged["loss"]
