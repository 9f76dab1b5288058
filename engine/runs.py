"""Run records: what a run ran (spec, hashes, code, versions, devices, seed) and what it got."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from engine.registry import read_jsonl, write_atomic, write_json

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


class Run:
    """registry/<spec name>/<run id>/, created when an apply starts."""

    def __init__(self, root: Path, plan, command: str):
        spec_file = plan.spec_file
        spec = spec_file.spec
        h = spec_hash(spec)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.dir = Path(root) / spec.name / f"{stamp}-{h[:6]}"
        n = 1
        while self.dir.exists():  # two runs within a second
            self.dir = Path(root) / spec.name / f"{stamp}-{h[:6]}-{n}"
            n += 1
        self.dir.mkdir(parents=True)
        write_atomic(self.dir / "spec.toml", spec_file.text)
        write_json(self.dir / "resolved.json", spec.model_dump(mode="json"))
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
        }
        self._write_lock()

    def _write_lock(self) -> None:
        write_json(self.dir / "lock.json", self.lock)

    def finish(self, status: str, message: str | None = None) -> None:
        self.lock.update(status=status, finished=_now())
        if message:
            self.lock["message"] = message
        self._write_lock()

    def record_training(self, train_dir) -> None:
        """Copy the train stage's metrics log and final model into the run."""
        lines = read_jsonl(train_dir.path("metrics.jsonl"))
        write_atomic(self.dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
        shutil.copyfile(train_dir.path("model.eqx"), self.dir / "model.eqx")

    def record(self, name: str, obj) -> None:
        write_json(self.dir / name, obj)


def latest_run(root: Path, spec_name: str) -> Path | None:
    runs = sorted((Path(root) / spec_name).glob("*/lock.json"))
    return runs[-1].parent if runs else None
