"""Reading run folders (``registry/<spec_name>/<run_id>/``) for reports.

A run folder may hold any of ``lock.json``, ``resolved.json``, ``metrics.jsonl``, the evaluation
record (``evaluation.json`` + ``evaluation.npz``, read as a typed
:class:`~engine.evaluate.record.Evaluation`) and ``gates.json``: a run that only trained has no
evaluation, one that died has no results. Beside the run folder, the train stage's manifest (found by the lock's
stage hash) gives the training's wall time and warnings. What is absent is shown as absent; what is damaged (a
checksum that fails, a file the run's manifest does not list) is never read: the run is listed
with its `problem` and gets no report.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.evaluate.record import Evaluation
from engine.registry import MANIFEST, CorruptArtifact, read_manifest
from engine.runs import RunFolder, run_status

RUN_FILES = ("lock.json", "metrics.jsonl", "evaluation.json", "gates.json")
OLD_EVALUATION = ("evaluation.json is from an earlier acbo (no evaluation.npz beside it): apply "
                  "the spec again to evaluate and report it")


@dataclass(frozen=True)
class RunRecord:
    """Everything a report needs from one run folder (absent files are None / empty)."""

    path: Path
    lock: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    evaluation: Evaluation | None = None
    gates: dict[str, Any] | None = None  # gates.json: verdict, groups, gates (NaN as null)
    spec: dict[str, Any] | None = None  # resolved.json: the spec as it ran
    train: dict[str, Any] | None = None  # the train stage's record (manifest meta): seconds, ...
    notes: tuple[str, ...] = ()  # what the report cannot show, and why
    problem: str | None = None  # why this run folder cannot be trusted (damaged), else None

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
    def status(self) -> str | None:
        """The lock's status; `died` for a run whose process no longer runs; `damaged`."""
        return "damaged" if self.problem else run_status(self.lock)

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


def _dict(value: Any, path: Path) -> dict | None:
    if value is not None and not isinstance(value, dict):
        raise CorruptArtifact(f"{path}: expected a JSON object")
    return value


def load_run(run_dir: Path) -> RunRecord:
    """Read one run folder, every file verified; CorruptArtifact names the first damaged one."""
    folder = RunFolder(Path(run_dir))
    folder.verify()  # a report vouches for the whole run, spec and model included

    def read(name):
        return _dict(folder.read_json(name), folder.path / name) if folder.has(name) else None

    # The lock first: a running apply rewrites it, and every step between reading the manifest
    # and reading the lock widens the window in which the two disagree (parsing comes last).
    lock = read("lock.json")
    record = dict(
        path=folder.path, lock=lock, gates=read("gates.json"), spec=read("resolved.json"),
        metrics=[r for r in (folder.read_jsonl("metrics.jsonl") if folder.has("metrics.jsonl") else [])
                 if isinstance(r, dict)],
    )
    record["train"], notes = train_record(folder.path, lock)
    if not folder.has("evaluation.json"):
        return RunRecord(**record, notes=notes)
    if not folder.has("evaluation.npz"):
        return RunRecord(**record, notes=(*notes, OLD_EVALUATION))
    try:
        return RunRecord(**record, notes=notes, evaluation=folder.evaluation())
    except (KeyError, TypeError, ValueError) as exc:  # verified, yet not a record
        raise CorruptArtifact(f"{folder.path / 'evaluation.json'}: not an evaluation record "
                              f"({exc!r}); {folder.hint}") from None


def train_record(run_dir: Path, lock: dict | None) -> tuple[dict | None, tuple[str, ...]]:
    """The train stage's record (its manifest's meta: wall seconds, steps, warnings) for the
    stage hash in the run's lock, and a note when it cannot be read. The stage folder is
    `<registry>/_stages/train/<hash>`; a registry copied without `_stages` has none."""
    h = ((lock or {}).get("stage_hashes") or {}).get("train")
    if not h:
        return None, ()
    path = Path(run_dir).parents[1] / "_stages" / "train" / str(h) / MANIFEST
    if not path.is_file():
        return None, ()
    try:
        meta = read_manifest(path, "rerun with --force to recompute the train stage").get("meta")
    except CorruptArtifact as exc:
        return None, (f"the training's record is not shown: {exc}",)
    return (meta if isinstance(meta, dict) else None), ()


def training_run(run: RunRecord) -> str | None:
    """`<spec>/<run id>` of the oldest run that computed this run's train stage (the run that
    trained its model; this run itself when it did), None when no run here did (the registry
    holds the stage, not the run that built it)."""
    h = ((run.lock or {}).get("stage_hashes") or {}).get("train")
    if not h:
        return None
    import json

    found = []
    root = run.path.parents[1]
    for lock_path in root.glob("*/*/lock.json"):
        if lock_path.parts[-3].startswith("_"):
            continue
        try:
            lock = json.loads(lock_path.read_bytes())
        except (OSError, ValueError):
            continue
        if (isinstance(lock, dict) and (lock.get("stage_hashes") or {}).get("train") == h
                and "train" in (lock.get("computed") or [])):
            found.append((str(lock.get("started") or ""), f"{lock_path.parts[-3]}/{lock_path.parts[-2]}"))
    return min(found)[1] if found else None


def _load_or_damaged(run_dir: Path, settle: float = 0.5, patience: float = 5.0) -> RunRecord:
    """load_run, or a record with its `problem`. A running apply rewrites a file, then the
    manifest: a reader between the two renames sees a mismatch. So after a mismatch it waits up
    to `settle` seconds for the manifest to change (a writer descheduled on a busy machine may
    take a while) and reads again, for up to `patience` seconds in all; a manifest that stays
    as it is means real damage."""
    manifest = Path(run_dir) / MANIFEST
    deadline = time.monotonic() + patience
    while True:
        before = _stamp(manifest)
        try:
            return load_run(run_dir)
        except CorruptArtifact as exc:
            problem = str(exc)
        quiet_until = time.monotonic() + settle
        while _stamp(manifest) == before and time.monotonic() < quiet_until:
            time.sleep(0.01)
        if _stamp(manifest) == before or time.monotonic() > deadline:
            return RunRecord(path=Path(run_dir), problem=problem)


def _stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ino, st.st_size


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
    """All run folders ``<root>/<spec>/<run>/``, newest first; damaged ones carry `problem`."""
    root = Path(registry_root)
    runs = []
    if root.is_dir():
        for spec_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
            for run_dir in sorted(p for p in spec_dir.iterdir() if p.is_dir()):
                if any((run_dir / f).is_file() for f in RUN_FILES + (MANIFEST,)):
                    runs.append(_load_or_damaged(run_dir))
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
            return f"{x:.0f}"  # no thousands commas: they read as list separators in "[a, b]"
        return f"{x:.{digits}g}" if abs(x) > 1 else f"{x:.{digits}f}"
    return str(x)


def fmt_pct(share: Any) -> str:
    """A share as a percentage without trailing zeros: 0.25 -> "25", 0.01 -> "1", 0.005 -> "0.5"."""
    if not is_num(share):
        return "n/a"
    p = 100.0 * float(share)
    if p != 0 and abs(p) < 0.01:
        return f"{p:.1e}"
    return f"{p:.3g}" if abs(p) >= 1 else f"{p:.2g}"


def sig3(x: float) -> str:
    """Three significant digits, trailing zeros kept: 46.0, 1.80, 153, 0.153."""
    x = float(x)
    if x == 0 or not math.isfinite(x):
        return fmt(x)
    decimals = max(0, 2 - int(math.floor(math.log10(abs(x)))))
    return f"{x:.{decimals}f}"


def fmt_seconds(seconds: float | None) -> str:
    """A wall time: "153 ms" below a second, "46.0 s" below a minute, then "7 min 46 s"."""
    if not is_num(seconds):
        return "—"
    if abs(seconds) >= 60:
        return fmt_duration(seconds)
    scale, unit = time_unit(seconds)
    return f"{sig3(float(seconds) * scale)} {unit}"


def time_unit(seconds: float | None) -> tuple[float, str]:
    """(scale, unit) for showing `seconds` and numbers beside it (an interval) alike."""
    return (1e3, "ms") if is_num(seconds) and abs(seconds) < 1 else (1.0, "s")


def fmt_duration(seconds: float | None) -> str:
    """A run's or a stage's length: "46.2 s", "7 min 46 s", "1 h 05 min" (ms below a second)."""
    if not is_num(seconds):
        return "—"
    if abs(seconds) < 60:
        return fmt_seconds(seconds)
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


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
