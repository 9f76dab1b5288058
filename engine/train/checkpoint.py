"""Checkpoints: a JSON header line, then Equinox-serialised leaves; checksummed, atomic, pruned.

    {"format": "acbo-checkpoint/1", "step": 400, "sha256": "...", ...}\\n<eqx leaves>

`ckpt-<step>.eqx` hold the whole train state (the newest `keep` are kept); `best.eqx` holds the
model with the best validation loss so far (early stopping), never pruned.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import equinox as eqx

from engine.registry import sha256_bytes, write_atomic

FORMAT = "acbo-checkpoint/1"
_NAME = re.compile(r"^ckpt-(\d{9})\.eqx$")


BEST = "best.eqx"


def _write(path: Path, step: int, tree, meta: dict | None) -> Path:
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    payload = buf.getvalue()
    header = {"format": FORMAT, "step": step, "sha256": sha256_bytes(payload), **(meta or {})}
    write_atomic(path, json.dumps(header).encode() + b"\n" + payload)
    return path


def save(directory: Path, step: int, tree, meta: dict | None = None, keep: int = 2) -> Path:
    """Write checkpoint `step` of `tree` and drop all but the newest `keep`."""
    path = _write(Path(directory) / f"ckpt-{step:09d}.eqx", step, tree, meta)
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def save_best(directory: Path, step: int, tree, meta: dict | None = None) -> Path:
    """Write `tree` (the best model so far, from step `step`) as `best.eqx`."""
    return _write(Path(directory) / BEST, step, tree, meta)


def list_checkpoints(directory: Path) -> list[Path]:
    directory = Path(directory)
    if not directory.exists():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def read(path: Path, like):
    """(header, tree) of a checkpoint; ValueError if it is torn or its checksum fails."""
    data = Path(path).read_bytes()
    head, sep, payload = data.partition(b"\n")
    try:
        header = json.loads(head)
    except json.JSONDecodeError:
        raise ValueError(f"{path}: unreadable checkpoint header") from None
    if not sep or header.get("format") != FORMAT or sha256_bytes(payload) != header.get("sha256"):
        raise ValueError(f"{path}: checkpoint checksum mismatch")
    try:
        return header, eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    except (RuntimeError, ValueError, TypeError) as exc:  # Equinox: a leaf of another shape or kind
        raise ValueError(f"{path}: written for another model layout ({exc})") from None


def latest(directory: Path, like, warn=print):
    """The newest checkpoint that reads back intact, as (header, tree), or None. Where none does
    (torn, or written by code whose model had another layout under the same stage hash), they
    are set aside as `*.unusable`: left in place, they would crash a resume and be pruned in
    place of the fresh run's own checkpoints."""
    unusable = []
    for path in reversed(list_checkpoints(directory)):
        try:
            return read(path, like)
        except ValueError as exc:
            warn(f"skipping {exc}")
            unusable.append(path)
    for path in unusable:
        path.replace(path.with_name(path.name + ".unusable"))
    return None
