"""The spec language: exact error messages (file:line: dotted.path: message) for bad specs, both
from engine.spec.loader.load and from `acbo validate`; the shipped specs; the JSON schema; strict
types; frozen specs; no jax in the spec package.

Bad specs are small edits of specs/smoke.toml. Expected lines are found in the edited text (the
line holding a marker), so the table does not break when smoke.toml grows a comment.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from engine.cli import app
from engine.evaluate.catalog import METRICS
from engine.spec.gates import GateSpec
from engine.spec.loader import SpecError, load
from engine.spec.root import Spec

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
SMOKE = (SPECS / "smoke.toml").read_text()
TOP_KEYS = (
    "version, name, description, seed, scm, expert, data, model, loss, train, hardware, "
    "evaluation, gates, gate_groups, stage, optimize, policy"
)
from engine.spec.train import TrainSpec

# The allowed-keys list follows the model: adding a [train] key must not break this table.
TRAIN_KEYS = ", ".join(TrainSpec.model_fields)
GATE_KEYS = ", ".join(GateSpec.model_fields)
OPTIMIZER = 'log_every = 10\noptimizer = { kind = "adam", lr = 0.1 }'


def edit(old: str | None, new: str, text: str = SMOKE) -> str:
    """`text` with its one occurrence of `old` replaced by `new` (appended when old is None)."""
    if old is None:
        return text + new
    assert text.count(old) == 1, f"{old!r} must occur once in smoke.toml"
    return text.replace(old, new)


def without_section(name: str, text: str = SMOKE) -> str:
    """`text` without the table [name] and its keys."""
    out, edited = re.subn(rf"(?ms)^\[{name}\]\n.*?(?=^\[|\Z)", "", text)
    assert edited == 1
    return out


def line_of(text: str, marker: str) -> int:
    """The 1-based line of the last line of `text` that contains `marker`."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if marker in line]
    assert hits, marker
    return hits[-1]


def _uses_phaze2a() -> str:
    text = SMOKE
    for section in ("model", "loss", "train"):
        text = without_section(section, text)
    return text + '\n[stage]\nuses = "phaze2a"\n'


# (id, spec text, --set overrides, marker of the reported line (None: no line), expected line).
# In the expected text, {L} is "bad.toml:<line of the marker>".
BAD = [
    (
        "unknown-top-level-key",
        edit("seed = 0", "sed = 0"), [], "sed =",
        f"{{L}}: sed: unknown key (did you mean 'seed'?); allowed: {TOP_KEYS}",
    ),
    (
        "unknown-section",
        edit(None, "\n[trian]\nsteps = 3\n"), [], "[trian]",
        f"{{L}}: trian: unknown key (did you mean 'train'?); allowed: {TOP_KEYS}",
    ),
    (
        "unknown-key-in-train",
        edit("steps = 40", "step = 40"), [], "step =",
        f"{{L}}: train.step: unknown key (did you mean 'steps'?); allowed: {TRAIN_KEYS}",
    ),
    (
        "unknown-key-in-inline-table",
        edit("log_every = 10", 'log_every = 10\noptimizer = { kind = "adam", lrr = 1 }'), [],
        "optimizer =",
        "{L}: train.optimizer.lrr: unknown key (did you mean 'lr'?); allowed: kind, lr, b1, b2",
    ),
    (
        "unknown-model-kind",
        edit('kind = "stats"', 'kind = "stat"'), [], '"stat"',
        "{L}: model.kind: unknown kind 'stat' (did you mean 'stats'?); expected one of: stats, avici",
    ),
    (
        "unknown-loss-kind",
        edit('kind = "bce"', 'kind = "bc"'), [], '"bc"',
        "{L}: loss.kind: unknown kind 'bc' (did you mean 'bce'?); expected one of: bce, focal, kl_expert",
    ),
    (
        "unknown-optimizer-kind",
        edit("log_every = 10", 'log_every = 10\noptimizer = { kind = "adamm" }'), [], "adamm",
        "{L}: train.optimizer.kind: unknown kind 'adamm' (did you mean 'adam'?); "
        "expected one of: adam, adamw, lamb",
    ),
    (
        "unknown-metric-of-second-gate",
        edit('metric = "auroc"', 'metric = "aurok"'), [], "aurok",
        "{L}: gates.1.metric: unknown metric 'aurok' (did you mean 'auroc'?); metrics: "
        f"{', '.join(METRICS)} (`acbo schema` describes each)",
    ),
    (
        "unknown-key-in-gate",
        edit(None, "sed = 1\n"), [], "sed =",
        f"{{L}}: gates.1.sed: unknown key (did you mean 'side'?); allowed: {GATE_KEYS}",
    ),
    (
        "an-old-gate-kind",
        edit('metric = "auroc"', 'kind = "metric"\nmetric = "auroc"'), [], 'kind = "metric"',
        "{L}: gates.1.kind: gates have no kind any more: name a metric (speedup -> metric = "
        '"speedup"; accuracy_drop -> metric = "f1", vs = "expert", relative = "drop"; '
        'faster_share -> metric = "speedup", aggregate = "share", above = 1.0; metric -> just '
        "metric)",
    ),
    (
        "missing-key-in-gate",
        edit('metric = "auroc"\n', ""), [], "[[gates]]",
        "{L}: gates.1.metric: missing required key",
    ),
    (
        "unknown-dist",
        edit('dist = "uniform"', 'dist = "unifrom"'), [], "unifrom",
        "{L}: scm.interventions.value.dist: unknown dist 'unifrom' (did you mean 'uniform'?); "
        "expected one of: uniform, signed_uniform, normal, lognormal, choice",
    ),
    (
        "string-for-int",
        edit("steps = 40", 'steps = "40"'), [], "steps =",
        "{L}: train.steps: Input should be a valid integer (got '40')",
    ),
    (
        "float-for-int",
        edit("steps = 40", "steps = 40.5"), [], "steps =",
        "{L}: train.steps: Input should be a valid integer (got 40.5)",
    ),
    (
        "string-for-float-is-not-coerced",
        edit("log_every = 10", 'log_every = 10\noptimizer = { kind = "adam", lr = "0.1" }'), [],
        "optimizer =",
        "{L}: train.optimizer.lr: expected a number or a table with a 'kind' (got '0.1')",
    ),
    (
        "negative-learning-rate",
        edit("log_every = 10", 'log_every = 10\noptimizer = { kind = "adam", lr = -0.1 }'), [],
        "optimizer =",
        "{L}: train.optimizer.lr: Input should be greater than 0 (got -0.1)",
    ),
    (
        "missing-required-section",
        without_section("data"), [], None,
        "bad.toml: data: missing required key",
    ),
    (
        "missing-model-section",
        without_section("model"), [], None,
        "bad.toml: missing section(s) [model]: a spec either trains a model ([model], [loss], "
        "[train]) or evaluates another's ([stage] uses)",
    ),
    (
        "stage-uses-an-unknown-spec",
        _uses_phaze2a(), [], "uses =",
        "{L}: stage.uses: no spec named 'phaze2a' (phaze2a.toml does not exist) "
        "(did you mean 'phase2a'?)",
    ),
    (
        "split-does-not-sum-to-one",
        edit("heldout = 0.2", "heldout = 0.3"), [], "heldout",
        "{L}: data.split: train + validation + heldout must be 1 (got 1.1)",
    ),
    (
        "toml-syntax-error",
        edit("steps = 40", "steps = = 40"), [], "steps =",
        "{L}: TOML syntax error: Invalid value (column 9)",
    ),
    (
        "override-out-of-range",
        SMOKE, ["train.steps=-5"], None,
        "--set train.steps=-5: train.steps: Input should be greater than 0 (got -5)",
    ),
    (
        "override-unknown-key",
        SMOKE, ["train.stepz=5"], None,
        f"--set train.stepz=5: train.stepz: unknown key (did you mean 'steps'?); "
        f"allowed: {TRAIN_KEYS}",
    ),
    (
        "override-unknown-section",
        SMOKE, ["trian.steps=5"], None,
        f"--set trian.steps=5: trian: unknown key (did you mean 'train'?); allowed: {TOP_KEYS}",
    ),
    (
        # the table the override had to create is the override's, not line 1 of [train]
        "override-creates-a-table-without-kind",
        SMOKE, ["train.optimizer.lr=2e-3"], None,
        "--set train.optimizer.lr=2e-3: train.optimizer: missing key 'kind' "
        "(it selects which variant this table is)",
    ),
    (
        "override-not-a-key-path",
        SMOKE, ["train..steps=5"], None,
        "--set train..steps=5: 'train..steps' is not a dotted key path",
    ),
    (
        "override-without-value",
        SMOKE, ["train.steps"], None,
        "--set train.steps: expected dotted.path=value",
    ),
]


CASE = "text, overrides, marker, message"


def _expected(text: str, marker: str | None, message: str) -> str:
    if marker is None:
        return message
    return message.replace("{L}", f"bad.toml:{line_of(text, marker)}")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder holding a copy of phase2a.toml (for [stage] names), made the working directory so
    messages name files relative to it."""
    (tmp_path / "phase2a.toml").write_text((SPECS / "phase2a.toml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(CASE, [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_load_reports_the_exact_problem(workdir, text, overrides, marker, message):
    (workdir / "bad.toml").write_text(text)
    with pytest.raises(SpecError) as info:
        load("bad.toml", overrides)
    assert [str(p) for p in info.value.problems] == [_expected(text, marker, message)]


@pytest.mark.parametrize(CASE, [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_cli_validate_prints_the_problem_and_exits_2(workdir, text, overrides, marker, message):
    (workdir / "bad.toml").write_text(text)
    args = ["validate", "bad.toml"] + [a for o in overrides for a in ("--set", o)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr == _expected(text, marker, message) + "\n"
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_every_problem_is_reported_in_line_order(workdir):
    text = edit("steps = 40", 'steps = "x"', edit("dim = 16", "dim = -1"))
    (workdir / "bad.toml").write_text(text)
    with pytest.raises(SpecError) as info:
        load("bad.toml")
    assert [str(p) for p in info.value.problems] == [
        f"bad.toml:{line_of(text, 'dim =')}: model.dim: Input should be greater than 0 (got -1)",
        f"bad.toml:{line_of(text, 'steps =')}: train.steps: "
        "Input should be a valid integer (got 'x')",
    ]


@pytest.mark.parametrize(
    "value, path, message",
    [
        ("{ low = 3, hi = 5 }", "scm.n_nodes.hi", "unknown key (did you mean 'high'?)"),
        ("{ low = 3 }", "scm.n_nodes.high", "missing required key"),
        ("{ values = [3, 4], weights = [1] }", "scm.n_nodes", "weights has 1 entries"),
    ],
)
def test_a_plain_union_reports_the_member_that_fits(workdir, value, path, message):
    # n_nodes is `int | SizeRange | SizeChoice`: a table with a typo is a SizeRange with a typo,
    # not also "not an integer" and "unknown key 'low'" for SizeChoice.
    text = edit("n_nodes = { low = 3, high = 5 }", f"n_nodes = {value}")
    (workdir / "bad.toml").write_text(text)
    with pytest.raises(SpecError) as info:
        load("bad.toml")
    (problem,) = info.value.problems
    assert (problem.line, problem.path) == (line_of(text, "n_nodes"), path)
    assert problem.message.startswith(message)


def test_a_missing_file_is_a_spec_error(workdir):
    with pytest.raises(SpecError, match="cannot read spec"):
        load("nope.toml")
    result = CliRunner().invoke(app, ["validate", "nope.toml"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr == "nope.toml: cannot read spec: No such file or directory\n"


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_spec_validates(path):
    loaded = load(path)
    assert loaded.spec.name == path.stem
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"spec '{path.stem}' is valid" in result.stdout


def test_overrides_apply_and_are_parsed_as_toml_values():
    sets = ["train.steps=7", "train.optimizer.kind=adamw", "train.optimizer.lr=2e-3", "name=other"]
    loaded = load(SPECS / "smoke.toml", sets)
    assert loaded.spec.train.steps == 7
    assert loaded.spec.train.optimizer.kind == "adamw"
    assert loaded.spec.train.optimizer.lr == pytest.approx(2e-3)
    assert loaded.spec.name == "other"
    assert loaded.raw["train"]["steps"] == 7
    assert loaded.overrides == tuple(sets)


def test_int_is_accepted_for_a_float_but_a_string_is_not_coerced(workdir):
    text = edit("log_every = 10", 'log_every = 10\noptimizer = { kind = "adam", lr = 1 }')
    (workdir / "ok.toml").write_text(text)
    lr = load("ok.toml").spec.train.optimizer.lr
    assert lr == 1.0 and type(lr) is float
    # and the other way round: an int field does not take a float or a numeric string
    with pytest.raises(SpecError, match="valid integer"):
        load("ok.toml", ['train.batch_size="8"'])
    with pytest.raises(SpecError, match="valid integer"):
        load("ok.toml", ["train.batch_size=8.0"])


def test_specs_are_frozen():
    spec = load(SPECS / "smoke.toml").spec
    with pytest.raises(ValidationError, match="frozen"):
        spec.train.steps = 1
    with pytest.raises(ValidationError, match="frozen"):
        spec.seed = 5
    assert spec.train.steps == 40


def test_the_spec_package_does_not_import_jax():
    code = (
        "import sys, engine.spec.root, engine.spec.loader, engine.spec.schema; "
        "engine.spec.loader.load('specs/smoke.toml'); "
        "bad = [m for m in sys.modules "
        "if m.split('.')[0] in ('jax', 'jaxlib', 'equinox', 'optax')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def _models(annotation, seen: dict[str, type]) -> None:
    """Every pydantic model reachable from a type annotation, by class name."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation.__name__ in seen:
            return
        seen[annotation.__name__] = annotation
        for f in annotation.model_fields.values():
            _models(f.annotation, seen)
        return
    for arg in typing.get_args(annotation):
        _models(arg, seen)


def test_schema_is_json_with_every_kind_and_its_docstring():
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["title"] == "acbo spec"
    defs = schema["$defs"]
    models: dict[str, type] = {}
    _models(Spec, models)
    kinds = {
        name: typing.get_args(cls.model_fields["kind"].annotation)[0]
        for name, cls in models.items()
        if "kind" in cls.model_fields
    }
    # at least the model, loss and optimizer kinds are reachable
    assert {"stats", "bce", "kl_expert", "adam", "adamw"} <= set(kinds.values())
    import inspect

    for name, kind in kinds.items():
        assert defs[name]["properties"]["kind"]["const"] == kind
        assert defs[name]["description"] == inspect.cleandoc(models[name].__doc__), name
    assert defs["StatsModel"]["description"].startswith("Parent-set predictor")
    # the metric registry: what a gate's metric may name, with its direction and aggregates
    registry = schema["x-acbo-metrics"]
    assert list(registry) == list(METRICS)
    assert registry["speedup"]["direction"] == "higher is better"
    assert registry["shd"]["aggregates"] == ["mean", "median", "quantile", "share"]
    assert registry["map_f1"]["sides"] == ["expert"] and registry["f1"]["description"]
    assert defs["GateSpec"]["properties"]["metric"]["enum"] == list(METRICS)


def test_schema_output_file(tmp_path):
    out = tmp_path / "schema.json"
    result = CliRunner().invoke(app, ["schema", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["title"] == "acbo spec"


# ------------------------------------------------------------------- [[evaluation.stages]]
EVALUATION = "[evaluation]\ntiming_repeats = 1\n"
STAGES = """
[[evaluation.stages]]
name = "held_out"

[[evaluation.stages]]
name = "rff"
description = "mechanism shift"
n_graphs = 12
scm = { mechanism = { kind = "rff" }, n_obs = 40 }
baselines = ["random"]

[[evaluation.stages]]
name = "observational"
observational = true
seed = 7
expert = { n_trials = 2 }

"""


def with_stages(stages: str = STAGES) -> str:
    return edit(EVALUATION, EVALUATION + stages)


def test_the_default_evaluation_is_the_held_out_split():
    spec = load(SPECS / "smoke.toml").spec
    (st,) = spec.evaluation_stages()
    assert (st.name, st.scm, st.n_graphs, st.observational) == ("held_out", None, None, False)
    assert st.expert == spec.expert and st.baselines == ("pc", "ges", "random")
    assert st.seed == spec.seed + 1000  # not the training graphs' seed
    ev = spec.evaluation
    assert (ev.n_boot, ev.timed_graphs, ev.models, ev.stages) == (1000, 20, [], [])


def test_stage_overrides_resolve_into_whole_tables(workdir):
    (workdir / "ok.toml").write_text(with_stages())
    spec = load("ok.toml").spec
    held, rff, obs = spec.evaluation_stages()
    assert held.scm is None and held.seed == 1000
    assert [m.kind for m in rff.scm.mechanism] == ["rff"] and rff.scm.n_obs == 40
    assert rff.scm.graphs == spec.scm.graphs and rff.scm.n_nodes == spec.scm.n_nodes  # kept
    assert (rff.n_graphs, rff.seed, rff.baselines, rff.description) == (
        12, 1001, ("random",), "mechanism shift")
    assert rff.expert == spec.expert
    assert obs.observational and obs.scm is None and obs.seed == 7
    assert obs.expert.n_trials == 2 and obs.expert.prior == spec.expert.prior


def test_an_expert_of_another_kind_replaces_the_table(workdir):
    stages = '\n[[evaluation.stages]]\nname = "oracle"\nexpert = { kind = "oracle" }\n\n'
    (workdir / "ok.toml").write_text(with_stages(stages))
    (st,) = load("ok.toml").spec.evaluation_stages()
    assert st.expert.kind == "oracle"


@pytest.mark.parametrize("old, new, marker, message", [
    ("n_obs = 40 }", "n_obs = 40, mechanismm = 1 }", "mechanismm",
     "evaluation.stages.1.scm.mechanismm: unknown key (did you mean 'mechanism'?); allowed: "
     "graphs, n_nodes, mechanism, mechanism_mix, noise, interventions, target, n_obs, "
     "standardize"),
    ('{ kind = "rff" }', '{ kind = "rfff" }', "rfff",
     "evaluation.stages.1.scm.mechanism.kind: unknown kind 'rfff' (did you mean 'rff'?); "
     "expected one of: linear, sine, tanh, quadratic, threshold, mlp, rff, grn"),
    ("n_obs = 40", "n_obs = 0", "n_obs = 0",
     "evaluation.stages.1.scm.n_obs: Input should be greater than 0 (got 0)"),
    ("n_trials = 2", "n_trials = -2", "n_trials = -2",
     "evaluation.stages.2.expert.n_trials: Input should be greater than or equal to 0 (got -2)"),
    ("n_graphs = 12\n", "", ('name = "rff"', -1),  # the stage's header
     "evaluation.stages.1.n_graphs: a stage with its own scm needs n_graphs (only the spec's "
     "own held-out split has a size already)"),
    ('name = "observational"', 'name = "rff"', 'name = "rff"',
     "evaluation.stages.2.name: a stage named 'rff' is declared above"),
    ('name = "rff"', 'name = "rff shift"', "rff shift",
     "evaluation.stages.1.name: 'rff shift' is not a stage name: letters, digits and _, not "
     "starting with a digit (it names the stage's folders and report rows)"),
    ('baselines = ["random"]', 'baselines = ["random", "pcc"]', "pcc",
     "evaluation.stages.1.baselines.1: Input should be 'pc', 'ges', 'exact_dp', 'exact_additive' or 'random' (got 'pcc') (did you mean 'pc'?)"),
])
def test_a_bad_stage_override_is_reported_at_its_key(workdir, old, new, marker, message):
    text = with_stages(STAGES.replace(old, new))
    (workdir / "bad.toml").write_text(text)
    result = CliRunner().invoke(app, ["validate", "bad.toml"])
    marker, offset = marker if isinstance(marker, tuple) else (marker, 0)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"bad.toml:{line_of(text, marker) + offset}: {message}\n"


def test_an_error_in_scm_is_reported_there_only(workdir):
    text = with_stages().replace("n_obs = 60", "n_obs = -1")
    (workdir / "bad.toml").write_text(text)
    with pytest.raises(SpecError) as info:
        load("bad.toml")
    assert [p.path for p in info.value.problems] == ["scm.n_obs"]


def test_stage_scm_from_file_resolves_beside_the_spec(workdir):
    (workdir / "g.csv").write_text(",a,b,c\na,0,1,1\nb,0,0,1\nc,0,0,0\n")
    stages = ('\n[[evaluation.stages]]\nname = "net"\nn_graphs = 2\n'
              'scm = { graphs = [{ kind = "from_file", path = "g.csv" }] }\n\n')
    (workdir / "ok.toml").write_text(with_stages(stages))
    (st,) = load("ok.toml").spec.evaluation_stages()
    assert st.scm.max_nodes == 3
    (workdir / "bad.toml").write_text(with_stages(stages.replace("g.csv", "nope.csv")))
    with pytest.raises(SpecError) as info:
        load("bad.toml")
    (problem,) = info.value.problems
    assert problem.path == "evaluation.stages.0.scm.graphs.0.path"
    assert "nope.csv" in problem.message
