"""Shipped models: run folders trained from a spec in specs/, kept in the package so that a
user's first command can be `acbo infer data.csv` (`--model general`, `engine.load("general")`)
with no training.

Each `engine/pretrained/<name>/` is a copy of the run that trained it (its spec, resolved spec,
lock with the stage hashes, metrics, model.eqx and manifest of checksums): it is read like any
run, every file verified, and `acbo apply specs/<spec>.toml` trains the same model again (the
lock's train-stage hash is the spec's; tests/test_pretrained.py checks that it still is).
"""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT = "general"  # what `acbo infer data.csv` uses when no model is named
INTERVENTIONAL = "general_int"  # ... `acbo infer data.csv --interventions mask.csv`
COUNTS = "general_grn"  # ... and `acbo infer counts.csv --counts`


def default(interventional: bool = False, counts: bool = False) -> str:
    """The shipped model that answers when none is named: the count-data one for counts (each
    where it ships), the one trained with interventional rows for other data that have them, else
    the observational one. (On knock-out counts the count model, which reads only the
    observational cells, ranks edges best: AUROC 0.72 / 0.76 on grn-10+int / grn-20+int against
    0.60 / 0.67 for the interventional model; benchmarks/results/general_eval.md.)"""
    if counts and path(COUNTS) is not None:
        return COUNTS
    if interventional and path(INTERVENTIONAL) is not None:
        return INTERVENTIONAL
    return DEFAULT


def names() -> list[str]:
    """The shipped models."""
    return sorted(p.name for p in HERE.iterdir() if (p / "manifest.json").is_file())


def path(name: str) -> Path | None:
    """The run folder of shipped model `name`, or None."""
    folder = HERE / name
    return folder if (folder / "manifest.json").is_file() else None


def ship(run_dir: Path, name: str) -> Path:
    """Copy run `run_dir` (verified first; a damaged run is refused) as shipped model `name`,
    replacing one of that name atomically."""
    from engine.runs import RunFolder

    folder = RunFolder(run_dir)
    folder.verify()
    if "model.eqx" not in folder.manifest["files"]:
        raise ValueError(f"{run_dir}: no model.eqx; only a run that trained a model can be shipped")
    tmp = HERE / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder.path, tmp, ignore=shutil.ignore_patterns(".*"))
    old = HERE / name
    if old.exists():
        shutil.rmtree(old)
    tmp.rename(old)
    return old
