"""`acbo report` over 20 runs whose reports are current takes under 10 s: a current report is
not redrawn (its stamp matches), and the index figure is reused."""

import time

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.report import write_reports
from test_report import GATES, SPEC, TRAIN_LOG, make_evaluation, write_run


@pytest.mark.slow
def test_twenty_current_runs_report_in_under_ten_seconds(tmp_path):
    root, reports = tmp_path / "registry", tmp_path / "reports"
    evaluation = make_evaluation()
    runs = [write_run(root / "phase2b" / f"20250101-1200{i:02d}-abcd", evaluation, GATES, TRAIN_LOG, spec=SPEC,
                      lock={"started": f"2025-01-01T12:00:{i:02d}+00:00"}) for i in range(20)]
    write_reports(runs, reports)  # the first drawing: every figure of every run
    args = ["report", "--registry", str(root), "--reports", str(reports)]
    assert CliRunner().invoke(app, args).exit_code == 0  # the index figure
    html = sorted(reports.glob("*.html"))
    stamps = [p.stat().st_mtime_ns for p in html]
    started = time.perf_counter()
    result = CliRunner().invoke(app, args)
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    assert [p.stat().st_mtime_ns for p in html if p.name != "index.html"] == \
        [s for p, s in zip(html, stamps) if p.name != "index.html"]  # nothing redrawn
    assert seconds < 10, f"acbo report over 20 current runs took {seconds:.1f} s"
