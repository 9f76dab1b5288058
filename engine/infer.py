"""Inference for users: a trained run + a CSV of data -> parent or edge probabilities.

    predictor = engine.load("registry/phase2a/20250101-120000-abcdef")   # or a spec name
    predictor.parents("data.csv", interventions="mask.csv", target="Y")  # {name: P(name -> Y)}
    predictor.graph("data.csv")                                          # Graph: P(i -> j)
    predictor.graph(df).to_networkx(threshold=0.5)   # a pandas DataFrame, or (array, names)
    predictor.graph(df).decided()                    # the graph of highest expected F1
    predictor(df).to_pandas()                          # the same as predictor.graph(df)

Data are standardised per variable by their observational rows (rows with no intervention), as
the simulator standardises training data, so predictions do not depend on units. Count data
(`predictor.counts`, by default whether the model was trained on `standardize = "log_cpm"`)
first become log2 counts per million, as AVICI standardises single-cell counts.

A model trained on observational rows only (`predictor.observational_only`) reads only the rows
with no intervention: it never saw the mask channel set, and given interventional rows the
shipped `general` ranked linear-10's edges below chance (AUROC 0.41, against 0.87 on the same
data without them; benchmarks/results/general_eval.md). The rows left out are counted in the
answer's metadata, as the exact posterior counts them.
"""

from __future__ import annotations

import functools

import csv
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engine.spec.base import suggest
from engine.userfiles import (  # noqa: F401 - re-exported: the Python API's names
    InferError,
    Table,
    align_mask,
    inputs,
    read_csv,
    standardise,
    target_index,
    write_output,
)


@dataclass(frozen=True)
class Graph:
    """Edge probabilities: `probs[i, j]` = P(names[i] -> names[j]); the diagonal is 0."""

    names: tuple[str, ...]
    probs: np.ndarray
    metadata: dict = field(default_factory=dict, compare=False)  # the run and model it came from

    def to_csv(self, out) -> None:
        """Rows are parents, columns children; `out` is a path (written atomically) or a text file."""
        if isinstance(out, (str, Path)):
            buf = io.StringIO()
            self.to_csv(buf)
            return write_output(out, buf.getvalue().encode())
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["parent \\ child", *self.names])
        for name, row in zip(self.names, self.probs):
            w.writerow([name, *(f"{p:.6f}" for p in row)])

    def to_pandas(self):
        """The probabilities as a DataFrame: rows are parents, columns children (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise InferError("Graph.to_pandas needs pandas: pip install pandas") from None
        return pd.DataFrame(self.probs, index=list(self.names), columns=list(self.names))

    def decided(self) -> np.ndarray:
        """The one graph [i, j] (0/1) of highest expected F1 under these probabilities: its
        adjacencies by expected F1, each oriented by its likelier direction (engine.evaluate.decision)."""
        from engine.evaluate.decision import expected_f1_graph

        return expected_f1_graph(self.probs).astype(bool)

    def to_networkx(self, threshold: float | str = 0.5):
        """A networkx.DiGraph of the edges with probability > `threshold`, or with
        `threshold="expected_f1"` those of `decided()` (attribute `prob`); the run's metadata and
        the threshold are graph attributes (`g.graph`)."""
        import networkx as nx

        if threshold == "expected_f1":
            edges = self.decided()
        elif isinstance(threshold, str):
            raise InferError(f"threshold: a probability or 'expected_f1', not {threshold!r}")
        else:
            edges = self.probs > threshold
        g = nx.DiGraph()
        g.graph.update({k: v for k, v in self.metadata.items() if isinstance(v, (str, int, float, bool))})
        g.graph["threshold"] = threshold if isinstance(threshold, str) else float(threshold)
        g.add_nodes_from(self.names)
        for i, j in zip(*np.nonzero(edges)):
            if i != j:
                g.add_edge(self.names[i], self.names[j], prob=float(self.probs[i, j]))
        return g

    def to_graphml(self, path: Path, threshold: float | str = 0.0) -> None:
        """The edges of `to_networkx(threshold)` (default: every edge with probability > 0), the
        probability as attribute `prob`, the run's metadata as graph attributes (written atomically)."""
        import networkx as nx

        write_output(path, "\n".join(nx.generate_graphml(self.to_networkx(threshold))).encode())


def resolve_run(run: str | Path, root: Path | None = None) -> Path:
    """A run folder, the latest run of the spec named `run` in the registry `root` that holds a
    model, or the shipped model named `run` (engine.pretrained)."""
    from engine.registry import registry_root
    from engine.runs import latest_run

    from engine import pretrained

    path = Path(run)
    if path.parent.parent.name == "_stages" and not (path / "resolved.json").is_file():
        return _run_of_stage(path)
    if (path / "resolved.json").is_file() or (path / "manifest.json").is_file():
        return path
    root = Path(root) if root is not None else registry_root()
    if path.parent == Path(".") and (found := latest_run(root, str(run))) is not None:
        return found  # a model trained here wins over a shipped one of the same name
    if path.parent == Path(".") and (shipped := pretrained.path(str(run))) is not None:
        return shipped
    specs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")) if root.is_dir() else []
    known = specs + pretrained.names()
    raise InferError(
        f"{run}: neither a run folder (with resolved.json), a spec with runs in {root}, nor a "
        f"shipped model"
        + (suggest(str(run), known) or (f"; models: {', '.join(known)}" if known else ""))
    )


def _run_of_stage(stage: Path) -> Path:
    """The latest run with a model, in the registry holding stage folder `stage`
    (<registry>/_stages/<kind>/<hash>), that used it: a stage folder holds the weights but not the
    spec that gives their shapes."""
    root = stage.parent.parent.parent
    found = _latest_run_using(root, "*", stage.parent.name, stage.name)
    if found is None:
        raise InferError(
            f"{stage}: a {stage.parent.name} stage's folder holds no spec to shape its model, and no "
            f"run in {root} used it; pass the run folder (<registry>/<spec>/<run id>) or the spec's name"
        )
    return found.path


def _latest_run_using(root: Path, spec: str, kind: str, digest: str | None):
    """The latest run (a verified RunFolder) of spec `spec` (a glob) in `root` that holds a model
    and whose lock records stage `kind` at hash `digest` (any, if None); else None."""
    from engine.runs import RunFolder

    for lock_path in sorted(root.glob(f"{spec}/*/lock.json"), key=lambda p: p.parent.name, reverse=True):
        run = RunFolder(lock_path.parent)  # run ids start with their time
        if not (run.has("model.eqx") and run.has("resolved.json")):
            continue
        if digest is None or (run.read_json("lock.json").get("stage_hashes") or {}).get(kind) == digest:
            return run
    return None


@functools.cache
def _forward_passes():
    """The jitted (parents, graph) passes, one pair for every Predictor: the model is an argument,
    so a model loaded again (or another of the same layout) reuses the compiled programs. One
    pair per Predictor compiled anew at every load and never freed them: about 640 memory
    mappings a load, and a loop of ~100 loads met the kernel's map limit (XLA: 'Cannot allocate
    memory', then an abort)."""
    import equinox as eqx
    import jax

    return (eqx.filter_jit(lambda m, x, r, v, t: jax.nn.sigmoid(m(x, r, v, t))),
            eqx.filter_jit(lambda m, x, r, v: jax.nn.sigmoid(m.graph(x, r, v))))


class Predictor:
    """A trained model with its variable-agnostic forward passes (jitted once per shape)."""

    def __init__(self, run_dir: Path, model, model_spec, max_memory_gb: float | None = None):
        """`max_memory_gb`: the working memory a forward pass may use (default: half of what
        the machine has available); models that attend over rows chunk them to fit."""
        self.run_dir, self.model, self.model_spec = Path(run_dir), model, model_spec
        self.max_memory_gb = max_memory_gb
        self.row_chunk: int | None = None  # the row chunk of the last call, where one was needed
        self.counts = False  # the data are counts: standardised as log2 counts per million
        self.observational_only = False  # trained without interventional rows: reads none (load sets it)
        self.metadata: dict = {"run": str(self.run_dir), "model": model_spec.kind}  # load() adds more
        self._parents, self._graph = _forward_passes()

    def _inputs(self, data, interventions):
        """(table, model inputs, number of interventional rows left out)."""
        table, mask = inputs(data, interventions)
        left_out = 0
        if self.observational_only and mask.any():
            obs = np.flatnonzero(~mask.any(1))  # inputs() checked there are at least 2
            lines = tuple(table.line(int(i)) for i in obs)
            left_out = len(mask) - len(obs)
            table, mask = replace(table, values=np.asarray(table.values)[obs], lines=lines), mask[obs]
        z = standardise(table.values, mask, counts=self.counts)
        x = np.stack([z, mask.astype(np.float32)], -1)  # interventional values in the same units
        n, d = z.shape
        return table, (x, np.ones(n, bool), np.ones(d, bool)), left_out

    def _fitted(self, n: int, d: int):
        """The model, attending over rows in chunks small enough for the memory budget (the
        chunk fixed at training time may need ~n^2 memory on a user's larger dataset)."""
        model, self.row_chunk = self.model, None
        if not hasattr(model, "with_row_chunk"):
            return model
        if self.max_memory_gb is not None:
            budget = self.max_memory_gb * 1e9
        else:
            import psutil

            budget = psutil.virtual_memory().available / 2
        chunk = min(model.row_chunk or n, n)
        while chunk > 32 and model.with_row_chunk(chunk).peak_bytes(n, d) > budget:
            chunk = -(-chunk // 2)
        need = model.with_row_chunk(chunk).peak_bytes(n, d)
        if need > budget:
            raise InferError(
                f"{n} rows x {d} variables need about {need / 1e9:.2g} GB even in chunks of {chunk} "
                f"rows; {budget / 1e9:.2g} GB may be used (--max-memory-gb)"
            )
        if chunk < n:
            self.row_chunk = chunk
        return model if chunk == min(model.row_chunk or n, n) else model.with_row_chunk(chunk)

    def __call__(self, data, interventions=None) -> Graph:
        """`predictor(data)` is `predictor.graph(data)`."""
        return self.graph(data, interventions)

    def describe(self) -> str:
        """Which run and model answer, in one line."""
        m = self.metadata
        text = f"model: {m['model']} of run {m['run']}"
        if "trained_by_run" in m:
            text += f" (spec '{m['spec']}' evaluates the model trained by run {m['trained_by_run']})"
        return text

    def parents(self, data, interventions=None, target: str | int = 0) -> dict[str, float]:
        """P(v is a parent of `target`) for every other variable v, in column order."""
        table, (x, r, v), _ = self._inputs(data, interventions)
        t = target_index(table, target)
        model = self._fitted(*x.shape[:2])
        probs = _finite(np.asarray(self._parents(model, x, r, v, np.int32(t))), table)
        return {n: float(p) for i, (n, p) in enumerate(zip(table.names, probs)) if i != t}

    def graph(self, data, interventions=None) -> Graph:
        """All edge probabilities: the model's graph head if it has one, else each variable as
        the target in turn."""
        table, (x, r, v), left_out = self._inputs(data, interventions)
        model = self._fitted(*x.shape[:2])
        if hasattr(model, "graph"):
            probs = np.array(self._graph(model, x, r, v))
        else:
            probs = np.stack(
                [np.asarray(self._parents(model, x, r, v, np.int32(t))) for t in range(len(table.names))], 1
            )
        probs = _finite(probs, table)
        np.fill_diagonal(probs, 0.0)
        meta = dict(self.metadata)
        if self.observational_only:
            meta["interventional_rows_left_out"] = left_out
        if table.source:
            meta["data"] = table.source
        return Graph(table.names, probs, meta)


def _saw_interventions(spec) -> bool:
    """Whether a spec's model trained on interventional rows: simulated ones (scm.n_int), or
    offline the expert's trials, which its demonstrations hold."""
    trials = getattr(spec.expert, "n_trials", 0) if spec.data.mode != "online" else 0
    return spec.scm.n_int > 0 or trials > 0


def _finite(probs: np.ndarray, data: Table) -> np.ndarray:
    # The last line of defence: never hand out nan as a probability.
    if not np.isfinite(probs).all():
        raise InferError(
            f"{data.source or 'data'}: the model gave non-finite probabilities for these data "
            "(extreme values or outliers?); check and rescale the data"
        )
    return probs


def load(run: str | Path, registry: Path | None = None) -> Predictor:
    """The Predictor of a run folder (registry/<spec>/<run id>), of its model.eqx, or of a
    spec's latest run. A run of an evaluation-only spec ([stage] uses) answers with the model
    it evaluated: the model's shape comes from the run of the spec that trained it."""
    from engine.runs import RunFolder

    path = Path(run)
    if path.name == "model.eqx" and path.is_file():
        run = path.parent
    folder = RunFolder(resolve_run(run, registry))  # every file checksum-verified before use
    run_dir = folder.path
    spec = _spec_of(folder)
    trained_by = None
    model_spec, train_spec = spec.model, spec
    lock = _lock(folder, required=model_spec is None)
    if model_spec is None:  # an evaluation-only spec: the model is its upstream's
        trainer = _trainer_run(folder, spec, lock)
        train_spec = _spec_of(trainer)
        model_spec = train_spec.model
        trained_by = trainer
        if not folder.has("model.eqx"):
            folder = trainer
    if not folder.has("model.eqx"):
        raise InferError(f"{folder.path}: no model.eqx (the run did not finish training)")
    model = _load_model(folder.read_bytes("model.eqx"), model_spec, folder.path / "model.eqx")
    predictor = Predictor(folder.path, model, model_spec)
    predictor.counts = train_spec.scm.standardize == "log_cpm"
    predictor.observational_only = not _saw_interventions(train_spec)
    predictor.metadata = _metadata(run_dir, spec, lock, model_spec, trained_by)
    return predictor


def _lock(folder, required: bool) -> dict:
    """The run's lock.json (verified). Only an evaluation-only run needs it (its train stage
    names the model); elsewhere it only adds metadata, and a damaged one is left out rather
    than refusing the intact model."""
    from engine.registry import CorruptArtifact

    try:
        return folder.read_json("lock.json")
    except CorruptArtifact:
        if required:
            raise
        return {}


def _spec_of(folder):
    from engine.registry import CorruptArtifact
    from engine.spec.root import Spec

    resolved = folder.read_json("resolved.json")
    try:
        return Spec.model_validate(resolved, strict=False)
    except ValueError as exc:
        raise CorruptArtifact(
            f"{folder.path / 'resolved.json'}: not a spec this acbo reads ({str(exc).splitlines()[0]}); "
            "apply the spec again for a new run"
        ) from None


def _trainer_run(folder, spec, lock: dict):
    """The run, in the same registry, of the spec that trained the model `folder` evaluated (its
    train stage hash as recorded in the lock; else that spec's latest run with a model)."""
    root = folder.path.parent.parent
    owner = (lock.get("stage_owners") or {}).get("train") or spec.stage.uses
    train_hash = (lock.get("stage_hashes") or {}).get("train")
    if owner and (found := _latest_run_using(root, owner, "train", train_hash)) is not None:
        return found
    raise InferError(
        f"{folder.path}: spec '{spec.name}' evaluates the model of spec '{owner}' ([stage] uses), and "
        f"no run of '{owner}' in {root} records that model (train stage {train_hash}); "
        f"run `acbo apply` on {owner}.toml, or pass a run of '{owner}'"
    )


def _metadata(run_dir: Path, spec, lock: dict, model_spec, trained_by) -> dict:
    """What a result came from, for its files (GraphML graph attributes) and messages."""
    from engine import __version__

    meta = {
        "run": str(run_dir),
        "run_id": lock.get("run_id", Path(run_dir).name),
        "spec": spec.name,
        "spec_hash": lock.get("spec_hash", ""),
        "model": model_spec.kind,
        "train_stage": (lock.get("stage_hashes") or {}).get("train", ""),
        "git_sha": lock.get("git_sha") or "",
        "run_started": lock.get("started") or "",
        "acbo_version": __version__,
    }
    if trained_by is not None:
        meta["trained_by_run"] = str(trained_by.path)
        meta["trained_by_spec"] = trained_by.path.parent.name
    return meta


def _load_model(data: bytes, model_spec, name: Path):
    """The model in `data` (checksum-verified bytes) shaped as `model_spec` builds it. The
    skeleton comes from `eval_shape`, so no initialiser runs: building the model eagerly
    compiled every initialiser op, about 1.8 s of the CLI's time on a small model (measured)."""
    import equinox as eqx
    import jax

    from engine.registry import CorruptArtifact

    shapes = eqx.filter_eval_shape(model_spec.build, jax.random.PRNGKey(0))
    # Read the leaves as NumPy arrays, then put them on the device in one call: jnp.load per
    # leaf compiles a conversion for each (another ~1 s).
    like = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype) if isinstance(s, jax.ShapeDtypeStruct) else s,
                        shapes)
    try:
        arrays, static = eqx.partition(eqx.tree_deserialise_leaves(io.BytesIO(data), like), eqx.is_array)
        return eqx.combine(jax.device_put(arrays), static)
    except Exception as exc:  # noqa: BLE001 - equinox/numpy raise several types for bad files
        raise CorruptArtifact(
            f"{name}: does not hold a {model_spec.kind} model of its spec's shape "
            f"({type(exc).__name__}); retrain it (apply its spec with --force)"
        ) from None
