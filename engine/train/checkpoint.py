"""Checkpoints: a JSON header line, then Equinox-serialised leaves; checksummed, atomic, pruned.

    {"format": "acbo-checkpoint/1", "step": 400, "sha256": "...", ...}\\n<eqx leaves>

`ckpt-<step>.eqx` hold the whole train state (the newest `keep` are kept); `best.eqx` holds the
model with the best validation loss so far (early stopping), never pruned.

A checkpoint records the code that wrote it (`code_fingerprint`): a stage hash names a spec, not
the code, so a run resumed from a checkpoint of other code would mix two programs' steps, and
the result would match neither (it happened: a shipped model's first 100 steps came from an
earlier version of a feature). Such checkpoints are set aside and training starts over.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import io
import json
import re
from pathlib import Path

import equinox as eqx

from engine.registry import sha256_bytes, write_atomic

FORMAT = "acbo-checkpoint/1"
_NAME = re.compile(r"^ckpt-(\d{9})\.eqx$")


BEST = "best.eqx"
# what a training step runs: its sources and the libraries whose numerics it depends on
_STEP_PACKAGES = ("models", "train", "scm", "data", "spec", "cbo")
_STEP_LIBRARIES = ("jax", "jaxlib", "numpy", "equinox", "optax")


@functools.cache
def code_fingerprint() -> str:
    """A hash of the engine sources a training step runs and of its numeric libraries' versions."""
    return fingerprint_of(Path(__file__).resolve().parents[1])


def fingerprint_of(root: Path) -> str:
    """`code_fingerprint` of the engine package at `root`."""
    digest = hashlib.sha256()
    for package in _STEP_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    for lib in _STEP_LIBRARIES:
        digest.update(f"{lib}=={importlib.metadata.version(lib)}\0".encode())
    return digest.hexdigest()[:16]


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


def latest(directory: Path, like, warn=print, code: str | None = None):
    """The newest checkpoint that reads back intact, as (header, tree), or None. With `code`
    (a `code_fingerprint`), only one written by that code counts. Where none does (torn, written
    by other code, or by code whose model had another layout under the same stage hash), they
    are set aside as `*.unusable`: left in place, they would crash a resume and be pruned in
    place of the fresh run's own checkpoints."""
    unusable = []
    for path in reversed(list_checkpoints(directory)):
        try:
            header, tree = read(path, like)
            if code is not None and header.get("code") != code:
                raise ValueError(
                    f"{path}: written by other code (engine sources or library versions changed "
                    "since); training starts over rather than mix two programs' steps")
            return header, tree
        except ValueError as exc:
            warn(f"skipping {exc}")
            unusable.append(path)
    for path in unusable:
        path.replace(path.with_name(path.name + ".unusable"))
    return None
