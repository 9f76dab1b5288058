"""Rich progress bars (with ETA) behind the stages' Progress interface."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from engine.stages.context import Progress as StageProgress


class RichProgress(StageProgress):
    def __init__(self, console: Console):
        self.console = console
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=console,
            transient=False,
        )
        self._task = None

    def __enter__(self) -> "RichProgress":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)

    def start(self, description: str, total: float | None) -> None:
        if self._task is not None:
            self._bar.stop_task(self._task)
        self._task = self._bar.add_task(description, total=total, note="")

    def advance(self, completed: float, note: str = "") -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=completed, note=note)

    def log(self, message: str) -> None:
        self._bar.console.log(message)
