"""Reading run folders (``registry/<spec_name>/<run_id>/``) for reports, tolerating missing parts.

A run folder may hold any of ``lock.json``, ``metrics.jsonl``, ``evaluation.json``,
``gates.json``; a run that only trained has no evaluation, one still running may have a torn last
metrics line. Reports never fail on these: what is absent is shown as absent.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

RUN_FILES = ("lock.json", "metrics.jsonl", "evaluation.json", "gates.json")


@dataclass(frozen=True)
class RunRecord:
    """Everything a report needs from one run folder (absent files are None / empty)."""

    path: Path
    lock: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None
    gates: dict[str, Any] | None = None

    @property
    def spec_name(self) -> str:
        return str((self.lock or {}).get("spec_name") or self.path.parent.name)

    @property
    def run_id(self) -> str:
        return str((self.lock or {}).get("run_id") or self.path.name)

    @property
    def slug(self) -> str:
        """``<spec_name>-<run_id>``: the report's file stem."""
        return f"{self.spec_name}-{self.run_id}"

    @property
    def started(self) -> datetime | None:
        return parse_time((self.lock or {}).get("started"))

    @property
    def finished(self) -> datetime | None:
        return parse_time((self.lock or {}).get("finished"))

    @property
    def verdict(self) -> str | None:
        return (self.gates or {}).get("verdict")

    @property
    def duration_s(self) -> float | None:
        s, f = self.started, self.finished
        if s is None or f is None:
            return None
        try:
            return (f - s).total_seconds()
        except TypeError:  # one naive, one aware timestamp
            return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        text = path.read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:  # a torn line from a run still writing
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def load_run(run_dir: Path) -> RunRecord:
    """Read one run folder; missing or unreadable files become None / []."""
    run_dir = Path(run_dir)
    return RunRecord(
        path=run_dir,
        lock=_read_json(run_dir / "lock.json"),
        metrics=_read_jsonl(run_dir / "metrics.jsonl"),
        evaluation=_read_json(run_dir / "evaluation.json"),
        gates=_read_json(run_dir / "gates.json"),
    )


def _sort_key(run: RunRecord) -> float:
    s = run.started
    if s is not None:
        try:
            return s.timestamp()
        except (OverflowError, OSError, ValueError):
            pass
    try:
        return run.path.stat().st_mtime
    except OSError:
        return 0.0


def list_runs(registry_root: Path) -> list[RunRecord]:
    """All run folders ``<root>/<spec>/<run>/`` holding at least one run file, newest first."""
    root = Path(registry_root)
    runs = []
    if root.is_dir():
        for spec_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for run_dir in sorted(p for p in spec_dir.iterdir() if p.is_dir()):
                if any((run_dir / f).is_file() for f in RUN_FILES):
                    runs.append(load_run(run_dir))
    return sorted(runs, key=_sort_key, reverse=True)


# --------------------------------------------------------------------------- formatting


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a table: ints as ints, floats to ``digits`` significant places, '—' if absent."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "n/a"
        if math.isinf(x):
            return "∞" if x > 0 else "-∞"
        if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
            return f"{x:.{digits - 1}e}"
        if abs(x) >= 10 ** digits:
            return f"{x:,.0f}"
        return f"{x:.{digits}g}" if abs(x) > 1 else f"{x:.{digits}f}"
    return str(x)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f}s"
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def fmt_time(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if dt else "—"


def short_sha(lock: dict[str, Any] | None) -> str:
    lock = lock or {}
    sha = lock.get("git_sha")
    if not sha:
        return "—"
    return str(sha)[:8] + ("*" if lock.get("git_dirty") else "")


def short_hash(h: Any, n: int = 10) -> str:
    return str(h)[:n] if h else "—"
