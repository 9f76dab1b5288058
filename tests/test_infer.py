"""`acbo infer` and `engine.load`: names in, probabilities out, clear errors for bad files."""

import csv
import json
import shutil
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from typer.testing import CliRunner

import engine
from engine.cli import app

NAMES = ["A", "B", "C", "D"]


def _write(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Data from A -> B -> C, D independent: 40 observational rows, 8 with do(A), 8 with do(B)."""
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("infer")
    n = 56
    mask = np.zeros((n, 4), int)
    mask[40:48, 0] = 1
    mask[48:, 1] = 1
    a = np.where(mask[:, 0] == 1, 3.0, rng.normal(size=n))
    b = np.where(mask[:, 1] == 1, -3.0, 2 * a + 0.3 * rng.normal(size=n))
    c = -b + 0.3 * rng.normal(size=n)
    x = np.stack([a, b, c, rng.normal(size=n)], 1) * 10 + 5  # units must not matter
    return {
        "data": _write(out / "data.csv", NAMES, x.round(5)),
        "mask": _write(out / "mask.csv", NAMES, mask),
        "dir": out,
    }


def _run(*args):
    return CliRunner().invoke(app, ["infer", *map(str, args)])


def run_dir(registry: Path) -> Path:
    return next((registry / "smoke").glob("*/model.eqx")).parent


def test_python_api_matches_cli(smoke_registry, files):
    predictor = engine.load(run_dir(smoke_registry))
    parents = predictor.parents(files["data"], files["mask"], target="C")
    assert list(parents) == ["A", "B", "D"] and all(0 <= p <= 1 for p in parents.values())
    graph = predictor.graph(files["data"], files["mask"])
    assert graph.names == tuple(NAMES) and graph.probs.shape == (4, 4)
    assert np.allclose([graph.probs[NAMES.index(n), 2] for n in parents], list(parents.values()), atol=1e-6)
    assert (np.diag(graph.probs) == 0).all()

    # A spec name means its latest run; the CLI writes the same numbers.
    out = files["dir"] / "parents.csv"
    res = _run("smoke", files["data"], "--interventions", files["mask"], "--target", "C", "--output", out,
               "--registry", smoke_registry)
    assert res.exit_code == 0, res.output
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["parent", "probability"]
    assert {r[0]: float(r[1]) for r in rows[1:]} == pytest.approx(parents, abs=1e-6)

    gml = files["dir"] / "g.graphml"
    res = _run(run_dir(smoke_registry), files["data"], "--interventions", files["mask"], "--graphml", gml,
               "--output", files["dir"] / "graph.csv")
    assert res.exit_code == 0, res.output
    g = nx.read_graphml(gml)
    assert set(g.nodes) == set(NAMES)
    for u, v, attr in g.edges(data=True):
        assert attr["prob"] == pytest.approx(graph.probs[NAMES.index(u), NAMES.index(v)], abs=1e-6)


def test_standardisation_makes_units_irrelevant(smoke_registry, files):
    from engine.infer import Table, read_csv

    predictor = engine.load(run_dir(smoke_registry))
    table = read_csv(files["data"])
    scaled = Table(table.names, table.values * 7.0 - 100.0)
    a = predictor.parents(table, files["mask"], target="B")
    b = predictor.parents(scaled, files["mask"], target="B")
    # float32: x * 7 - 100 and back loses ~4 bits, which moves a probability by ~1e-4
    assert a == pytest.approx(b, abs=1e-3)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing-file", "does not exist"),
        ("nan", "data.csv:3: column 'B': nan is not a finite number"),
        ("text", "data.csv:2: column 'C': 'abc' is not a number"),
        ("mask-columns", "missing column(s) D; extra column(s) DD (did you mean 'D'?)"),
        ("mask-rows", "intervention mask has 2 rows but the data have 3"),
        ("mask-values", "column 'A': 2 is not 0 or 1"),
        ("target", "unknown target 'Bb' (did you mean 'B'?)"),
        ("run", "neither a run folder"),
    ],
)
def test_clear_errors(smoke_registry, tmp_path, case, message):
    rows = [[1, 2, 3, 4], [2, 3, 1, 0], [0, 1, 2, 5]]
    data = _write(tmp_path / "data.csv", NAMES, rows)
    mask = _write(tmp_path / "mask.csv", NAMES, [[0] * 4] * 3)
    target, run = "B", run_dir(smoke_registry)
    if case == "missing-file":
        data = tmp_path / "nope.csv"
    elif case == "nan":
        data = _write(tmp_path / "data.csv", NAMES, [rows[0], [2, "nan", 1, 0], rows[2]])
    elif case == "text":
        data = _write(tmp_path / "data.csv", NAMES, [[1, 2, "abc", 4]] + rows[1:])
    elif case == "mask-columns":
        mask = _write(tmp_path / "mask.csv", ["A", "B", "C", "DD"], [[0] * 4] * 3)
    elif case == "mask-rows":
        mask = _write(tmp_path / "mask.csv", NAMES, [[0] * 4] * 2)
    elif case == "mask-values":
        mask = _write(tmp_path / "mask.csv", NAMES, [[2, 0, 0, 0]] + [[0] * 4] * 2)
    elif case == "target":
        target = "Bb"
    elif case == "run":
        run = tmp_path / "not-a-run"
    res = _run(run, data, "--interventions", mask, "--target", target, "--registry", smoke_registry)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


def _avici(row_chunk=None):
    import jax

    from engine.spec.model import AviciModel

    spec = AviciModel(kind="avici", dim=16, layers=2, heads=2, key_size=8, row_chunk=row_chunk)
    return spec, spec.build(jax.random.PRNGKey(0))


@pytest.mark.parametrize("n, d, chunk", [(200, 10, None), (1000, 10, None), (1000, 20, 250), (2000, 8, 300)])
def test_avici_memory_estimate_bounds_what_xla_allocates(n, d, chunk):
    import jax
    import jax.numpy as jnp

    _, model = _avici()
    model = model.with_row_chunk(chunk)
    args = (jnp.zeros((n, d, 2)), jnp.ones(n, bool), jnp.ones(d, bool))
    compiled = jax.jit(lambda x, r, v: model.graph(x, r, v)).lower(*args).compile()
    xla = compiled.memory_analysis().temp_size_in_bytes
    assert xla <= model.peak_bytes(n, d) <= 3 * xla


def test_infer_chunks_rows_to_fit_its_memory_budget(tmp_path):
    """A user's dataset far larger than the training sets: the row chunk comes from the data and
    the budget (with the trained one, all 7466 rows would attend at once: ~4.5 GB here)."""
    from engine.infer import Predictor

    spec, model = _avici()
    rng = np.random.default_rng(0)
    n, d = 7466, 12
    x = rng.normal(size=(n, d))
    x[:, 1] += 2 * x[:, 0]
    path = _write(tmp_path / "big.csv", [f"X{i}" for i in range(d)], x.round(4))
    assert model.peak_bytes(n, d) > 2e9
    predictor = Predictor(tmp_path, model, spec, max_memory_gb=0.25)
    graph = predictor.graph(path)
    chunk = predictor.row_chunk
    assert chunk is not None and chunk < n and model.with_row_chunk(chunk).peak_bytes(n, d) <= 0.25e9
    assert np.isfinite(graph.probs).all()
    explicit = Predictor(tmp_path, model.with_row_chunk(chunk), spec, max_memory_gb=100).graph(path)
    np.testing.assert_allclose(graph.probs, explicit.probs, atol=1e-6)
    with pytest.raises(engine.infer.InferError, match="--max-memory-gb"):
        Predictor(tmp_path, model, spec, max_memory_gb=0.001).graph(path)


def test_infer_names_the_run_it_used(smoke_registry, files):
    result = CliRunner().invoke(app, ["infer", "smoke", str(files["data"]), "--registry", str(smoke_registry)])
    assert result.exit_code == 0, result.output
    assert f"model: stats of run {smoke_registry / 'smoke'}" in result.output


def test_python_api_takes_dataframes_and_arrays_and_gives_pandas_and_networkx(smoke_registry, files):
    import pandas as pd

    predictor = engine.load("smoke", smoke_registry)
    frame = pd.read_csv(files["data"])
    from_csv = predictor.graph(files["data"])
    from_frame = predictor.graph(frame)
    from_array = predictor.graph((frame.to_numpy(), list(frame.columns)))
    np.testing.assert_allclose(from_frame.probs, from_csv.probs, atol=1e-6)
    np.testing.assert_allclose(from_array.probs, from_csv.probs, atol=1e-6)
    table = from_frame.to_pandas()
    assert list(table.index) == NAMES == list(table.columns)
    np.testing.assert_array_equal(table.to_numpy(), from_frame.probs)
    g = from_frame.to_networkx(threshold=0.2)
    expected = {(NAMES[i], NAMES[j]) for i, j in zip(*np.nonzero(from_frame.probs > 0.2)) if i != j}
    assert set(g.edges) == expected and set(g.nodes) == set(NAMES)
    bad = frame.copy()
    bad.iloc[3, 1] = np.nan
    with pytest.raises(engine.infer.InferError, match="finite"):
        predictor.graph(bad)
    with pytest.raises(engine.infer.InferError, match="one column per name"):
        predictor.graph((frame.to_numpy(), ["A", "B"]))


def test_graphml_threshold_and_the_runs_metadata(smoke_registry, files):
    gml = files["dir"] / "thresholded.graphml"
    run = run_dir(smoke_registry)
    res = _run(run, files["data"], "--interventions", files["mask"], "--graphml", gml, "--threshold", "0.3",
               "--output", files["dir"] / "thresholded.csv")
    assert res.exit_code == 0, res.output
    g = nx.read_graphml(gml)
    probs = engine.load(run).graph(files["data"], files["mask"])
    expected = {(NAMES[i], NAMES[j]) for i, j in zip(*np.nonzero(probs.probs > 0.3)) if i != j}
    assert set(g.edges) == expected and all(a["prob"] > 0.3 for *_, a in g.edges(data=True))
    assert g.graph["run"] == str(run) and g.graph["run_id"] == run.name and g.graph["spec"] == "smoke"
    assert g.graph["model"] == "stats" and g.graph["threshold"] == 0.3 and g.graph["data"] == str(files["data"])
    assert g.graph["spec_hash"] and g.graph["acbo_version"] == engine.__version__
    assert f"model: stats of run {run}" in res.output


def test_acbo_load_takes_a_model_file_and_is_callable(smoke_registry, files):
    import pandas as pd

    import acbo

    predictor = acbo.load(run_dir(smoke_registry) / "model.eqx")
    frame = pd.read_csv(files["data"])
    graph = predictor(frame)
    assert isinstance(graph, acbo.Graph) and list(graph.to_pandas().columns) == NAMES
    np.testing.assert_allclose(graph.probs, predictor.graph((frame.to_numpy(), NAMES)).probs, atol=1e-6)
    assert graph.to_networkx(threshold=0.9).graph["run"] == str(run_dir(smoke_registry))


def test_a_train_stage_folder_loads_as_the_run_that_used_it(smoke_registry, tmp_path):
    """A stage folder holds the weights but not the spec that shapes them: load finds the run."""
    stage = next((smoke_registry / "_stages" / "train").glob("*/model.eqx")).parent
    predictor = engine.load(stage / "model.eqx")
    users = sorted(lock.parent for lock in (smoke_registry / "smoke").glob("*/lock.json")
                   if json.loads(lock.read_text())["stage_hashes"].get("train") == stage.name
                   and (lock.parent / "model.eqx").is_file())
    assert users and predictor.run_dir == users[-1]  # the latest run that used it
    orphan = tmp_path / "_stages" / "train" / stage.name
    shutil.copytree(stage, orphan)
    with pytest.raises(engine.infer.InferError, match="holds no spec to shape its model, and no run"):
        engine.load(orphan)


EVAL_ONLY = """
version = 1
name = "smoke_eval"
seed = 5

[stage]
uses = "smoke"

[scm]
n_nodes = { low = 3, high = 5 }
n_obs = 60
graphs = [{ kind = "erdos_renyi", edges_per_node = 1.0 }]
interventions = { kind = "hard", value = { dist = "uniform", low = -5.0, high = 5.0 }, rows_per_node = 2 }

[expert]
kind = "parent_scale"
prior = { kind = "uniform", max_parents = 2 }
n_trials = 0

[data]
n_graphs = 6
demos_per_graph = 1
split = { train = 0.0, validation = 0.0, heldout = 1.0 }

[evaluation]
timing_repeats = 1
"""


def test_infer_from_an_evaluation_only_run_follows_uses(smoke_registry, files, tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "specs" / "smoke.toml", specs / "smoke.toml")
    (specs / "smoke_eval.toml").write_text(EVAL_ONLY)
    root = tmp_path / "reg"
    shutil.copytree(smoke_registry, root)
    res = CliRunner().invoke(app, ["apply", str(specs / "smoke_eval.toml"), "--registry", str(root), "--quiet"])
    assert res.exit_code == 0, res.output
    (evaluated,) = (root / "smoke_eval").iterdir()
    res = _run(evaluated, files["data"], "--graphml", tmp_path / "g.graphml", "--output", tmp_path / "g.csv")
    assert res.exit_code == 0, res.output
    assert f"model: stats of run {evaluated}" in res.output and f"trained by run {root / 'smoke'}" in res.output
    g = nx.read_graphml(tmp_path / "g.graphml")
    assert g.graph["spec"] == "smoke_eval" and g.graph["trained_by_spec"] == "smoke"
    assert Path(g.graph["trained_by_run"]).parent == root / "smoke"
    direct = engine.load(run_dir(root)).graph(files["data"])
    np.testing.assert_allclose(engine.load(evaluated).graph(files["data"]).probs, direct.probs, atol=1e-6)
    # without a run of the spec that trained it, the model's shape is unknown: said so, with what to do
    shutil.rmtree(root / "smoke")
    with pytest.raises(engine.infer.InferError, match="no run of 'smoke' in .* records that model"):
        engine.load(evaluated)


def test_infer_quiet_prints_only_the_result(smoke_registry, files):
    result = _run("smoke", files["data"], "--registry", smoke_registry, "--quiet", "--target", "C")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "parent,probability" and "model:" not in result.output


def test_graphml_of_the_expected_f1_graph(smoke_registry, files):
    gml = files["dir"] / "decided.graphml"
    run = run_dir(smoke_registry)
    res = _run(run, files["data"], "--interventions", files["mask"], "--graphml", gml, "--decide",
               "--output", files["dir"] / "decided.csv")
    assert res.exit_code == 0, res.output
    graph = engine.load(run).graph(files["data"], files["mask"])
    decided = graph.decided()
    assert decided.any() and not (decided & decided.T).any()
    g = nx.read_graphml(gml)
    assert set(g.edges) == {(NAMES[i], NAMES[j]) for i, j in zip(*np.nonzero(decided))}
    assert g.graph["threshold"] == "expected_f1"
    for args, message in (((), "give --graphml too"), (("--graphml", gml, "--threshold", "0.2"), "give one")):
        res = _run(run, files["data"], "--decide", *args)
        assert res.exit_code == 2 and message in res.output, res.output
    with pytest.raises(engine.infer.InferError, match="expected_f1"):
        graph.to_networkx(threshold="f1")


def test_data_that_look_like_counts_get_a_hint_unless_counts_is_said(smoke_registry, files, tmp_path):
    """Non-negative integers with many zeros (single-cell UMIs) read as continuous values rank
    edges near or below chance: infer says to give --counts; --no-counts, --counts or
    continuous data say nothing."""
    from engine.userfiles import count_zero_fraction

    rng = np.random.default_rng(3)
    counts = rng.poisson(0.8, size=(60, 4))
    path = _write(tmp_path / "counts.csv", NAMES, counts)
    hint = "looks like counts"
    said = _run("smoke", path, "--registry", smoke_registry)
    assert said.exit_code == 0 and hint in said.output and "--counts" in said.output
    for flag in ("--no-counts", "--counts"):
        quiet = _run("smoke", path, "--registry", smoke_registry, flag)
        assert quiet.exit_code == 0 and hint not in quiet.output, quiet.output
    assert hint not in _run("smoke", files["data"], "--registry", smoke_registry).output
    from engine.pretrained import path as shipped
    if shipped("general_grn") is not None:  # trained on counts: reads them as counts unasked
        grn = _run("--model", "general_grn", path)
        assert grn.exit_code == 0 and hint not in grn.output, grn.output
    assert count_zero_fraction(counts) == pytest.approx((counts == 0).mean())
    assert count_zero_fraction(counts + 1) is None  # no zeros
    assert count_zero_fraction(counts - 0.5) is None  # not integers


def test_a_model_trained_on_observational_rows_reads_only_those(files):
    """`general` never saw the mask channel set (given interventional rows it ranked linear-10's
    edges below chance): it answers from the observational rows, says how many it left out, and
    the answer is the one on those rows alone; `general_int` reads them all."""
    from engine.pretrained import path as shipped

    if shipped("general") is None or shipped("general_int") is None:
        pytest.skip("the shipped general models are not in this checkout")
    obs_rows = files["dir"] / "observational.csv"
    with open(files["data"]) as f:
        _write(obs_rows, NAMES, list(csv.reader(f))[1:41])  # rows 0-39 have no intervention
    general, general_int = engine.load("general"), engine.load("general_int")
    assert general.observational_only and not general_int.observational_only
    g = general.graph(files["data"], files["mask"])
    assert g.metadata["interventional_rows_left_out"] == 16
    assert np.array_equal(g.probs, general.graph(obs_rows).probs)
    assert general.parents(files["data"], files["mask"], target="C") == general.parents(obs_rows, target="C")
    gi = general_int.graph(files["data"], files["mask"])
    assert "interventional_rows_left_out" not in gi.metadata
    assert not np.allclose(gi.probs, general_int.graph(obs_rows).probs)
    said = _run("--model", "general", files["data"], "--interventions", files["mask"])
    assert said.exit_code == 0 and "16 interventional rows left out" in said.output, said.output
    assert "general_int" in said.output  # where to go instead
    quiet = _run("--model", "general_int", files["data"], "--interventions", files["mask"])
    assert quiet.exit_code == 0 and "left out" not in quiet.output, quiet.output


def test_the_default_model_on_few_continuous_variables_points_to_exact(files, tmp_path):
    """Where the exact posterior is affordable (continuous, observational, <= 20 variables) and
    no model was named, infer says --exact ranks edges better; not with interventions, a named
    model or --exact itself."""
    from engine.pretrained import path as shipped

    if shipped("general") is None:
        pytest.skip("the shipped general model is not in this checkout")
    rows = _write(tmp_path / "obs.csv", NAMES, np.random.default_rng(1).normal(size=(50, 4)).round(4))
    hint = "--exact (the posterior"
    said = _run(rows)
    assert said.exit_code == 0 and hint in said.output, said.output
    for args in ((rows, "--exact"), ("--model", "general", rows), (files["data"], "--interventions", files["mask"])):
        quiet = _run(*args)
        assert quiet.exit_code == 0 and hint not in quiet.output, (args, quiet.output)
    wide = _write(tmp_path / "wide.csv", [f"v{i}" for i in range(21)],
                  np.random.default_rng(2).normal(size=(50, 21)).round(4))
    assert hint not in _run(wide).output


def test_loading_a_model_again_compiles_nothing_again():
    """Every Predictor shares its jitted passes: a model loaded again answers with the programs
    already compiled. Compiled per load, they were never freed: ~640 memory mappings a load,
    and a loop of ~100 loads died at the kernel's map limit."""
    import logging

    import jax

    x = (np.random.default_rng(0).normal(size=(60, 5)), [f"v{i}" for i in range(5)])
    engine.load("general").graph(x)  # compiled here, for this shape
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            for _ in range(3):
                engine.load("general").graph(x)
    finally:
        logger.removeHandler(handler)
    compiled = [r.getMessage() for r in records if "Compiling" in r.getMessage() and "lambda" in r.getMessage()]
    assert compiled == []
