"""A run killed mid-training resumes from its checkpoint and ends with the very same parameters."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SPECS = Path(__file__).resolve().parents[1] / "specs"


def _apply(root, env=None):
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "apply", str(SPECS / "smoke.toml"), "--registry", str(root)],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600,
    )


def test_killed_training_resumes_bit_for_bit(smoke_registry, tmp_path):
    root = tmp_path / "reg"
    shutil.copytree(smoke_registry, root)
    reference = next((root / "_stages" / "train").glob("*/model.eqx")).read_bytes()
    for stage in ("train", "evaluate"):
        shutil.rmtree(root / "_stages" / stage)

    killed = _apply(root, {"ACBO_TEST_KILL_AFTER_CHECKPOINT": "20"})
    assert killed.returncode == -9, killed.stderr  # SIGKILL mid-training, after step 20
    partial = next((root / "_stages" / "train").glob("*.partial"))
    assert [p.name for p in (partial / "checkpoints").iterdir()] == ["ckpt-000000020.eqx"]
    from engine.report import list_runs

    dead = [r for r in list_runs(root) if r.lock and r.lock["status"] == "running"]
    assert [r.status for r in dead] == ["died"]  # its lock says running; its process is gone

    resumed = _apply(root)
    assert resumed.returncode == 0, resumed.stderr
    final = next((root / "_stages" / "train").glob("*/model.eqx")).read_bytes()
    assert final == reference
    steps = [line for line in next((root / "_stages" / "train").glob("*/metrics.jsonl")).read_text().splitlines()]
    assert len(steps) == 4  # logged at 10, 20 (before the kill), 30, 40: no duplicates


@pytest.mark.slow
def test_same_spec_and_seed_give_identical_metrics(smoke_registry, tmp_path):
    """Everything recomputed from scratch in a fresh registry scores exactly the same."""
    import json

    root = tmp_path / "fresh"
    assert _apply(root).returncode == 0
    from engine.registry import StageDir
    from engine.stages.evaluate import load

    def record(r):
        done = next(p for p in (r / "_stages" / "evaluate").iterdir() if (p / "manifest.json").exists())
        return load(StageDir("evaluate", done.name, r))

    first, second = record(smoke_registry), record(root)
    a, b = first.stage(), second.stage()
    for who in ("model", "expert", "random"):  # every prediction, bit for bit (timings aside)
        np.testing.assert_array_equal(a.sides[who].probs, b.sides[who].probs)
        np.testing.assert_array_equal(a.sides[who].pred, b.sides[who].pred)
        for metric, e in a.summary[who].items():
            if metric not in ("seconds", "speedup", "full_speedup"):
                assert e == b.summary[who][metric], (who, metric)
