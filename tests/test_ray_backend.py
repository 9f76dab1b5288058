"""[hardware] backend = "ray": the expert's graphs as Ray tasks give the local backend's artifacts
bit for bit, resume from the files on disk, retry a lost worker's graph, and name failed graphs.
Without Ray installed, the Ray tests skip and a spec asking for Ray fails with the install line."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.expert.runner import FIELDS, load_trajectory, run_graphs
from engine.expert.toy import make_dataset, random_linear_scm
from engine.spec.expert import ParentScaleExpert

NO_RAY = 'Ray is an optional extra: pip install -e ".[ray]"'


@pytest.fixture(scope="module")
def ray_module():
    """Ray, or a skip before the module's other fixtures spend time."""
    return pytest.importorskip("ray", reason=NO_RAY)


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    """A persistent compile cache for the module, as the CLI sets one: the local pool's and each
    Ray worker's compile of the same programs is paid once (workers inherit the environment)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax_cache")))
        mp.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # the expert's are many small ones
        mp.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
        yield


@pytest.fixture(scope="module")
def graphs():
    """Three small graphs and a PARENT_SCALE expert with trials (graph by graph, not vmapped)."""
    rng = np.random.default_rng(5)
    scms = [random_linear_scm(rng, 4) for _ in range(3)]
    datas = [make_dataset(s, jax.random.PRNGKey(i), n_obs=50) for i, s in enumerate(scms)]
    stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
    expert = ParentScaleExpert.model_validate(dict(
        kind="parent_scale", prior={"kind": "uniform", "max_parents": 2}, prune_threshold=0.0,
        n_trials=2, outcome_samples=50, n_anchors=16, opt_steps=4)).build()
    return expert, stack(scms), stack(datas)


@pytest.fixture(scope="module")
def reference(graphs, compile_cache, tmp_path_factory):
    """The local backend's trajectories (2 pinned worker processes, as the stage runs them)."""
    expert, scms, datas = graphs
    paths = run_graphs(expert, jax.random.PRNGKey(0), scms, datas, tmp_path_factory.mktemp("local"), workers=2)
    return [load_trajectory(p) for p in paths]


def assert_same(paths, reference):
    for g, (p, ref) in enumerate(zip(paths, reference)):
        traj = load_trajectory(p)
        assert traj is not None, f"graph {g}: no valid artifact"
        for f in FIELDS:
            a, b = np.asarray(getattr(traj, f)), np.asarray(getattr(ref, f))
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), f"graph {g}: {f} differs"


@pytest.fixture(scope="module")
def ray_session(ray_module, compile_cache):
    """One light Ray instance for the tests that share it (RayBackend leaves it running)."""
    ray = ray_module
    with warnings.catch_warnings():  # JAX's warning on Ray's fork-and-exec of its processes
        warnings.simplefilter("ignore", RuntimeWarning)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_ray_matches_local_bit_for_bit_from_another_folder(ray_module, graphs, reference, tmp_path, monkeypatch):
    from engine.expert.backends import RayBackend

    assert not ray_module.is_initialized()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)  # the workers import engine wherever the run starts
    expert, scms, datas = graphs
    done = []
    paths = run_graphs(expert, jax.random.PRNGKey(0), scms, datas, tmp_path / "ray", workers=2,
                       backend=RayBackend(), progress=lambda d, n: done.append(d))
    assert done == [0, 1, 2, 3]
    assert not ray_module.is_initialized()  # the instance it started for the run is shut down
    assert_same(paths, reference)


@pytest.mark.slow
def test_resume_recomputes_only_missing_or_damaged_graphs(ray_session, graphs, reference, tmp_path):
    from engine.expert.backends import RayBackend

    expert, scms, datas = graphs
    paths = run_graphs(expert, jax.random.PRNGKey(0), scms, datas, tmp_path, workers=2, backend=RayBackend())
    assert ray_session.is_initialized()  # the caller's instance is the caller's to shut down
    kept = paths[0].stat().st_mtime_ns
    paths[1].unlink()
    paths[2].write_bytes(paths[2].read_bytes()[:-20])  # a torn file fails its checksum
    done = []
    run_graphs(expert, jax.random.PRNGKey(0), scms, datas, tmp_path, workers=2, backend=RayBackend(),
               progress=lambda d, n: done.append(d))
    assert done == [1, 2, 3] and paths[0].stat().st_mtime_ns == kept
    assert_same(paths, reference)


@pytest.mark.slow
def test_a_lost_worker_is_retried(ray_session, graphs, reference, tmp_path, monkeypatch):
    from engine.expert import runner
    from engine.expert.backends import RayBackend

    real, marker = runner._worker, tmp_path / "crashed_once"

    def dies_once(job):  # a local function: Ray ships it by value
        if job[-1].endswith("graph_000001.npz") and not marker.exists():
            marker.touch()
            os._exit(1)  # the worker process dies mid-task, as on a lost node
        return real(job)

    monkeypatch.setattr(runner, "_worker", dies_once)
    expert, scms, datas = graphs
    paths = run_graphs(expert, jax.random.PRNGKey(0), scms, datas, tmp_path / "out", workers=2, backend=RayBackend())
    assert marker.exists()
    assert_same(paths, reference)


@pytest.mark.slow
def test_a_raising_graph_is_named_after_the_others_finish(ray_session, graphs, reference, tmp_path, monkeypatch):
    from engine.expert import runner
    from engine.expert.backends import RayBackend

    real = runner._worker

    def fails(job):
        if job[-1].endswith("graph_000001.npz"):
            raise ValueError("singular matrix")
        return real(job)

    monkeypatch.setattr(runner, "_worker", fails)
    expert, scms, datas = graphs
    with pytest.raises(RuntimeError, match=r"failed on 1 graph\(s\) \[1\].*ValueError: singular matrix"):
        run_graphs(expert, jax.random.PRNGKey(0), scms, datas, tmp_path, workers=2, backend=RayBackend())
    assert load_trajectory(tmp_path / "graph_000001.npz") is None
    assert_same([tmp_path / "graph_000000.npz", tmp_path / "graph_000002.npz"], reference[::2])


def test_without_ray_the_spec_names_the_install(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from engine.cli import app
    from engine.expert.backends import MissingExtra
    from engine.spec.train import HardwareSpec

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert HardwareSpec().build_backend().name == "local"
    with pytest.raises(MissingExtra, match=r'backend = "ray" needs Ray.*pip install -e "\.\[ray\]"'):
        HardwareSpec(backend="ray").build_backend()
    # apply refuses before its first stage, with the install line and no traceback
    spec = Path(__file__).resolve().parents[1] / "specs" / "smoke.toml"
    result = CliRunner().invoke(app, ["apply", str(spec), "--set", "hardware.backend=ray",
                                      "--registry", str(tmp_path / "registry")])
    assert result.exit_code == 2, result.output
    assert 'pip install -e ".[ray]"' in result.output and "Traceback" not in result.output
    assert not (tmp_path / "registry" / "_stages").exists() or not any((tmp_path / "registry" / "_stages").iterdir())
