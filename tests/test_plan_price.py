"""`acbo plan`'s price: the per-graph stages' CPU-hours and wall time on the worker count (local
cores, or a Ray cluster's CPUs), the bytes each stage writes (against a real smoke run's files),
and phase 2C's 50K rung, which is priced for a cluster and refused on a laptop."""

import json
import math
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.plan import (RAY_CPUS_ENV, RAY_PRICE_CPUS, PlanError, expert_graph_seconds, expert_workers,
                         local_workers, make_plan, ray_cluster_cpus, stage_graphs)
from engine.storage import storage_estimates
from engine.spec.loader import load

SPECS = Path(__file__).resolve().parents[1] / "specs"


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch):
    """No Ray cluster, no assumed size: what a plain shell has."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(RAY_CPUS_ENV, raising=False)


def _hardware(backend):
    from engine.spec.train import HardwareSpec

    return HardwareSpec(backend=backend)


def test_cpu_hours_are_graphs_times_the_per_graph_core_seconds():
    spec = load(SPECS / "phase2c_50k.toml").spec
    plan = make_plan(load(SPECS / "phase2c_50k.toml"), ray_cpus=64, pricing=True)
    per_graph = expert_graph_seconds(spec.expert, spec.scm.n_obs, spec.scm.max_nodes)
    assert per_graph == pytest.approx(5.51)  # the doubly-robust prior's 10 x 0.5 s, 10 trials
    assert plan.cpu_hours["expert"] == pytest.approx(5000 * per_graph / 3600)
    assert 7.6 < plan.cpu_hours["expert"] < 7.7
    for st in spec.evaluation_stages()[1:]:  # the shift stages run the expert on their own graphs
        scm = st.scm
        assert plan.cpu_hours[f"expert.{st.name}"] == pytest.approx(
            stage_graphs(spec, st) * expert_graph_seconds(st.expert, scm.n_obs, scm.max_nodes) / 3600)
    assert plan.total_cpu_hours == pytest.approx(sum(plan.cpu_hours.values()))
    assert set(plan.cpu_hours) == {"expert", "expert.nodes_9_12", "expert.nodes_20"}


def test_the_experts_wall_time_divides_its_graphs_over_the_workers():
    spec_file = load(SPECS / "phase2c_50k.toml")
    per_graph = expert_graph_seconds(spec_file.spec.expert, 200, 8)
    for cpus in (7, 16, 100):
        plan = make_plan(spec_file, ray_cpus=cpus, pricing=True, check_budget=False)
        assert plan.workers.n == cpus and plan.workers.assumed
        assert plan.estimate_s["expert"] == pytest.approx(20 + math.ceil(5000 / cpus) * per_graph)
        assert plan.cpu_hours["expert"] == pytest.approx(5000 * per_graph / 3600)  # the same bill


def test_local_workers_are_the_machines_cores_up_to_8(monkeypatch):
    for cores, workers in ((1, 1), (2, 2), (6, 6), (64, 8)):
        monkeypatch.setattr("os.cpu_count", lambda c=cores: c)
        assert local_workers() == workers
        w = expert_workers(_hardware("local"), ray_cpus=50, pricing=True)  # ray's option: not local's
        assert (w.n, w.backend, w.assumed) == (workers, "local", False)
    plan = make_plan(load(SPECS / "phase2c.toml"))  # 500 graphs over those 8 workers
    assert plan.estimate_s["expert"] == pytest.approx(20 + math.ceil(500 / 8) * 5.51)


def test_ray_workers_assumed_queried_or_local(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    ray = _hardware("ray")
    priced = expert_workers(ray, pricing=True)
    assert priced.n == RAY_PRICE_CPUS and priced.assumed and "RAY_ADDRESS is not set" in priced.note
    run = expert_workers(ray)  # apply: the local Ray instance it would start
    assert run.n == 2 and not run.assumed and "local Ray instance of 2 CPUs" in run.note
    monkeypatch.setenv(RAY_CPUS_ENV, "24")
    assert expert_workers(ray, pricing=True).n == 24
    assert expert_workers(ray, ray_cpus=12, pricing=True).n == 12  # the option before the variable
    assert expert_workers(ray).n == 2  # a run connects to what it connects to
    monkeypatch.setenv(RAY_CPUS_ENV, "many")
    with pytest.raises(PlanError, match="not a positive number"):
        expert_workers(ray, pricing=True)
    monkeypatch.delenv(RAY_CPUS_ENV)

    calls = []
    fake = types.SimpleNamespace(
        is_initialized=lambda: False,
        init=lambda **kw: calls.append(("init", kw["address"])),
        cluster_resources=lambda: {"CPU": 96.0, "memory": 1e12},
        shutdown=lambda: calls.append(("shutdown",)))
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setenv("RAY_ADDRESS", "ray://head.test:10001")
    ray_cluster_cpus.cache_clear()
    try:
        for pricing in (True, False):
            w = expert_workers(ray, pricing=pricing)
            assert (w.n, w.assumed) == (96, False) and "cluster at ray://head.test:10001" in w.note
        assert calls == [("init", "ray://head.test:10001"), ("shutdown",)]  # asked once
        fake.init = lambda **kw: (_ for _ in ()).throw(ConnectionError("refused"))
        monkeypatch.setenv("RAY_ADDRESS", "ray://gone.test:10001")
        w = expert_workers(ray, pricing=True)
        assert w.n == RAY_PRICE_CPUS and "did not answer" in w.note
    finally:
        ray_cluster_cpus.cache_clear()


def _stage_bytes(root, name, stage):
    d = root / "_stages" / name / stage.hash
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


def test_storage_estimate_is_within_1_5x_of_a_smoke_runs_files(smoke_registry):
    plan = make_plan(load(SPECS / "smoke.toml"))
    real = {name: _stage_bytes(smoke_registry, name, stage) for name, stage in plan.stages.items()}
    assert set(plan.storage_bytes) == set(real)
    for name, est in plan.storage_bytes.items():
        assert real[name] > 0 and 1 / 1.5 < est / real[name] < 1.5, (name, est, real[name])
    total = sum(real.values())
    assert 1 / 1.5 < plan.total_storage_bytes / total < 1.5


def test_expert_files_with_trials_are_as_estimated(tmp_path):
    """K = D_I's interventional rows + n_trials: the per-graph files and their merge of an expert
    that runs trials (random: no prior to fit, seconds)."""
    import jax

    from engine import scm as scm_lib
    from engine.expert.runner import merge_artifacts, run_graphs
    from engine.storage import _expert_bytes, trajectory_rows
    from engine.registry import arrays_to_bytes
    from engine.spec.expert import RandomExpert

    scm = load(SPECS / "smoke.toml").spec.scm
    expert = RandomExpert(kind="random", n_trials=3, outcome_samples=10)
    scms, data = scm_lib.simulate(scm, jax.random.key(0), 3)
    paths = run_graphs(expert.build(), jax.random.key(1), scms, data, tmp_path / "graphs")
    merged = merge_artifacts(paths)
    assert merged["rows_valid"].shape[1] == trajectory_rows(scm, expert) == scm.n_int + 3
    real = sum(p.stat().st_size for p in paths) + len(arrays_to_bytes(merged))
    est = _expert_bytes(scm, expert, 3)
    assert 1 / 1.5 < est / real < 1.5, (est, real)


def test_storage_of_phase2c_50k_scales_with_its_graphs():
    small = make_plan(load(SPECS / "phase2c.toml"))
    big = make_plan(load(SPECS / "phase2c_50k.toml"), pricing=True)
    for name in ("simulate", "expert", "demonstrations"):  # 10x the graphs, 10x the bytes
        assert big.storage_bytes[name] / small.storage_bytes[name] == pytest.approx(10, rel=0.02)
    assert "train.phase2c" in big.stages and "train.phase2c" not in big.storage_bytes  # phase2c's
    assert 0.1e9 < big.total_storage_bytes < 0.5e9
    assert storage_estimates(big.spec_file, big.stages) == big.storage_bytes


def test_phase2c_50k_validates_and_climbs_the_ladder():
    spec = load(SPECS / "phase2c_50k.toml").spec
    phase2c = load(SPECS / "phase2c.toml").spec
    assert spec.stage.requires == ["phase2c"] and phase2c.stage.requires == ["phase2b"]
    assert spec.data.n_graphs * spec.data.demos_per_graph == 50_000
    assert phase2c.data.n_graphs * phase2c.data.demos_per_graph == 5_000
    assert spec.hardware.backend == "ray" and spec.evaluation.models == ["phase2c"]
    assert (spec.expert, spec.model, spec.loss, spec.scm) == (phase2c.expert, phase2c.model, phase2c.loss,
                                                              phase2c.scm)
    assert [s.name for s in spec.evaluation_stages()] == [s.name for s in phase2c.evaluation_stages()]
    result = CliRunner().invoke(app, ["validate", str(SPECS / "phase2c_50k.toml")])
    assert result.exit_code == 0, result.output


def test_acbo_plan_prices_phase2c_50k(tmp_path):
    args = ["plan", str(SPECS / "phase2c_50k.toml"), "--registry", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "CPU-h" in out and "7.65" in out  # the expert's 5,000 graphs
    assert f"{RAY_PRICE_CPUS} Ray CPUs assumed" in out and "GB written" in out and "storage" in out
    assert max(len(line) for line in out.splitlines()) <= 100

    doc = json.loads(CliRunner().invoke(app, args + ["--json", "--ray-cpus", "32"]).stdout)
    assert doc["workers"] == {"backend": "ray", "n": 32, "assumed": True, "note": "32 Ray CPUs assumed"}
    assert doc["refused"] is None and doc["estimate_s"] <= doc["budget_s"]
    assert 7.6 < doc["cpu_hours"] < 7.8 and doc["storage_gb"] == doc["storage_bytes"] / 1e9
    stages = {s["name"]: s for s in doc["stages"]}
    assert stages["expert"]["cpu_hours"] == pytest.approx(7.65, abs=0.01)
    assert stages["demonstrations"]["storage_bytes"] > 0 and stages["train"]["cpu_hours"] is None
    assert stages["train.phase2c"]["storage_bytes"] is None  # phase2c's stage, not this spec's
    assert sum(s["storage_bytes"] or 0 for s in doc["stages"]) == doc["storage_bytes"]


def test_apply_refuses_phase2c_50k_on_a_2_core_machine_without_a_cluster(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    with pytest.raises(PlanError, match="local Ray instance of 2 CPUs .RAY_ADDRESS is not set"):
        make_plan(load(SPECS / "phase2c_50k.toml"))
    make_plan(load(SPECS / "phase2c_50k.toml"), ray_cpus=16)  # a 16-CPU cluster fits the budget
    with pytest.raises(PlanError, match="exceeds hardware.max_wall_minutes = 90"):
        make_plan(load(SPECS / "phase2c_50k.toml"), ray_cpus=4)


def test_plan_prints_the_price_before_refusing_an_over_budget_spec(tmp_path):
    args = ["plan", str(SPECS / "smoke.toml"), "--registry", str(tmp_path), "--set",
            "hardware.max_wall_minutes=0.01"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "CPU-h" in result.stdout and "storage" in result.stdout
    assert "exceeds hardware.max_wall_minutes" in result.stderr
    result = CliRunner().invoke(app, args + ["--json"])
    assert result.exit_code == 2 and "exceeds" in json.loads(result.stdout)["refused"]


@pytest.mark.parametrize("name", ["phase2b", "phase2c", "phase4_integration"])
def test_plan_tables_fit_100_columns(name, tmp_path):
    result = CliRunner().invoke(app, ["plan", str(SPECS / f"{name}.toml"), "--registry", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 100
    assert "total" in result.stdout and "CPU-hours" in result.stdout


def test_an_online_step_prices_its_batchs_simulation_by_mechanism():
    """The simulation part of an online step: grn's SDE costs per Euler step (twice the steps,
    about twice the time), a VirtualBrownianTree about 10x a fixed path; a fixed-data spec
    simulates nothing in its steps."""
    from engine.train.cost import simulate_seconds, step_seconds

    grn = load(SPECS / "general_grn.toml").spec
    finer = load(SPECS / "general_grn.toml", ['scm.mechanism=[{ kind = "grn", brownian = "path", '
                                              'technical_noise = {}, dt = 0.025 }]']).spec
    tree = load(SPECS / "general_grn.toml", ['scm.mechanism=[{ kind = "grn", technical_noise = {} }]']).spec
    base = simulate_seconds(grn.scm, 16)
    assert 1.8 < simulate_seconds(finer.scm, 16) / base < 2.0
    assert simulate_seconds(tree.scm, 16) / base > 8
    same_sizes = ["scm.n_nodes={ low = 7, high = 30 }"]
    linear = load(SPECS / "general.toml", same_sizes).spec  # no SDE: over 10x cheaper to simulate
    assert simulate_seconds(linear.scm, 16) < base / 10
    fixed = load(SPECS / "general.toml", same_sizes + [
        'data.mode="fixed"', 'data.split={ train = 0.5, validation = 0.2, heldout = 0.3 }']).spec
    assert step_seconds(linear) - step_seconds(fixed) == pytest.approx(simulate_seconds(linear.scm, 16))


def test_an_online_curriculum_prices_each_stage_at_its_own_sizes():
    from engine.train.cost import step_seconds, train_seconds

    spec = load(SPECS / "general.toml", ["scm.n_nodes={ low = 7, high = 50 }",
                                         "train.steps=8000",
                                         "train.curriculum=[{ steps = 6000, n_nodes = { low = 7, high = 30 } }, "
                                         "{ steps = 2000 }]"]).spec
    small, large = (step_seconds(spec, 1, c.scm(spec.scm)) for c in spec.train.curriculum)
    assert large > 2 * small  # padded to 50 variables, not 30
    assert train_seconds(spec) == pytest.approx(6000 * small + 2000 * large)
    assert train_seconds(spec) < spec.train.steps * step_seconds(spec)  # not all at the largest


def test_an_evaluations_baselines_are_priced_over_the_stages_graph_sizes():
    """A 5-50 stage runs exact_dp on its <= 20-variable graphs only: priced at the largest size
    it cost nothing; over the sizes it costs their share. GES is priced at most at the limit
    where a run is stopped."""
    from engine.evaluate.baselines import BASELINES
    from engine.plan import _baseline_seconds

    scm = load(SPECS / "general.toml").spec.scm
    assert scm.sizes == list(range(5, 51))
    want = sum(BASELINES["exact_dp"].seconds(d) for d in range(5, 21)) / 46
    assert _baseline_seconds("exact_dp", scm, 600.0) == pytest.approx(want)
    assert want > 0 and not BASELINES["exact_dp"].takes(50)
    assert _baseline_seconds("ges", scm, 1.0) <= 1.0 < _baseline_seconds("ges", scm, 600.0)
