"""Run records: what a run ran (spec, hashes, code, versions, devices, seed) and what it got.

Every file of a run folder is listed with its sha256 in the folder's manifest.json, rewritten
after each file; readers (`RunFolder`) verify a file before using it. The lock records the
process that runs it (host, pid, its start time), so a run whose process died reads as `died`.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from engine.registry import (
    MANIFEST,
    CorruptArtifact,
    loads_json,
    read_manifest,
    verified_bytes,
    write_atomic,
    write_manifest,
)

PACKAGES = ("acbo", "jax", "jaxlib", "equinox", "optax", "diffrax", "pydantic", "numpy")


def spec_hash(spec) -> str:
    resolved = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(resolved.encode()).hexdigest()[:16]


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def versions() -> dict[str, str]:
    out = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _started(pid: int) -> float | None:
    """When process `pid` started (a pid reused after ours died has another start), or None."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def this_process() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _started(pid)}


def _alive(owner: dict) -> bool | None:
    """Whether the process recorded in `owner` still runs; None when it cannot be told (another
    host, or a record without an owner)."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return None
    pid, started = owner.get("pid"), owner.get("started")
    if not isinstance(pid, int) or not isinstance(started, (int, float)):
        return None
    now = _started(pid)
    return now is not None and abs(now - started) < 1e-3


def run_status(lock: dict | None) -> str | None:
    """The lock's status, with `running` read as `died` when its process no longer runs."""
    status = (lock or {}).get("status")
    if status == "running" and _alive(lock.get("owner")) is False:
        return "died"
    return status


class Run:
    """registry/<spec name>/<run id>/, created when an apply starts; its only writer."""

    def __init__(self, root: Path, plan, command: str):
        spec_file = plan.spec_file
        spec = spec_file.spec
        h = spec_hash(spec)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        (Path(root) / spec.name).mkdir(parents=True, exist_ok=True)
        n = 0
        while True:  # two runs within a second, possibly in two processes: mkdir decides
            self.dir = Path(root) / spec.name / (f"{stamp}-{h[:6]}" + (f"-{n}" if n else ""))
            try:
                self.dir.mkdir()
                break
            except FileExistsError:
                n += 1
        self._files: dict[str, str] = {}
        self._write("spec.toml", spec_file.text)
        self._write("resolved.json", _json_bytes(spec.model_dump(mode="json")))
        repo = spec_file.path.resolve().parent
        sha = _git(repo, "rev-parse", "HEAD")
        self.lock = {
            "run_id": self.dir.name,
            "command": command,
            "spec_name": spec.name,
            "spec_path": str(spec_file.path),
            "spec_hash": h,
            "stage_hashes": {name: s.hash for name, s in plan.stages.items()},
            "stage_owners": {name: s.owner for name, s in plan.stages.items()},
            "git_sha": sha,
            "git_dirty": bool(_git(repo, "status", "--porcelain")) if sha else None,
            "versions": versions(),
            "devices": plan.devices,
            "seed": spec.seed,
            "overrides": list(spec_file.overrides),
            "started": _now(),
            "finished": None,
            "status": "running",
            "owner": this_process(),
        }
        self._write_lock()

    def _write(self, name: str, data: bytes | str) -> None:
        """Write one file atomically, then the manifest with its checksum."""
        self._files[name] = write_atomic(self.dir / name, data)
        write_manifest(self.dir / MANIFEST, {"files": self._files})

    def _write_lock(self) -> None:
        self._write("lock.json", _json_bytes(self.lock))

    def finish(self, status: str, message: str | None = None) -> None:
        self.lock.update(status=status, finished=_now())
        if message:
            self.lock["message"] = message
        self._write_lock()

    def record_training(self, train_dir) -> None:
        """Copy the train stage's metrics log and final model into the run (both verified)."""
        self._write("metrics.jsonl", train_dir.read_bytes("metrics.jsonl"))
        self._write("model.eqx", train_dir.read_bytes("model.eqx"))

    def record(self, name: str, obj) -> None:
        self._write(name, _json_bytes(obj))

    def record_bytes(self, name: str, data: bytes) -> None:
        self._write(name, data)


def _json_bytes(obj: Any) -> bytes:
    from engine.registry import _json_default

    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default).encode()


class RunFolder:
    """A run folder read back: each file is verified against the run's manifest before use, so a
    damaged file raises CorruptArtifact naming it and is never read."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.hint = (
            f"this run's record is damaged: apply its spec again for a new run (cached stages are "
            f"reused), or delete {self.path}"
        )
        if not self.path.is_dir():
            raise CorruptArtifact(f"{self.path}: not a run folder")
        self.manifest = read_manifest(self.path / MANIFEST, self.hint)

    def has(self, name: str) -> bool:
        """Whether the run wrote `name` (a file on disk that the manifest lacks is damage)."""
        return name in self.manifest["files"] or (self.path / name).exists()

    def verify(self) -> None:
        """Every recorded file, and no unrecorded file beside them."""
        for name in self.manifest["files"]:
            self.read_bytes(name)
        for p in self.path.iterdir():
            if p.is_file() and p.name != MANIFEST and not p.name.startswith("."):
                if p.name not in self.manifest["files"]:
                    raise CorruptArtifact(f"{p}: not recorded in {self.path / MANIFEST}; {self.hint}")

    def read_bytes(self, name: str) -> bytes:
        return verified_bytes(self.path, self.manifest, name, self.hint)

    def read_json(self, name: str) -> Any:
        return loads_json(self.read_bytes(name), self.path / name, self.hint)

    def evaluation(self):
        """The run's evaluation record (both of its files verified)."""
        from engine.evaluate.record import Evaluation
        from engine.registry import arrays_from_bytes

        return Evaluation.from_parts(arrays_from_bytes(self.read_bytes("evaluation.npz")),
                                     self.read_json("evaluation.json"))

    def read_jsonl(self, name: str) -> list[dict]:
        """Every line must parse: the run's copy of a log is complete, never torn."""
        out = []
        for n, line in enumerate(self.read_bytes(name).decode("utf-8", "replace").splitlines(), 1):
            try:
                out.append(json.loads(line))
            except ValueError:
                raise CorruptArtifact(f"{self.path / name}:{n}: not valid JSON; {self.hint}") from None
        return out


def latest_run(root: Path, spec_name: str, holding: str = "model.eqx") -> Path | None:
    """The newest run of `spec_name` that recorded `holding` (one still running has not, and is
    passed over); a run whose manifest is damaged is not passed over: CorruptArtifact."""
    for manifest in sorted((Path(root) / spec_name).glob(f"*/{MANIFEST}"), reverse=True):
        if holding in RunFolder(manifest.parent).manifest["files"]:
            return manifest.parent
    return None
