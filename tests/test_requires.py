"""[stage] requires: a spec runs only once the specs it requires have a GO verdict."""

import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app

SMOKE = (Path(__file__).resolve().parents[1] / "specs" / "smoke.toml").read_text()


def _specs(tmp_path, auroc_min):
    d = tmp_path / f"specs{auroc_min}"
    d.mkdir()
    # nogo_below = min: a hard bound, NO-GO whenever the value is below it (no middle zone)
    gates = f'[[gates]]\nmetric = "auroc"\nmin = {auroc_min}\nnogo_below = {auroc_min}\n'
    base = SMOKE[: SMOKE.index("[[gates]]")]
    (d / "smoke.toml").write_text(base + gates)
    after = base.replace('name = "smoke"', 'name = "after"') + '\n[stage]\nrequires = ["smoke"]\n'
    (d / "after.toml").write_text(after)
    return d


def test_refuses_while_the_required_gate_is_no_go(smoke_registry, tmp_path):
    d = _specs(tmp_path, 1.0)  # an AUROC of 1 on the smoke spec's tiny model: it does not pass
    result = CliRunner().invoke(app, ["apply", str(d / "after.toml"), "--registry", str(smoke_registry)])
    assert result.exit_code == 3
    assert "requires smoke's gate to be GO; it is NO-GO" in result.output
    assert "Traceback" not in result.output


def test_refuses_when_the_required_spec_was_never_evaluated(tmp_path):
    d = _specs(tmp_path, 0.0)
    result = CliRunner().invoke(app, ["apply", str(d / "after.toml"), "--registry", str(tmp_path / "empty")])
    assert result.exit_code == 3
    assert "has not been evaluated" in result.output and "acbo gate" in result.output


def test_runs_once_the_required_gate_is_go(smoke_registry, tmp_path):
    root = tmp_path / "reg"
    shutil.copytree(smoke_registry, root)
    d = _specs(tmp_path, 0.0)
    result = CliRunner().invoke(app, ["apply", str(d / "after.toml"), "--registry", str(root)])
    assert result.exit_code == 0, result.output
    assert (root / "after").is_dir()
