"""The registry: cached stage artifacts and run records, written atomically, checksummed.

    registry/
      _stages/<stage>/<hash>/          a completed stage: its files + manifest.json (sha256 each)
      _stages/<stage>/<hash>.partial/  a stage in progress (checkpoints, per-graph files): resumable
      <spec name>/<run id>/            one run: spec.toml, resolved.json, lock.json, metrics.jsonl,
                                       evaluation.json, gates.json, model.eqx

A directory is renamed from `.partial` to its final name only after its manifest is written, so
a final directory is always complete; a crash leaves at most a `.partial` one to resume from.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from filelock import FileLock, Timeout

MANIFEST = "manifest.json"


class CorruptArtifact(Exception):
    """A file whose content no longer matches its recorded checksum, or that is missing or
    unreadable. The CLI names it (exit 2); nothing reads such a file's content."""


def _manifest_digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    return sha256_bytes(json.dumps(body, sort_keys=True, default=_json_default).encode())


def write_manifest(path: Path, manifest: dict) -> None:
    """A folder's manifest.json, with a checksum of its own content: damage to it is named as
    damage to it, not mistaken for damage to the file whose recorded hash it hit."""
    write_json(path, {**manifest, "sha256": _manifest_digest(manifest)})


def read_manifest(path: Path, hint: str) -> dict:
    """A folder's manifest.json ({'files': {name: sha256}, ...}); CorruptArtifact if unreadable."""
    try:
        manifest = json.loads(Path(path).read_bytes())
        files = manifest["files"]
        if not (isinstance(files, dict) and all(isinstance(v, str) for v in files.values())):
            raise ValueError
        ok = manifest.get("sha256") == _manifest_digest(manifest)
    except FileNotFoundError:
        raise CorruptArtifact(f"{path}: missing (the folder's checksums are gone); {hint}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise CorruptArtifact(f"{path}: unreadable manifest (damaged); {hint}") from None
    if not ok:
        raise CorruptArtifact(f"{path}: checksum mismatch (the manifest changed after it was written); {hint}")
    return manifest


def verified_bytes(folder: Path, manifest: dict, name: str, hint: str) -> bytes:
    """The content of `folder/name`, read once and checked against `manifest`'s sha256 for it."""
    path = Path(folder) / name
    if name not in manifest["files"]:
        raise CorruptArtifact(f"{path}: not recorded in {Path(folder) / MANIFEST}; {hint}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptArtifact(f"{path}: missing; {hint}") from None
    except OSError as exc:
        raise CorruptArtifact(f"{path}: unreadable ({exc.strerror}); {hint}") from None
    if sha256_bytes(data) != manifest["files"][name]:
        raise CorruptArtifact(f"{path}: checksum mismatch (the file changed after it was written); {hint}")
    return data


def loads_json(data: bytes, path: Path, hint: str) -> Any:
    """JSON whose checksum passed but which does not parse (written damaged): CorruptArtifact."""
    try:
        return json.loads(data)
    except ValueError:
        raise CorruptArtifact(f"{path}: not valid JSON; {hint}") from None


def registry_root() -> Path:
    return Path(os.environ.get("ACBO_REGISTRY", "registry"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes | str) -> str:
    """Write to a temporary file beside `path`, fsync, rename; return the sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha256_bytes(payload)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file beside `path` under a unique hidden name, created with mode 0666 so that the
    user's umask (and a folder's default ACL) decides who may read it, as for any file a program
    writes (mkstemp's 0600 made every report and registry file private)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


def write_json(path: Path, obj: Any) -> str:
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def append_jsonl(path: Path, record: dict) -> None:
    """Append one line (metrics logs are append-only; a torn last line is skipped on read)."""
    with open(path, "a") as f:
        f.write(json.dumps(record, default=_json_default) + "\n")
        f.flush()


def read_jsonl(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write
    return out


def arrays_to_bytes(arrays: dict[str, np.ndarray], compress: bool = False) -> bytes:
    """An .npz of `arrays`; `compress` deflates it (worth it for records of padded, mostly 0/1
    matrices, such as an evaluation's predicted graphs: 6.7 MB -> 0.5 MB for a 50-variable stage)."""
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def arrays_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@dataclass(frozen=True)
class StageDir:
    """One stage's artifact directory, keyed by the stage's content hash."""

    stage: str
    hash: str
    root: Path

    @property
    def final(self) -> Path:
        return self.root / "_stages" / self.stage / self.hash

    @property
    def partial(self) -> Path:
        return self.root / "_stages" / self.stage / f"{self.hash}.partial"

    @property
    def done(self) -> bool:
        return (self.final / MANIFEST).exists()

    @property
    def lock_path(self) -> Path:
        return self.root / "_stages" / self.stage / f"{self.hash}.lock"

    @contextmanager
    def building(self, say: Callable[[str], None] = print) -> Iterator[None]:
        """Hold this stage's lock while it is checked, built or reused: one writer per stage
        across processes (a second apply waits here, then finds the stage done)."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            say(f"{self.stage}: waiting for another acbo process that is building it (lock {self.lock_path})")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def work_dir(self) -> Path:
        """Where an in-progress stage writes; kept across interruptions to resume from."""
        self.partial.mkdir(parents=True, exist_ok=True)
        return self.partial

    def commit(self, files: list[str], meta: dict | None = None) -> Path:
        """Checksum `files` of the work dir, write the manifest, publish atomically."""
        work = self.partial
        for stray in work.glob(".*"):  # temporaries of writes a kill interrupted
            if stray.is_file() and stray.name not in files:
                stray.unlink()
        manifest = {
            "stage": self.stage,
            "hash": self.hash,
            "files": {name: sha256_file(work / name) for name in files},
            "meta": meta or {},
        }
        write_manifest(work / MANIFEST, manifest)
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(work, self.final)
        return self.final

    @property
    def hint(self) -> str:
        return f"rerun with --force to recompute the {self.stage} stage"

    def manifest(self) -> dict:
        return read_manifest(self.final / MANIFEST, self.hint)

    def read_bytes(self, name: str) -> bytes:
        """A file of the completed stage, its checksum verified."""
        return verified_bytes(self.final, self.manifest(), name, self.hint)

    def read_arrays(self, name: str) -> dict[str, np.ndarray]:
        return arrays_from_bytes(self.read_bytes(name))

    def verified_path(self, name: str) -> Path:
        """The path of a file of the completed stage, its checksum verified by streaming the
        file once (never all of it in memory)."""
        path = self.final / name
        expected = self.manifest()["files"].get(name)
        if expected is None:
            raise CorruptArtifact(f"{path}: not recorded in {self.final / MANIFEST}; {self.hint}")
        try:
            actual = sha256_file(path)
        except FileNotFoundError:
            raise CorruptArtifact(f"{path}: missing; {self.hint}") from None
        if actual != expected:
            raise CorruptArtifact(f"{path}: checksum mismatch (the file changed after it was written); {self.hint}")
        return path

    def memmap(self, name: str) -> np.ndarray:
        """A `.npy` file of the completed stage as a read-only memory map, checksum verified."""
        return np.load(self.verified_path(name), mmap_mode="r", allow_pickle=False)

    def read_json(self, name: str) -> Any:
        return loads_json(self.read_bytes(name), self.final / name, self.hint)

    def verify(self) -> None:
        for name in self.manifest()["files"]:
            self.verified_path(name)

    def remove(self) -> None:
        for p in (self.final, self.partial):
            if p.exists():
                shutil.rmtree(p)
