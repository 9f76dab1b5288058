"""Read fixed graphs (and bnlearn linear-Gaussian parameters) from CSV or npz. NumPy only: the
spec validator calls this, and spec code never imports jax."""

from __future__ import annotations

import csv
import io
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np


def topological_order(G: np.ndarray) -> np.ndarray:
    """Kahn's algorithm; raises ValueError on a cycle."""
    G = np.asarray(G) != 0
    indeg = G.sum(0).astype(int)
    ready = [i for i in range(len(G)) if indeg[i] == 0]
    order = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for j in np.flatnonzero(G[i]):
            indeg[j] -= 1
            if indeg[j] == 0:
                ready.append(int(j))
    if len(order) != len(G):
        raise ValueError("the graph has a cycle; an SCM needs a DAG")
    return np.asarray(order)


class GraphFileError(ValueError):
    """A graph file that cannot be used. `problem` says why without naming the file (the spec
    names it as written) and never quotes the file's contents."""

    def __init__(self, path: str | Path, problem: str):
        self.problem = problem
        super().__init__(f"graph file {path}: {problem}")


def _csv(data: bytes) -> dict:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, at = [], []  # non-blank rows and their line numbers in the file
    try:
        for row in reader:
            if any(c.strip() for c in row):
                rows.append(row)
                at.append(reader.line_num)
    except csv.Error:
        raise ValueError(f"not a readable CSV file (row {reader.line_num})") from None
    if not rows:
        raise ValueError("empty file (expected a CSV adjacency matrix with a header row)")
    header, body = rows[0], rows[1:]
    names = [c.strip() for c in header[1:]]
    for n, row in zip(at[1:], body):
        if len(row) != len(header):
            raise ValueError(f"row {n} has {len(row)} cells but the header row has {len(header)}")
    if [r[0].strip() for r in body] != names:
        raise ValueError("row names must equal column names, in the same order")
    if len(set(names)) != len(names):
        raise ValueError("variable names must be unique")
    G = np.zeros((len(names), len(names)))
    for i, (n, row) in enumerate(zip(at[1:], body)):
        for j, cell in enumerate(row[1:]):
            try:
                G[i, j] = float(cell)
            except ValueError:
                # Never quote the cell: a graph file may hold anything.
                raise ValueError(f"row {n}, column {names[j]!r}: not a number") from None
    return {"names": np.asarray(names), "G": G}


def _npz(p: Path) -> dict:
    if not zipfile.is_zipfile(p):  # np.load would try it as a pickle or .npy
        raise ValueError("not a .npz archive")
    try:
        with np.load(p, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except ValueError as exc:
        if "Object arrays" in str(exc):
            raise ValueError("holds object arrays, which are not loaded (no pickles)") from None
        raise ValueError("not a readable .npz archive") from None
    except Exception:  # zipfile, zlib, EOF, OSError: a damaged archive
        raise ValueError("not a readable .npz archive") from None
    if "G" not in out or "names" not in out:
        raise ValueError(f"must hold arrays 'G' and 'names' (has {sorted(out)})")
    for k in ("G", "W", "b", "sigma"):
        if k in out and not (out[k].dtype.kind in "biuf"):
            raise ValueError(f"array '{k}' must be numeric (has dtype {out[k].dtype})")
    if np.asarray(out["names"]).ndim != 1:
        raise ValueError("array 'names' must be one-dimensional")
    return out


@lru_cache(maxsize=32)
def _read(path: str, mtime: float) -> dict:
    p = Path(path)
    if p.suffix == ".npz":
        out = _npz(p)
    elif p.suffix == ".csv":
        out = _csv(p.read_bytes())
    else:
        raise ValueError("expected a .csv or .npz graph file")
    G = np.asarray(out["G"])
    if G.ndim != 2 or G.shape[0] != G.shape[1] or G.shape[0] != len(out["names"]):
        raise ValueError(f"G must be square with one row per name (got {G.shape})")
    if not np.all(np.isfinite(G)):
        raise ValueError("G must hold finite numbers")
    G = (G != 0).astype(np.int32)
    if np.any(np.diag(G)):
        raise ValueError("self-loops are not allowed")
    if len(G) < 2:
        raise ValueError("a graph needs at least 2 variables")
    out["G"] = G
    out["names"] = np.asarray([str(n) for n in out["names"]])
    out["order"] = topological_order(G)
    d = len(G)
    for k, shape in (("W", (d, d)), ("b", (d,)), ("sigma", (d,))):
        if k in out:
            out[k] = np.asarray(out[k], np.float64)
            if out[k].shape != shape:
                raise ValueError(f"{k} must have shape {shape} (got {out[k].shape})")
            if not np.all(np.isfinite(out[k])):
                raise ValueError(f"{k} must hold finite numbers")
    if "W" in out and np.any((out["W"] != 0) & (G == 0)):
        raise ValueError("W has coefficients on non-edges of G")
    if "sigma" in out and np.any(out["sigma"] < 0):
        raise ValueError("sigma must be non-negative")
    return out


def read_graph_file(path: str | Path) -> dict:
    """{'names' (d,), 'G' (d, d) int with G[i, j] = 1 for i -> j, 'order' (d,) topological, and
    'W', 'b', 'sigma' when the file holds linear-Gaussian parameters}. Cached by path and mtime.
    Every failure is a GraphFileError."""
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError:
        raise GraphFileError(p, "no such file") from None
    if p.is_dir():
        raise GraphFileError(p, "is a directory, not a graph file")
    try:
        return _read(str(p.resolve()), mtime)
    except ValueError as exc:
        raise GraphFileError(p, str(exc)) from None
    except OSError as exc:
        raise GraphFileError(p, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001 - a parse failure of any kind is the file's problem
        raise GraphFileError(p, f"cannot be read ({type(exc).__name__})") from None
