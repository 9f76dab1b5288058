"""Reports over run folders: rich console tables, markdown / HTML documents, PNG figures.

Everything is read from a run's typed evaluation record (`engine.evaluate.record.Evaluation`)
and its gates.json; no metric is recomputed here. Importing this package does not import
matplotlib (figures import it lazily) nor jax.
"""

from engine.report.console import (
    evaluation_table,
    gates_table,
    print_run,
    runs_table,
    training_table,
)
from engine.report.document import write_index, write_report, write_reports
from engine.report.run import RunRecord, list_runs, load_run
from engine.report.verdict import verdict_line

__all__ = [
    "RunRecord",
    "evaluation_table",
    "gates_table",
    "list_runs",
    "load_run",
    "print_run",
    "runs_table",
    "training_table",
    "verdict_line",
    "write_index",
    "write_report",
    "write_reports",
]
