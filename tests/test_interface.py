"""The user-facing surface without a trained run: `import acbo`, versions, file modes, the CSV
reader, progress on and off a terminal, markup, --json of plan and report, --set into arrays."""

import io
import json
import os
import stat
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from engine.cli import app

SPECS = Path(__file__).resolve().parents[1] / "specs"
ANSI = "\x1b["


def test_import_acbo_is_light_and_has_the_api():
    code = ("import sys, acbo; print(acbo.__version__); print(callable(acbo.load)); "
            "print(any(m == 'jax' or m.startswith('jax.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent).stdout.split()
    assert out == [metadata.version("acbo"), "True", "False"]  # importing it loads no JAX
    import acbo
    import engine.infer

    assert acbo.Graph is engine.infer.Graph and acbo.InferError is engine.infer.InferError


def test_version_option():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"acbo {metadata.version('acbo')}"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_are_written_with_the_users_umask(tmp_path, umask, mode):
    from engine.registry import write_atomic, write_json
    from engine.userfiles import write_output

    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "a.bin", b"x")
        write_json(tmp_path / "b.json", {"x": 1})
        write_output(tmp_path / "c.csv", b"a,b\n")
    finally:
        os.umask(old)
    for name in ("a.bin", "b.json", "c.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.json", "c.csv"]  # no temporaries


def _slow_parse(text: str):
    """What the careful reader must agree with: the csv module and float, cell by cell."""
    import csv

    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    return tuple(c.strip() for c in rows[0]), np.array([[float(c) for c in r] for r in rows[1:]])


@pytest.mark.parametrize("variant", ["plain", "crlf", "bom", "blank_line", "quoted", "spaces", "one_row"])
def test_csv_reader_agrees_with_the_csv_module(tmp_path, variant):
    from engine.userfiles import _read_fast, read_csv

    rng = np.random.default_rng(1)
    x = rng.normal(size=(1 if variant == "one_row" else 50, 4)) * 10.0 ** rng.integers(-3, 4, size=4)
    lines = ["a,b,c,d"] + [",".join(repr(float(v)) for v in row) for row in x]
    if variant == "blank_line":
        lines.insert(3, "")
    if variant == "quoted":
        lines[0] = '"a",b,"c",d'
        lines[2] = ",".join(f'"{c}"' for c in lines[2].split(","))
    if variant == "spaces":
        lines = [", ".join(line.split(",")) for line in lines]
    text = ("\r\n" if variant == "crlf" else "\n").join(lines) + "\n"
    path = tmp_path / "x.csv"
    path.write_bytes((b"\xef\xbb\xbf" if variant == "bom" else b"") + text.encode())
    table = read_csv(path)
    names, values = _slow_parse(text)
    # NumPy's reader takes plain files; the csv module the rest (and every file with a problem)
    assert (_read_fast(path.read_bytes().decode("utf-8-sig")) is not None) == (variant not in ("blank_line", "quoted"))
    assert table.names == names
    np.testing.assert_array_equal(table.values, values)
    if variant == "blank_line":  # line numbers still point into the file
        assert table.line(2) == 5


def test_csv_reader_names_a_bad_cell_with_its_line(tmp_path):
    from engine.userfiles import InferError, read_csv

    rows = ["a,b"] + [f"{i},{i * 2}" for i in range(1, 30)]
    rows[17] = "17,1e999"
    (tmp_path / "x.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(InferError, match=r"x.csv:18: column 'b': 1e999 is beyond float32's range"):
        read_csv(tmp_path / "x.csv")


def _progress(console, **kw):
    from engine.progress import RichProgress

    with RichProgress(console, interval=0, **kw) as p:
        p.start("train stats on 36 demos", 40)
        for step in (10, 20, 30, 40):
            p.advance(step, f"loss {1 / step:.3f}")
        p.log("see [[gates]] and [bold]not bold[/bold]")
        p.log("WARNING: the trained model predicts an empty graph")
        p.start("evaluate on 1 stage(s)", None)
        p.advance(1, "held_out done")
    return p


def test_plain_progress_off_a_terminal():
    buf = io.StringIO()
    _progress(Console(file=buf, force_terminal=False, width=100, log_path=False))
    text = buf.getvalue()
    assert ANSI not in text and "progress.py" not in text
    assert "[[gates]] and [bold]not bold[/bold]" in text  # never read as markup
    lines = text.splitlines()
    assert any("train stats on 36 demos: 20/40 (50%)" in line and "ETA" in line for line in lines), text
    assert any("train stats on 36 demos: 40/40 (100%), done in" in line for line in lines), text
    assert any("evaluate on 1 stage(s): done in" in line for line in lines), text


def test_quiet_progress_keeps_only_warnings():
    buf = io.StringIO()
    _progress(Console(file=buf, force_terminal=False, width=100), quiet=True)
    assert buf.getvalue().count("\n") == 1 and "WARNING: the trained model" in buf.getvalue()


def test_terminal_progress_ends_each_stage_and_prints_logs_literally():
    buf = io.StringIO()
    p = _progress(Console(file=buf, force_terminal=True, width=120))
    tasks = p._bar.tasks
    assert len(tasks) == 2 and all(t.finished for t in tasks)  # no spinner left running
    assert "progress.py" not in buf.getvalue()
    assert "[[gates]]" in buf.getvalue()


def test_gates_in_brackets_are_printed_literally(tmp_path):
    spec = tmp_path / "nogates.toml"
    spec.write_text("\n".join(line for line in (SPECS / "smoke.toml").read_text().splitlines()
                              if "gates" not in line and not line.startswith(("metric", "aggregate", "min"))))
    result = CliRunner().invoke(app, ["gate", str(spec), "--registry", str(tmp_path / "reg")])
    assert result.exit_code == 2, result.output
    assert "declares no [[gates]]" in result.output


def test_plan_json(tmp_path):
    result = CliRunner().invoke(app, ["plan", str(SPECS / "smoke.toml"), "--registry", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["spec"] == "smoke" and doc["devices"]
    assert [s["name"] for s in doc["stages"]] == ["simulate", "expert", "demonstrations", "train", "evaluate"]
    assert {s["state"] for s in doc["stages"]} == {"to run"} and all(len(s["hash"]) == 16 for s in doc["stages"])


def test_plan_table_off_a_terminal_is_plain():
    result = CliRunner().invoke(app, ["plan", str(SPECS / "smoke.toml")])
    assert result.exit_code == 0 and ANSI not in result.output


def test_report_json_of_an_empty_registry(tmp_path):
    result = CliRunner().invoke(app, ["report", "--registry", str(tmp_path / "none"),
                                      "--reports", str(tmp_path / "rep"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"registry": str(tmp_path / "none"), "reports": str(tmp_path / "rep"),
                                         "index": None, "runs": []}


def test_set_reaches_entries_of_arrays_of_tables():
    from engine.spec.loader import load

    spec = load(SPECS / "phase2a_curriculum.toml",
                ["train.steps=5000", "train.curriculum.0.steps=2000", "train.curriculum.1.n_nodes.high=10"]).spec
    assert spec.train.steps == 5000 and spec.train.curriculum[0].steps == 2000
    assert spec.train.curriculum[1].n_nodes.high == 10
    result = CliRunner().invoke(app, ["validate", str(SPECS / "phase2a_curriculum.toml"),
                                      "--set", "train.curriculum.7.steps=50"])
    assert result.exit_code == 2 and "has 2 element(s)" in result.output


def test_report_compare_calls_the_comparison(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("engine.report.compare")
    fake.compare_runs = lambda registry, a, b, reports_dir, as_json: calls.append(
        (registry, a, b, reports_dir, as_json)) or 3
    monkeypatch.setitem(sys.modules, "engine.report.compare", fake)
    result = CliRunner().invoke(app, ["report", "--registry", str(tmp_path / "reg"), "--reports",
                                      str(tmp_path / "rep"), "--compare", "run-a", "run-b", "--json"])
    assert result.exit_code == 3, result.output
    assert calls == [(tmp_path / "reg", "run-a", "run-b", tmp_path / "rep", True)]
