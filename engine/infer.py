"""Inference for users: a trained run + a CSV of data -> parent or edge probabilities.

    predictor = engine.load("registry/phase2a/20250101-120000-abcdef")   # or a spec name
    predictor.parents("data.csv", interventions="mask.csv", target="Y")  # {name: P(name -> Y)}
    predictor.graph("data.csv")                                          # Graph: P(i -> j)

Data are standardised per variable by their observational rows (rows with no intervention), as
the simulator standardises training data, so predictions do not depend on units.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.spec.base import suggest


class InferError(ValueError):
    """A problem with the user's run or files (the CLI prints it and exits 2)."""


@dataclass(frozen=True)
class Table:
    """A numeric table: `names` [d], `values` [n, d] float32."""

    names: tuple[str, ...]
    values: np.ndarray


@dataclass(frozen=True)
class Graph:
    """Edge probabilities: `probs[i, j]` = P(names[i] -> names[j]); the diagonal is 0."""

    names: tuple[str, ...]
    probs: np.ndarray

    def to_csv(self, out) -> None:
        """Rows are parents, columns children; `out` is a path or a text file."""
        if isinstance(out, (str, Path)):
            with open(out, "w", newline="") as f:
                return self.to_csv(f)
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["parent \\ child", *self.names])
        for name, row in zip(self.names, self.probs):
            w.writerow([name, *(f"{p:.6f}" for p in row)])

    def to_graphml(self, path: Path, threshold: float = 0.0) -> None:
        """Every edge with probability > `threshold`, its probability as attribute `prob`."""
        import networkx as nx

        g = nx.DiGraph()
        g.add_nodes_from(self.names)
        for i, j in zip(*np.nonzero(self.probs > threshold)):
            if i != j:
                g.add_edge(self.names[i], self.names[j], prob=float(self.probs[i, j]))
        nx.write_graphml(g, str(path))


def read_csv(path: Path | str, what: str = "data") -> Table:
    """A CSV with a header of variable names and numeric cells; errors name the row and column."""
    path = Path(path)
    if not path.is_file():
        raise InferError(f"{what} file {path} does not exist")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or not any(c.strip() for c in rows[0]):
        raise InferError(f"{path}: empty file; expected a header row of variable names")
    names = tuple(c.strip() for c in rows[0])
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup or "" in names:
        raise InferError(f"{path}: the header needs distinct, non-empty variable names (got {list(names)})")
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    if not body:
        raise InferError(f"{path}: no data rows below the header")
    values = np.empty((len(body), len(names)), np.float32)
    for i, row in enumerate(body):
        line = i + 2
        if len(row) != len(names):
            raise InferError(f"{path}:{line}: {len(row)} cells but the header has {len(names)} columns")
        for j, cell in enumerate(row):
            try:
                value = float(cell)
            except ValueError:
                raise InferError(f"{path}:{line}: column '{names[j]}': '{cell}' is not a number") from None
            if not np.isfinite(value):
                raise InferError(f"{path}:{line}: column '{names[j]}': {cell.strip() or 'empty'} is not a finite number")
            values[i, j] = value
    return Table(names, values)


def _table(data, what: str) -> Table:
    if isinstance(data, Table):
        return data
    if isinstance(data, (str, Path)):
        return read_csv(data, what)
    raise InferError(f"{what}: expected a CSV path or an engine.infer.Table, got {type(data).__name__}")


def align_mask(data: Table, mask: Table | None) -> np.ndarray:
    """The 0/1 intervention mask as bool [n, d] in the data's column order."""
    if mask is None:
        return np.zeros(data.values.shape, bool)
    missing = [n for n in data.names if n not in mask.names]
    extra = [n for n in mask.names if n not in data.names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            parts.append(f"extra column(s) {', '.join(extra)}{suggest(extra[0], list(data.names))}")
        raise InferError(f"intervention mask: {'; '.join(parts)} (its header must match the data's)")
    if mask.values.shape[0] != data.values.shape[0]:
        raise InferError(
            f"intervention mask has {mask.values.shape[0]} rows but the data have {data.values.shape[0]}"
        )
    values = mask.values[:, [mask.names.index(n) for n in data.names]]
    bad = np.argwhere((values != 0) & (values != 1))
    if bad.size:
        i, j = bad[0]
        raise InferError(f"intervention mask row {i + 2}, column '{data.names[j]}': {values[i, j]:g} is not 0 or 1")
    return values.astype(bool)


def standardise(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(x - mean) / std per variable over the observational rows (no intervention at all); a
    variable without such rows or with zero spread keeps location 0 / scale 1."""
    obs = ~mask.any(1)
    if obs.sum() < 2:
        raise InferError("need at least 2 observational rows (rows with no intervention) to standardise")
    loc = values[obs].mean(0)
    sd = values[obs].std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    return ((values - loc) / sd).astype(np.float32)


def resolve_run(run: str | Path, root: Path | None = None) -> Path:
    """A run folder, or the latest run of the spec named `run` in the registry `root`."""
    from engine.registry import registry_root
    from engine.runs import latest_run

    path = Path(run)
    if (path / "resolved.json").is_file() or (path / "manifest.json").is_file():
        return path
    root = Path(root) if root is not None else registry_root()
    if path.parent == Path(".") and (found := latest_run(root, str(run))) is not None:
        return found
    specs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")) if root.is_dir() else []
    raise InferError(
        f"{run}: neither a run folder (with resolved.json) nor a spec with runs in {root}"
        + (suggest(str(run), specs) or (f"; specs with runs: {', '.join(specs)}" if specs else ""))
    )


class Predictor:
    """A trained model with its variable-agnostic forward passes (jitted once per shape)."""

    def __init__(self, run_dir: Path, model, model_spec):
        self.run_dir, self.model, self.model_spec = Path(run_dir), model, model_spec
        import equinox as eqx
        import jax

        self._parents = eqx.filter_jit(lambda m, x, r, v, t: jax.nn.sigmoid(m(x, r, v, t)))
        self._graph = eqx.filter_jit(lambda m, x, r, v: jax.nn.sigmoid(m.graph(x, r, v)))

    def _inputs(self, data, interventions):
        table = _table(data, "data")
        mask = align_mask(table, None if interventions is None else _table(interventions, "interventions"))
        z = standardise(table.values, mask)
        x = np.stack([z, mask.astype(np.float32)], -1)  # interventional values in the same units
        n, d = z.shape
        return table.names, (x, np.ones(n, bool), np.ones(d, bool))

    def _target(self, names, target) -> int:
        if isinstance(target, int) and 0 <= target < len(names):
            return target
        if target in names:
            return names.index(target)
        raise InferError(f"unknown target '{target}'{suggest(str(target), list(names))}; variables: {', '.join(names)}")

    def parents(self, data, interventions=None, target: str | int = 0) -> dict[str, float]:
        """P(v is a parent of `target`) for every other variable v, in column order."""
        names, (x, r, v) = self._inputs(data, interventions)
        t = self._target(names, target)
        probs = np.asarray(self._parents(self.model, x, r, v, np.int32(t)))
        return {n: float(p) for i, (n, p) in enumerate(zip(names, probs)) if i != t}

    def graph(self, data, interventions=None) -> Graph:
        """All edge probabilities: the model's graph head if it has one, else each variable as
        the target in turn."""
        names, (x, r, v) = self._inputs(data, interventions)
        if hasattr(self.model, "graph"):
            probs = np.array(self._graph(self.model, x, r, v))
        else:
            probs = np.stack(
                [np.asarray(self._parents(self.model, x, r, v, np.int32(t))) for t in range(len(names))], 1
            )
        np.fill_diagonal(probs, 0.0)
        return Graph(names, probs)


def load(run: str | Path, registry: Path | None = None) -> Predictor:
    """The Predictor of a run folder (registry/<spec>/<run id>) or of a spec's latest run."""
    from engine.spec.root import Spec
    from engine.train.trainer import load_model

    from engine.registry import CorruptArtifact
    from engine.runs import RunFolder

    folder = RunFolder(resolve_run(run, registry))  # every file checksum-verified before use
    resolved = folder.read_json("resolved.json")
    try:
        spec = Spec.model_validate(resolved, strict=False)
    except ValueError as exc:
        raise CorruptArtifact(
            f"{folder.path / 'resolved.json'}: not a spec this acbo reads ({str(exc).splitlines()[0]}); "
            "apply the spec again for a new run"
        ) from None
    model_spec = spec.model
    if model_spec is None:  # an evaluation-only spec: the model is its upstream's
        raise InferError(f"{folder.path}: spec '{spec.name}' trains no model ([stage] uses = '{spec.stage.uses}'); load a run of that spec")
    if not folder.has("model.eqx"):
        raise InferError(f"{folder.path}: no model.eqx (the run did not finish training)")
    return Predictor(folder.path, load_model(folder.file("model.eqx"), model_spec), model_spec)
