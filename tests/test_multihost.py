"""Multi-host training for real: two processes joined by `jax.distributed` on this machine's
CPU, each with two local devices and feeding only its half of every global batch, train as one
process with four devices does on the same global batches; files are written once; a kill of
both after a checkpoint resumes to the same parameters."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).resolve().parent / "helpers" / "multihost_train.py"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run(work: Path, processes: int, per_process: int, env: dict | None = None) -> list[subprocess.CompletedProcess]:
    port = _port()
    work.mkdir(parents=True, exist_ok=True)
    return _together([[sys.executable, str(WORKER), str(p), str(processes), str(per_process), str(port), str(work),
                       str(work / f"out-{p}.npz")] for p in range(processes)],
                     [env or {}] * processes, work)


def _together(commands: list[list[str]], envs: list[dict], logs: Path, cwd=None) -> list[subprocess.CompletedProcess]:
    """Run the processes of one distributed job at once. Their output goes to files: a process
    blocked on a full pipe would stall the others inside a collective."""
    procs = []
    # Both compile their programs (one reading the other's persistent-cache entries would run
    # ahead by the compile time, and gloo gives a peer 30 s to join a collective).
    envs = [{"JAX_ENABLE_COMPILATION_CACHE": "false", **env} for env in envs]
    for i, (cmd, env) in enumerate(zip(commands, envs)):
        with open(logs / f"stdout-{i}", "w") as out, open(logs / f"stderr-{i}", "w") as err:
            procs.append(subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=err, cwd=cwd))
    for p in procs:
        p.wait(timeout=900)
    return [subprocess.CompletedProcess(p.args, p.returncode, (logs / f"stdout-{i}").read_text(),
                                        (logs / f"stderr-{i}").read_text()) for i, p in enumerate(procs)]


def _leaves(path: Path) -> list[np.ndarray]:
    z = np.load(path)
    return [z[f"leaf{i}"] for i in range(sum(k.startswith("leaf") for k in z.files))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("multihost")
    single, double = base / "single", base / "double"
    for work, processes, per_process in ((single, 1, 4), (double, 2, 2)):
        for r in _run(work, processes, per_process):
            assert r.returncode == 0, r.stderr[-3000:]
    return single, double


def test_two_processes_train_as_one_on_the_same_global_batches(runs):
    single, double = runs
    logged = lambda work: [(r["loss"], r["val_loss"]) for r in map(json.loads, (work / "metrics.jsonl").read_text().splitlines())]  # noqa: E731
    np.testing.assert_allclose(logged(double), logged(single), rtol=1e-6)
    # The gradient all-reduce sums in another order across processes (float32 rounding); Adam's
    # normalised first steps turn that into up to a fraction of one step (lr = 1e-3) on
    # parameters whose gradient is near zero.
    reference = _leaves(single / "out-0.npz")
    for p in (0, 1):
        for a, b in zip(_leaves(double / f"out-{p}.npz"), reference):
            np.testing.assert_allclose(a, b, rtol=0, atol=5e-4)
    for a, b in zip(_leaves(double / "out-0.npz"), _leaves(double / "out-1.npz")):
        np.testing.assert_array_equal(a, b)  # both processes hold the same parameters
    # each process fed only its own half of the 8-row global batch
    assert np.load(double / "out-0.npz")["rows"].tolist() == [0, 4]
    assert np.load(double / "out-1.npz")["rows"].tolist() == [4, 8]
    assert np.load(single / "out-0.npz")["rows"].tolist() == [0, 8]


def test_files_are_written_once(runs):
    _, double = runs
    steps = [json.loads(line)["step"] for line in (double / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10, 12]  # one writer: no line twice
    names = sorted(p.name for p in (double / "checkpoints").iterdir())
    assert names == ["ckpt-000000008.eqx", "ckpt-000000012.eqx"]  # keep = 2; no temporaries left


@pytest.mark.slow
def test_a_kill_of_both_processes_resumes_to_the_same_parameters(runs, tmp_path):
    _, double = runs
    killed = _run(tmp_path, 2, 2, {"ACBO_TEST_KILL_AFTER_CHECKPOINT": "8"})
    assert [r.returncode for r in killed] == [-9, -9], [r.stderr[-2000:] for r in killed]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir())[-1] == "ckpt-000000008.eqx"
    for r in _run(tmp_path, 2, 2):
        assert r.returncode == 0, r.stderr[-3000:]
    for p in (0, 1):
        for a, b in zip(_leaves(tmp_path / f"out-{p}.npz"), _leaves(double / f"out-{p}.npz")):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_acbo_apply_on_two_processes_records_one_run(tmp_path):
    """Every process runs the same `acbo apply` on one registry: the lead builds the stages
    and records the run, both train, the other returns the lead's run."""
    port, root, registry = _port(), Path(__file__).resolve().parents[1], tmp_path / "registry"
    command = [sys.executable, "-m", "engine.cli", "apply", str(root / "specs" / "smoke.toml"),
               "--registry", str(registry), "--json"]
    envs = [{"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
             "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(p)} for p in range(2)]
    done = _together([command, command], envs, tmp_path, cwd=root)
    assert [r.returncode for r in done] == [0, 0], [r.stderr[-2000:] for r in done]
    runs = list((registry / "smoke").iterdir())
    assert len(runs) == 1
    # gloo prints its connections on stdout (from C++, before any of acbo's output): the JSON
    # document is what follows them
    docs = [json.loads(r.stdout[r.stdout.index("{"):]) if r.stdout.startswith("{") else
            json.loads(r.stdout[r.stdout.rindex("\n{") + 1:]) for r in done]
    assert {d["run_id"] for d in docs} == {runs[0].name}
    lock = json.loads((runs[0] / "lock.json").read_text())
    assert len(lock["devices"]) == 4  # trained over both processes' devices
