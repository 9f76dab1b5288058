"""`acbo report --compare`'s half in engine.report.compare: metric changes with intervals (paired
on the same graphs), the spec diff, both training curves on one plot, unknown runs."""

import base64
import json
import re

import numpy as np
import pytest

from engine.evaluate.record import Evaluation, StageResult
from engine.report.compare import compare_runs, deltas, resolve, spec_changes
from engine.report.run import load_run
from test_report import GATES, METRICS_LOG, PNG_MAGIC, SPEC, TRAIN_LOG, make_evaluation, write_run

SPEC_B = {**SPEC, "train": {**SPEC["train"], "steps": 2000}, "model": {"kind": "stats", "dim": 32}}
TOML_A = 'name = "phase2a"\n[train]\nsteps = 1000\n'
TOML_B = 'name = "phase2a"\n[train]\nsteps = 2000\n'


def _better(ev: Evaluation) -> Evaluation:
    """The same graphs, the model's probabilities sharpened towards the truth."""
    stages = {}
    for name, st in ev.stages.items():
        m = st.sides["model"]
        probs = np.where(st.mask, 0.5 * m.probs + 0.5 * st.truth, 0.0)
        model = type(m)(**{**m.__dict__, "probs": probs, "pred": (probs > 0.5).astype(float)})
        from engine.evaluate.estimate import summarise

        st2 = StageResult(**{**st.__dict__, "sides": {**st.sides, "model": model}, "summary": {}})
        stages[name] = StageResult(**{**st2.__dict__, "summary": summarise(st2, ev.n_boot, ev.seed)})
    return Evaluation(stages, ev.threshold, ev.n_boot, ev.seed, ev.compile_seconds)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp") / "registry"
    ev = make_evaluation()
    a = write_run(root / "phase2a" / "20250101-120000-aaaa", ev, GATES, TRAIN_LOG, spec=SPEC, spec_toml=TOML_A)
    b = write_run(root / "phase2a" / "20250102-120000-bbbb", _better(ev), GATES, METRICS_LOG, spec=SPEC_B,
                  spec_toml=TOML_B, lock={"started": "2025-01-02T12:00:00+00:00"})
    other = write_run(root / "phase2b" / "20250103-120000-cccc", make_evaluation(seed=5), spec=SPEC)
    return root, a, b, other


def test_resolve_finds_runs_by_path_id_and_spec(pair):
    root, a, b, _ = pair
    assert resolve(root, str(a)) == a and resolve(root, "phase2a/20250101-120000-aaaa") == a
    assert resolve(root, "20250101-120000-aaaa") == a and resolve(root, "phase2a") == b  # newest
    assert resolve(root, "nope") is None and resolve(root, "_stages") is None


def test_deltas_are_paired_on_the_same_graphs_and_worded(pair):
    _, a, b, other = pair
    ra, rb = load_run(a), load_run(b)
    rows = deltas(ra, rb)
    f1 = next(d for d in rows if (d.stage, d.side, d.metric) == ("held_out", "model", "f1"))
    assert f1.paired and f1.change.value == pytest.approx(f1.b.value - f1.a.value)
    assert f1.change.low <= f1.change.value <= f1.change.high and f1.word == "better"
    expert = next(d for d in rows if (d.stage, d.side, d.metric) == ("held_out", "expert", "f1"))
    assert expert.change.value == 0 and expert.word == "no change"
    shd = next(d for d in rows if (d.stage, d.side, d.metric) == ("held_out", "model", "shd"))
    assert shd.change.value < 0 and shd.word in ("better", "no clear change")  # lower is better
    independent = deltas(ra, load_run(other))
    assert independent and not any(d.paired for d in independent)
    assert {(k, va, vb) for k, va, vb in spec_changes(ra, rb)} >= {("train.steps", 1000, 2000),
                                                                     ("model.dim", 16, 32)}


def test_compare_prints_writes_and_exits(pair, tmp_path, capsys):
    root, a, b, _ = pair
    reports = tmp_path / "reports"
    reports.mkdir()
    assert compare_runs(root, "phase2a/20250101-120000-aaaa", "20250102-120000-bbbb", reports, False) == 0
    out = capsys.readouterr().out
    assert "Metric changes (B - A)" in out and "better" in out
    stem = "compare_phase2a-20250101-120000-aaaa_phase2a-20250102-120000-bbbb"
    md, page = (reports / f"{stem}.md").read_text(), (reports / f"{stem}.html").read_text()
    assert "| held_out | model | F1 |" in md and "| train.steps | 1000 | 2000 |" in md
    assert "```diff" in md and "-steps = 1000" in md and "+steps = 2000" in md
    assert (reports / stem / "loss.png").read_bytes().startswith(PNG_MAGIC)
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == 1 and base64.b64decode(imgs[0]).startswith(PNG_MAGIC)
    assert '<span class="add">+steps = 2000</span>' in page and "B - A [95% CI]" in page

    assert compare_runs(root, "phase2a/20250101-120000-aaaa", "phase2a", reports, True) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["a"]["run_id"] == "20250101-120000-aaaa" and data["b"]["run_id"] == "20250102-120000-bbbb"
    row = next(d for d in data["deltas"] if (d["stage"], d["side"], d["metric"]) == ("held_out", "model", "f1"))
    assert row["paired"] and row["word"] == "better" and set(row["change"]) == {"value", "low", "high", "n"}
    assert {"setting": "train.steps", "a": 1000, "b": 2000} in data["spec_diff"]


def test_an_unknown_or_damaged_run_is_a_one_line_error(pair, tmp_path, capsys):
    root, a, _, _ = pair
    assert compare_runs(root, "phase2a/20250101-120000-aaaa", "no-such-run", tmp_path, False) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("compare: unknown run 'no-such-run'")
    bad = write_run(tmp_path / "reg" / "phase2a" / "r9", metrics=TRAIN_LOG)
    (bad / "metrics.jsonl").write_text("tampered\n")
    assert compare_runs(tmp_path / "reg", str(a), str(bad), tmp_path, False) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("compare: damaged file:") and "metrics.jsonl" in err
