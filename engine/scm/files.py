"""Read fixed graphs (and bnlearn linear-Gaussian parameters) from CSV or npz. NumPy only: the
spec validator calls this, and spec code never imports jax."""

from __future__ import annotations

import csv
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


@lru_cache(maxsize=32)
def _read(path: str, mtime: float) -> dict:
    p = Path(path)
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
        if "G" not in out or "names" not in out:
            raise ValueError(f"{p} must hold arrays 'G' and 'names' (has {sorted(out)})")
    elif p.suffix == ".csv":
        with open(p, newline="") as f:
            rows = list(csv.reader(f))
        names = [c.strip() for c in rows[0][1:]]
        if [r[0].strip() for r in rows[1:]] != names:
            raise ValueError(f"{p}: row names must equal column names, in the same order")
        out = {"names": np.asarray(names), "G": np.asarray([[float(v) for v in r[1:]]
                                                             for r in rows[1:]])}
    else:
        raise ValueError(f"{p}: expected a .csv or .npz graph file")
    G = (np.asarray(out["G"]) != 0).astype(np.int32)
    if G.ndim != 2 or G.shape[0] != G.shape[1] or G.shape[0] != len(out["names"]):
        raise ValueError(f"{p}: G must be square with one row per name (got {G.shape})")
    if np.any(np.diag(G)):
        raise ValueError(f"{p}: self-loops are not allowed")
    if len(G) < 2:
        raise ValueError(f"{p}: a graph needs at least 2 variables")
    out["G"] = G
    out["names"] = np.asarray([str(n) for n in out["names"]])
    out["order"] = topological_order(G)
    for k in ("W", "b", "sigma"):
        if k in out:
            out[k] = np.asarray(out[k], np.float64)
    if "W" in out and np.any((out["W"] != 0) & (G == 0)):
        raise ValueError(f"{p}: W has coefficients on non-edges of G")
    if "sigma" in out and np.any(out["sigma"] < 0):
        raise ValueError(f"{p}: sigma must be non-negative")
    return out


def read_graph_file(path: str | Path) -> dict:
    """{'names' (d,), 'G' (d, d) int with G[i, j] = 1 for i -> j, 'order' (d,) topological, and
    'W', 'b', 'sigma' when the file holds linear-Gaussian parameters}. Cached by path and mtime."""
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError:
        raise ValueError(f"cannot read graph file {p}: no such file") from None
    return _read(str(p.resolve()), mtime)
