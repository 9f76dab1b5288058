"""The stages' Progress interface on a console: rich bars on a terminal, plain lines elsewhere.

- On a terminal: a bar per stage (spinner, done/total, elapsed, ETA, note); a stage's spinner
  turns into a check mark when the stage ends.
- Elsewhere (a CI log, a file, a pipe): one plain line when a stage starts, one at most every
  `interval` seconds while it runs (done/total, percent, elapsed, ETA, note) and one when it
  ends; no ANSI codes, no cursor movement.
- `quiet`: nothing but warnings.

Log lines are printed as written: never read as rich markup (`[[gates]]` stays `[[gates]]`), and
without the caller's file:line that `Console.log` adds.
"""

from __future__ import annotations

import os
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from engine.stages.context import Progress as StageProgress


def fmt_seconds(seconds: float | None) -> str:
    """h:mm:ss (or m:ss), '?' when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def eta(elapsed: float, completed: float, total: float | None) -> float | None:
    """Seconds left at the rate so far; None while it cannot be told."""
    if not total or completed <= 0 or elapsed <= 0:
        return None
    return max(0.0, elapsed * (total - completed) / completed)


def _is_warning(message: str) -> bool:
    return message.lstrip().lower().startswith(("warning", "error"))


class _Eta(ProgressColumn):
    """'ETA m:ss' while a stage with a known total runs; nothing once it has ended."""

    def render(self, task) -> Text:
        if task.finished or task.total is None:
            return Text("")
        left = task.time_remaining
        return Text(f"ETA {fmt_seconds(left)}" if left is not None else "ETA ?", style="progress.remaining")


class RichProgress(StageProgress):
    """Progress on `console`: bars when it is a terminal, plain lines otherwise (see module)."""

    def __init__(self, console: Console, quiet: bool = False, interval: float | None = None):
        self.console, self.quiet = console, quiet
        self.plain = not console.is_terminal or console.is_dumb_terminal
        self.interval = interval if interval is not None else float(os.environ.get("ACBO_PROGRESS_INTERVAL", 10))
        self._bar = None
        if not quiet and not self.plain:
            self._bar = Progress(
                SpinnerColumn(finished_text="[green]✓[/]"),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                _Eta(),
                TextColumn("{task.fields[note]}", markup=False),
                console=console,
                transient=False,
            )
        self._task = None
        # the current stage, for plain lines
        self._desc, self._total, self._done, self._note = "", None, 0.0, ""
        self._started = self._last = 0.0

    def __enter__(self) -> "RichProgress":
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self._end()
        if self._bar is not None:
            self._bar.__exit__(exc_type, *exc)

    # -- the interface ---------------------------------------------------------------------------

    def start(self, description: str, total: float | None) -> None:
        self._end()  # the previous stage ended where this one starts
        self._desc, self._total, self._done, self._note = description, total, 0.0, ""
        self._started = self._last = time.monotonic()
        if self._bar is not None:
            self._task = self._bar.add_task(description, total=total, note="")
        elif self.plain and not self.quiet:
            self._line(f"{description}: started" + (f" (0/{total:g})" if total else ""))

    def advance(self, completed: float, note: str = "") -> None:
        if not self._desc:
            return
        self._done, self._note = completed, note
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=completed, note=note)
        elif self.plain and not self.quiet and time.monotonic() - self._last >= self.interval:
            self._line(self._status())

    def log(self, message: str) -> None:
        if self.quiet and not _is_warning(message):
            return
        self._line(message)

    # -- helpers ---------------------------------------------------------------------------------

    def _status(self, ended: bool = False) -> str:
        elapsed = time.monotonic() - self._started
        parts = []
        if self._total:
            parts.append(f"{self._done:g}/{self._total:g} ({100 * self._done / self._total:.0f}%)")
        parts.append(f"{fmt_seconds(elapsed)} elapsed" if not ended else f"done in {fmt_seconds(elapsed)}")
        if not ended and self._total:
            parts.append(f"ETA {fmt_seconds(eta(elapsed, self._done, self._total))}")
        if self._note:
            parts.append(self._note)
        return f"{self._desc}: " + ", ".join(parts)

    def _end(self) -> None:
        """Mark the current stage ended: its spinner stops, its bar is full, its ETA goes."""
        if not self._desc:
            return
        if self._bar is not None and self._task is not None:
            done = self._total or max(self._done, 1.0)
            self._bar.update(self._task, total=done, completed=done)
            self._bar.stop_task(self._task)
        elif self.plain and not self.quiet:
            self._line(self._status(ended=True))
        self._desc, self._task = "", None

    def _line(self, message: str) -> None:
        self._last = time.monotonic()
        stamp = Text(time.strftime("%H:%M:%S "), style="dim")
        target = self._bar.console if self._bar is not None else self.console
        target.print(stamp + Text(message), markup=False, highlight=False, soft_wrap=True)
