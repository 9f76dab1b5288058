"""The spine end to end on specs/smoke.toml: apply, gate, report, cache reuse, corruption."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.cli import app

SPECS = Path(__file__).resolve().parents[1] / "specs"


@pytest.fixture(scope="module")
def applied(smoke_registry):
    return smoke_registry


def _runs(root):
    return sorted((root / "smoke").iterdir())


def test_apply_records_a_complete_run(applied):
    from engine.runs import RunFolder

    run = _runs(applied)[-1]
    lock = json.loads((run / "lock.json").read_text())
    assert lock["status"] == "complete"
    assert set(lock["stage_hashes"]) == {"simulate", "expert", "demonstrations", "train", "evaluate"}
    assert lock["seed"] == 0 and lock["devices"] and lock["versions"]["jax"]
    stage = RunFolder(run).evaluation().stage("held_out")
    for who in ("model", "expert", "random"):
        for metric in ("f1", "auroc", "auprc", "shd", "ece"):
            e = stage.summary[who][metric]
            assert e.n == stage.n_graphs and e.low <= e.value <= e.high, (who, metric)
    assert np.isfinite(stage.sides["expert"].seconds).sum() == min(stage.n_graphs, 20)
    assert (run / "metrics.jsonl").read_text().count("\n") >= 2
    assert (run / "spec.toml").read_text() == (SPECS / "smoke.toml").read_text()


def test_gate_reuses_every_stage_and_exits_with_the_verdict(applied):
    result = CliRunner().invoke(app, ["gate", str(SPECS / "smoke.toml"), "--registry", str(applied)])
    run = _runs(applied)[-1]
    gates = json.loads((run / "gates.json").read_text())
    assert result.exit_code == {"GO": 0, "NO-GO": 3, "INCONCLUSIVE": 4}[gates["verdict"]], result.output
    assert gates["verdict"] in result.output
    lock = json.loads((run / "lock.json").read_text())
    assert lock["computed"] == [] and len(lock["reused"]) == 5


def test_report_writes_markdown_and_html(applied, tmp_path):
    result = CliRunner().invoke(app, ["report", "--registry", str(applied), "--reports", str(tmp_path)])
    assert result.exit_code == 0, result.output
    html = list(tmp_path.glob("smoke-*.html"))
    assert html and "data:image/png;base64" in html[0].read_text()
    assert list(tmp_path.glob("smoke-*.md"))


def test_corrupted_artifact_is_named_and_recomputed_with_force(applied, tmp_path):
    root = tmp_path / "reg"
    shutil.copytree(applied, root)
    lock = json.loads((_runs(root)[-1] / "lock.json").read_text())  # smoke's own stage, not another spec's
    demos = root / "_stages" / "demonstrations" / lock["stage_hashes"]["demonstrations"] / "train.obs.npy"
    demos.write_bytes(demos.read_bytes()[:-10] + b"corrupted!")
    bad = CliRunner().invoke(app, ["apply", str(SPECS / "smoke.toml"), "--registry", str(root)])
    assert bad.exit_code == 2
    assert "train.obs.npy" in bad.output and "checksum mismatch" in bad.output and "--force" in bad.output
    assert "Traceback" not in bad.output
    good = CliRunner().invoke(app, ["apply", str(SPECS / "smoke.toml"), "--registry", str(root), "--force"])
    assert good.exit_code == 0, good.output


def test_overrides_change_the_hash_and_are_recorded(applied):
    result = CliRunner().invoke(
        app, ["plan", str(SPECS / "smoke.toml"), "--registry", str(applied), "--set", "train.steps=20"]
    )
    assert result.exit_code == 0, result.output
    assert "cached" in result.output and "to run" in result.output  # data reused, training not


def test_plan_refuses_a_batch_that_does_not_divide_over_the_devices(applied):
    import jax

    n = len(jax.devices())
    result = CliRunner().invoke(app, ["plan", str(SPECS / "smoke.toml"), "--set", f"train.batch_size={n + 1}"])
    if n > 1:
        assert result.exit_code == 2 and "does not divide" in result.output
    result = CliRunner().invoke(app, ["plan", str(SPECS / "smoke.toml"), "--set", "hardware.max_wall_minutes=0.01"])
    assert result.exit_code == 2 and "exceeds hardware.max_wall_minutes" in result.output
