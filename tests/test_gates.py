"""Gates with intervals: verdicts on hand-built evaluation records, groups, JSON, the console
table and `acbo gate`'s exit codes; and the gates a spec may not declare, refused by
`acbo validate` as `file:line: dotted.path: message` (exit 2).

Records are built by hand with known per-graph values: candidates [a, b] with a the true parent;
a prediction [0.9, 0.1] is right (F1 1, SHD 0), [0.1, 0.9] wrong (F1 0, SHD 2) and [0.9, 0.9]
half right (F1 2/3, SHD 1). The expert takes 1 s per graph, so a side's speedup is 1 / its time.
Identical graphs give a zero-width interval, so verdicts are exact.
"""

from __future__ import annotations

import json
import math
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.evaluate.catalog import METRICS
from engine.evaluate.record import Evaluation, Side, StageResult
from engine.gates import (
    GO, INCONCLUSIVE, NO_GO, GateResult, Verdict, combine, evaluate_gates,
)
from engine.spec.root import Spec

ROOT = Path(__file__).resolve().parents[1]
SMOKE = (ROOT / "specs" / "smoke.toml").read_text()
BASE = SMOKE[: SMOKE.index("[[gates]]")]
RIGHT, WRONG, HALF = [0.9, 0.1], [0.1, 0.9], [0.9, 0.9]
N = 20


def side(rows, speedup=None) -> Side:
    probs = np.asarray(rows, float)
    pred = np.where(np.isnan(probs), np.nan, (probs > 0.5).astype(float))
    n = len(probs)
    seconds = np.full(n, np.nan) if speedup is None else 1.0 / np.broadcast_to(speedup, (n,))
    return Side(probs=probs, pred=pred, seconds=np.asarray(seconds, float))


def stage(name="held_out", truth=None, **sides) -> StageResult:
    n = len(next(iter(sides.values())).probs)
    truth = np.tile([True, False], (n, 1)) if truth is None else truth
    sides.setdefault("expert", side([RIGHT] * n, speedup=1.0))
    return StageResult(
        name=name, description="", truth=truth, mask=np.ones((n, 2), bool),
        adjacency=np.zeros((n, 2, 2), bool), var_mask=np.ones((n, 2), bool),
        target=np.zeros(n, int), expert_run_seconds=np.full(n, 10.0), sides=sides,
    )


def record(*stages) -> Evaluation:
    return Evaluation({s.name: s for s in stages}, threshold=0.5, n_boot=300, seed=0)


EVALUATION = "[evaluation]\ntiming_repeats = 1\n"


def spec(gates: str, extra: str = "", evaluation: str = "") -> Spec:
    """smoke.toml with these gates, `extra` after them and `evaluation` keys or tables added
    to its [evaluation]."""
    text = BASE.replace(EVALUATION, EVALUATION + evaluation) + gates + extra
    return Spec.model_validate(tomllib.loads(text), context={"spec_dir": ROOT / "specs"})


def gate(toml: str, evaluation: Evaluation, extra: str = "") -> GateResult:
    (result,) = evaluate_gates(spec("[[gates]]\n" + toml, extra), evaluation).gates
    return result


# --------------------------------------------------------------------------- aggregates


SPREAD = np.arange(1, N + 1) / 4  # speedups 0.25 .. 5, one per graph
MIXED = record(stage(model=side([RIGHT] * 15 + [WRONG] * 5, speedup=SPREAD)))


@pytest.mark.parametrize("toml, value", [
    ('metric = "f1"\nmin = 0.5', 0.75),  # pooled: 15 TP, 5 FP, 5 FN
    ('metric = "recall"\nmin = 0.5', 0.75),
    ('metric = "shd"\nmax = 1', 0.5),  # mean: 5 graphs with 2 wrong candidates
    ('metric = "shd"\naggregate = "median"\nmax = 1', 0.0),
    ('metric = "speedup"\nmin = 1', 2.5),  # the weighted lower median: 10th of 20
    ('metric = "speedup"\naggregate = "mean"\nmin = 1', float(SPREAD.mean())),
    ('metric = "speedup"\naggregate = "quantile"\nq = 0.1\nmin = 0.1', 0.5),  # 2nd of 20
    ('metric = "speedup"\naggregate = "share"\nabove = 1.0\nmin = 0.5', 16 / 20),
    ('metric = "full_speedup"\nmin = 1', 25.0),  # the expert's whole run: 10 s
    ('metric = "seconds"\nmax = 1', 1 / 2.75),  # the 10th shortest time
])
def test_every_aggregate_reads_the_record(toml, value):
    r = gate(toml, MIXED)
    e = r.estimate
    assert e.value == pytest.approx(value)
    assert e.low <= e.value <= e.high and e.n == N
    assert r.stage == "held_out" and r.side == "model"
    assert r.aggregate == (METRICS[r.metric].default_aggregate if "aggregate" not in toml
                           else tomllib.loads(toml)["aggregate"])


def test_only_timed_graphs_count_for_a_timing_metric():
    speed = np.where(np.arange(N) < 5, 3.0, np.nan)  # 5 of 20 graphs timed
    r = gate('metric = "speedup"\nmin = 2', record(stage(model=side([RIGHT] * N, speedup=speed))))
    assert (r.estimate.value, r.estimate.n, r.verdict) == (3.0, 5, GO)
    assert "over 5 graphs of held_out" in r.evidence


# --------------------------------------------------------------------------- verdicts


def _speed(values) -> Evaluation:
    return record(stage(model=side([RIGHT] * len(values), speedup=np.asarray(values, float))))


@pytest.mark.parametrize("speedups, bounds, verdict", [
    ([3.0] * N, "min = 2", GO),
    ([1.8] * N, "min = 2", NO_GO),  # the whole interval below min
    ([1.8] * N, "min = 2\nnogo_below = 1.5", INCONCLUSIVE),  # the middle zone
    ([1.2] * N, "min = 2\nnogo_below = 1.5", NO_GO),
    ([1.0] * 9 + [4.0] * 11, "min = 2", INCONCLUSIVE),  # the interval straddles min
    ([1.0] * 9 + [4.0] * 11, "min = 2\nnogo_below = 1.5", INCONCLUSIVE),
    ([1.0] * 11 + [4.0] * 9, "min = 2\nnogo_below = 1.5", NO_GO),  # the value below nogo_below
    ([1.0] * 11 + [4.0] * 9, "min = 2", INCONCLUSIVE),
    ([3.0] * N, "max = 4", GO),
    ([3.0] * N, "max = 2", NO_GO),
    ([3.0] * N, "max = 2\nnogo_above = 3.5", INCONCLUSIVE),
    ([3.0] * N, "max = 2\nnogo_above = 2.5", NO_GO),
    ([3.0] * N, "min = 2\nmax = 4", GO),
    ([3.0] * N, "min = 2\nmax = 2.5\nnogo_above = 5", INCONCLUSIVE),  # the worse of the two
    ([1.0] * 9 + [4.0] * 11, "min = 0.5\nmax = 2", INCONCLUSIVE),
    ([3.0] * N, "min = 1\nmax = 2.5", NO_GO),
])
def test_verdicts_from_the_interval(speedups, bounds, verdict):
    r = gate(f'metric = "speedup"\n{bounds}', _speed(speedups))
    assert r.verdict == verdict, r.evidence


def test_evidence_names_the_statistic_the_interval_and_the_zone():
    r = gate('name = "2x"\nmetric = "speedup"\nmin = 2\nnogo_below = 1.5', _speed([1.8] * N))
    assert r.evidence == (
        "median speedup of model over 20 graphs of held_out: 1.8x [1.8x, 1.8x] (95% CI), needs "
        ">= 2 (NO-GO below 1.5, INCONCLUSIVE at best from 1.5 to 2)")
    assert (r.op, r.threshold, r.nogo) == (">=", 2.0, 1.5)
    both = gate('metric = "speedup"\nmin = 1\nmax = 4\nnogo_above = 5', _speed([1.8] * N))
    assert (both.op, both.threshold, both.nogo, both.bounds) == (
        "in", [1.0, 4.0], [None, 5.0], (1.0, 4.0, None, 5.0))


# --------------------------------------------------------------------------- relative gates


HALVED = record(stage(model=side([HALF] * N, speedup=4.0),
                      random=side([WRONG] * 10 + [RIGHT] * 10)))


@pytest.mark.parametrize("toml, value, verdict", [
    ('vs = "expert"\nmax = 0.5', 1 / 3, GO),  # drop: 1 - (2/3) / 1
    ('vs = "expert"\nrelative = "drop"\nmax = 0.2', 1 / 3, NO_GO),
    ('vs = "expert"\nmax = 0.2\nnogo_above = 0.4', 1 / 3, INCONCLUSIVE),
    ('vs = "expert"\nrelative = "ratio"\nmin = 0.6', 2 / 3, GO),
    ('vs = "expert"\nrelative = "difference"\nmin = -0.2', -1 / 3, NO_GO),
    ('vs = "random"\nrelative = "ratio"\nmin = 0.8', (2 / 3) / 0.5, GO),  # ~[0.95, 2.2]
    ('vs = "random"\nrelative = "difference"\nmin = 0.1', 2 / 3 - 0.5, INCONCLUSIVE),
])
def test_relative_gates_against_the_expert_and_a_baseline(toml, value, verdict):
    r = gate(f'metric = "f1"\n{toml}', HALVED)
    assert r.estimate.value == pytest.approx(value)
    assert r.verdict == verdict, r.evidence
    assert r.relative == (tomllib.loads(toml).get("relative", "drop"))


def test_relative_evidence_names_both_sides_and_their_values():
    r = gate('metric = "f1"\nvs = "expert"\nmax = 0.5', HALVED)
    assert r.evidence == ("pooled f1 drop vs expert of model over 20 graphs of held_out: 0.333 "
                          "[0.333, 0.333] (95% CI), needs <= 0.5; model 0.667, expert 1")
    lower = gate('metric = "shd"\nvs = "expert"\nrelative = "difference"\nmax = 1.5', HALVED)
    assert lower.estimate.value == pytest.approx(1.0)  # 1 wrong candidate per graph vs 0


def test_a_gate_on_a_named_stage():
    ev = record(stage(model=side([RIGHT] * N)), stage("shifted", model=side([WRONG] * N)))
    stages = ('\n[[evaluation.stages]]\nname = "held_out"\n\n[[evaluation.stages]]\n'
              'name = "shifted"\nn_graphs = 5\nscm = { n_obs = 30 }\n\n')
    s = spec('[[gates]]\nmetric = "f1"\nmin = 0.5\n\n'
             '[[gates]]\nmetric = "f1"\nstage = "shifted"\nmin = 0.5\n', evaluation=stages)
    v = evaluate_gates(s, ev)
    assert [(g.stage, g.verdict) for g in v.gates] == [("held_out", GO), ("shifted", NO_GO)]


# --------------------------------------------------------------------------- undefined values


def test_an_undefined_value_is_no_go_with_the_reason():
    never_ran = record(stage(model=side([[np.nan, np.nan]] * N)))
    r = gate('metric = "f1"\nmin = 0.1', never_ran)
    assert r.verdict == NO_GO and math.isnan(r.estimate.value) and r.estimate.n == 0
    assert "undefined: no graph has it (of 20)" in r.evidence
    no_parents = record(stage(truth=np.zeros((N, 2), bool), model=side([WRONG] * N)))
    r = gate('metric = "recall"\nmin = 0.1', no_parents)  # 0 true parents: 0 / 0
    assert r.verdict == NO_GO and "undefined on these graphs" in r.evidence


def test_a_side_the_record_lacks_is_no_go_not_a_crash():
    untimed = record(stage(model=side([RIGHT] * N)))  # the model was not timed
    r = gate('metric = "speedup"\nmin = 2', untimed)
    assert r.verdict == NO_GO and "model has no speedup on held_out" in r.evidence
    no_pc = record(stage(model=side([RIGHT] * N)))
    r = gate('metric = "f1"\nvs = "pc"\nrelative = "ratio"\nmin = 1', no_pc)
    assert r.verdict == NO_GO and "pc was not evaluated on held_out" in r.evidence


# --------------------------------------------------------------------------- groups


@pytest.mark.parametrize("verdicts, policy, expected", [
    ([GO, GO], "all", GO),
    ([GO, INCONCLUSIVE], "all", INCONCLUSIVE),
    ([GO, INCONCLUSIVE, NO_GO], "all", NO_GO),
    ([GO, GO, NO_GO], "majority", GO),
    ([GO, INCONCLUSIVE, NO_GO], "majority", INCONCLUSIVE),
    ([GO, NO_GO], "majority", NO_GO),  # one of two is not more than half
    ([GO, INCONCLUSIVE], "majority", INCONCLUSIVE),
    ([GO, NO_GO, NO_GO], "majority", NO_GO),
    ([INCONCLUSIVE, INCONCLUSIVE, NO_GO, NO_GO], "majority", NO_GO),
    ([], "all", NO_GO),
])
def test_group_policies(verdicts, policy, expected):
    assert combine(verdicts, policy) == expected


GROUPED = """
[[gates]]
metric = "speedup"
min = 2
group = "week2"

[[gates]]
metric = "f1"
vs = "expert"
max = 0.5
group = "week2"

[[gates]]
name = "go"
metric = "f1"
min = 0.5
group = "week4"

[[gates]]
name = "no-go"
metric = "f1"
min = 0.9
group = "week4"

[[gates]]
name = "go too"
metric = "recall"
min = 0.9
group = "week4"
"""


def test_groups_combine_by_policy_and_the_verdict_by_all():
    v = evaluate_gates(spec(GROUPED, ""), HALVED)  # groups default to "all"
    assert [g.verdict for g in v.gates] == [GO, GO, GO, NO_GO, GO]
    assert {k: (g.policy, g.verdict) for k, g in v.groups.items()} == {
        "week2": ("all", GO), "week4": ("all", NO_GO)}
    assert v.verdict == NO_GO
    policies = '\n[gate_groups]\nweek2 = "all"\nweek4 = "majority"\n'
    v = evaluate_gates(spec(GROUPED + policies), HALVED)
    assert v.groups["week4"].verdict == GO and v.verdict == GO
    assert list(v.groups) == ["week2", "week4"]


def test_verdict_json_round_trips_with_nan_as_null():
    ev = record(stage(model=side([[np.nan, np.nan]] * N)))
    zoned = GROUPED.replace('"speedup"\nmin = 2', '"speedup"\nmin = 2\nnogo_below = 1')
    v = evaluate_gates(spec(zoned), ev)
    data = json.loads(json.dumps(v.to_json(), allow_nan=False))
    assert set(data) == {"verdict", "groups", "gates"}
    assert set(data["gates"][0]) == {"name", "group", "metric", "stage", "side", "aggregate", "vs",
                                     "relative", "value", "low", "high", "n", "op", "threshold",
                                     "nogo", "verdict", "evidence"}
    assert data["gates"][1]["value"] is None and data["gates"][1]["verdict"] == NO_GO
    assert data["groups"]["week2"] == {"policy": "all", "verdict": NO_GO}
    assert Verdict.from_json(data).to_json() == data
    assert Verdict.from_json(data).gates[0].name == "speedup of model"  # the default name


def test_the_console_table_shows_verdicts_intervals_and_evidence():
    from rich.console import Console

    from engine.report.console import gates_table

    v = evaluate_gates(spec(GROUPED + '\n[gate_groups]\nweek4 = "majority"\n'), HALVED)
    for given in (v, v.to_json()):
        console = Console(width=300, record=True)
        console.print(gates_table(given))
        text = console.export_text()
        assert "Gates: GO" in text and "week4 (majority): GO" in text
        assert "NO-GO" in text and "0.333 [0.333, 0.333]" in text and ">= 0.9" in text
        assert "pooled f1 of model over 20 graphs of held_out" in text


@pytest.mark.parametrize("verdict, code", [(GO, 0), (NO_GO, 3), (INCONCLUSIVE, 4)])
def test_acbo_gate_exit_codes(monkeypatch, tmp_path, verdict, code):
    import engine.cli as cli

    class Outcome:
        gates = Verdict(verdict, {}, [])
        run_dir = tmp_path

    monkeypatch.setattr(cli, "_run_apply", lambda *a, **k: Outcome())
    result = CliRunner().invoke(app, ["gate", str(ROOT / "specs" / "smoke.toml")])
    assert result.exit_code == code, result.output
    assert verdict in result.output


# --------------------------------------------------------------------------- load-time refusals


def _case(id, gates, marker, message, extra=""):
    return pytest.param(gates, extra, marker, message, id=id)


REFUSED = [
    _case("a-metric-only-the-expert-has", 'metric = "map_f1"\nmin = 0.5', "map_f1",
          "gates.2.metric: the model side has no map_f1: it is measured for expert only (F1 of "
          "the expert's most probable parent set)"),
    _case("a-misspelt-metric", 'metric = "f11"\nmin = 0.5', "f11",
          f"gates.2.metric: unknown metric 'f11' (did you mean 'f1'?); metrics: "
          f"{', '.join(METRICS)} (`acbo schema` describes each)"),
    _case("the-expert-has-no-speedup", 'metric = "speedup"\nside = "expert"\nmin = 2', "side =",
          "gates.2.side: the expert side has no speedup: it is measured for model, pc, ges, "
          "exact_dp, exact_additive, random only (expert's posterior time (prior included) / this method's time, per "
          "graph)"),
    _case("the-expert-has-no-graph-metric", 'metric = "graph_f1"\nvs = "expert"\nmax = 0.2',
          "vs =", "gates.2.vs: the expert has no graph_f1: it predicts the target's parents, "
          "not a whole graph (use the parent-set metric)"),
    _case("an-unknown-stage", 'metric = "f1"\nstage = "heldout"\nmin = 0.5', "stage =",
          "gates.2.stage: no evaluation stage 'heldout' (did you mean 'held_out'?); stages: "
          "held_out"),
    _case("an-unknown-side", 'metric = "f1"\nvs = "gse"\nmax = 0.5', "vs =",
          "gates.2.vs: unknown side 'gse' (did you mean 'ges'?); sides: model, expert, pc, ges, "
          "exact_dp, exact_additive, random (other specs' models are sides once listed in evaluation.models)"),
    _case("vs-a-baseline-the-stage-does-not-run",
          'metric = "f1"\nvs = "pc"\nrelative = "ratio"\nmin = 1', 'vs = "pc"',
          "gates.2.vs: stage 'held_out' does not run the pc baseline (it runs: random); add it "
          "to that stage's baselines or evaluation.baselines",
          extra='baselines = ["random"]\n'),
    _case("min-above-max", 'metric = "speedup"\nmin = 3\nmax = 2', "min = 3",
          "gates.2.min: min (3) must be <= max (2): no value can pass"),
    _case("nogo-below-above-min", 'metric = "speedup"\nmin = 2\nnogo_below = 2.5', "nogo_below",
          "gates.2.nogo_below: nogo_below (2.5) must be <= min (2)"),
    _case("nogo-above-below-max", 'metric = "ece"\nmax = 0.2\nnogo_above = 0.1', "nogo_above",
          "gates.2.nogo_above: nogo_above (0.1) must be >= max (0.2)"),
    _case("nogo-below-without-min", 'metric = "ece"\nmax = 0.2\nnogo_below = 0.1', "nogo_below",
          "gates.2.nogo_below: nogo_below marks a zone below min: give min"),
    _case("no-bound", 'metric = "f1"', '[[gates]]',
          "gates.2: a gate needs min and/or max (without a bound it always passes)"),
    _case("f1-min-above-one", 'metric = "f1"\nmin = 1.2', "min = 1.2",
          "gates.2.min: f1 is at most 1, so min = 1.2 can never pass"),
    _case("a-share-above-one", 'metric = "speedup"\naggregate = "share"\nabove = 1.0\nmin = 1.5',
          "min = 1.5", "gates.2.min: a share of graphs is at most 1, so min = 1.5 can never pass"),
    _case("an-aggregate-the-metric-lacks", 'metric = "auroc"\naggregate = "median"\nmin = 0.5',
          "aggregate =", "gates.2.aggregate: auroc has no aggregate 'median' (it has pooled)"),
    _case("quantile-without-q", 'metric = "speedup"\naggregate = "quantile"\nmin = 1', "[[gates]]",
          'gates.2.q: aggregate = "quantile" needs q, the quantile (0 < q < 1)'),
    _case("q-without-quantile", 'metric = "speedup"\nq = 0.2\nmin = 1', "q = 0.2",
          'gates.2.q: q is the quantile of aggregate = "quantile" (this gate\'s aggregate is '
          '"median")'),
    _case("share-without-above", 'metric = "speedup"\naggregate = "share"\nmin = 0.9', "[[gates]]",
          'gates.2.above: aggregate = "share" needs above: the share of graphs whose speedup is '
          "> above"),
    _case("relative-without-vs", 'metric = "f1"\nrelative = "ratio"\nmin = 1', "relative",
          "gates.2.relative: relative needs vs (the side this gate compares with) or vs_stage (the stage)"),
    _case("vs-itself", 'metric = "f1"\nvs = "model"\nmax = 0.1', "vs =",
          "gates.2.vs: vs = 'model' is the gate's own side"),
    _case("an-unused-group", 'metric = "f1"\nmin = 0.5\ngroup = "week2"', "week4 =",
          "gate_groups.week4: no gate is in group 'week4' (did you mean 'week2'?); groups: "
          "default, week2", extra='\n[gate_groups]\nweek4 = "majority"\n'),
]


@pytest.mark.parametrize("gates, extra, marker, message", REFUSED)
def test_validate_refuses_a_gate_the_evaluation_cannot_judge(tmp_path, monkeypatch, gates, extra,
                                                             marker, message):
    text = SMOKE + "\n[[gates]]\n" + gates + "\n"
    if extra.startswith("\n["):
        text += extra
    else:
        text = text.replace(EVALUATION, EVALUATION + extra)
    (tmp_path / "bad.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["validate", "bad.toml"])
    line = [n for n, t in enumerate(text.splitlines(), 1) if marker in t][-1]
    assert result.exit_code == 2, result.output
    assert result.stderr == f"bad.toml:{line}: {message}\n"


def test_the_acbo_command_refuses_with_the_line(tmp_path):
    text = SMOKE + '\n[[gates]]\nmetric = "map_f1"\nmin = 0.5\n'
    (tmp_path / "bad.toml").write_text(text)
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "acbo"), "validate", "bad.toml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    line = len(text.splitlines()) - 1
    assert done.returncode == 2
    assert done.stderr.startswith(f"bad.toml:{line}: gates.2.metric: the model side has no map_f1")


def test_evaluation_models_are_sides_and_may_not_shadow_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "phase2a.toml").write_text((ROOT / "specs" / "phase2a.toml").read_text())
    ev = EVALUATION
    good = SMOKE.replace(ev, ev + 'models = ["phase2a"]\n') + (
        '\n[[gates]]\nmetric = "f1"\nvs = "phase2a"\nrelative = "ratio"\nmin = 1\n'
        '\n[[gates]]\nmetric = "speedup"\nside = "phase2a"\nmin = 1\n')
    (tmp_path / "ok.toml").write_text(good)
    assert CliRunner().invoke(app, ["validate", "ok.toml"]).exit_code == 0
    bad = SMOKE.replace(ev, ev + 'models = ["pc"]\n')
    (tmp_path / "bad.toml").write_text(bad)
    result = CliRunner().invoke(app, ["validate", "bad.toml"])
    line = [n for n, t in enumerate(bad.splitlines(), 1) if "models =" in t][0]
    assert result.exit_code == 2
    assert result.stderr == (f"bad.toml:{line}: evaluation.models.0: 'pc' is a built-in side "
                             "(model, expert, pc, ges, exact_dp, exact_additive, random); a model is named by its spec's name\n")


def test_an_extra_model_is_judged_like_the_model():
    ev = record(stage(model=side([RIGHT] * N, speedup=1.0), phase2a=side([HALF] * N, speedup=3.0)))
    s = spec('[[gates]]\nmetric = "speedup"\nside = "phase2a"\nmin = 2\n\n'
             '[[gates]]\nmetric = "f1"\nside = "phase2a"\nvs = "model"\nmax = 0.5\n',
             evaluation='models = ["phase2a"]\n')
    v = evaluate_gates(s, ev)
    assert [(g.side, g.verdict) for g in v.gates] == [("phase2a", GO), ("phase2a", GO)]
    assert v.gates[1].estimate.value == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- transfer (vs_stage)


STAGES = ('[[evaluation.stages]]\nname = "held_out"\n\n[[evaluation.stages]]\nname = "larger"\n'
          'n_graphs = 4\nscm = { n_nodes = 10 }\n')


def test_a_drop_against_another_stage_compares_the_same_side_there():
    """The plan's transfer question: the model's F1 on larger graphs against its F1 in
    distribution (other graphs: resampled independently, so the interval is wider)."""
    ev = record(stage(model=side([RIGHT] * N)),
                stage("larger", model=side([RIGHT] * (N // 2) + [HALF] * (N // 2))))
    r = gate('metric = "f1"\nstage = "larger"\nvs_stage = "held_out"\nmax = 0.3', ev,
             "\n" + STAGES)
    # larger: 20 TP, 10 FP (the half-wrong graphs), 0 FN -> F1 = 40 / 50; held_out F1 = 1
    assert r.estimate.value == pytest.approx(0.2)
    assert r.estimate.low < r.estimate.value < r.estimate.high
    assert "drop vs held_out" in r.evidence
    assert "model on held_out 1" in r.evidence


def test_vs_stage_must_name_another_declared_stage():
    with pytest.raises(Exception, match="no evaluation stage 'held'"):
        spec('[[gates]]\nmetric = "f1"\nstage = "larger"\nvs_stage = "held"\nmax = 0.3\n',
             "\n" + STAGES)
    with pytest.raises(Exception, match="is the gate's own stage"):
        spec('[[gates]]\nmetric = "f1"\nstage = "larger"\nvs_stage = "larger"\nmax = 0.3\n',
             "\n" + STAGES)
