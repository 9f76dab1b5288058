"""Reports over run folders: rich console tables, markdown / HTML documents, PNG figures.

Importing this package does not import matplotlib (figures import it lazily) nor jax.
"""

from engine.report.console import (
    evaluation_table,
    gates_table,
    print_run,
    runs_table,
    timing_table,
    training_table,
)
from engine.report.document import write_index, write_report
from engine.report.run import RunRecord, list_runs, load_run

__all__ = [
    "RunRecord",
    "evaluation_table",
    "gates_table",
    "list_runs",
    "load_run",
    "print_run",
    "runs_table",
    "timing_table",
    "training_table",
    "write_index",
    "write_report",
]
