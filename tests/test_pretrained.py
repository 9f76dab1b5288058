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
